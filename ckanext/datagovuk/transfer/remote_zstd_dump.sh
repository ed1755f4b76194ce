# shellcheck shell=sh
# The remote side of a custom-format dump that zstd carries:
#
#   ssh HOST sh -s -- PG_DUMP DATABASE ZSTD [ZSTD_OPTION...] < remote_zstd_dump.sh
#
# pg_dump writes -Z0 into zstd.  sh has no pipefail: pg_dump's status comes
# out on fd 4, so that the script fails when pg_dump does.

dump() {
    pg_dump=$1 database=$2
    shift 2
    exec 3>&1
    status=$( { { "$pg_dump" -Fc -Z0 -O -x -w -d "$database"; echo $? >&4; } \
        | "$@" >&3; } 4>&1 )
    exit "${status:-1}"
}

# The script itself arrives on stdin: nothing it runs may read from there.
dump "$@" < /dev/null
