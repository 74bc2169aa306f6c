#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every crate's tests.
# This is the README's test command and what .ci/run calls (CI sets CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

# Cleanups run when the script exits, in the order they were registered.
EXIT_HOOKS=()
on_exit() {
  EXIT_HOOKS+=("$1")
  trap 'for h in "${EXIT_HOOKS[@]}"; do eval "$h" || true; done' EXIT
}

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

# The `yubikey` feature (YubiKey PIV through the yubikey crate) links libpcsclite.
if ! pkg-config --exists libpcsclite 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-libpcsclite: installing Debian's libpcsclite-dev and pkg-config" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libpcsclite-dev pkg-config >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libpcsclite-dev pkg-config >&2; } || true
  fi
  pkg-config --exists libpcsclite 2>/dev/null ||
    { echo "ensure-libpcsclite: FAILED: the yubikey feature needs Debian's libpcsclite-dev and pkg-config" >&2; exit 1; }
fi

# The NATS JetStream stream's suites (crates/stream/tests/nats.rs, the server's JetStream tests)
# run against a real nats-server: $TRIPLICATE_TEST_NATS_URL, else 127.0.0.1:4222 when it answers,
# else one started here with JetStream on a free port and a temporary store, stopped at exit.
# Some tests also start their own short-lived server, so the binary must exist either way.
ensure_tool nats-server nats-server nats-server "the NATS JetStream stream's suites"
nats_answers() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}
if [ -z "${TRIPLICATE_TEST_NATS_URL:-}" ]; then
  if nats_answers 127.0.0.1 4222; then
    export TRIPLICATE_TEST_NATS_URL=nats://127.0.0.1:4222
    echo "ensure-nats: using the NATS server at 127.0.0.1:4222" >&2
  else
    nats_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    nats_dir=$(mktemp -d)
    echo "ensure-nats: no NATS server answers at 127.0.0.1:4222; starting nats-server -js on port $nats_port ($nats_dir)" >&2
    nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$nats_dir" >"$nats_dir/nats.log" 2>&1 &
    nats_pid=$!
    on_exit "kill $nats_pid; rm -rf '$nats_dir'"
    for _ in $(seq 100); do nats_answers 127.0.0.1 "$nats_port" && break; sleep 0.1; done
    nats_answers 127.0.0.1 "$nats_port" ||
      { echo "ensure-nats: FAILED: nats-server did not start (log: $nats_dir/nats.log)" >&2; cat "$nats_dir/nats.log" >&2; exit 1; }
    export TRIPLICATE_TEST_NATS_URL=nats://127.0.0.1:$nats_port
  fi
fi

# The hardware-signer suites (PKCS#11 on SoftHSM2 and on ykcs11, the `yubikey` crate, both
# against an emulated PIV card) run against the stand-ins of ../shared/tools/hwtoken. Stand-ins
# a developer already brought up (HWTOKEN_* set) are used as they are; otherwise this script
# starts them, provisions them and stops them when it exits. Outside this workplace (no
# hwtoken tools) the suites are skipped with one loud line; in CI they must run.
hwtoken_tools() {
  local d
  for d in "${TRIPLICATE_HWTOKEN_TOOLS:-}" ../shared/tools/hwtoken /work/shared/tools/hwtoken; do
    if [ -n "$d" ] && [ -x "$d/up.sh" ]; then (cd "$d" && pwd); return 0; fi
  done
  return 1
}
hw_pid=
if [ -n "${HWTOKEN_SOFTHSM_MODULE:-}" ]; then
  echo "hwtoken: using the stand-ins already up (HWTOKEN_* set)" >&2
elif tools=$(hwtoken_tools); then
  # Brought up in the background while fmt and clippy run (installing its Debian packages and
  # building the emulated card is mostly waiting on the network, dpkg and a release build);
  # `cargo test` waits for it. Every other apt-get install above has finished by now.
  hw_dir=$PWD/target/hwtoken
  hw_log=$(mktemp)
  export PIVEMU_TARGET_DIR=${PIVEMU_TARGET_DIR:-$PWD/target/pivemu}
  echo "== hardware stand-ins: $tools/up.sh $hw_dir (in the background; log $hw_log)" >&2
  ("$tools/up.sh" "$hw_dir" && scripts/hwtoken-provision.sh "$hw_dir") >"$hw_log" 2>&1 &
  hw_pid=$!
  # At exit: let a bring-up still running finish (never stop apt-get midway), then stop it all.
  on_exit 'wait "$hw_pid" 2>/dev/null; "$tools/down.sh" "$hw_dir" >/dev/null 2>&1; rm -f "$hw_log"'
elif [ "${CI:-}" = true ]; then
  echo "hwtoken: FAILED: CI=true but no hwtoken tools (../shared/tools/hwtoken or TRIPLICATE_HWTOKEN_TOOLS); the hardware-signer suites must run in CI" >&2
  exit 1
else
  echo "########## hwtoken: hardware stand-ins not found: the hardware-signer suites will SKIP. Run ../shared/tools/hwtoken/up.sh DIR && source DIR/env first, or set TRIPLICATE_HWTOKEN_TOOLS. ##########" >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

if [ -n "$hw_pid" ]; then
  echo "== waiting for the hardware stand-ins" >&2
  if ! wait "$hw_pid"; then
    cat "$hw_log" >&2
    echo "hwtoken: FAILED to bring up the stand-ins (see above); the hardware-signer suites cannot run" >&2
    exit 1
  fi
  cat "$hw_log" >&2
  # shellcheck source=/dev/null
  . "$hw_dir/env"
fi

# A watchdog: a test that hangs fails the run after TRIPLICATE_TEST_TIMEOUT seconds (default
# 45 minutes, building included; a full run takes about 10) instead of running out CI's 90
# minutes with nothing reported. Above, cargo test names any test running for over 60 s.
test_timeout=${TRIPLICATE_TEST_TIMEOUT:-2700}
echo "== cargo test (all crates, all features; stopped after ${test_timeout}s)"
rc=0
timeout --kill-after=60 "$test_timeout" cargo test --workspace --all-features --locked || rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  echo "cargo test: FAILED: still running after ${test_timeout}s; a test hangs (cargo names those running for over 60 s above)" >&2
fi
[ "$rc" = 0 ] || exit "$rc"

echo "== the alert rules: promtool check and unit tests (ops/prometheus/)"
ops/prometheus/check.sh
