// The onnxruntime half of `make bench-onnx` (bench/onnx/run.sh): times one model as
// onnx_run.c does (same input, warm-up, median of R runs).
//   node ort_run.js MODEL.onnx IO.bin BATCH THREADS REPS
// Prints "ms_b<BATCH>=<median>". Needs onnxruntime-node (npm, installed by run.sh).
const ort = require('onnxruntime-node');
const fs = require('fs');

async function main() {
  const [model, io, batchS, threadsS, repsS] = process.argv.slice(2);
  const batch = +batchS, threads = +threadsS, reps = +repsS;
  const sess = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const per = 3 * 224 * 224;
  const buf = fs.readFileSync(io);
  const x2 = new Float32Array(buf.buffer, buf.byteOffset, 2 * per);
  const x = new Float32Array(batch * per);
  for (let b = 0; b < batch; b++) x.set(x2.subarray((b % 2) * per, (b % 2 + 1) * per), b * per);
  const feeds = {};
  feeds[sess.inputNames[0]] = new ort.Tensor('float32', x, [batch, 3, 224, 224]);
  await sess.run(feeds); // warm-up
  const t = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    await sess.run(feeds);
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  t.sort((a, b) => a - b);
  console.log(`ms_b${batch}=${t[Math.floor(reps / 2)].toFixed(3)}`);
}
main().catch((e) => { console.error('ort_run: ' + e.message); process.exit(1); });
