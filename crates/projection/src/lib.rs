//! `triplicate-projection`: (being built for issue 3)
