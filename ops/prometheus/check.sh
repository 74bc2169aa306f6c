#!/bin/sh
# Checks the alert rules' syntax and runs their unit tests (triplicate-rules.test.yml).
# Needs promtool: Debian/Ubuntu `apt-get install prometheus`, or the Prometheus release tarball.
set -eu
cd "$(dirname "$0")"
if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool not found: install Prometheus (Debian: apt-get install prometheus)" >&2
    exit 2
fi
promtool check rules triplicate-rules.yml
promtool test rules triplicate-rules.test.yml
