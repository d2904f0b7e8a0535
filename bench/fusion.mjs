// Fusion benchmark: 'stof' against tfjs-backend-webgpu on the same Dawn device, same process,
// same inputs. Cases: LayerNorm [B*S, 768], softmax with scale + padding mask [B, 12, S, S],
// bias + GELU GEMM [B*S, 768] x [768, 3072], a BERT-base encoder layer. Each case is checked
// against the peer's output before it is timed. Writes bench/results/fusion.json (--out PATH).
// Usage: node scripts/with_vulkan.mjs bench/fusion.mjs [--quick] [--out PATH]
import fs from 'node:fs';

import * as tf from '@tensorflow/tfjs-core';
import * as stof from 'tfjs-backend-stof';

import {encoderLayer, makeInputs, makeWeights, seeded, toTensors} from './encoder_layer.mjs';
import {maxRelDiff, median, timeCalls} from './timing.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const outPath = argv.includes('--out') ? argv[argv.indexOf('--out') + 1] : 'bench/results/fusion.json';

const H = 768;
const cases = [];
for (const rows of quick ? [256] : [1024, 4096, 16384]) {
  cases.push({name: `layernorm [${rows},${H}]`, make: () => ({x: tf.tensor(seeded(rows * H, 1), [rows, H]), g: tf.tensor(seeded(H, 2), [H]), b: tf.tensor(seeded(H, 3), [H])}),
    run: ({x, g, b}) => tf.tidy(() => {
      const {mean, variance} = tf.moments(x, -1, true);
      return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-12))), g), b);
    })});
}
for (const [B, S] of quick ? [[1, 64]] : [[8, 128], [8, 512]]) {
  cases.push({name: `softmax(scale*x + mask) [${B},12,${S},${S}]`, make: () => {
    const mask = new Float32Array(B * S).map((_, i) => ((i % S) < S - (Math.floor(i / S) * 7) % S ? 1 : 0));
    return {x: tf.tensor(seeded(B * 12 * S * S, 4), [B, 12, S, S]), mask: tf.tensor(mask, [B, S])};
  }, run: ({x, mask}) => tf.tidy(() => tf.softmax(tf.add(tf.mul(x, 0.125), tf.reshape(tf.mul(tf.sub(1, mask), -10000), [B, 1, 1, S]))))});
}
for (const rows of quick ? [128] : [1024, 4096]) {
  cases.push({name: `bias+GELU GEMM [${rows},${H}]x[${H},3072]`, make: () => ({x: tf.tensor(seeded(rows * H, 5), [rows, H]), w: tf.tensor(seeded(H * 3072, 6, 1 / Math.sqrt(H)), [H, 3072]), b: tf.tensor(seeded(3072, 7), [3072])}),
    run: ({x, w, b}) => tf.tidy(() => {
      const h = tf.add(tf.matMul(x, w), b);
      return tf.mul(tf.mul(h, 0.5), tf.add(1, tf.erf(tf.mul(h, Math.SQRT1_2))));
    })});
}
for (const [B, S] of quick ? [[1, 64]] : [[1, 128], [8, 128], [8, 512]]) {
  const cfg = {batch: B, seq: S, hidden: H, heads: 12, ffn: 3072};
  cases.push({name: `BERT-base encoder layer B=${B} S=${S}`, make: () => {
    const inputs = makeInputs(cfg);
    return {t: toTensors(makeWeights(cfg)), x: tf.tensor(inputs.x.values, inputs.x.shape), mask: tf.tensor(inputs.mask.values, inputs.mask.shape)};
  }, run: ({t, x, mask}) => encoderLayer(t, x, mask, cfg)});
}

tf.env().set('STOF_DEVICE', 'webgpu');  // the peer's device (on a CUDA machine 'auto' would pick CUDA)
await tf.setBackend('stof');
const info = stof.backendInfo();
if (info.base !== 'webgpu') throw new Error(`no WebGPU adapter: ${JSON.stringify(info)}`);
const rows = [];
for (const c of cases) {
  const results = {};
  for (const backend of ['webgpu', 'stof']) {
    await tf.setBackend(backend);
    const inputs = c.make();
    const once = c.run(inputs);
    const values = await once.data();
    once.dispose();
    // Device time of one call (timestamp queries): stof's fused groups from profile(), the peer's
    // programs from tf.time()'s kernelMs. Medians of 5.
    let dispatches;
    const gpu = [];
    for (let i = 0; i < 5; i++) {
      if (backend === 'stof') {
        const report = await stof.profile(() => c.run(inputs));
        dispatches = report.dispatches;
        report.result.dispose();
        gpu.push(report.groups.reduce((s, g) => s + (g.ms ?? NaN), 0));
      } else {
        const info = await tf.time(() => { c.run(inputs).dispose(); });  // eager: the programs run
        gpu.push(typeof info.kernelMs === 'number' ? info.kernelMs : NaN);
      }
    }
    const ms = await timeCalls(() => c.run(inputs), {iters: quick ? 3 : 20, trials: quick ? 3 : 7});
    results[backend] = {ms, values, dispatches, gpuMs: median(gpu)};
    tf.dispose(Object.values(inputs).flatMap(v => (v instanceof tf.Tensor ? [v] : Object.values(v))));
  }
  const row = {case: c.name, stof_ms: results.stof.ms, peers: {'tfjs-backend-webgpu': results.webgpu.ms},
               speedup: results.webgpu.ms / results.stof.ms, stof_dispatches: results.stof.dispatches,
               max_rel_diff: maxRelDiff(results.stof.values, results.webgpu.values),
               gpu_ms: {stof: results.stof.gpuMs, 'tfjs-backend-webgpu': results.webgpu.gpuMs},
               gpu_speedup: results.webgpu.gpuMs / results.stof.gpuMs};
  rows.push(row);
  console.log(`${c.name.padEnd(44)} stof ${row.stof_ms.toFixed(3)} ms  webgpu ${row.peers['tfjs-backend-webgpu'].toFixed(3)} ms  ` +
              `x${row.speedup.toFixed(2)}  gpu ${row.gpu_ms.stof.toFixed(3)} vs ${row.gpu_ms['tfjs-backend-webgpu'].toFixed(3)} ms (x${row.gpu_speedup.toFixed(2)})  ` +
              `dispatches ${row.stof_dispatches}  maxrel ${row.max_rel_diff.toExponential(1)}`);
}
const report = {device: `${info.adapter?.device ?? info.adapter?.vendor ?? 'unknown'} (${info.adapter?.description ?? ''}) via Dawn, webgpu ${JSON.parse(fs.readFileSync('node_modules/webgpu/package.json', 'utf8')).version}`,
                date: new Date().toISOString(), command: `node scripts/with_vulkan.mjs bench/fusion.mjs ${argv.join(' ')}`.trim(), rows};
fs.mkdirSync('bench/results', {recursive: true});
fs.writeFileSync(outPath, JSON.stringify(report, null, 1));
console.log(`wrote ${outPath}`);
