#!/bin/sh
# beside_load.sh N COMMAND...: run COMMAND while N CPU-bound loops run beside it, then stop them.
# For the suite on a machine as busy as a shared CI runner or JupyterHub node: make test-busy.
set -u
count=$1
shift
loops=""
index=0
while [ "$index" -lt "$count" ]; do
    sh -c 'while :; do :; done' &
    loops="$loops $!"
    index=$((index + 1))
done
trap 'kill $loops 2>/dev/null; exit 130' INT TERM
echo "beside_load: $count busy loops running (pids$loops)" >&2
"$@"
status=$?
kill $loops 2>/dev/null
exit $status
