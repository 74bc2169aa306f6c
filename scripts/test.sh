#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every crate's tests.
# This is the README's test command and what .ci/run calls (CI sets CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=ensure-postgres.sh
. scripts/ensure-postgres.sh
ensure_postgres

# A tool from a Debian package: `ensure_tool NAME BIN PACKAGE WHY`. Uses BIN when it runs
# (`BIN --version`); otherwise installs PACKAGE when it can (root and apt-get); if that cannot
# be done it FAILS and says why: nothing that needs the tool is ever skipped.
ensure_tool() {
  local name=$1 bin=$2 package=$3 why=$4
  if "$bin" --version >/dev/null 2>&1; then
    echo "ensure-$name: using $("$bin" --version 2>/dev/null | head -n 1)" >&2
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-$name: installing Debian's $package package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >&2; } ||
      echo "ensure-$name: apt-get install $package failed" >&2
  else
    echo "ensure-$name: $bin is not installed and cannot be installed here (need root and apt-get)" >&2
  fi
  if "$bin" --version >/dev/null 2>&1; then
    return 0
  fi
  echo "ensure-$name: FAILED: $why needs Debian's $package package (apt-get install $package)" >&2
  return 1
}

# The review pages' browser test (crates/server/tests/ui.rs) drives headless Chromium, Debian's
# `chromium` package (or $CHROMIUM, which must run as given).
if [ -n "${CHROMIUM:-}" ] && ! "$CHROMIUM" --version >/dev/null 2>&1; then
  echo "ensure-chromium: FAILED: CHROMIUM=$CHROMIUM does not run" >&2
  exit 1
fi
ensure_tool chromium "${CHROMIUM:-chromium}" chromium "the review pages' browser test"
# The Prometheus alert rules (ops/prometheus/) are checked and unit-tested with promtool.
ensure_tool promtool promtool prometheus "the alert rules' unit tests"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

echo "== cargo test (all crates, all features)"
cargo test --workspace --all-features --locked

echo "== the alert rules: promtool check and unit tests (ops/prometheus/)"
ops/prometheus/check.sh
