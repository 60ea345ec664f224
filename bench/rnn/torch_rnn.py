#!/usr/bin/python3
"""PyTorch side of bench/rnn: the same classifier as rnn_bench.c (embedding 64, one
LSTM/GRU/RNN layer of 128 units read to its final state, Linear to 151), tokens per
second at inference (no_grad) and for one training step (forward + backward), median of
runs. Usage: torch_rnn.py CELL BATCH STEPS THREADS RUNS"""
import statistics
import sys
import time

import torch


def main():
    cell, batch, steps, threads, runs = sys.argv[1], *map(int, sys.argv[2:6])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    emb = torch.nn.Embedding(8000, 64)
    rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](64, 128, batch_first=True)
    fc = torch.nn.Linear(128, 151)
    x = torch.randint(1, 8000, (batch, steps))

    def forward():
        _, h = rnn(emb(x))
        return fc((h[0] if cell == "lstm" else h)[0])

    ti, tt = [], []
    for r in range(runs + 1):  # one warm-up
        with torch.no_grad():
            t0 = time.perf_counter()
            forward()
            t = time.perf_counter() - t0
        t0 = time.perf_counter()
        (forward() * 0.001).sum().backward()
        if r:
            ti.append(t)
            tt.append(time.perf_counter() - t0)
    mi, mt = statistics.median(ti), statistics.median(tt)
    tok = batch * steps
    print("pytorch %s batch %d steps %d threads %d: inference %.2f ms (%.0f tokens/s), training step %.2f ms "
          "(%.0f tokens/s)" % (cell, batch, steps, threads, 1e3 * mi, tok / mi, 1e3 * mt, tok / mt))


if __name__ == "__main__":
    main()
