"""The Python binding, each function on tiny inputs (run by test_python.sh):
struct layouts against the compiler's, loading .tsr/.onnx/.tsm, prediction (against
PyTorch's logits for an imported ONNX model), training on a tiny IDX dataset written
here (deterministic for a seed), evaluation, decomposition, composition, and errors
raised with the library's message. Prints "test_python: N passed, N failed".
Usage: test_binding.py LAYOUT_FILE TMPDIR"""

import os
import struct
import sys
import traceback

import numpy as np

import tessera

LAYOUT, TMP = sys.argv[1], sys.argv[2]
FIX = "tests/fixtures"
ARCH = """input shape=1x10x10 classes=10
conv2d name=conv1 out=4 kernel=3 padding=1
relu name=relu1
maxpool name=pool1 kernel=2
flatten name=flat
dense name=fc1 out=16
relu name=relu2
dense name=fc2 out=classes
"""
passed = failed = 0


def case(fn):
    global passed, failed
    try:
        fn()
        passed += 1
    except Exception:
        failed += 1
        print("FAIL %s" % fn.__name__)
        traceback.print_exc(file=sys.stdout)
    return fn


def write_idx(folder, prefix, images, labels):
    with open(os.path.join(folder, prefix + "-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, *images.shape) + images.tobytes())
    with open(os.path.join(folder, prefix + "-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes())


def rows(n, seed):
    """10x10 images of noise where class k is a bright row k."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.integers(0, 60, size=(n, 10, 10), dtype=np.uint8)
    x[np.arange(n), y, :] = 255
    return x, y


DATA = os.path.join(TMP, "rows")
os.mkdir(DATA)
write_idx(DATA, "train", *rows(500, 1))
write_idx(DATA, "t10k", *rows(100, 2))


def read_tsio(path):
    """x and y of a TSIO file (tests/fixtures/onnx/README.md)."""
    with open(path, "rb") as f:
        b = f.read()
    assert b[:4] == b"TSIO", path
    off, out = 8, []
    for _ in range(2):
        (nd,) = struct.unpack_from("<I", b, off)
        dims = struct.unpack_from("<%dq" % nd, b, off + 4)
        off += 4 + 8 * nd
        n = int(np.prod(dims))
        out.append(np.frombuffer(b, np.float32, n, off).reshape(dims))
        off += 4 * n
    return out


@case
def struct_layouts():
    mirrors = {"ts_shape": (tessera._Shape, "dims"), "ts_dataset": (tessera._Dataset, "class_names"),
               "ts_preprocess": (tessera._Preprocess, "flip"), "ts_optim_config": (tessera._OptimConfig, "eps"),
               "ts_train_config": (tessera._TrainConfig, "compress_eb"),
               "ts_epoch_report": (tessera._EpochReport, "act_kept_plain_bytes"), "ts_train_hooks": (tessera._TrainHooks, "user"),
               "ts_eval_report": (tessera._EvalReport, "exit_top1"),
               "ts_decompose_config": (tessera._DecomposeConfig, "ga_generation_user"),
               "ts_compose_config": (tessera._ComposeConfig, "max_macs"),
               "ts_module_info": (tessera._ModuleInfo, "fitness")}
    seen = 0
    for line in open(LAYOUT):
        name, size, off = line.split()
        cls, last = mirrors[name]
        got = (tessera.C.sizeof(cls), getattr(cls, last).offset)
        assert got == (int(size), int(off)), "%s: binding has size %d, %s at %d; tessera.h %s, %s" % (
            name, got[0], last, got[1], size, off)
        seen += 1
    assert seen == len(mirrors)


@case
def zoo_and_from_arch():
    assert "demo" in tessera.zoo() and "lenet5" in tessera.zoo()
    m = tessera.from_arch("lenet5", input_shape=(1, 28, 28), classes=4, seed=1)
    assert m.input_shape == (1, 28, 28) and m.classes == 4
    path = os.path.join(TMP, "net.arch")
    with open(path, "w") as f:
        f.write(ARCH)
    a, b = tessera.from_arch(path, seed=2), tessera.from_arch(ARCH, seed=2)
    assert a.input_shape == (1, 10, 10) and a.classes == 10 and a.param_count == b.param_count == 1826
    x = np.random.default_rng(0).standard_normal((2, 1, 10, 10)).astype(np.float32)
    assert np.array_equal(a.predict(x), b.predict(x))


@case
def load_tsr_predict_save():
    m = tessera.load(FIX + "/legacy/lenet5.tsr")
    assert m.input_shape == (1, 28, 28) and m.classes == 10
    assert m.class_names[0] == "T-shirt/top", m.class_names
    x = np.random.default_rng(1).standard_normal((5, 1, 28, 28)).astype(np.float32)
    logits = m.predict(x)
    assert logits.shape == (5, 10) and logits.dtype == np.float32 and np.isfinite(logits).all()
    # a batch gives each sample's own logits; probabilities are the softmax
    assert np.allclose(m.predict(x[2:3]), logits[2:3], rtol=1e-5, atol=1e-5)
    p = m.predict(x, probabilities=True)
    assert np.allclose(p.sum(axis=1), 1, atol=1e-6) and np.array_equal(p.argmax(1), logits.argmax(1))
    path = os.path.join(TMP, "lenet5.tsr")
    m.save(path)
    assert np.array_equal(tessera.load(path).predict(x), logits)
    assert m.predict(np.zeros((0, 1, 28, 28), np.float32)).shape == (0, 10)


@case
def load_onnx_matches_pytorch():
    x, y = read_tsio(FIX + "/onnx/opsnet_io.bin")
    m = tessera.load(FIX + "/onnx/opsnet_eval_op13.onnx")
    assert m.input_shape == x.shape[1:] and m.classes == y.shape[1]
    got = m.predict(x)
    assert np.allclose(got, y, rtol=1e-4, atol=1e-4), np.abs(got - y).max()
    onnx = os.path.join(TMP, "back.onnx")
    m.export_onnx(onnx)
    assert np.allclose(tessera.load(onnx).predict(x), got, rtol=1e-5, atol=1e-5)


@case
def dataset():
    ds = tessera.Dataset(DATA, "train", limit=50)
    assert len(ds) == 50 and ds.classes == 10 and ds.shape == (1, 10, 10)
    x, y = rows(500, 1)
    assert np.array_equal(ds.images[:, 0], x[:50]) and np.array_equal(ds.labels, y[:50])
    assert ds.class_names[3] == "3"


TRAINED = []


@case
def train_evaluate():
    epochs = []
    m = tessera.train(ARCH, DATA, epochs=3, seed=3, batch=32, lr=0.01, optimizer="adam",
                      on_epoch=lambda r: epochs.append(r["train_loss"]))
    assert len(epochs) == 3 and epochs[2] < epochs[0]
    assert m.meta("data") == DATA and m.classes == 10
    rep = m.evaluate()  # the data the model records, test split
    assert rep["count"] == 100 and rep["top1"] >= 0.95, rep
    assert rep["confusion"].shape == (10, 10) and rep["confusion"].sum() == 100
    assert rep["confusion"][4].sum() == 10
    # the same seed, the same model
    again = tessera.train(ARCH, tessera.Dataset(DATA, "train"), epochs=3, seed=3, batch=32, lr=0.01,
                          optimizer="adam")
    test = tessera.Dataset(DATA, "test")
    x = m.preprocess(test.images)
    assert np.array_equal(m.predict(x), again.predict(x))
    assert np.array_equal(m.predict(x).argmax(1) == test.labels, again.predict(x).argmax(1) == test.labels)
    assert m.evaluate(test)["top1"] == rep["top1"]
    TRAINED.append(m)


@case
def decompose_compose():
    m = TRAINED[0] if TRAINED else tessera.train(ARCH, DATA, epochs=3, seed=3, batch=32, lr=0.01, optimizer="adam")
    mods = m.decompose(classes=[1, 5], positives=30)
    assert [mod.info["class_index"] for mod in mods] == [1, 5]
    info = mods[0].info
    assert info["input"] == (1, 10, 10) and info["positives"] == 30 and 0 < info["units_kept"] <= info["units"]
    own, rest = mods[1].evaluate(DATA)
    assert own >= 0.9 and rest >= 0.9, (own, rest)
    path = os.path.join(TMP, "class5.tsm")
    mods[1].save(path)
    back = tessera.load(path)
    assert isinstance(back, tessera.Module) and back.info["class_index"] == 5
    assert mods[1].model().predict(np.zeros((1, 1, 10, 10), np.float32)).shape == (1, 1)
    two = tessera.compose([mods[0], back])
    # a bare digit class names its dataset too ("digits:1"; tessera compose does the same)
    assert two.classes == 2 and [n.split(":")[-1] for n in two.class_names] == ["1", "5"], two.class_names
    assert all(":" in n for n in two.class_names), two.class_names
    test = tessera.Dataset(DATA, "test")
    keep = np.isin(test.labels, [1, 5])
    pred = np.array([1, 5])[two.predict(m.preprocess(test.images[keep])).argmax(1)]
    assert (pred == test.labels[keep]).mean() >= 0.9


@case
def errors_carry_the_message():
    missing = os.path.join(TMP, "no-such-model.tsr")
    try:
        tessera.load(missing)
        raise AssertionError("no error")
    except tessera.Error as e:
        assert missing in str(e) and e.code == 3 and e.status, (str(e), e.code, e.status)
    try:
        tessera.Dataset(os.path.join(TMP, "no-data"), "test")
        raise AssertionError("no error")
    except tessera.Error as e:
        assert "no-data" in str(e), str(e)
    bad = os.path.join(TMP, "bad.arch")
    with open(bad, "w") as f:
        f.write("input shape=1x10x10 classes=10\nnosuchlayer name=x\n")
    try:
        tessera.from_arch(bad)
        raise AssertionError("no error")
    except tessera.Error as e:
        assert "bad.arch" in str(e) and "nosuchlayer" in str(e), str(e)
    m = tessera.from_arch(ARCH)
    try:
        m.predict(np.zeros((1, 3, 10, 10), np.float32))
        raise AssertionError("no error")
    except ValueError:
        pass


print("test_python: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
