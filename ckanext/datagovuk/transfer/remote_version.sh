# shellcheck shell=sh
# One ssh round trip before an import from [user@]host: the remote pg_dump's
# version, ZSTD_MARKER when the remote host has a zstd that takes the options
# the import compresses with, and, when PSQL is not empty, FACTS_MARKER
# followed by what psql answers to the read-only query SQL on the database
# DB (the old site's facts `migrate --from` decides on before it transfers
# anything; psql exits non-zero on the query's first error).
#
#   ssh HOST sh -s -- PG_DUMP ZSTD_MARKER FACTS_MARKER PSQL DB SITE_USER SQL \
#       ZSTD [ZSTD_OPTION...] < remote_version.sh

probe() {
    pg_dump=$1 zstd_marker=$2 facts_marker=$3 psql=$4 database=$5
    site_user=$6 sql=$7
    shift 7
    "$pg_dump" --version || exit
    if "$@" > /dev/null 2>&1; then
        echo "$zstd_marker"
    fi
    if [ -n "$psql" ]; then
        echo "$facts_marker"
        printf '%s\n' "$sql" | "$psql" -X -w -q -A -t -z -0 \
            -v ON_ERROR_STOP=1 -v site_user="$site_user" -d "$database" -f -
    fi
}

# The script itself arrives on stdin: nothing it runs may read from there.
probe "$@" < /dev/null
