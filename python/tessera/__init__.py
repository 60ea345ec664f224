"""tessera: a thin Python binding over libtessera (ctypes and numpy).

    import numpy as np, tessera
    m = tessera.load("fm.tsr")                       # .tsr, or .onnx (imported), or .tsm (a Module)
    logits = m.predict(x)                            # x: float32 (N, C, H, W), preprocessed
    probs = m.predict(m.preprocess(images), probabilities=True)  # images: uint8 (N, C, H, W)
    report = m.evaluate("fashion-mnist")             # top1, top5, loss, confusion
    m2 = tessera.train("demo", "fashion-mnist", epochs=1, seed=1)
    mods = m2.decompose(classes=[1, 5])              # per-class modules
    two = tessera.compose(mods)                      # a 2-class model

Every library failure raises tessera.Error, carrying the library's one-line message
and its status. The library is found at $TESSERA_LIB, else in the source tree's
build/ (next to this package), else as libtessera.so.0 by the dynamic loader
(make install; LD_LIBRARY_PATH). docs/python.md.
"""

import ctypes as C
import os

import numpy as np

__all__ = ["Error", "Context", "Dataset", "Model", "Module", "load", "load_module", "from_arch", "train",
           "compose", "zoo"]

MAX_DIMS = 6


def _find_library():
    env = os.environ.get("TESSERA_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    built = os.path.join(here, "..", "..", "build", "libtessera.so.0")
    if os.path.exists(built):
        return built
    return "libtessera.so.0"


try:
    _lib = C.CDLL(_find_library())
except OSError as e:  # pragma: no cover - depends on the installation
    raise ImportError("tessera: cannot load libtessera (%s); build it (make) or install it (make install), "
                      "or set TESSERA_LIB to the .so" % e) from e

# ------------------------------------------------------------ C structures
# Mirrors of tessera.h's structs; tests/python/test_python.sh checks their sizes
# and last fields against the compiler's.


class _Shape(C.Structure):
    _fields_ = [("ndim", C.c_int), ("dims", C.c_int64 * MAX_DIMS)]


class _Dataset(C.Structure):
    _fields_ = [("count", C.c_int64), ("channels", C.c_int), ("height", C.c_int), ("width", C.c_int),
                ("classes", C.c_int), ("images", C.POINTER(C.c_uint8)), ("labels", C.POINTER(C.c_int32)),
                ("name", C.c_char * 64), ("class_names", C.POINTER(C.c_char_p))]


class _Preprocess(C.Structure):
    _fields_ = [("channels", C.c_int), ("mean", C.c_float * 4), ("std", C.c_float * 4), ("crop_pad", C.c_int),
                ("flip", C.c_int)]


class _OptimConfig(C.Structure):
    _fields_ = [("kind", C.c_int), ("momentum", C.c_float), ("dampening", C.c_float), ("nesterov", C.c_int),
                ("weight_decay", C.c_float), ("beta1", C.c_float), ("beta2", C.c_float), ("eps", C.c_float)]


class _TrainConfig(C.Structure):
    _fields_ = [("epochs", C.c_int), ("batch", C.c_int), ("lr", C.c_float), ("optim", _OptimConfig),
                ("schedule", C.c_int), ("step_size", C.c_int), ("gamma", C.c_float),
                ("label_smoothing", C.c_float), ("seed", C.c_uint64), ("crop_pad", C.c_int), ("flip", C.c_int),
                ("modular", C.c_int), ("mwt_alpha", C.c_float), ("mwt_beta", C.c_float),
                ("early_stop", C.c_int), ("keep_best", C.c_int), ("sync_bn", C.c_int), ("exit_weight", C.c_float),
                ("exit_transfer", C.c_float), ("exit_distill", C.c_float), ("exit_temperature", C.c_float),
                ("compress_activations", C.c_int), ("compress_eb", C.c_float)]


class _EpochReport(C.Structure):
    _fields_ = [("epoch", C.c_int64), ("train_loss", C.c_double), ("train_acc", C.c_double),
                ("val_loss", C.c_double), ("val_acc", C.c_double), ("seconds", C.c_double),
                ("cohesion", C.c_double), ("coupling", C.c_double), ("exit_loss", C.c_double),
                ("exit_acc", C.c_double), ("val_exit_acc", C.c_double), ("act_kept_bytes", C.c_double),
                ("act_kept_plain_bytes", C.c_double)]


_StepFn = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_void_p)
_EpochFn = C.CFUNCTYPE(C.c_int, C.POINTER(_EpochReport), C.c_void_p)


class _TrainHooks(C.Structure):
    _fields_ = [("on_step", _StepFn), ("on_epoch", _EpochFn), ("user", C.c_void_p)]


class _EvalReport(C.Structure):
    _fields_ = [("classes", C.c_int), ("count", C.c_int64), ("top1", C.c_double), ("top5", C.c_double),
                ("loss", C.c_double), ("confusion", C.POINTER(C.c_int64)), ("exit_top1", C.c_double)]


class _DecomposeConfig(C.Structure):
    _fields_ = [("positives", C.c_int), ("confidence", C.c_float), ("tangling", C.c_float), ("seed", C.c_uint64),
                ("batch", C.c_int), ("method", C.c_int), ("alpha", C.c_float), ("epochs", C.c_int),
                ("epoch_samples", C.c_int64), ("val_count", C.c_int64), ("lr", C.c_float), ("lr_head", C.c_float),
                ("train_batch", C.c_int), ("max_loss", C.c_float), ("rule", C.c_int), ("bln_delta", C.c_float),
                ("theta", C.c_float), ("ga_population", C.c_int), ("ga_generations", C.c_int),
                ("ga_parents", C.c_int), ("ga_elites", C.c_int), ("ga_mutation", C.c_float),
                ("ga_patience", C.c_int), ("ga_val_per_class", C.c_int), ("ga_alpha", C.c_float),
                ("ga_gamma", C.c_float), ("ga_generation", C.c_void_p), ("ga_generation_user", C.c_void_p)]


class _ComposeConfig(C.Structure):
    _fields_ = [("max_macs", C.c_double)]


class _ModuleInfo(C.Structure):
    _fields_ = [("class_index", C.c_int), ("class_name", C.c_char_p), ("dataset", C.c_char_p),
                ("origin", C.c_char_p), ("origin_id", C.c_uint64), ("origin_classes", C.c_int), ("input", _Shape),
                ("positives", C.c_int), ("negatives", C.c_int), ("units", C.c_int64), ("units_kept", C.c_int64),
                ("conv_units", C.c_int64), ("conv_units_kept", C.c_int64), ("weights", C.c_int64),
                ("weights_kept", C.c_int64), ("jaccard", C.c_double), ("kernels", C.c_int64),
                ("kernels_kept", C.c_int64), ("origin_macs", C.c_int64), ("params", C.c_int64),
                ("params_kept", C.c_int64), ("macs_kept", C.c_int64), ("origin_params_live", C.c_int64),
                ("origin_macs_live", C.c_int64), ("rule", C.c_int), ("bln_removed", C.c_int64),
                ("seconds", C.c_double), ("scale", C.c_float), ("shift", C.c_float), ("threshold", C.c_float),
                ("method", C.c_int), ("selected_epoch", C.c_int), ("val_accuracy", C.c_double),
                ("origin_val_accuracy", C.c_double), ("cohesion", C.c_double), ("coupling", C.c_double),
                ("generations", C.c_int), ("fitness", C.c_double)]


# ------------------------------------------------------------- prototypes
_p, _i, _i64, _u64, _f, _d, _s = C.c_void_p, C.c_int, C.c_int64, C.c_uint64, C.c_float, C.c_double, C.c_char_p
_pp = C.POINTER(C.c_void_p)
_fp = C.POINTER(C.c_float)


def _proto(name, restype, *argtypes):
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


for _name, _res, _args in [
    ("ts_status_name", _s, [_i]),
    ("ts_ctx_create", _i, [_pp]), ("ts_ctx_free", None, [_p]), ("ts_ctx_error", _s, [_p]),
    ("ts_ctx_clear_error", None, [_p]), ("ts_ctx_set_threads", _i, [_p, _i]), ("ts_ctx_get_threads", _i, [_p]),
    ("ts_ctx_set_backend", _i, [_p, _i]),
    ("ts_dataset_load_first", _i, [_p, _s, _i, _s, _i64, C.POINTER(C.POINTER(_Dataset))]),
    ("ts_dataset_free", None, [C.POINTER(_Dataset)]),
    ("ts_zoo_arch", _s, [_s]), ("ts_zoo_name", _s, [_i]),
    ("ts_model_from_arch", _i, [_p, _s, _s, C.POINTER(_Shape), _i, _u64, _pp]),
    ("ts_model_from_arch_file", _i, [_p, _s, C.POINTER(_Shape), _i, _u64, _pp]),
    ("ts_model_free", None, [_p]), ("ts_model_save", _i, [_p, _p, _s]), ("ts_model_load", _i, [_p, _s, _pp]),
    ("ts_model_input_shape", _Shape, [_p]), ("ts_model_classes", _i, [_p]), ("ts_model_arch_text", _s, [_p]),
    ("ts_model_param_count", _i64, [_p]),
    ("ts_model_predict", _i, [_p, _p, _fp, _i, _fp]),
    ("ts_model_set_meta", _i, [_p, _p, _s, _s]), ("ts_model_get_meta", _s, [_p, _s]),
    ("ts_model_get_preprocess", _i, [_p, _p, C.POINTER(_Preprocess)]),
    ("ts_preprocess_images", None, [C.POINTER(_Preprocess), C.POINTER(C.c_uint8), _i64, _i, _i, _i, _fp]),
    ("ts_train_config_default", None, [C.POINTER(_TrainConfig)]),
    ("ts_optim_config_default", None, [C.POINTER(_OptimConfig), _i]),
    ("ts_trainer_create", _i, [_p, _p, C.POINTER(_Dataset), C.POINTER(_Dataset), C.POINTER(_TrainConfig), _pp]),
    ("ts_trainer_free", None, [_p]), ("ts_trainer_run", _i, [_p, _p, C.POINTER(_TrainHooks)]),
    ("ts_evaluate", _i, [_p, _p, C.POINTER(_Dataset), _i, C.POINTER(_EvalReport)]),
    ("ts_eval_report_free", None, [C.POINTER(_EvalReport)]),
    ("ts_decompose_config_default", None, [C.POINTER(_DecomposeConfig)]),
    ("ts_decompose", _i, [_p, _p, C.POINTER(_Dataset), C.POINTER(_DecomposeConfig), C.POINTER(_i), _i, _p, _p,
                          C.POINTER(_pp), C.POINTER(_i)]),
    ("ts_modules_free", None, [_pp, _i]), ("ts_module_free", None, [_p]),
    ("ts_module_info_get", _i, [_p, C.POINTER(_ModuleInfo)]),
    ("ts_module_save", _i, [_p, _p, _s]), ("ts_module_load", _i, [_p, _s, _pp]),
    ("ts_module_model", _i, [_p, _p, _pp]),
    ("ts_module_evaluate", _i, [_p, _p, C.POINTER(_Dataset), _i, C.POINTER(_d), C.POINTER(_d)]),
    ("ts_compose_config_default", None, [C.POINTER(_ComposeConfig)]),
    ("ts_compose", _i, [_p, _pp, _i, C.POINTER(_ComposeConfig), _pp]),
    ("ts_onnx_import", _i, [_p, _s, _p, _pp]), ("ts_onnx_export", _i, [_p, _p, _s]),
]:
    _proto(_name, _res, *_args)


def _b(s):
    return None if s is None else os.fsencode(s) if isinstance(s, os.PathLike) else s.encode()


def _str(b):
    return None if b is None else b.decode(errors="replace")


class _Handle:
    """Owns a C object, freed by the ts_ function named _free when Python drops it."""
    _free = None

    def __init__(self, ptr, ctx):
        self._p = ptr
        self.ctx = ctx

    def __del__(self):
        if getattr(self, "_p", None) and _lib is not None:
            getattr(_lib, self._free)(self._p)
            self._p = None


class Error(Exception):
    """A failed library call: str(e) is the library's message; e.status its status
    name ("TS_EIO", ...) and e.code the number."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.status = _str(_lib.ts_status_name(code))


class Context(_Handle):
    """A ts_ctx: threads, backend ("dnnl" or "ref") and the last error. Objects keep
    the context they were made with. The default has 1 thread, so results are the
    same on every machine."""
    _free = "ts_ctx_free"

    def __init__(self, threads=1, backend="dnnl"):
        p = C.c_void_p()
        if _lib.ts_ctx_create(C.byref(p)):
            raise MemoryError("tessera: cannot create a context")
        self._p = p
        self._check(_lib.ts_ctx_set_threads(p, int(threads)))
        if backend not in ("dnnl", "ref"):
            raise ValueError("backend must be 'dnnl' or 'ref', not %r" % (backend,))
        self._check(_lib.ts_ctx_set_backend(p, 0 if backend == "dnnl" else 1))

    @property
    def threads(self):
        return _lib.ts_ctx_get_threads(self._p)

    def _check(self, status):
        if status:
            msg = _str(_lib.ts_ctx_error(self._p))
            _lib.ts_ctx_clear_error(self._p)
            raise Error(status, msg)


_default_ctx = []


def _ctx(ctx):
    if ctx is not None:
        return ctx
    if not _default_ctx:
        _default_ctx.append(Context())
    return _default_ctx[0]


_SPLITS = {"train": 0, "test": 1}


class Dataset(_Handle):
    """A dataset in memory (ts_dataset_load_first): a known name (fashion-mnist, mnist,
    cifar10, cifar100) or a folder or file in those layouts; split "train" or "test";
    limit > 0 reads the first `limit` samples only."""
    _free = "ts_dataset_free"

    def __init__(self, spec, split="test", limit=0, data_dir=None, ctx=None):
        if split not in _SPLITS:
            raise ValueError("split must be 'train' or 'test', not %r" % (split,))
        self.ctx = _ctx(ctx)
        self.spec = os.fspath(spec)
        p = C.POINTER(_Dataset)()
        self.ctx._check(_lib.ts_dataset_load_first(self.ctx._p, _b(self.spec), _SPLITS[split], _b(data_dir),
                                                   int(limit), C.byref(p)))
        self._p = p

    @property
    def _ds(self):
        return self._p.contents

    def __len__(self):
        return self._ds.count

    @property
    def classes(self):
        return self._ds.classes

    @property
    def shape(self):
        """One sample's shape (C, H, W)."""
        d = self._ds
        return (d.channels, d.height, d.width)

    @property
    def class_names(self):
        d = self._ds
        return [_str(d.class_names[i]) if d.class_names and d.class_names[i] else str(i) for i in range(d.classes)]

    @property
    def images(self):
        """A copy of the images, uint8 (N, C, H, W)."""
        n = len(self) * int(np.prod(self.shape))
        return np.ctypeslib.as_array(self._ds.images, (n,)).reshape((len(self),) + self.shape).copy()

    @property
    def labels(self):
        """A copy of the labels, int32 (N,)."""
        return np.ctypeslib.as_array(self._ds.labels, (len(self),)).copy()


def _dataset(data, split, limit, data_dir, ctx):
    return data if isinstance(data, Dataset) else Dataset(data, split, limit, data_dir, ctx)


class Model(_Handle):
    """A ts_model. Build one with load, from_arch, train or compose."""
    _free = "ts_model_free"

    @property
    def input_shape(self):
        s = _lib.ts_model_input_shape(self._p)
        return tuple(s.dims[i] for i in range(s.ndim))

    @property
    def classes(self):
        return _lib.ts_model_classes(self._p)

    @property
    def class_names(self):
        """The "classes" metadata (one name per class), else "0", "1", ..."""
        names = self.meta("classes")
        names = names.split("\n") if names else []
        return names if len(names) == self.classes else [str(i) for i in range(self.classes)]

    @property
    def arch_text(self):
        return _str(_lib.ts_model_arch_text(self._p))

    @property
    def param_count(self):
        return _lib.ts_model_param_count(self._p)

    def meta(self, key):
        """A metadata value (str), or None."""
        return _str(_lib.ts_model_get_meta(self._p, _b(key)))

    def set_meta(self, key, value):
        """Sets (or, with None, removes) a metadata value."""
        self.ctx._check(_lib.ts_model_set_meta(self.ctx._p, self._p, _b(key), _b(value)))

    def save(self, path):
        """Writes the model (.tsr), atomically."""
        self.ctx._check(_lib.ts_model_save(self.ctx._p, self._p, _b(os.fspath(path))))

    def export_onnx(self, path):
        """Writes the model as ONNX (opset 13)."""
        self.ctx._check(_lib.ts_onnx_export(self.ctx._p, self._p, _b(os.fspath(path))))

    def preprocess(self, images):
        """uint8 images (N, C, H, W) as the model takes them: float32 pixel/255,
        normalized by the model's preprocessing metadata."""
        x = np.ascontiguousarray(images, dtype=np.uint8)
        if x.ndim != 4:
            raise ValueError("images must be (N, C, H, W), not of shape %s" % (x.shape,))
        pp = _Preprocess()
        self.ctx._check(_lib.ts_model_get_preprocess(self.ctx._p, self._p, C.byref(pp)))
        out = np.empty(x.shape, dtype=np.float32)
        n, c, h, w = x.shape
        _lib.ts_preprocess_images(C.byref(pp), x.ctypes.data_as(C.POINTER(C.c_uint8)), n, c, h, w,
                                  out.ctypes.data_as(_fp))
        return out

    def predict(self, x, probabilities=False):
        """Logits (N, classes) of float32 inputs x (N, *input_shape), already
        preprocessed; with probabilities=True, their softmax."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            raise ValueError("x must be (N,) + %s, not of shape %s" % (self.input_shape, x.shape))
        n = x.shape[0]
        out = np.empty((n, self.classes), dtype=np.float32)
        if n:
            self.ctx._check(_lib.ts_model_predict(self.ctx._p, self._p, x.ctypes.data_as(_fp), n,
                                                  out.ctypes.data_as(_fp)))
        if probabilities:
            e = np.exp(out - out.max(axis=1, keepdims=True))
            out = e / e.sum(axis=1, keepdims=True)
        return out

    def _data(self, data, data_dir):
        """data, else the dataset the model records (and where it was found)."""
        if data is not None:
            return data, data_dir
        if self.meta("data") is None:
            raise ValueError("the model records no dataset: pass data")
        return self.meta("data"), data_dir or self.meta("data.dir")

    def evaluate(self, data=None, split="test", limit=0, batch=256, data_dir=None):
        """Top-1, top-5, loss and confusion matrix (rows: true class) on a Dataset or
        a dataset name/path (default: the "data" the model records), as a dict."""
        data, data_dir = self._data(data, data_dir)
        ds = _dataset(data, split, limit, data_dir, self.ctx)
        rep = _EvalReport()
        self.ctx._check(_lib.ts_evaluate(self.ctx._p, self._p, ds._p, int(batch), C.byref(rep)))
        k = rep.classes
        out = {"count": rep.count, "top1": rep.top1, "top5": rep.top5, "loss": rep.loss,
               "confusion": np.ctypeslib.as_array(rep.confusion, (k * k,)).reshape(k, k).copy()}
        _lib.ts_eval_report_free(C.byref(rep))
        return out

    def decompose(self, data=None, classes=None, method="activation", positives=1000, seed=0, limit=0,
                  data_dir=None):
        """One Module per class (all, or those listed) from the training split of data
        (a Dataset or name/path; default: the model's "data"). method: "activation"
        (Pan & Rajan), "grad", "mwt" or "ga" (docs/modules.md)."""
        methods = {"activation": 0, "grad": 1, "mwt": 2, "ga": 3}
        if method not in methods:
            raise ValueError("method must be one of %s, not %r" % (", ".join(methods), method))
        data, data_dir = self._data(data, data_dir)
        ds = _dataset(data, "train", limit, data_dir, self.ctx)
        cfg = _DecomposeConfig()
        _lib.ts_decompose_config_default(C.byref(cfg))
        cfg.method, cfg.positives, cfg.seed = methods[method], int(positives), int(seed)
        n = 0 if classes is None else len(classes)
        arr = (C.c_int * max(n, 1))(*(classes or []))
        mods, count = _pp(), C.c_int()
        self.ctx._check(_lib.ts_decompose(self.ctx._p, self._p, ds._p, C.byref(cfg), arr if n else None, n, None,
                                          None, C.byref(mods), C.byref(count)))
        out = [Module(C.c_void_p(mods[i]), self.ctx) for i in range(count.value)]
        _lib.ts_modules_free(mods, 0)  # the array only: each Module frees its own
        return out


class Module(_Handle):
    """A per-class module (ts_module): "is x class c?"."""
    _free = "ts_module_free"

    @property
    def info(self):
        """ts_module_info as a dict (class_index, class_name, dataset, units_kept, ...)."""
        inf = _ModuleInfo()
        self.ctx._check(_lib.ts_module_info_get(self._p, C.byref(inf)))
        out = {}
        for name, _ in _ModuleInfo._fields_:
            v = getattr(inf, name)
            if name == "input":
                v = tuple(v.dims[i] for i in range(v.ndim))
            elif isinstance(v, bytes):
                v = _str(v)
            out[name] = v
        return out

    def save(self, path):
        """Writes the module (.tsm), atomically."""
        self.ctx._check(_lib.ts_module_save(self.ctx._p, self._p, _b(os.fspath(path))))

    def model(self):
        """The module alone as a one-output Model: its score (> 0: the input is its class)."""
        p = C.c_void_p()
        self.ctx._check(_lib.ts_module_model(self.ctx._p, self._p, C.byref(p)))
        return Model(p, self.ctx)

    def evaluate(self, data, split="test", limit=0, batch=256, data_dir=None):
        """(own, rest): the module's accuracy on inputs of its class and on the others."""
        ds = _dataset(data, split, limit, data_dir, self.ctx)
        own, rest = C.c_double(), C.c_double()
        self.ctx._check(_lib.ts_module_evaluate(self.ctx._p, self._p, ds._p, int(batch), C.byref(own),
                                                C.byref(rest)))
        return own.value, rest.value


def load(path, ctx=None):
    """A Model from a .tsr model or checkpoint, or from an .onnx file (imported with
    the defaults: batch axis first); a Module from a .tsm file."""
    ctx = _ctx(ctx)
    path = os.fspath(path)
    if path.endswith(".tsm"):
        return load_module(path, ctx)
    p = C.c_void_p()
    if path.endswith(".onnx"):
        ctx._check(_lib.ts_onnx_import(ctx._p, _b(path), None, C.byref(p)))
    else:
        ctx._check(_lib.ts_model_load(ctx._p, _b(path), C.byref(p)))
    return Model(p, ctx)


def load_module(path, ctx=None):
    """A Module from a .tsm file."""
    ctx = _ctx(ctx)
    p = C.c_void_p()
    ctx._check(_lib.ts_module_load(ctx._p, _b(os.fspath(path)), C.byref(p)))
    return Module(p, ctx)


def zoo():
    """The names of the built-in architectures."""
    names, i = [], 0
    while _lib.ts_zoo_name(i):
        names.append(_str(_lib.ts_zoo_name(i)))
        i += 1
    return names


def from_arch(arch, input_shape=None, classes=0, seed=1, ctx=None):
    """A new Model from an architecture: a zoo name, an .arch file or the text itself;
    input_shape (C, H, W) and classes (0: keep) replace what it declares."""
    ctx = _ctx(ctx)
    shape = None
    if input_shape is not None:
        shape = _Shape(len(input_shape), (C.c_int64 * MAX_DIMS)(*input_shape))
    shape_p = C.byref(shape) if shape else None
    p = C.c_void_p()
    text = _lib.ts_zoo_arch(_b(arch))
    if text is None and "\n" not in arch:  # a file
        ctx._check(_lib.ts_model_from_arch_file(ctx._p, _b(os.fspath(arch)), shape_p, int(classes), int(seed),
                                                C.byref(p)))
    else:
        source = arch if text is not None else "arch"
        ctx._check(_lib.ts_model_from_arch(ctx._p, text if text is not None else _b(arch), _b(source), shape_p,
                                           int(classes), int(seed), C.byref(p)))
    return Model(p, ctx)


_OPTIMIZERS = {"sgd": 0, "adam": 1, "adamw": 2}


def train(arch, data, epochs=10, seed=1, batch=128, lr=None, optimizer="sgd", limit=0, data_dir=None,
          on_epoch=None, ctx=None):
    """Trains an architecture (zoo name, .arch file or text) on the training split of
    data (a Dataset or name/path), as `tessera train` does: the dataset's image shape
    and class count replace the architecture's, the model records its classes and
    data. lr defaults to 0.1 for SGD, 0.001 for Adam/AdamW. on_epoch(report dict)
    is called after each epoch; returning True stops training (Error TS_ECANCELED)."""
    ctx = _ctx(ctx)
    if optimizer not in _OPTIMIZERS:
        raise ValueError("optimizer must be one of %s, not %r" % (", ".join(_OPTIMIZERS), optimizer))
    ds = _dataset(data, "train", limit, data_dir, ctx)
    m = from_arch(arch, ds.shape, ds.classes, seed, ctx)
    m.set_meta("classes", "\n".join(ds.class_names))
    m.set_meta("dataset", _str(ds._ds.name))
    m.set_meta("data", ds.spec)
    m.set_meta("arch", arch if "\n" not in arch else "arch")
    cfg = _TrainConfig()
    _lib.ts_train_config_default(C.byref(cfg))
    _lib.ts_optim_config_default(C.byref(cfg.optim), _OPTIMIZERS[optimizer])
    cfg.epochs, cfg.batch, cfg.seed = int(epochs), int(batch), int(seed)
    cfg.lr = lr if lr is not None else (0.1 if optimizer == "sgd" else 0.001)
    hooks, raised = None, []
    if on_epoch is not None:
        def epoch_cb(rep, _user):
            r = rep.contents
            try:
                return 1 if on_epoch({k: getattr(r, k) for k, _ in _EpochReport._fields_}) else 0
            except BaseException as e:  # an exception cannot cross C: stop, raise it afterwards
                raised.append(e)
                return 1
        hooks = _TrainHooks(_StepFn(), _EpochFn(epoch_cb), None)
    tr = C.c_void_p()
    ctx._check(_lib.ts_trainer_create(ctx._p, m._p, ds._p, None, C.byref(cfg), C.byref(tr)))
    try:
        status = _lib.ts_trainer_run(ctx._p, tr, C.byref(hooks) if hooks else None)
        if raised:
            _lib.ts_ctx_clear_error(ctx._p)
            raise raised[0]
        ctx._check(status)
    finally:
        _lib.ts_trainer_free(tr)
    return m


def compose(modules, max_macs=1.5):
    """A k-class Model from k Modules (output j is module j's score), without retraining."""
    if not modules:
        raise ValueError("compose needs at least one module")
    ctx = modules[0].ctx
    arr = (C.c_void_p * len(modules))(*(mod._p.value for mod in modules))
    cfg = _ComposeConfig()
    _lib.ts_compose_config_default(C.byref(cfg))
    cfg.max_macs = float(max_macs)
    p = C.c_void_p()
    ctx._check(_lib.ts_compose(ctx._p, arr, len(modules), C.byref(cfg), C.byref(p)))
    return Model(p, ctx)
