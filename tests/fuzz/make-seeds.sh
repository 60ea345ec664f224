#!/bin/sh
# Regenerates the seed corpora of the fuzz targets (tests/fuzz/corpus/NAME): small
# valid inputs of every format, made with build/tessera and the architectures in
# zoo/. Needs `make all` and dataset-fashion-mnist. The outputs are committed.
set -eu
cd "$(dirname "$0")/../.."
T=./build/tessera
C=tests/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$C"
mkdir -p "$C/arch" "$C/model" "$C/checkpoint" "$C/module" "$C/idx" "$C/cifar" "$C/pnm" "$C/onnx" "$C/tensorproto" "$C/text"

cp zoo/*.arch tests/fixtures/small_cnn.arch "$C/arch/"
printf 'input shape=1x8x8 classes=3\nconv2d name=c out=2 kernel=3 padding=1\nrelu name=r\nmask name=m\nmaxpool kernel=2\nflatten\ndense name=fc out=classes\n' >"$C/arch/tiny.arch"

# a tiny model, its checkpoint and a module of it (a few KB each)
printf 'input shape=1x28x28 classes=10\nconv2d name=c1 out=2 kernel=3 stride=2 padding=1\nbatchnorm name=bn\nrelu name=r1\nmaxpool kernel=2\nflatten\ndense name=fc out=classes\n' >"$tmp/tiny.arch"
$T train --arch "$tmp/tiny.arch" --data fashion-mnist --limit 64 --epochs 1 --batch 32 --threads 1 --quiet --no-test \
    --optimizer adam --out "$C/model/tiny.tsr" --checkpoint "$C/checkpoint/tiny.ckpt" >/dev/null
$T decompose "$C/model/tiny.tsr" --out "$tmp/mods" --classes 0 --positives 5 --confidence 0 --no-eval --quiet >/dev/null
cp "$tmp/mods/class0.tsm" "$C/module/tiny.tsm"
# a sliced module (MODL version 3: kept-channel bits and sizes) from learned masks: both kernels go
$T decompose "$C/model/tiny.tsr" --method grad --out "$tmp/grad" --classes 3 --epochs 1 --epoch-samples 1600 --val 16 \
    --alpha 0.1 --max-loss 100 --threads 1 --no-eval --quiet >/dev/null
cp "$tmp/grad/class3.tsm" "$C/module/sliced.tsm"
# a version 1 module, as written before 2026-12-02, and a version 2 one, as written
# 2026-12-02 to 12-04 (tests/fixtures/legacy)
cp tests/fixtures/legacy/tiny-v1.tsm "$C/module/v1.tsm"
cp tests/fixtures/legacy/sliced-v2.tsm "$C/module/v2.tsm"

# IDX: flag byte (bit 0: gzip), u32 images length, images, labels
python3 - "$C/idx" <<'PY'
import gzip, struct, sys
out = sys.argv[1]
imgs = struct.pack('>IIII', 0x803, 2, 4, 4) + bytes(range(32))
lbls = struct.pack('>II', 0x801, 2) + bytes([3, 7])
open(out + '/raw', 'wb').write(b'\x00' + struct.pack('<I', len(imgs)) + imgs + lbls)
gi, gl = gzip.compress(imgs, mtime=0), gzip.compress(lbls, mtime=0)
open(out + '/gz', 'wb').write(b'\x01' + struct.pack('<I', len(gi)) + gi + gl)
PY
# CIFAR: flag byte (bit 0 gzip, bit 1 two label bytes), then records
python3 - "$C/cifar" <<'PY'
import gzip, sys
out = sys.argv[1]
rec10 = bytes([4]) + bytes(i % 256 for i in range(3072))
rec100 = bytes([1, 42]) + bytes((7 * i) % 256 for i in range(3072))
open(out + '/c10', 'wb').write(b'\x00' + rec10 * 2)
open(out + '/c100', 'wb').write(b'\x02' + rec100)
open(out + '/c10gz', 'wb').write(b'\x01' + gzip.compress(rec10, mtime=0))
PY
# text: selector byte (0 CLINC JSON, 1 Brown zip, 2 pairs, 3 pairs gzip, 4 vocabulary, 5 tokens), max_len, limit
python3 - "$C/text" <<'PY'
import gzip, io, sys, zipfile
out = sys.argv[1] + '/'
hdr = lambda k: bytes([k, 0, 0])
open(out + 'clinc', 'wb').write(hdr(0) + b'{"train": [["play some jazz", "play_music"], ["Caf\\u00e9 \\"ok\\"", "oos"]], '
                                b'"val": [], "test": [["hi", "greeting"]], "oos_train": [], "oos_val": [], "oos_test": []}')
b = io.BytesIO()
z = zipfile.ZipFile(b, 'w', zipfile.ZIP_DEFLATED)
zi = zipfile.ZipInfo('brown/ca01', (1980, 1, 1, 0, 0, 0)); zi.compress_type = zipfile.ZIP_DEFLATED
z.writestr(zi, "\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ./.\n\n\tI'm/ppss+bem here/rb ./.\n")
zi = zipfile.ZipInfo('brown/README', (1980, 1, 1, 0, 0, 0))
z.writestr(zi, 'x')
z.close()
open(out + 'brown', 'wb').write(hdr(1) + b.getvalue())
pairs = b'Go.\tVa !\nRun!\tCours\xc2\xa0!\nWho?\tQui ?\tCC-BY\n\nHi.\tSalut !\r\n'
open(out + 'pairs', 'wb').write(hdr(2) + pairs)
open(out + 'pairsgz', 'wb').write(hdr(3) + gzip.compress(pairs, mtime=0))
open(out + 'vocab', 'wb').write(hdr(4) + b'tessera-vocab 1 7\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\nthe\t3\na\t1\nz\t1\n')
open(out + 'tokens', 'wb').write(hdr(5) + "Hello, World! Caf\xe9 don't \xff 3.5kg".encode('latin-1'))
PY
printf 'P5 4 4 255\n' >"$C/pnm/gray.pgm"; printf '0123456789abcdef' >>"$C/pnm/gray.pgm"
printf 'P2\n# ascii\n2 2\n15\n0 5\n10 15\n' >"$C/pnm/ascii.pgm"
printf 'P6 2 1 255\n' >"$C/pnm/color.ppm"; printf 'abcdef' >>"$C/pnm/color.ppm"
printf 'P3 1 1 255\n1 2 3\n' >"$C/pnm/ascii.ppm"
# PNG and JPEG seeds come with the image fixtures (Debian's python3-pil)
/usr/bin/python3 tests/fixtures/images/make-images.py >/dev/null
# ONNX: the tiny model exported, and single-op models with their input tensors
# from Debian's libonnx-testdata (ONNX backend test data, Apache-2.0)
$T export "$C/model/tiny.tsr" --out "$C/onnx/tessera_tiny.onnx" >/dev/null
# resize in both forms (Resize with scales, and sizes from Shape + Gather + Concat)
printf 'input shape=1x28x28 classes=10\nconv2d name=c1 out=2 kernel=3 stride=2 padding=1\nresize name=down scale=0.5 mode=linear\nresize name=up size=9x9 coord=asymmetric nearest=floor\nflatten\ndense name=fc out=classes\n' >"$C/arch/resize.arch"
$T train --arch "$C/arch/resize.arch" --data fashion-mnist --limit 64 --epochs 1 --batch 32 --threads 1 --quiet --no-test \
    --optimizer adam --out "$tmp/resize.tsr" >/dev/null
$T export "$tmp/resize.tsr" --out "$C/onnx/tessera_resize.onnx" >/dev/null
# recurrent nodes with the time-major transposes around them (PyTorch 1.13 exports)
cp tests/fixtures/onnx/rnn_gru_tm_h_op13.onnx tests/fixtures/onnx/rnn_lstm_bf_bi2_out_op13.onnx "$C/onnx/"
D=/usr/share/libonnx-testdata/data/node
for t in test_conv_with_strides_padding test_maxpool_2d_pads test_averagepool_2d_same_upper test_batchnorm_example \
    test_gemm_default_single_elem_vector_bias test_matmul_3d test_softmax_axis_1 test_reshape_negative_dim \
    test_concat_2d_axis_1 test_transpose_all_permutations_3 test_pad test_prelu_broadcast test_clip \
    test_unsqueeze_two_axes test_flatten_axis2 test_sum_example test_dropout_default test_squeeze test_add_bcast \
    test_div_bcast test_selu test_globalmaxpool; do
    [ -f "$D/$t/model.onnx" ] || continue
    cp "$D/$t/model.onnx" "$C/onnx/$t.onnx"
    cp "$D/$t/test_data_set_0/input_0.pb" "$C/tensorproto/$t.pb"
done
cp "$D/test_cast_DOUBLE_to_FLOAT/test_data_set_0/input_0.pb" "$C/tensorproto/double.pb"
cp "$D/test_reshape_negative_dim/test_data_set_0/input_1.pb" "$C/tensorproto/int64.pb"
du -sh "$C"
