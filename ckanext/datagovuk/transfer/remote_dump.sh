# shellcheck shell=sh
# The remote side of a directory-format import: pg_dump -Fd -j N into a
# temporary directory, each table's data file sent as soon as it is dumped.
#
#   ssh HOST sh -s -- PG_DUMP DATABASE JOBS LEVEL SYNC [PARENT] < remote_dump.sh
#
# PG_DUMP, DATABASE: the remote pg_dump and its -d; JOBS, LEVEL: its -j and
# -Z; SYNC: "no-sync" to give it --no-sync (10 and later), else "sync";
# PARENT: where the temporary directory goes (default ${TMPDIR:-/tmp}).
#
# pg_dump runs in the background with -v; each table's data file is sent as
# a tar archive of its own once pg_dump's log says "finished item N TABLE
# DATA", and its name noted in $work/sent, so the transfer overlaps the dump;
# the rest (toc.dat last) follows when pg_dump has succeeded.  Nothing is
# deleted before then: pg_dump 10+ opens every file again at the end to fsync
# it (--no-sync skips that, but older ones have no such option).  Meanwhile a
# zero block (which tar -x --ignore-zeros skips) goes out every 0.2 s, so
# that a closed connection ends the script at once.  On failure, pg_dump's
# log goes to stderr without its progress lines.

set -e

# However the script ends (an error, or tar losing its reader when the
# import is stopped): stop pg_dump, wait for the job that notes its status
# (which would otherwise write it into a directory being removed), and
# remove the dump.
remove_work() {
    kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || :
    wait || :
    rm -rf "$work"
}

# Send each data file pg_dump has finished and that has not gone yet.
send_finished() {
    # Item numbers: one word each, so a for loop reads them as well as a
    # while-read loop would.
    # shellcheck disable=SC2013
    for item in $(sed -n \
            "s/.*finished item \([0-9][0-9]*\) TABLE DATA .*/\1/p" \
            "$work/log"); do
        for file in "$work/dump/$item".dat*; do
            name=${file##*/}
            case "$sent" in *" $name "*) continue;; esac
            if [ -f "$file" ]; then
                (cd "$work/dump" && tar -cf - "$name")
                sent="$sent$name "
                echo "$name" >> "$work/sent"
            fi
        done
    done
}

dump() {
    pg_dump=$1 database=$2 jobs=$3 level=$4 sync=$5 parent=${6:-${TMPDIR:-/tmp}}
    umask 077
    work=$(mktemp -d "$parent/datagovuk-dump.XXXXXX")
    trap remove_work EXIT
    # A signal becomes an exit, so that the EXIT trap runs.
    trap "exit 129" HUP
    trap "exit 130" INT
    trap "exit 143" TERM
    : > "$work/log"
    : > "$work/sent"
    sent=" "
    if [ "$sync" = no-sync ]; then set -- --no-sync; else set --; fi
    {
        "$pg_dump" -Fd -j "$jobs" -Z"$level" -O -x -w -v "$@" \
            -f "$work/dump" -d "$database" 2> "$work/log" &
        echo $! > "$work/pid"
        status=0
        wait $! || status=$?
        echo $status > "$work/status"
    } &
    while [ ! -s "$work/status" ]; do
        send_finished
        dd if=/dev/zero bs=512 count=1 2>/dev/null
        sleep 0.2 2>/dev/null || sleep 1
    done
    status=$(cat "$work/status")
    if [ "$status" != 0 ]; then
        grep -v -E "finished item|dumping contents of table|^pg_dump: (reading|saving|finding|flagging|identifying|last built-in)" \
            "$work/log" >&2 || :
        exit "$status"
    fi
    send_finished
    cd "$work/dump"
    for name in *; do
        case "$sent" in
            *" $name "*) ;;
            *) [ "$name" = toc.dat ] || tar -cf - "$name";;
        esac
    done
    tar -cf - toc.dat
}

# The script itself arrives on stdin: nothing it runs may read from there.
dump "$@" < /dev/null
