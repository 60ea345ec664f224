#!/usr/bin/python3
"""Reuse and replacement of CLINC150 intent modules (Imtiaz et al., ICSE'23, Tables III
and IV), on the models and modules bench/rnn/clinc_modules.sh leaves in OUT_DIR.

  /usr/bin/python3 bench/rnn/clinc_reuse.py [OUT_DIR] [MAX_REMOVE]

Reuse: two intents' modules composed by `tessera reuse` into a two-class classifier,
evaluated on the two intents' test texts (60), beside a model of the same architecture
trained from scratch on those two intents only (the same hyperparameters as the origin:
Adam 0.002, batch 64, 10 epochs, seed 1). Intra: both modules from one model. Inter:
from two models of different cells (the baseline is then the mean of the two cells'
two-intent models). Replacement: each model's modules, one intent's module swapped for the
same intent's module of a model of another cell, composed over all 151 classes and
evaluated on the 5,500 test texts beside the model's own modules, for the WORST (3)
intents its composition recalls worst. Prints one table per part and the means.
Settings (environment): TESSERA=build/tessera DATA_DIR=../shared/data THREADS=1 WORST=3
RETUNE=N (0: off): also each replacement and the 20-intent reuse with `--retune
--retune-samples N` (the modules' scores calibrated on N training texts per intent).
"""
import gzip
import json
import os
import subprocess
import sys
import time

OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/clinc-modules"
MR = sys.argv[2] if len(sys.argv) > 2 else "0.05"
T = os.environ.get("TESSERA", "build/tessera")
DD = os.environ.get("DATA_DIR", "../shared/data")
TH = os.environ.get("THREADS", "1")
CELLS = ["lstm", "gru", "rnn"]
# intent pairs, fixed (class indices as tessera numbers CLINC150's labels)
NWORST = int(os.environ.get("WORST", "3"))  # intents replaced per weak model
RETUNE = int(os.environ.get("RETUNE", "0"))  # > 0: also --retune --retune-samples RETUNE
PAIRS = [(3, 77), (10, 120), (25, 60), (41, 99), (88, 140), (5, 150), (17, 33), (64, 111), (70, 129), (95, 147)]


def run(args):
    r = subprocess.run([T] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("tessera %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r.stdout


def run_json(args):
    return json.loads(run(args + ["--json"]))


def mods(cell):
    return "%s/%s-mr%s" % (OUT, cell, MR)


def module(cell, c):
    return "%s/class%d.tsm" % (mods(cell), c)


def class_name(cell, c):
    head = run(["info", module(cell, c)]).splitlines()[0]
    return head.split("'")[1]


def subset_model(cell, names, work):
    """A model of `cell`'s zoo architecture trained on the texts of `names` only."""
    key = "-".join(sorted(names))
    folder = "%s/sub-%s/clinc_oos" % (work, key)
    path = folder + "/data_full.json.gz"
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        with gzip.open(os.path.join(DD, "text/clinc_oos/data_full.json.gz"), "rt") as f:
            full = json.load(f)
        keep = set(names)
        with gzip.open(path, "wt") as f:
            json.dump({k: [p for p in v if p[1] in keep] for k, v in full.items()}, f)
    model = "%s/sub-%s/%s.tsr" % (work, key, cell)
    if not os.path.exists(model):
        run(["train", "--data", folder, "--arch", cell + "-clinc", "--optimizer", "adam", "--lr", "0.002", "--batch",
             "64", "--epochs", "10", "--threads", TH, "--seed", "1", "--no-test", "--quiet", "--out", model])
    return run_json(["eval", model, "--threads", TH])["top1"]


def retune_args():
    return ["--retune", "--retune-samples", str(RETUNE)] if RETUNE > 0 else []


def reuse(paths, work, extra=()):
    out = work + "/reuse.tsr"
    return run_json(["reuse"] + paths + list(extra) + ["--data-dir", DD, "--threads", TH, "--out", out])["test"]["top1"]


def mean(xs):
    return sum(xs) / len(xs)


def main():
    work = OUT + "/reuse"
    os.makedirs(work, exist_ok=True)
    cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
    print("# %s, %d cpus, %s, max_remove %s, %s" % (cpu, os.cpu_count(), time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
                                                   MR, run(["--version"]).strip()))
    names = {}
    for a, b in PAIRS:
        for c in (a, b):
            names[c] = class_name("lstm", c)
    base = {}  # (cell, a, b) -> top-1 of the two-intent model
    print("\n## Reuse, intra (both modules from one model): two-intent top-1, modules vs trained on the two")
    print("| pair | " + " | ".join("%s modules | %s trained | delta" % (c, c) for c in CELLS) + " |")
    deltas = {c: [] for c in CELLS}
    for a, b in PAIRS:
        row = ["%s + %s" % (names[a], names[b])]
        for cell in CELLS:
            m = reuse([module(cell, a), module(cell, b)], work)
            base[(cell, a, b)] = subset_model(cell, [names[a], names[b]], work)
            deltas[cell].append(100 * (m - base[(cell, a, b)]))
            row += ["%.2f%%" % (100 * m), "%.2f%%" % (100 * base[(cell, a, b)]), "%+.2f" % deltas[cell][-1]]
        print("| " + " | ".join(row) + " |")
    print("| mean | " + " | ".join("| | %+.2f" % mean(deltas[c]) for c in CELLS) + " |")

    print("\n## Reuse, inter (the two modules from models of different cells)")
    print("| pair | cells | modules | trained (mean of the two cells') | delta |")
    inter = []
    for i, (a, b) in enumerate(PAIRS):
        ca, cb = CELLS[i % 3], CELLS[(i + 1) % 3]
        m = reuse([module(ca, a), module(cb, b)], work)
        t = (base[(ca, a, b)] + base[(cb, a, b)]) / 2
        inter.append(100 * (m - t))
        print("| %s + %s | %s + %s | %.2f%% | %.2f%% | %+.2f |" % (names[a], names[b], ca, cb, 100 * m, 100 * t, inter[-1]))
    print("| mean | | | | %+.2f |" % mean(inter))

    # harder than two intents: the twenty intents of the pairs together
    many = [c for p in PAIRS for c in p]
    many_names = [names[c] for c in many]
    print("\n## Reuse of the %d intents of the pairs together (%d test texts)" % (len(many), 30 * len(many)))
    print("| modules from | modules | trained on the %d | delta |" % len(many))
    trained = {cell: subset_model(cell, many_names, work) for cell in CELLS}
    for cell in CELLS:
        m = reuse([module(cell, c) for c in many], work)
        print("| %s | %.2f%% | %.2f%% | %+.2f |" % (cell, 100 * m, 100 * trained[cell], 100 * (m - trained[cell])))
    m = reuse([module(CELLS[i % 3], c) for i, c in enumerate(many)], work)
    t = mean(list(trained.values()))
    print("| lstm, gru, rnn in turn | %.2f%% | %.2f%% (mean) | %+.2f |" % (100 * m, 100 * t, 100 * (m - t)))
    if RETUNE > 0:
        for cell in CELLS:
            m = reuse([module(cell, c) for c in many], work, retune_args())
            print("| %s, --retune | %.2f%% | %.2f%% | %+.2f |" % (cell, 100 * m, 100 * trained[cell],
                                                                100 * (m - trained[cell])))
        m = reuse([module(CELLS[i % 3], c) for i, c in enumerate(many)], work, retune_args())
        print("| in turn, --retune | %.2f%% | %.2f%% (mean) | %+.2f |" % (100 * m, 100 * t, 100 * (m - t)))

    print("\n## Replacement: each model's modules, one intent's module from a model of another cell")
    print("(the %d intents each weak composition recalls worst; top-1 over all 151 intents)" % NWORST)
    print("| weak model | intent | module from | top-1 | delta | its recall | its precision |")
    rep = {}
    for weak_cell in CELLS:
        weak = run_json(["eval", mods(weak_cell) + "/composed.tsr", "--data-dir", DD, "--threads", TH])
        worst = sorted(weak["classes"], key=lambda k: (k["recall"], k["id"]))[:NWORST]
        if RETUNE > 0:  # the calibration alone: the weak model's own modules, re-tuned
            out = work + "/retuned.tsr"
            c = worst[0]["id"]
            run(["replace", mods(weak_cell), "--class", str(c), "--with", module(weak_cell, c), "--data-dir", DD,
                 "--threads", TH, "--out", out] + retune_args())
            e = run_json(["eval", out, "--data-dir", DD, "--threads", TH])
            print("| %s | (every intent) | %s, all re-tuned | %.2f%% | %+.2f | | |" % (
                weak_cell, weak_cell, 100 * e["top1"], 100 * (e["top1"] - weak["top1"])))
        for k in worst:
            c = k["id"]
            print("| %s | %s | %s (its own) | %.2f%% | | %.2f%% | %.2f%% |" % (weak_cell, k["name"], weak_cell,
                                                                          100 * weak["top1"], 100 * k["recall"],
                                                                          100 * k["precision"]))
            for strong in CELLS:
                if strong == weak_cell:
                    continue
                out = work + "/replaced.tsr"
                run(["replace", mods(weak_cell), "--class", str(c), "--with", module(strong, c), "--data-dir", DD,
                     "--threads", TH, "--out", out])
                e = run_json(["eval", out, "--data-dir", DD, "--threads", TH])
                kc = e["classes"][c]
                d = 100 * (e["top1"] - weak["top1"])
                rep.setdefault((weak_cell, strong), []).append(
                    (d, 100 * (kc["recall"] - k["recall"]), 100 * (kc["precision"] - k["precision"])))
                print("| | | %s | %.2f%% | %+.2f | %.2f%% | %.2f%% |" % (strong, 100 * e["top1"], d, 100 * kc["recall"],
                                                                       100 * kc["precision"]))
                if RETUNE > 0:
                    run(["replace", mods(weak_cell), "--class", str(c), "--with", module(strong, c), "--data-dir", DD,
                         "--threads", TH, "--out", out] + retune_args())
                    e = run_json(["eval", out, "--data-dir", DD, "--threads", TH])
                    kc = e["classes"][c]
                    d = 100 * (e["top1"] - weak["top1"])
                    rep.setdefault((weak_cell, strong + ", --retune"), []).append(
                        (d, 100 * (kc["recall"] - k["recall"]), 100 * (kc["precision"] - k["precision"])))
                    print("| | | %s, --retune | %.2f%% | %+.2f | %.2f%% | %.2f%% |" % (
                        strong, 100 * e["top1"], d, 100 * kc["recall"], 100 * kc["precision"]))
    print("\n| weak model | module from | mean top-1 change | the intent's recall | its precision |")
    for (w, strong), ds in rep.items():
        print("| %s | %s | %+.2f | %+.2f | %+.2f |" % (w, strong, mean([x[0] for x in ds]), mean([x[1] for x in ds]),
                                                      mean([x[2] for x in ds])))

main()
