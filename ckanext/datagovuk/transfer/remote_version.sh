# shellcheck shell=sh
# One ssh round trip before an import from [user@]host: the remote pg_dump's
# version, and MARKER when the remote host has a zstd that takes the options
# the import compresses with.
#
#   ssh HOST sh -s -- PG_DUMP MARKER ZSTD [ZSTD_OPTION...] < remote_version.sh

probe() {
    pg_dump=$1 marker=$2
    shift 2
    "$pg_dump" --version || exit
    if "$@" > /dev/null 2>&1; then
        echo "$marker"
    fi
}

# The script itself arrives on stdin: nothing it runs may read from there.
probe "$@" < /dev/null
