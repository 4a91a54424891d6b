#!/bin/sh
# The application role of the portal (README, Production), created by the postgres image on the
# first start (an empty data volume), connected as the owner POSTGRES_USER.
#
# The owner (POSTGRES_USER) owns the schema and runs the migrations. POSTGRES_APP_USER, the role
# web, worker and beat connect as, may read and write every table the owner creates, except that
# audit migration 0012 then takes UPDATE, DELETE, TRUNCATE and TRIGGER on audit_portalevent away
# from every role but the owner: the app can append audit events, never change or remove them.
#
# For an existing database, run the same statements by hand as the owner (README), then
# `manage.py migrate` as the owner.
set -eu

: "${POSTGRES_APP_USER:=portal_app}"
: "${POSTGRES_APP_PASSWORD:?POSTGRES_APP_PASSWORD must be set}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_user="$POSTGRES_APP_USER" -v app_password="$POSTGRES_APP_PASSWORD" \
    -v owner="$POSTGRES_USER" -v db="$POSTGRES_DB" <<'SQL'
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
GRANT CONNECT ON DATABASE :"db" TO :"app_user";
GRANT USAGE ON SCHEMA public TO :"app_user";
-- Tables and sequences the owner creates later (the migrations): read and write, no TRUNCATE,
-- TRIGGER or REFERENCES, and never DDL (the app role owns nothing).
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"app_user";
-- Tables that already exist (none on a first start; the same lines upgrade a running database).
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app_user";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app_user";
SELECT format('REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER ON audit_portalevent FROM %I', :'app_user')
WHERE to_regclass('public.audit_portalevent') IS NOT NULL \gexec
SQL
