#!/usr/bin/env python3
"""Writes the patch benchmark's mixed datasets in formats tessera reads.

cifar OUT CIFAR10_DIR CIFAR100_PATCH_DIR TC [N_TC [N_TC_TEST]]
    CIFAR-10 layout (data_batch_1..5.bin, test_batch.bin, batches.meta.txt): the 9
    CIFAR-100 classes of cifar100-patch (labels 0..8, in fine-label order) plus CIFAR-10
    class TC as label 9, with its first N_TC (500) training and first N_TC_TEST (100) test
    images: CNNSplitter's patch scenario (500 / 100, beside 4500 / 900 of the others).
fashion-mnist-digit OUT FASHION_DIR MNIST_DIR DIGIT
    IDX layout: Fashion-MNIST without class 9 (Ankle boot) plus MNIST digit DIGIT as
    label 9 (6000-ish training and 1000-ish test images of it): the cross-dataset scenario.

Records are shuffled with a fixed seed, so the result is the same on every machine.
"""
import gzip
import os
import random
import struct
import sys


def read(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            with (gzip.open(p, "rb") if p.endswith(".gz") else open(p, "rb")) as f:
                return f.read()
    raise SystemExit("missing: " + path)


def cifar_records(data, label_bytes, rec):
    n = len(data) // rec
    for i in range(n):
        r = data[i * rec:(i + 1) * rec]
        yield r[label_bytes - 1], r[label_bytes:]


def write_cifar10(out, train, test, names):
    os.makedirs(out, exist_ok=True)
    rnd = random.Random(20261202)
    rnd.shuffle(train)
    rnd.shuffle(test)
    per = (len(train) + 4) // 5
    for b in range(5):
        with open(os.path.join(out, "data_batch_%d.bin" % (b + 1)), "wb") as f:
            for lab, px in train[b * per:(b + 1) * per]:
                f.write(bytes([lab]) + px)
    with open(os.path.join(out, "test_batch.bin"), "wb") as f:
        for lab, px in test:
            f.write(bytes([lab]) + px)
    with open(os.path.join(out, "batches.meta.txt"), "w") as f:
        f.write("\n".join(names) + "\n")


def cifar(out, c10, c100, tc, n_tc=500, n_tc_test=100):
    fine = [l.strip() for l in open(os.path.join(c100, "fine_label_names.txt")) if l.strip()]
    c10names = [l.strip() for l in open(os.path.join(c10, "batches.meta.txt")) if l.strip()]
    tr100 = list(cifar_records(read(os.path.join(c100, "train.bin")), 2, 3074))
    te100 = list(cifar_records(read(os.path.join(c100, "test.bin")), 2, 3074))
    kept = sorted({lab for lab, _ in tr100})
    if len(kept) != 9:
        raise SystemExit("expected 9 fine classes in %s, found %d" % (c100, len(kept)))
    remap = {f: i for i, f in enumerate(kept)}
    train = [(remap[l], px) for l, px in tr100]
    test = [(remap[l], px) for l, px in te100]
    got = 0
    for b in range(1, 6):
        for lab, px in cifar_records(read(os.path.join(c10, "data_batch_%d.bin" % b)), 1, 3073):
            if lab == tc and got < n_tc:
                train.append((9, px))
                got += 1
    got = 0
    for lab, px in cifar_records(read(os.path.join(c10, "test_batch.bin")), 1, 3073):
        if lab == tc and got < n_tc_test:
            test.append((9, px))
            got += 1
    names = [fine[f] for f in kept] + [c10names[tc]]
    write_cifar10(out, train, test, names)
    print("%s: %d training, %d test images; classes %s" % (out, len(train), len(test), ", ".join(names)))


def idx(path):
    d = read(path)
    magic, n = struct.unpack(">II", d[:8])
    if magic == 0x803:
        h, w = struct.unpack(">II", d[8:16])
        return [d[16 + i * h * w:16 + (i + 1) * h * w] for i in range(n)]
    return list(d[8:8 + n])


def write_idx(out, prefix, images, labels):
    with gzip.open(os.path.join(out, prefix + "-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(images), 28, 28) + b"".join(images))
    with gzip.open(os.path.join(out, prefix + "-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + bytes(labels))


def fashion_digit(out, fm, mn, digit):
    os.makedirs(out, exist_ok=True)
    rnd = random.Random(20261202)
    for split in ("train", "t10k"):
        fi, fl = idx(os.path.join(fm, split + "-images-idx3-ubyte")), idx(os.path.join(fm, split + "-labels-idx1-ubyte"))
        mi, ml = idx(os.path.join(mn, split + "-images-idx3-ubyte")), idx(os.path.join(mn, split + "-labels-idx1-ubyte"))
        recs = [(l, p) for p, l in zip(fi, fl) if l != 9] + [(9, p) for p, l in zip(mi, ml) if l == digit]
        rnd.shuffle(recs)
        write_idx(out, split, [p for _, p in recs], [l for l, _ in recs])
        print("%s %s: %d images" % (out, split, len(recs)))


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "cifar" and len(a) in (5, 6, 7):
        cifar(a[1], a[2], a[3], int(a[4]), int(a[5]) if len(a) >= 6 else 500, int(a[6]) if len(a) == 7 else 100)
    elif a and a[0] == "fashion-mnist-digit" and len(a) == 5:
        fashion_digit(a[1], a[2], a[3], int(a[4]))
    else:
        raise SystemExit(__doc__)
