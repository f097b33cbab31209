#!/bin/bash
# Primary, first start only: a replication role for the standby and its pg_hba entry.
set -e
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c \
  "CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '$(cat /run/secrets/db-password)'"
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
