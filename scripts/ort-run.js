#!/usr/bin/env node
// ort-run.js: run an ONNX model with onnxruntime (the onnxruntime-node npm package) as
// an independent oracle, on the input of a TSIO file, and compare with its output.
//
//   node scripts/ort-run.js MODEL.onnx IO.bin [--write OUT.bin] [--quiet]
//
// Prints "max_abs=... max_rel=... argmax_agree=k/n" (and the tolerance verdict) and
// exits 0 when every element satisfies |a - b| <= 1e-4 * |b| + 1e-5 (a: ORT output,
// b: the TSIO file's y), 1 when some element does not (or shapes differ), 2 on usage
// or load errors. With --write, ORT's output is also written to OUT.bin as a TSIO file
// (x copied from IO.bin, y = ORT's output); with --write the comparison is still
// printed, and IO.bin may hold a y with ndim 0 if there is nothing to compare with
// (then the exit status is 0 once OUT.bin is written).
// The model must have one float32 input and its first output is compared.
//
// Where onnxruntime-node comes from (not a dependency of tessera, not vendored):
//   ORT_NODE_PATH=/path/to/node_modules/onnxruntime-node   (the module directory), or
//   ORT_DIR=/path/to/node_modules                          (a node_modules directory), or
//   otherwise plain require('onnxruntime-node').
//
// Install that worked offline (npm registry mirror, Node v20.20, npm 11.19, linux x64):
//   mkdir -p /tmp/ort && cd /tmp/ort && npm init -y >/dev/null &&
//   npm install --ignore-scripts onnxruntime-node@1.17.3
// onnxruntime-node 1.17.3 ships its native binding inside the package
// (node_modules/onnxruntime-node/bin/napi-v3/linux/x64/onnxruntime_binding.node plus
// libonnxruntime.so.1.17.3), so --ignore-scripts is enough and nothing is downloaded
// at install time; 138 MB installed (all platforms). Then:
//   ORT_DIR=/tmp/ort/node_modules node scripts/ort-run.js \
//       tests/fixtures/onnx/resnet20_eval.onnx tests/fixtures/onnx/resnet20_io.bin
// (1.17.3's postinstall script, skipped by --ignore-scripts, is only needed for
// optional GPU providers; the CPU binding above loads without it. Other versions
// were not tried.)
//
// TSIO format (little-endian), as written by tests/fixtures/onnx/gen_onnx_fixtures.py:
//   "TSIO"  u32 version (1)
//   u32 ndim_x  i64 dims_x[ndim_x]  float32 x[prod(dims_x)]
//   u32 ndim_y  i64 dims_y[ndim_y]  float32 y[prod(dims_y)]
'use strict';

const fs = require('fs');
const path = require('path');

const RTOL = 1e-4;
const ATOL = 1e-5;

function loadOrt() {
  if (process.env.ORT_NODE_PATH) return require(path.resolve(process.env.ORT_NODE_PATH));
  if (process.env.ORT_DIR) {
    const resolved = require.resolve('onnxruntime-node',
                                     { paths: [path.resolve(process.env.ORT_DIR)] });
    return require(resolved);
  }
  try {
    return require('onnxruntime-node');
  } catch (e) {
    throw new Error('cannot load onnxruntime-node; set ORT_DIR=/path/to/node_modules or ' +
                    'ORT_NODE_PATH=/path/to/node_modules/onnxruntime-node (see the header ' +
                    'of scripts/ort-run.js for the install command)');
  }
}

function readTsio(file) {
  const buf = fs.readFileSync(file);
  let off = 0;
  const need = (n) => {
    if (off + n > buf.length) throw new Error(`${file}: truncated at byte ${off}`);
  };
  need(8);
  if (buf.toString('latin1', 0, 4) !== 'TSIO') throw new Error(`${file}: bad magic`);
  const version = buf.readUInt32LE(4);
  if (version !== 1) throw new Error(`${file}: unsupported version ${version}`);
  off = 8;
  const tensor = () => {
    need(4);
    const ndim = buf.readUInt32LE(off); off += 4;
    if (ndim > 16) throw new Error(`${file}: ndim ${ndim}`);
    const dims = [];
    let n = 1;
    for (let i = 0; i < ndim; i++) {
      need(8);
      const d = buf.readBigInt64LE(off); off += 8;
      if (d < 0n || d > 0x7fffffffn) throw new Error(`${file}: bad dim ${d}`);
      dims.push(Number(d));
      n *= Number(d);
    }
    if (ndim === 0) n = 0;  // ndim 0: no tensor (nothing to compare with)
    need(4 * n);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = buf.readFloatLE(off + 4 * i);
    off += 4 * n;
    return { dims, data };
  };
  const x = tensor();
  const y = tensor();
  if (off !== buf.length) throw new Error(`${file}: ${buf.length - off} trailing bytes`);
  return { x, y };
}

function writeTsio(file, x, y) {
  const parts = [Buffer.from('TSIO', 'latin1')];
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
  parts.push(u32(1));
  for (const t of [x, y]) {
    parts.push(u32(t.dims.length));
    const d = Buffer.alloc(8 * t.dims.length);
    t.dims.forEach((v, i) => d.writeBigInt64LE(BigInt(v), 8 * i));
    parts.push(d);
    const b = Buffer.alloc(4 * t.data.length);
    for (let i = 0; i < t.data.length; i++) b.writeFloatLE(t.data[i], 4 * i);
    parts.push(b);
  }
  fs.writeFileSync(file, Buffer.concat(parts));
}

function argmaxRows(data, dims) {
  const cols = dims.length >= 2 ? dims[dims.length - 1] : data.length;
  const rows = cols ? data.length / cols : 0;
  const out = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (data[r * cols + c] > data[r * cols + best]) best = c;
    out.push(best);
  }
  return out;
}

function compare(a, b) {
  let maxAbs = 0, maxRel = 0, bad = 0, firstBad = -1, nan = 0;
  for (let i = 0; i < b.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]);
    if (Number.isNaN(d)) { nan++; bad++; if (firstBad < 0) firstBad = i; continue; }
    maxAbs = Math.max(maxAbs, d);
    maxRel = Math.max(maxRel, d / Math.max(Math.abs(b.data[i]), 1e-12));
    if (!(d <= RTOL * Math.abs(b.data[i]) + ATOL)) { bad++; if (firstBad < 0) firstBad = i; }
  }
  const aa = argmaxRows(a.data, a.dims), ab = argmaxRows(b.data, b.dims);
  const agree = aa.filter((v, i) => v === ab[i]).length;
  return { maxAbs, maxRel, bad, firstBad, nan, agree, rows: ab.length };
}

async function main(argv) {
  let write = null, quiet = false;
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--write') write = argv[++i];
    else if (argv[i] === '--quiet') quiet = true;
    else if (argv[i].startsWith('--')) throw new Error(`unknown option ${argv[i]}`);
    else pos.push(argv[i]);
  }
  if (pos.length !== 2 || (write === undefined)) {
    process.stderr.write('usage: node scripts/ort-run.js MODEL.onnx IO.bin [--write OUT.bin] [--quiet]\n');
    return 2;
  }
  const [modelPath, ioPath] = pos;
  const ort = loadOrt();
  const { x, y } = readTsio(ioPath);

  const session = await ort.InferenceSession.create(modelPath, {
    executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  if (session.inputNames.length !== 1) {
    throw new Error(`model has ${session.inputNames.length} inputs (${session.inputNames}); want 1`);
  }
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', x.data, x.dims) };
  const results = await session.run(feeds);
  const out = results[session.outputNames[0]];
  if (out.type !== 'float32') throw new Error(`output type ${out.type}, want float32`);
  const a = { dims: Array.from(out.dims, Number), data: Float32Array.from(out.data) };

  if (write) writeTsio(write, x, a);
  if (!quiet) {
    const ver = (ort.env && ort.env.versions && ort.env.versions.node) || '?';
    console.log(`onnxruntime-node ${ver}: ${path.basename(modelPath)}: ` +
                `${session.inputNames[0]} [${x.dims}] -> ${session.outputNames[0]} [${a.dims}]`);
  }
  if (y.dims.length === 0) {
    console.log('no reference output in ' + ioPath + (write ? '; wrote ' + write : ''));
    return write ? 0 : 1;
  }
  if (a.dims.length !== y.dims.length || a.dims.some((d, i) => d !== y.dims[i])) {
    console.log(`shape mismatch: ort [${a.dims}] vs reference [${y.dims}]`);
    return 1;
  }
  const c = compare(a, y);
  console.log(`max_abs=${c.maxAbs.toExponential(3)} max_rel=${c.maxRel.toExponential(3)} ` +
              `argmax_agree=${c.agree}/${c.rows}`);
  if (c.bad) {
    const i = c.firstBad;
    console.log(`FAIL: ${c.bad}/${y.data.length} elements outside |a-b| <= ${RTOL}*|b| + ${ATOL}` +
                (c.nan ? ` (${c.nan} NaN)` : '') +
                `; first at flat index ${i}: ort ${a.data[i]} vs reference ${y.data[i]}`);
    return 1;
  }
  if (!quiet) console.log(`OK: all ${y.data.length} elements within |a-b| <= ${RTOL}*|b| + ${ATOL}`);
  return 0;
}

main(process.argv.slice(2)).then(
  (rc) => process.exit(rc),
  (err) => { process.stderr.write(`ort-run: ${err && err.message ? err.message : err}\n`); process.exit(2); });
