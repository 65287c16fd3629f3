#!/usr/bin/env bash
# A scratch PostgreSQL cluster on 127.0.0.1 for the quick start, the tests and the benchmarks.
#
#   scripts/pg.sh start DIR PORT   initialise (first time) and start a cluster under DIR
#   scripts/pg.sh stop DIR         stop it
#
# The cluster listens on 127.0.0.1:PORT with TLS on (a self-signed certificate in DIR), SCRAM
# passwords, and these roles (passwords in DIR/passwords.env):
#   postgres     superuser
#   app          owner of the demo database `shop` (SCRAM)
#   legacy_md5   an MD5-hashed password, to exercise MD5 authentication
#   tls_only     may connect only over TLS
# initdb and postgres refuse to run as root, so as root they run as the `postgres` user.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}
dir=${2:-}
port=${3:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2; }

find_pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && latest=$d
  done
  if [ -z "${latest:-}" ]; then
    echo "pg.sh: installing PostgreSQL from Debian's packages" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && latest=$d; done
  fi
  echo "$latest"
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/bash -c "$*"
  else
    bash -c "$*"
  fi
}

bin=$(find_pg_bin)
data="$dir/data"

case "$cmd" in
start)
  [ -n "$port" ] || { echo "usage: $0 start DIR PORT" >&2; exit 2; }
  mkdir -p "$dir"
  if [ ! -f "$data/PG_VERSION" ]; then
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    super_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    app_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    md5_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    tls_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    printf '%s\n' "$super_pw" > "$dir/superuser.pw"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/superuser.pw"
    as_owner "'$bin/initdb' -D '$data' -U postgres --auth-local=trust --auth-host=scram-sha-256 --pwfile='$dir/superuser.pw' -E UTF8 --locale=C.UTF-8 >'$dir/initdb.log' 2>&1"
    rm -f "$dir/superuser.pw"
    # A private CA and a server certificate it signs, so clients can verify (verify-full).
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sluice scratch CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$dir/ca.key" -out "$dir/ca.crt" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout "$data/server.key" -out "$dir/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
      -days 3650 -extfile "$dir/server.ext" -out "$data/server.crt" >/dev/null 2>&1
    rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.key" "$dir/ca.srl"
    chmod 600 "$data/server.key"
    [ "$(id -u)" = 0 ] && chown postgres "$data/server.key" "$data/server.crt"
    cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 300
ssl = on
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
CONF
    cat > "$data/pg_hba.conf" <<HBA
local     all  all                      trust
hostnossl all  tls_only   127.0.0.1/32  reject
host      all  legacy_md5 127.0.0.1/32  md5
host      all  all        127.0.0.1/32  scram-sha-256
HBA
    as_owner "'$bin/pg_ctl' -D '$data' -o '-p $port' -l '$dir/server.log' -w start >/dev/null"
    psql_su="psql -h '$dir' -p $port -U postgres -v ON_ERROR_STOP=1 -q"
    as_owner "$psql_su -d postgres" <<SQL
CREATE ROLE app LOGIN PASSWORD '$app_pw';
CREATE ROLE tls_only LOGIN PASSWORD '$tls_pw';
SET password_encryption = 'md5';
CREATE ROLE legacy_md5 LOGIN PASSWORD '$md5_pw';
RESET password_encryption;
CREATE DATABASE shop OWNER app;
SQL
    as_owner "$psql_su -d shop -c 'SET ROLE app' -f '$here/demo-shop.sql'" >/dev/null
    as_owner "$psql_su -d shop" <<SQL
GRANT CONNECT ON DATABASE shop TO tls_only, legacy_md5;
GRANT USAGE ON SCHEMA public TO tls_only, legacy_md5;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO tls_only, legacy_md5;
SQL
    cat > "$dir/passwords.env" <<ENV
PG_SUPERUSER_PASSWORD=$super_pw
PG_APP_PASSWORD=$app_pw
PG_MD5_PASSWORD=$md5_pw
PG_TLS_ONLY_PASSWORD=$tls_pw
ENV
    chmod 600 "$dir/passwords.env"
  else
    as_owner "'$bin/pg_ctl' -D '$data' -o '-p $port' -l '$dir/server.log' -w start >/dev/null"
  fi
  echo "$port" > "$dir/port"
  ;;
stop)
  [ -f "$data/PG_VERSION" ] && as_owner "'$bin/pg_ctl' -D '$data' -m fast -w stop >/dev/null" || true
  ;;
*)
  echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
