// The onnxruntime side of `make bench-rnn`: times the model rnn_bench wrote (its
// OUT.onnx: the same cell, sizes and weights) on the same token ids, inference only,
// one warm-up then the median of RUNS. Prints a line like rnn_bench's.
//   node ort_rnn.js MODEL.onnx CELL BATCH STEPS THREADS RUNS
// Needs onnxruntime-node (npm; bench/rnn/run.sh installs it).
const ort = require('onnxruntime-node');

async function main() {
  const [model, cell, batchS, stepsS, threadsS, runsS] = process.argv.slice(2);
  const batch = +batchS, steps = +stepsS, threads = +threadsS, runs = +runsS;
  const sess = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const x = new Float32Array(batch * steps); // rnn_bench's ids
  for (let i = 0; i < batch * steps; i++) x[i] = 1 + (i * 7919) % 7999;
  const feeds = {};
  feeds[sess.inputNames[0]] = new ort.Tensor('float32', x, [batch, steps]);
  await sess.run(feeds);
  const t = [];
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    await sess.run(feeds);
    t.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  t.sort((a, b) => a - b);
  const m = t[Math.floor(runs / 2)];
  console.log(`onnxruntime ${cell} batch ${batch} steps ${steps} threads ${threads}: inference ` +
              `${(1e3 * m).toFixed(2)} ms (${Math.round(batch * steps / m)} tokens/s)`);
}
main().catch((e) => { console.error('ort_rnn: ' + e.message); process.exit(1); });
