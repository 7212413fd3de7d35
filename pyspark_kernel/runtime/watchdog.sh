# Watchdog of a pyspark-kernel kernel: POSIX sh, in a session of its own, so it outlives the
# kernel however the kernel ends, at about a megabyte instead of a second Python.
# Arguments: the kernel's pid, its scratch directory and "pipe" when stdin is a pipe whose other
# end only the kernel holds (else it checks the pid each second). Once the kernel has exited it
# waits for the driver JVMs it started (scratch/jvm.pids, one per line), kills any that linger,
# keeps a class-data-sharing archive only if its JVM finished writing it (and records its size,
# which kernels check before they map it), and removes the scratch directory and the files
# scratch/remove-at-exit names (the Spark UI's token, or a YARN UI's route).
trap '' INT HUP
kernel=$1
scratch=$2

gone() {  # the process has exited, or is a zombie its parent has not reaped yet
    kill -0 "$1" 2>/dev/null || return 0
    if [ -r "/proc/$1/stat" ]; then
        state=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)
    else  # no /proc (macOS); ps is POSIX
        state=$(ps -o stat= -p "$1" 2>/dev/null)
    fi
    # No answer from either: kill -0 has just said the process is there.
    case $state in
        Z* | X*) return 0 ;;
    esac
    return 1
}

wait_exit() {  # pid, checks at most (0: no limit), seconds between checks; false if still running
    waited=0
    while ! gone "$1"; do
        if [ "$2" -gt 0 ] && [ "$waited" -ge "$2" ]; then return 1; fi
        sleep "$3"
        waited=$((waited + 1))
    done
}

if [ "${3:-}" = pipe ]; then
    # The read ends when the kernel has exited (or is exiting): no polling while it runs.
    while read -r _; do :; done
    # Exiting, or it exec'd or closed the pipe while it runs on: then a check each second.
    wait_exit "$kernel" 10 0.2 || wait_exit "$kernel" 0 1
else
    wait_exit "$kernel" 0 1
fi
if [ -f "$scratch/remove-at-exit" ]; then  # the Spark UI's token or route file (runtime.uiauth), outside the scratch directory
    while IFS= read -r file; do [ -n "$file" ] && rm -f -- "$file"; done < "$scratch/remove-at-exit"
fi
limit=100  # checks of 0.2 s; writing the class-data-sharing archive at exit takes longer
[ -f "$scratch/cds-training.sh" ] && limit=900
if [ -f "$scratch/jvm.pids" ]; then
    while read -r jvm; do
        [ -n "$jvm" ] || continue
        if ! wait_exit "$jvm" "$limit" 0.2; then
            kill -9 "$jvm" 2>/dev/null
            wait_exit "$jvm" 50 0.2
        fi
    done < "$scratch/jvm.pids"
fi
if [ -f "$scratch/cds-training.sh" ]; then
    partial=""
    . "$scratch/cds-training.sh"  # lock=, archive=, log=, and for a JDK that cannot write the archive in place: partial=
    if grep -q "Written dynamic archive" "$log" 2>/dev/null; then
        written=${partial:-$archive}
        if [ -z "$partial" ] || [ ! -e "$archive" ]; then
            # Its size first, then the archive: a kernel maps an archive only at the size recorded.
            size=$(wc -c < "$written" 2>/dev/null | tr -d ' ')
            if [ -n "$size" ] && echo "$size" > "$archive.size.partial" && mv -f "$archive.size.partial" "$archive.size"; then
                [ -z "$partial" ] || mv -f "$partial" "$archive"  # a rename: the archive appears whole or not at all
            fi
            rm -f "$archive.size.partial"
        fi
    fi
    [ -z "$partial" ] || rm -f "$partial"  # not finished: a half-written archive is never used
    rm -f "$lock"
fi
rm -rf "$scratch"
