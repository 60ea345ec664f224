# Sourced by scripts/run-tests.sh and scripts/fuzz-smoke.sh (not run on its own).
#
# pool_run JOBS COUNT DIR FN: calls FN 1, FN 2, ... FN COUNT, at most JOBS at a time, each
# number as soon as a worker is free (so one slow job does not hold back the others, as
# batches would); with JOBS 1, in order. The workers share a counter file in DIR, under
# a lock that is a directory (mkdir is atomic). Returns when every call has ended.
pool_run() {
    pool_jobs=$1 pool_count=$2 pool_dir=$3 pool_fn=$4
    echo 1 >"$pool_dir/pool-next"
    rm -rf "$pool_dir/pool-lock"
    pool_i=0
    while [ "$pool_i" -lt "$pool_jobs" ]; do
        (
            while :; do
                while ! mkdir "$pool_dir/pool-lock" 2>/dev/null; do sleep 0.05; done
                pool_n=$(cat "$pool_dir/pool-next")
                echo $((pool_n + 1)) >"$pool_dir/pool-next"
                rmdir "$pool_dir/pool-lock"
                [ "$pool_n" -le "$pool_count" ] || exit 0
                "$pool_fn" "$pool_n"
            done
        ) &
        pool_i=$((pool_i + 1))
    done
    wait
    rm -f "$pool_dir/pool-next"
}
