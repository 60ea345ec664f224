#!/usr/bin/python3
"""PyTorch side of the tessera training benchmark (bench/run.sh).

Trains the CNN of zoo/demo.arch on Fashion-MNIST exactly as `tessera train` does:
same layers, same preprocessing ((pixel/255 - mean) / std with the training set's
per-channel mean and population std), same optimizer and hyper-parameters, same
batch size (last partial batch kept), a fresh shuffle each epoch, and the same
number of threads. Batches are cut from in-memory uint8 tensors and normalised
per batch, as tessera's loader does; no DataLoader, no worker processes.

Only the training loop is timed (wall clock, time.perf_counter); loading the data
and the final test evaluation are not. The last line is machine-readable:

    RESULT images=60000 train_seconds=80.12 images_per_s=748.9 test_acc=88.01
"""
import argparse
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn


def read_idx(path):
    """An IDX file (optionally .gz) as a numpy uint8 array, header checked."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        sys.exit(f"{path}: truncated IDX header")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        sys.exit(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        sys.exit(f"{path}: expected {int(np.prod(dims))} bytes of data, found {body.size}")
    return body.reshape(dims)


def find(data_dir, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    sys.exit(f"{data_dir}: no {stem}[.gz]")


def load(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(find(data_dir, f"{prefix}-images-idx3-ubyte"))
    y = read_idx(find(data_dir, f"{prefix}-labels-idx1-ubyte"))
    if x.shape[0] != y.shape[0]:
        sys.exit(f"{data_dir}: {split}: {x.shape[0]} images but {y.shape[0]} labels")
    x = torch.from_numpy(x.copy()).unsqueeze(1)  # (N, 1, 28, 28) uint8
    y = torch.from_numpy(y.astype(np.int64))
    return x, y


def demo_cnn(classes=10):
    """zoo/demo.arch, layer for layer (PyTorch default initialisation)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, classes),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N samples only")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    xtr, ytr = load(args.data, "train")
    xte, yte = load(args.data, "test")
    if args.limit > 0:
        xtr, ytr = xtr[:args.limit], ytr[:args.limit]
    # per-channel mean and population std of pixel/255 over the training set
    f = xtr.to(torch.float64) / 255.0
    mean = f.mean(dim=(0, 2, 3)).to(torch.float32).view(1, -1, 1, 1)
    std = f.std(dim=(0, 2, 3), unbiased=False).to(torch.float32).view(1, -1, 1, 1)
    del f

    def batch_x(xu8):
        return (xu8.to(torch.float32) / 255.0 - mean) / std

    model = demo_cnn()
    if args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    loss_fn = nn.CrossEntropyLoss()
    n = xtr.shape[0]
    gen = torch.Generator().manual_seed(args.seed)
    print(f"training demo (PyTorch {torch.__version__}) on {args.data}: {n} samples, {args.epochs} epochs, "
          f"batch {args.batch}, {torch.get_num_threads()} threads, {args.optimizer} lr {args.lr}", flush=True)

    train_seconds = 0.0
    for epoch in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            x, y = batch_x(xtr[idx]), ytr[idx]
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * y.shape[0]
            correct += (logits.argmax(1) == y).sum().item()
        secs = time.perf_counter() - t0
        train_seconds += secs
        print(f"epoch {epoch + 1}: train loss {loss_sum / n:.4f} acc {100 * correct / n:.2f}% | {secs:.1f}s", flush=True)

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, xte.shape[0], 1000):
            correct += (model(batch_x(xte[i:i + 1000])).argmax(1) == yte[i:i + 1000]).sum().item()
    acc = 100.0 * correct / xte.shape[0]
    print(f"test accuracy: {acc:.2f}% on {xte.shape[0]} images")
    images = n * args.epochs
    print(f"RESULT images={images} train_seconds={train_seconds:.3f} "
          f"images_per_s={images / train_seconds:.1f} test_acc={acc:.2f}", flush=True)


if __name__ == "__main__":
    main()
