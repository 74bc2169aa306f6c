#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every crate's tests.
# This is the README's test command and what .ci/run calls (CI sets CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=ensure-postgres.sh
. scripts/ensure-postgres.sh
ensure_postgres

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

echo "== cargo test (all crates, all features)"
cargo test --workspace --all-features --locked
