#!/usr/bin/env bash
# Sourced by scripts/test.sh: makes a PostgreSQL server reachable for the projection tests and
# exports TRIPLICATE_TEST_PG_URL (an admin URL; each test creates and drops its own database).
#
# In order: use TRIPLICATE_TEST_PG_URL or 127.0.0.1:5432 if it answers; start the Debian cluster
# if one is installed but stopped; install Debian's postgresql package if there is none (needs
# root and apt); as a last resort start a private server on a free port in a temporary
# directory. If none of that works it FAILS and says why: the PostgreSQL suite is never skipped.

pg_log() { echo "ensure-postgres: $*" >&2; }

pg_answers() {
  local url=$1
  if command -v psql >/dev/null 2>&1; then
    psql "$url" -Atqc 'select 1' >/dev/null 2>&1
  else
    local hostport=${url#*@}; hostport=${hostport%%/*}
    pg_isready -h "${hostport%%:*}" -p "${hostport##*:}" -q >/dev/null 2>&1
  fi
}

# Starts every installed Debian cluster, then waits up to 10 s for $1 to answer.
start_debian_clusters() {
  local url=$1 ver
  [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null 2>&1 || return 1
  for ver in $(ls /etc/postgresql 2>/dev/null); do
    pg_log "starting the Debian cluster $ver/main"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start >/dev/null 2>&1 || true
  done
  for _ in $(seq 1 20); do
    pg_answers "$url" && return 0
    sleep 0.5
  done
  return 1
}

ensure_postgres() {
  local url=${TRIPLICATE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  if pg_answers "$url"; then
    export TRIPLICATE_TEST_PG_URL=$url
    pg_log "using PostgreSQL at ${url%%\?*}"
    return 0
  fi

  # A Debian cluster that is installed but not running.
  if start_debian_clusters "$url"; then
    export TRIPLICATE_TEST_PG_URL=$url
    return 0
  fi

  # No server binaries at all: install Debian's package. (Its cluster allows passwordless TCP
  # logins only if pg_hba says so; when it does not, the private server below takes over.)
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      pg_log "installing Debian's postgresql package"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; } ||
        pg_log "apt-get install postgresql failed"
      if start_debian_clusters "$url"; then
        export TRIPLICATE_TEST_PG_URL=$url
        return 0
      fi
    else
      pg_log "no PostgreSQL installed and cannot install it (need root and apt-get)"
    fi
  fi

  # Last resort: a private, throwaway server with trust auth on a free port.
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$bin" ] && [ -x "$bin/initdb" ]; then
    local dir port run=()
    dir=$(mktemp -d /tmp/triplicate-pg.XXXXXX)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
      chown postgres "$dir"
      run=(runuser -u postgres --)
    fi
    pg_log "starting a private PostgreSQL in $dir on port $port"
    if "${run[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null &&
       "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
         -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null; then
      url="postgres://postgres@127.0.0.1:$port/postgres"
      export TRIPLICATE_TEST_PG_URL=$url
      TRIPLICATE_PRIVATE_PG=("${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop)
      TRIPLICATE_PRIVATE_PG_DIR=$dir
      pg_stop_private() { "${TRIPLICATE_PRIVATE_PG[@]}" >/dev/null 2>&1; rm -rf "$TRIPLICATE_PRIVATE_PG_DIR"; }
      if declare -F on_exit >/dev/null; then on_exit pg_stop_private; else trap pg_stop_private EXIT; fi
      return 0
    fi
    pg_log "the private server did not start (see $dir/log)"
  fi

  echo "error: no PostgreSQL server is reachable at ${url%%\?*} and none could be started or installed;" >&2
  echo "       set TRIPLICATE_TEST_PG_URL to an admin URL of a PostgreSQL 13+ server. The PostgreSQL suite is not skipped." >&2
  return 1
}
