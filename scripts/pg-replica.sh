#!/usr/bin/env bash
# A local streaming replica of the local PostgreSQL, for the read-replica test (issue 6).
#
#   scripts/pg-replica.sh start    # (default) make it if needed and start it; idempotent
#   scripts/pg-replica.sh stop     # stop it (its data directory stays)
#   scripts/pg-replica.sh status   # print its state
#
# The replica is a second PostgreSQL cluster made with `pg_basebackup -R` from the primary
# (PRIMARY_HOST:PRIMARY_PORT, user postgres, trust on 127.0.0.1 as on this machine and in CI),
# listening on 127.0.0.1:REPLICA_PORT (default 5433), data directory REPLICA_DIR (default
# /tmp/cashback-pg-replica-<port>), run as the `postgres` system user with pg_ctl. When the
# primary's pg_hba.conf has no `replication` entry for 127.0.0.1, one (trust, user postgres) is
# appended and the configuration reloaded. A replica that exists but does not stream (e.g. the
# primary recycled the WAL it needed while it was down) is made again. Needs root (or the
# postgres user) and the server binaries of the primary's major version.
set -euo pipefail

PRIMARY_HOST="${PRIMARY_HOST:-127.0.0.1}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
REPLICA_PORT="${REPLICA_PORT:-5433}"
REPLICA_DIR="${REPLICA_DIR:-/tmp/cashback-pg-replica-$REPLICA_PORT}"
CMD="${1:-start}"

psql_primary() { psql -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -d postgres -X -Atq "$@"; }
psql_replica() { psql -h 127.0.0.1 -p "$REPLICA_PORT" -U postgres -d postgres -X -Atq "$@"; }

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

bindir() {
  local v
  v="$(psql_primary -c 'show server_version_num')"
  v=$((v / 10000))
  if [ -x "/usr/lib/postgresql/$v/bin/pg_ctl" ]; then
    echo "/usr/lib/postgresql/$v/bin"
  else
    dirname "$(command -v pg_ctl)"
  fi
}

streaming() {
  [ "$(psql_replica -c 'select pg_is_in_recovery()' 2>/dev/null || true)" = t ] &&
    [ "$(psql_replica -c 'select status from pg_stat_wal_receiver' 2>/dev/null || true)" = streaming ]
}

status() {
  if streaming; then
    echo "replica on 127.0.0.1:$REPLICA_PORT streaming from $PRIMARY_HOST:$PRIMARY_PORT ($REPLICA_DIR)"
  else
    echo "replica on 127.0.0.1:$REPLICA_PORT not streaming"
    return 1
  fi
}

stop() {
  if [ -f "$REPLICA_DIR/postmaster.pid" ]; then
    as_postgres "$(bindir)/pg_ctl" -D "$REPLICA_DIR" -m fast -w stop || true
  fi
}

allow_replication() {
  local hba
  hba="$(psql_primary -c 'show hba_file')"
  if ! grep -Eq '^[[:space:]]*host[[:space:]]+replication[[:space:]]' "$hba"; then
    echo "adding a replication entry for 127.0.0.1 to $hba"
    printf '\n# cashback scripts/pg-replica.sh: a local streaming replica\nhost replication postgres 127.0.0.1/32 trust\n' >>"$hba"
    psql_primary -c 'select pg_reload_conf()' >/dev/null
    sleep 1
  fi
  local level senders
  level="$(psql_primary -c 'show wal_level')"
  senders="$(psql_primary -c 'show max_wal_senders')"
  if [ "$level" = minimal ] || [ "$senders" -lt 2 ]; then
    echo "FATAL: the primary cannot stream (wal_level=$level, max_wal_senders=$senders)" >&2
    exit 1
  fi
}

make_replica() {
  local bin
  bin="$(bindir)"
  stop
  rm -rf "$REPLICA_DIR"
  mkdir -p "$REPLICA_DIR"
  chown postgres:postgres "$REPLICA_DIR" 2>/dev/null || true
  chmod 700 "$REPLICA_DIR"
  echo "pg_basebackup from $PRIMARY_HOST:$PRIMARY_PORT into $REPLICA_DIR"
  as_postgres "$bin/pg_basebackup" -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -D "$REPLICA_DIR" \
    -R -X stream -c fast --no-sync
  # Debian keeps the configuration outside the data directory: the replica gets its own.
  as_postgres tee "$REPLICA_DIR/postgresql.conf" >/dev/null <<EOF
port = $REPLICA_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$REPLICA_DIR'
hot_standby = on
hot_standby_feedback = on
shared_buffers = 32MB
max_connections = $(psql_primary -c 'show max_connections')
max_worker_processes = $(psql_primary -c 'show max_worker_processes')
max_locks_per_transaction = $(psql_primary -c 'show max_locks_per_transaction')
max_prepared_transactions = $(psql_primary -c 'show max_prepared_transactions')
fsync = off
logging_collector = off
EOF
  as_postgres tee "$REPLICA_DIR/pg_hba.conf" >/dev/null <<EOF
local all all trust
host all all 127.0.0.1/32 trust
EOF
  as_postgres touch "$REPLICA_DIR/pg_ident.conf"
}

start() {
  if streaming; then
    status
    return 0
  fi
  allow_replication
  local bin
  bin="$(bindir)"
  if [ -f "$REPLICA_DIR/standby.signal" ]; then
    as_postgres "$bin/pg_ctl" -D "$REPLICA_DIR" -l "$REPLICA_DIR/log" -w -t 60 start >/dev/null 2>&1 9>&- || true
  fi
  local i
  for i in $(seq 1 20); do
    streaming && break
    [ -f "$REPLICA_DIR/postmaster.pid" ] || break
    sleep 0.5
  done
  if ! streaming; then
    make_replica
        # 9>&-: the server must not inherit (and keep) this script's lock.
    as_postgres "$bin/pg_ctl" -D "$REPLICA_DIR" -l "$REPLICA_DIR/log" -w -t 120 start >/dev/null 9>&-
    for i in $(seq 1 120); do
      streaming && break
      sleep 0.5
    done
  fi
  if ! status; then
    tail -20 "$REPLICA_DIR/log" >&2 || true
    exit 1
  fi
}

# One caller at a time (tests and CI may both ask for it).
exec 9>"/tmp/cashback-pg-replica-$REPLICA_PORT.lock"
flock -w 300 9

case "$CMD" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac
