#!/bin/sh
# Side-by-side training benchmark: the CNN of zoo/demo.arch on Fashion-MNIST, trained
# by build/tessera and by PyTorch (bench/train_fashion.py) with the same architecture,
# preprocessing, batch, optimizer, epochs and threads. Each configuration runs
# BENCH_RUNS times, alternating which engine goes first; medians are reported.
#
# Timing: tessera's figure is the sum of its per-epoch times ("epoch N: ... | 12.3s",
# measured by ts_trainer_run around the training loop only; --quiet so no progress bar
# is drawn). PyTorch's is perf_counter around its epoch loop. Dataset loading, model
# saving and the test evaluation are excluded for both.
#
# Settings (environment):
#   BENCH_RUNS=5          runs per configuration and engine
#   BENCH_THREADS=2       tessera --threads / torch.set_num_threads (and OMP_NUM_THREADS)
#   BENCH_EPOCHS=1        epochs per run
#   BENCH_BATCH=64        batch size
#   BENCH_CONFIGS="adam sgd"  configurations to run: adam (lr 1e-3), sgd (momentum 0.9, lr 0.05)
#   BENCH_LIMIT=0         train on the first N samples only (0: all 60000; for a smoke test)
#   BENCH_DATA=/usr/share/datasets/fashion-mnist
#   PYTHON=/usr/bin/python3
# A default run (adam and sgd, 3 runs each, 1 epoch) takes about 10 minutes on 2 idle cores.
set -eu

cd "$(dirname "$0")/.."
RUNS=${BENCH_RUNS:-5}
THREADS=${BENCH_THREADS:-2}
EPOCHS=${BENCH_EPOCHS:-1}
BATCH=${BENCH_BATCH:-64}
CONFIGS=${BENCH_CONFIGS:-adam sgd}
LIMIT=${BENCH_LIMIT:-0}
DATA=${BENCH_DATA:-/usr/share/datasets/fashion-mnist}
PYTHON=${PYTHON:-/usr/bin/python3}
TESSERA=./build/tessera
export OMP_NUM_THREADS="$THREADS"

[ -x "$TESSERA" ] || { echo "bench: $TESSERA not built (run make all)" >&2; exit 1; }
"$PYTHON" -c 'import torch' 2>/dev/null || { echo "bench: $PYTHON cannot import torch" >&2; exit 1; }
[ -d "$DATA" ] || { echo "bench: no Fashion-MNIST at $DATA (set BENCH_DATA)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "== tessera vs PyTorch: demo CNN on Fashion-MNIST (training throughput) =="
echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "cpu:      $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1), $(nproc) cores visible"
echo "tessera:  $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty tree)'), backend dnnl"
echo "pytorch:  $("$PYTHON" -c 'import torch; print(torch.__version__)')"
echo "settings: runs=$RUNS threads=$THREADS epochs=$EPOCHS batch=$BATCH limit=$LIMIT data=$DATA"
echo "load:     $(load) (1/5/15 min) before"
echo "timing:   training loop only (tessera: sum of its per-epoch times; PyTorch: perf_counter)"
echo

limit_arg=""
[ "$LIMIT" -gt 0 ] && limit_arg="--limit $LIMIT"

# run_tessera CONFIG SEED -> "images seconds acc" on stdout
run_tessera() {
    case $1 in
        adam) opt="--optimizer adam --lr 0.001" ;;
        sgd) opt="--optimizer sgd --momentum 0.9 --lr 0.05" ;;
    esac
    # shellcheck disable=SC2086
    "$TESSERA" train --data "$DATA" $opt --batch "$BATCH" --epochs "$EPOCHS" --threads "$THREADS" \
        --seed "$2" --quiet $limit_arg --out "$TMP/model.tsm" >"$TMP/tessera.log" 2>&1 ||
        { echo "bench: tessera failed:" >&2; cat "$TMP/tessera.log" >&2; exit 1; }
    awk '/^training / { for (i = 1; i <= NF; i++) if ($(i) ~ /^samples/) n = $(i - 1) }
         /^epoch [0-9]+:/ { s = $NF; sub(/s$/, "", s); secs += s; e++ }
         /^test accuracy:/ { a = $3; sub(/%$/, "", a) }
         END { if (!n || !e || a == "") exit 1; printf "%d %.3f %s\n", n * e, secs, a }' "$TMP/tessera.log" ||
        { echo "bench: cannot parse tessera output:" >&2; cat "$TMP/tessera.log" >&2; exit 1; }
}

run_torch() {
    case $1 in
        adam) opt="--optimizer adam --lr 0.001" ;;
        sgd) opt="--optimizer sgd --momentum 0.9 --lr 0.05" ;;
    esac
    # shellcheck disable=SC2086
    "$PYTHON" bench/train_fashion.py --data "$DATA" $opt --batch "$BATCH" --epochs "$EPOCHS" --threads "$THREADS" \
        --seed "$2" --limit "$LIMIT" >"$TMP/torch.log" 2>&1 ||
        { echo "bench: PyTorch failed:" >&2; cat "$TMP/torch.log" >&2; exit 1; }
    sed -n 's/^RESULT images=\([0-9]*\) train_seconds=\([0-9.]*\) .* test_acc=\([0-9.]*\)$/\1 \2 \3/p' "$TMP/torch.log" | grep . ||
        { echo "bench: cannot parse PyTorch output:" >&2; cat "$TMP/torch.log" >&2; exit 1; }
}

median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.2f\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%-5s %-4s %-8s %9s %9s %8s  %s\n' config run engine seconds images/s test% load-before
: >"$TMP/summary"
for cfg in $CONFIGS; do
    case $cfg in adam | sgd) ;; *) echo "bench: unknown config '$cfg' (adam, sgd)" >&2; exit 2 ;; esac
    : >"$TMP/$cfg.tessera"
    : >"$TMP/$cfg.torch"
    i=1
    while [ "$i" -le "$RUNS" ]; do
        if [ $((i % 2)) -eq 1 ]; then order="tessera torch"; else order="torch tessera"; fi
        for eng in $order; do
            l=$(load)
            res=$(run_"$eng" "$cfg" "$i") || exit 1
            # shellcheck disable=SC2086
            set -- $res
            ips=$(awk -v n="$1" -v s="$2" 'BEGIN { printf "%.1f", n / s }')
            echo "$ips $3" >>"$TMP/$cfg.$eng"
            printf '%-5s %-4s %-8s %9.1f %9s %8s  %s\n' "$cfg" "$i" "$eng" "$2" "$ips" "$3" "$l"
        done
        i=$((i + 1))
    done
    t_ips=$(cut -d' ' -f1 "$TMP/$cfg.tessera" | median)
    p_ips=$(cut -d' ' -f1 "$TMP/$cfg.torch" | median)
    t_acc=$(cut -d' ' -f2 "$TMP/$cfg.tessera" | median)
    p_acc=$(cut -d' ' -f2 "$TMP/$cfg.torch" | median)
    ratio=$(awk -v a="$t_ips" -v b="$p_ips" 'BEGIN { printf "%.2f", a / b }')
    echo "$cfg $t_ips $p_ips $ratio $t_acc $p_acc" >>"$TMP/summary"
done

echo
echo "load:     $(load) (1/5/15 min) after"
echo
echo "median of $RUNS runs, $EPOCHS epoch(s), batch $BATCH, $THREADS threads:"
printf '%-5s %18s %18s %16s %12s %12s\n' config tessera_images/s pytorch_images/s ratio_tess/pt tessera_acc% pytorch_acc%
while read -r cfg t p r ta pa; do
    printf '%-5s %18s %18s %16s %12s %12s\n' "$cfg" "$t" "$p" "$r" "$ta" "$pa"
done <"$TMP/summary"
