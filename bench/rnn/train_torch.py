#!/usr/bin/python3
"""The PyTorch side of bench/rnn's accuracy comparison: the zoo's lstm-clinc /
gru-clinc / rnn-clinc classifier (embedding 64 with padding_idx 0, one recurrent layer
of 128 units read to its final state over packed sequences, dropout 0.2, Linear to the
classes) trained with the same hyperparameters as `tessera train` in run_accuracy.sh
(Adam, lr, batch, epochs) on the same text: CLINC150 (train + oos_train; test +
oos_test), tokenized and numbered by docs/data.md's rules, written out again here (ASCII
lower-casing, whitespace splits, each ASCII punctuation character a token; vocabulary
by descending count, ties in byte order; classes sorted). Prints the test accuracy.
Usage: train_torch.py CELL EPOCHS LR BATCH THREADS SEED [DATA_JSON_GZ | --dump PREFIX]

With --dump, the data are PREFIX.train.bin and PREFIX.test.bin as bench/rnn/text_dump
wrote them from tessera's own reader (the very tokens, vocabulary and labels tessera
trains on): a classifier as above, or for a tagging set (Brown) the zoo's lstm-pos
(embedding 64, bidirectional LSTM of 128 units, dropout 0.2, a Linear per step; loss
over real tokens), scored by token accuracy."""
import gzip
import json
import string
import sys
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence

PUNCT = set(string.punctuation)


def tokenize(text):
    out, cur = [], []
    for ch in text:
        o = ord(ch)
        if o <= 0x20 or o == 0x7F:
            if cur:
                out.append("".join(cur))
                cur = []
        elif ch in PUNCT:
            if cur:
                out.append("".join(cur))
                cur = []
            out.append(ch)
        else:
            cur.append(ch.lower() if "A" <= ch <= "Z" else ch)
    if cur:
        out.append("".join(cur))
    return [t.encode()[:64].decode(errors="ignore") for t in out]


def read_dump(path):
    import numpy as np
    raw = np.fromfile(path, dtype=np.int32)
    count, t, task, classes, vocab = (int(v) for v in raw[:5])
    off = 5
    tokens = torch.from_numpy(raw[off:off + count * t].reshape(count, t).astype(np.int64))
    off += count * t
    lens = torch.from_numpy(raw[off:off + count].astype(np.int64))
    off += count
    nl = count * t if task == 1 else count
    labels = torch.from_numpy(raw[off:off + nl].astype(np.int64)).reshape(count, t) if task == 1 else \
        torch.from_numpy(raw[off:off + nl].astype(np.int64))
    return tokens, lens.clamp(min=1), labels, task, classes, vocab


def main_dump(cell, epochs, lr, batch, prefix):
    xtr, ltr, ytr, task, classes, vocab = read_dump(prefix + ".train.bin")
    xte, lte, yte, _, _, _ = read_dump(prefix + ".test.bin")
    tag = task == 1
    emb = torch.nn.Embedding(vocab, 64, padding_idx=0)
    rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](64, 128, batch_first=True,
                                                                                  bidirectional=tag)
    drop = torch.nn.Dropout(0.2)
    fc = torch.nn.Linear(256 if tag else 128, classes)
    mods = (emb, rnn, drop, fc)
    opt = torch.optim.Adam([p for mod in mods for p in mod.parameters()], lr=lr)
    T = xtr.shape[1]

    def forward(x, lens):
        packed = pack_padded_sequence(emb(x), lens, batch_first=True, enforce_sorted=False)
        out, h = rnn(packed)
        if tag:
            from torch.nn.utils.rnn import pad_packed_sequence
            y, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
            return fc(drop(y))
        h = h[0] if cell == "lstm" else h
        return fc(drop(h[0]))

    t0 = time.time()
    for ep in range(epochs):
        for mod in mods:
            mod.train()
        perm = torch.randperm(len(xtr))
        for b in range(0, len(xtr), batch):
            idx = perm[b:b + batch]
            out = forward(xtr[idx], ltr[idx])
            loss = torch.nn.functional.cross_entropy(out.reshape(-1, classes), ytr[idx].reshape(-1), ignore_index=-1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    secs = time.time() - t0
    for mod in mods:
        mod.eval()
    right = total = 0
    with torch.no_grad():
        for b in range(0, len(xte), 512):
            pred = forward(xte[b:b + 512], lte[b:b + 512]).argmax(-1)
            y = yte[b:b + 512]
            real = y >= 0
            right += int(((pred == y) & real).sum())
            total += int(real.sum())
    print("pytorch %s%s on %s: %d epochs, lr %g, batch %d, vocab %d, T %d: test %s accuracy %.2f%% (%d), %.0f s of "
          "training" % ("bidirectional " if tag else "", cell, prefix, epochs, lr, batch, vocab, T,
                        "token" if tag else "", 100 * right / total, total, secs))


def main():
    if "--dump" in sys.argv:
        torch.set_num_threads(int(sys.argv[5]))
        torch.manual_seed(int(sys.argv[6]))
        return main_dump(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]),
                         sys.argv[sys.argv.index("--dump") + 1])
    cell, epochs, lr, batch, threads, seed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), \
        int(sys.argv[5]), int(sys.argv[6])
    path = sys.argv[7] if len(sys.argv) > 7 else "../shared/data/text/clinc_oos/data_full.json.gz"
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    data = json.load(gzip.open(path, "rt"))
    train = data["train"] + data["oos_train"]
    test = data["test"] + data["oos_test"]
    classes = sorted({c for _, c in train})
    cidx = {c: i for i, c in enumerate(classes)}
    counts = {}
    for text, _ in train:
        for t in tokenize(text):
            counts[t] = counts.get(t, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w.encode()))
    vocab = {w: i + 4 for i, w in enumerate(words)}
    T = max(len(tokenize(t)) for t, _ in train)

    def encode(rows):
        x = torch.zeros(len(rows), T, dtype=torch.long)
        lens = torch.zeros(len(rows), dtype=torch.long)
        y = torch.zeros(len(rows), dtype=torch.long)
        for i, (text, c) in enumerate(rows):
            ids = [vocab.get(t, 1) for t in tokenize(text)][:T]
            x[i, :len(ids)] = torch.tensor(ids)
            lens[i] = max(len(ids), 1)
            y[i] = cidx[c]
        return x, lens, y

    xtr, ltr, ytr = encode(train)
    xte, lte, yte = encode(test)
    emb = torch.nn.Embedding(len(vocab) + 4, 64, padding_idx=0)
    rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](64, 128, batch_first=True)
    drop = torch.nn.Dropout(0.2)
    fc = torch.nn.Linear(128, len(classes))
    params = list(emb.parameters()) + list(rnn.parameters()) + list(fc.parameters())
    opt = torch.optim.Adam(params, lr=lr)

    def forward(x, lens):
        packed = pack_padded_sequence(emb(x), lens, batch_first=True, enforce_sorted=False)
        _, h = rnn(packed)
        h = h[0] if cell == "lstm" else h
        return fc(drop(h[0]))

    t0 = time.time()
    for ep in range(epochs):
        for mod in (emb, rnn, drop, fc):
            mod.train()
        perm = torch.randperm(len(train))
        for b in range(0, len(train), batch):
            idx = perm[b:b + batch]
            loss = torch.nn.functional.cross_entropy(forward(xtr[idx], ltr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    secs = time.time() - t0
    for mod in (emb, rnn, drop, fc):
        mod.eval()
    with torch.no_grad():
        pred = torch.cat([forward(xte[b:b + 512], lte[b:b + 512]).argmax(1) for b in range(0, len(test), 512)])
    acc = (pred == yte).float().mean().item()
    print("pytorch %s: %d epochs, lr %g, batch %d, vocab %d, T %d: test accuracy %.2f%% (%d texts), %.0f s of training"
          % (cell, epochs, lr, batch, len(vocab) + 4, T, 100 * acc, len(test), secs))


if __name__ == "__main__":
    main()
