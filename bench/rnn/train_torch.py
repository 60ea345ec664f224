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
over real tokens), scored by token accuracy, or for a translation set (Tatoeba) the zoo's
lstm-seq2seq (source embedding 64 and LSTM encoder of 256 units read over packed
sequences, whose final h and c start a decoder LSTM of 256 units over the target
embedded in 64, dropout 0.2, a Linear per step over the target vocabulary; teacher
forcing, loss over real target words), scored by greedy decoding's corpus BLEU-4
(NLTK's corpus_bleu, which tessera's matches; docs/data.md) and word accuracy under
teacher forcing. The trained weights go to PREFIX.seq2seq.pt; 0 epochs scores those."""
import gzip
import json
import os
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


def fit(mods, opt, n, epochs, batch, loss_of):
    """Epochs of shuffled batches of n samples: loss_of(indices) -> loss; seconds taken."""
    t0 = time.time()
    for ep in range(epochs):
        for mod in mods:
            mod.train()
        perm = torch.randperm(n)
        for b in range(0, n, batch):
            loss = loss_of(perm[b:b + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print("epoch %d: last batch loss %.4f, %.0f s" % (ep + 1, loss.item(), time.time() - t0), flush=True)
    return time.time() - t0


class Dump:
    """text_dump's int32 file, read in order."""

    def __init__(self, path):
        import numpy as np
        self.raw, self.off = np.fromfile(path, dtype=np.int32), 0

    def take(self, n, shape=None):
        v = torch.from_numpy(self.raw[self.off:self.off + n].astype("int64"))
        self.off += n
        return v.reshape(shape) if shape else v


def read_dump(path):
    d = Dump(path)
    count, t, task, classes, vocab = (int(v) for v in d.take(5))
    tokens = d.take(count * t, (count, t))
    lens = d.take(count)
    labels = d.take(count * t, (count, t)) if task == 1 else d.take(count)
    return tokens, lens.clamp(min=1), labels, task, classes, vocab


def read_pairs(path):
    d = Dump(path)
    count, t, _, tvocab, vocab = (int(v) for v in d.take(5))
    src = d.take(count * t, (count, t))
    slen = d.take(count)
    tl = int(d.take(1)[0])
    tgt = d.take(count * tl, (count, tl))
    tlen = d.take(count)
    return src, slen.clamp(min=1), tgt, tlen, vocab, tvocab


def main_translate(epochs, lr, batch, prefix):
    """The zoo's lstm-seq2seq; tessera's layout: the decoder reads <bos> w1 .. wn (the
    target without its last token) and learns w1 .. wn <eos>; greedy decoding writes up
    to Tm = max(source length, target_len - 1) words, cut at <eos>."""
    from nltk.translate.bleu_score import corpus_bleu
    xtr, ltr, ytr, _, vocab, tvocab = read_pairs(prefix + ".train.bin")
    xte, lte, yte, yle, _, _ = read_pairs(prefix + ".test.bin")
    tm = max(xtr.shape[1], ytr.shape[1] - 1)
    semb = torch.nn.Embedding(vocab, 64, padding_idx=0)
    enc = torch.nn.LSTM(64, 256, batch_first=True)
    temb = torch.nn.Embedding(tvocab, 64, padding_idx=0)
    dec = torch.nn.LSTM(64, 256, batch_first=True)
    drop = torch.nn.Dropout(0.2)
    fc = torch.nn.Linear(256, tvocab)
    mods = (semb, enc, temb, dec, drop, fc)
    opt = torch.optim.Adam([p for mod in mods for p in mod.parameters()], lr=lr)

    def encode(x, lens):
        _, state = enc(pack_padded_sequence(semb(x), lens, batch_first=True, enforce_sorted=False))
        return state

    def head(h):
        # fc as a 1x1 convolution, the same function: Debian's torch runs Linear on its
        # reference BLAS (4 GFLOP/s here) but this on oneDNN (about 4x faster; the
        # batch is at least 16, so torch picks oneDNN). h (B, T, 256) -> (B, T, V).
        out = torch.nn.functional.conv2d(h.permute(0, 2, 1).unsqueeze(-1), fc.weight[:, :, None, None], fc.bias)
        return out.squeeze(-1).permute(0, 2, 1)

    def teacher(x, lens, y):
        out, _ = dec(temb(y[:, :-1]), encode(x, lens))
        labels = y[:, 1:].clone()
        labels[labels == 0] = -1
        return head(drop(out)), labels

    def loss_of(idx):
        out, labels = teacher(xtr[idx], ltr[idx], ytr[idx])
        return torch.nn.functional.cross_entropy(out.reshape(-1, tvocab), labels.reshape(-1), ignore_index=-1)

    secs = fit(mods, opt, len(xtr), epochs, batch, loss_of)
    # the weights, so that the scoring can run again without the training: 0 epochs
    # reads them back
    saved = prefix + ".seq2seq.pt"
    if epochs > 0:
        torch.save([mod.state_dict() for mod in mods], saved)
    elif os.path.exists(saved):
        for mod, sd in zip(mods, torch.load(saved)):
            mod.load_state_dict(sd)
    for mod in mods:
        mod.eval()
    right = total = 0
    hyps, refs = [], []
    with torch.no_grad():
        for b in range(0, len(xte), 512):
            x, lens, y = xte[b:b + 512], lte[b:b + 512], yte[b:b + 512]
            out, labels = teacher(x, lens, y)
            real = labels >= 0
            right += int(((out.argmax(-1) == labels) & real).sum())
            total += int(real.sum())
            state = encode(x, lens)
            word = torch.full((len(x), 1), 2, dtype=torch.long)  # <bos>
            words = []
            for _ in range(tm):
                o, state = dec(temb(word), state)
                word = head(o).argmax(-1)
                words.append(word)
            words = torch.cat(words, 1).tolist()
            for i, row in enumerate(words):
                hyp = row[:row.index(3)] if 3 in row else row  # up to <eos>
                hyps.append([str(w) for w in hyp])
                refs.append([[str(w) for w in y[i, 1:int(yle[b + i]) - 1].tolist()]])
    bleu = corpus_bleu(refs, hyps)
    print("pytorch lstm-seq2seq on %s: %d epochs, lr %g, batch %d, vocab %d -> %d, Tm %d: test BLEU-4 (greedy) %.2f "
          "(%d sentences), word accuracy (teacher forcing) %.2f%%, %.0f s of training"
          % (prefix, epochs, lr, batch, vocab, tvocab, tm, 100 * bleu, len(hyps), 100 * right / total, secs))


def main_dump(cell, epochs, lr, batch, prefix):
    with open(prefix + ".train.bin", "rb") as f:
        if int.from_bytes(f.read(12)[8:], "little") == 2:
            return main_translate(epochs, lr, batch, prefix)
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

    def loss_of(idx):
        out = forward(xtr[idx], ltr[idx])
        return torch.nn.functional.cross_entropy(out.reshape(-1, classes), ytr[idx].reshape(-1), ignore_index=-1)

    secs = fit(mods, opt, len(xtr), epochs, batch, loss_of)
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
