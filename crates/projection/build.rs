//! Rebuilds the crate when a migration is added. `sqlx::migrate!` (postgres.rs) embeds every
//! file under `migrations/postgres/`, but cargo notices a new file there only when told to
//! watch the directory; without this, a build after adding a migration would embed the old set.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
