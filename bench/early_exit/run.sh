#!/bin/sh
# Early exits (T-RECX) on ResNet-8 / CIFAR-10: the same network trained twice for the
# same epochs, seed and settings, once plain and once with the exit after stage 1
# (exit weight 0.5, early view, weight transfer for 80% of the epochs); then `tessera
# eval --json` on the 10,000 test images, and side by side: top-1 and mean MACs per
# sample of the plain network, and of the exit model at the rho eval chooses (the
# fewest MACs within 1 point of the exit model's own no-exit top-1), with the saving
# against the plain network and whether the issue's target is met (>= 40% fewer MACs
# at no more than 1 point below the plain network).
#
# Settings (environment):
#   EE_EPOCHS=8        epochs of each run (T-RECX trains 500)
#   EE_THREADS=1       --threads
#   EE_BATCH=64        batch size (SGD, momentum 0.9, lr 0.05, cosine, weight decay 5e-4,
#                      crop and flip augmentation)
#   EE_LIMIT=0         train on the first N images only (0: all 50,000; a smoke test)
#   EE_OUT=/tmp/tessera-early-exit   where the models and JSON go
#   TESSERA_DATA       where cifar10/ is (docs/data.md)
# 8 epochs of both: about 15 minutes of CPU on one core (AMD EPYC, family 26), more wall time on a
# busy machine.
set -eu

cd "$(dirname "$0")/../.."
EPOCHS=${EE_EPOCHS:-8}
THREADS=${EE_THREADS:-1}
BATCH=${EE_BATCH:-64}
LIMIT=${EE_LIMIT:-0}
OUT=${EE_OUT:-/tmp/tessera-early-exit}
mkdir -p "$OUT"
# a copy, so that a rebuild meanwhile does not change the binary under the run
cp build/tessera "$OUT/tessera"
T="$OUT/tessera"
COMMON="--arch resnet8 --data cifar10 --epochs $EPOCHS --batch $BATCH --lr 0.05 --momentum 0.9 --schedule cosine
        --weight-decay 5e-4 --augment crop,flip --threads $THREADS --seed 1 --quiet --no-test"
[ "$LIMIT" -gt 0 ] && COMMON="$COMMON --limit $LIMIT"

echo "== plain ResNet-8"
$T train $COMMON --out "$OUT/plain.tsr"
echo "== ResNet-8 with an early exit after stage1"
$T train $COMMON --early-exit after=stage1 --out "$OUT/exit.tsr"
$T eval "$OUT/plain.tsr" --threads "$THREADS" --json > "$OUT/plain.json"
$T info "$OUT/plain.tsr" --json > "$OUT/plain-info.json"
$T eval "$OUT/exit.tsr" --threads "$THREADS" --json > "$OUT/exit.json"

python3 - "$OUT" "$EPOCHS" <<'PY'
import json, sys
out, epochs = sys.argv[1], sys.argv[2]
plain = json.load(open(out + "/plain.json"))
info = json.load(open(out + "/plain-info.json"))
ex = json.load(open(out + "/exit.json"))
ee = ex["early_exit"]
macs_plain = next(v for k, v in info.items() if k in ("macs", "macs_per_sample", "total_macs"))
chosen, meas = ee["chosen"], ee["measured"]
print("exit model's sweep (top-1, fraction exited, mean MACs per sample):")
for p in ee["sweep"][:-1]:
    print("  rho %.2f  %6.2f%%  %6.2f%%  %6.2fM" % (p["rho"], 100 * p["top1"], 100 * p["exited"], p["macs_per_sample"] / 1e6))
print("\nResNet-8 on CIFAR-10, %s epochs each, test set (10,000 images)" % epochs)
print("%-34s %8s %14s %8s" % ("", "top-1", "MACs/sample", "saved"))
print("%-34s %7.2f%% %13.2fM %8s" % ("plain network", 100 * plain["top1"], macs_plain / 1e6, "-"))
print("%-34s %7.2f%% %13.2fM %7.2f%%" % ("exit model, no early exit (rho 1)", 100 * ex["top1"], ee["macs_plain"] / 1e6,
                                         100 * (1 - ee["macs_plain"] / macs_plain)))
print("%-34s %7.2f%% %13.2fM %7.2f%%" % ("exit model at rho %.2f" % chosen["rho"], 100 * chosen["top1"],
                                         chosen["macs_per_sample"] / 1e6, 100 * (1 - chosen["macs_per_sample"] / macs_plain)))
print("  (%.2f%% of the samples left at the exit; ts_model_predict_exit measured top-1 %.2f%%, %.2f%% exited)"
      % (100 * chosen["exited"], 100 * meas["top1"], 100 * meas["exited"]))
drop = 100 * (plain["top1"] - chosen["top1"])
saved = 100 * (1 - chosen["macs_per_sample"] / macs_plain)
# the best saving within 1 point of the plain network, over the whole sweep
ok = [p for p in ee["sweep"] if 100 * (plain["top1"] - p["top1"]) <= 1.0]
best = min(ok, key=lambda p: p["macs_per_sample"]) if ok else None
if best:
    print("fewest MACs within 1 point of the plain network: rho %.2f, top-1 %.2f%%, %.2f%% fewer MACs"
          % (best["rho"], 100 * best["top1"], 100 * (1 - best["macs_per_sample"] / macs_plain)))
else:
    print("no threshold keeps top-1 within 1 point of the plain network")
met = best is not None and 100 * (1 - best["macs_per_sample"] / macs_plain) >= 40
print("target (>= 40%% fewer MACs at <= 1 point below the plain network): %s" % ("met" if met else "not met"))
PY
