#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every crate's tests.
# This is the README's test command and what .ci/run calls (CI sets CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=ensure-postgres.sh
. scripts/ensure-postgres.sh
ensure_postgres

# The review pages' browser test (crates/server/tests/ui.rs) drives headless Chromium, Debian's
# `chromium` package (or $CHROMIUM). Installs it when missing (needs root and apt-get); if that
# cannot be done it FAILS and says why: the browser test is never skipped.
ensure_chromium() {
  local bin=${CHROMIUM:-chromium}
  if "$bin" --version >/dev/null 2>&1; then
    echo "ensure-chromium: using $("$bin" --version 2>/dev/null)" >&2
    return 0
  fi
  if [ -n "${CHROMIUM:-}" ]; then
    echo "ensure-chromium: FAILED: CHROMIUM=$CHROMIUM does not run" >&2
    return 1
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: installing Debian's chromium package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2; } ||
      echo "ensure-chromium: apt-get install chromium failed" >&2
  else
    echo "ensure-chromium: chromium is not installed and cannot be installed here (need root and apt-get)" >&2
  fi
  if chromium --version >/dev/null 2>&1; then
    return 0
  fi
  echo "ensure-chromium: FAILED: the review pages' browser test needs Debian's chromium package (apt-get install chromium)" >&2
  return 1
}
ensure_chromium

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

echo "== cargo test (all crates, all features)"
cargo test --workspace --all-features --locked
