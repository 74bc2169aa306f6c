//! `triplicate-stream`: (being built for issue 3)
