#!/bin/sh
# Runs once, when the postgres container initialises an empty data volume
# (docker-entrypoint-initdb.d). Creates Triplicate's database and its roles; the tables,
# grants and functions come from the service's own migrations (migrations/postgres/), which it
# runs as the owner at every start.
#
#   triplicate         LOGIN, owns the database: runs the migrations, owns the tables and the
#                      SECURITY DEFINER repair and removal functions. The service logs in as
#                      this role and issues SET ROLE triplicate_writer on every connection
#                      (crates/server/src/setup.rs), so it is also a member of the writer.
#                      Not a superuser and no CREATEROLE: the roles below exist already.
#   triplicate_writer  NOLOGIN: SELECT and INSERT, EXECUTE on the repair functions. No UPDATE,
#                      DELETE or TRUNCATE (triggers refuse them to everyone anyway).
#   triplicate_reader  NOLOGIN: SELECT only.
#   triplicate_query   LOGIN, member of triplicate_reader only: for people, reports and BI
#                      tools that query the projection. Never give them the owner's password.
#
# Passwords come from files (compose secrets), never from the environment.
set -eu

read_secret() {
    # First line of the file, without the newline.
    head -n 1 "$1" | tr -d '\r\n'
}
owner_pw=$(read_secret /run/secrets/pg_triplicate_password)
query_pw=$(read_secret /run/secrets/pg_query_password)

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v owner_pw="$owner_pw" -v query_pw="$query_pw" <<'SQL'
CREATE ROLE triplicate_writer NOLOGIN;
CREATE ROLE triplicate_reader NOLOGIN;
CREATE ROLE triplicate LOGIN PASSWORD :'owner_pw' IN ROLE triplicate_writer;
CREATE ROLE triplicate_query LOGIN PASSWORD :'query_pw' IN ROLE triplicate_reader;
-- PostgreSQL 15+: the public schema belongs to pg_database_owner, so the database's owner
-- may create the tables in it and grant on it.
CREATE DATABASE triplicate OWNER triplicate;
REVOKE ALL ON DATABASE triplicate FROM PUBLIC;
GRANT CONNECT ON DATABASE triplicate TO triplicate, triplicate_query;
SQL
