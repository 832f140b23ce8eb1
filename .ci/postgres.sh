#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: `.ci/postgres.sh start DIR PORT` creates a cluster in
# DIR (if new), starts it on 127.0.0.1:PORT and prints its admin URL; `.ci/postgres.sh stop DIR` stops it.
# Trust authentication on loopback only (nothing else can connect), the unix socket inside DIR.
# initdb refuses to run as root: as root (CI, containers) the server runs as the `postgres` user.
set -euo pipefail

usage() { echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1
dir=$(realpath -m "$2")
port=${3:-5432}

find_bin() {  # PATH first, then Debian's versioned folders
    local name=$1 candidate
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
    for candidate in /usr/lib/postgresql/*/bin/"$name"; do
        [ -x "$candidate" ] && { echo "$candidate"; return; }
    done
    return 1
}

if ! find_bin initdb >/dev/null; then  # only where the binaries are missing
    echo "postgres.sh: initdb not found, installing the postgresql package" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
initdb=$(find_bin initdb)
pg_ctl=$(find_bin pg_ctl)

as_owner() {  # run as the data folder's owner: `postgres` when we are root
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
start)
    [ $# -eq 3 ] || usage
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$initdb" --pgdata="$dir/data" --username=postgres --auth=trust --encoding=UTF8 \
            --locale=C --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
        # loopback only, no password: a test server nothing else can reach
        printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' >"$dir/data/pg_hba.conf"
    fi
    # fsync off: a throwaway server, and the tests' commits are many
    as_owner "$pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait --timeout=60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off \
            -c max_connections=200" start >&2 || { tail -20 "$dir/server.log" >&2; exit 1; }
    echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$pg_ctl" --pgdata="$dir/data" --wait --mode=fast stop >&2
    fi
    ;;
*) usage ;;
esac
