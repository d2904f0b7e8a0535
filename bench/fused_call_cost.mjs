// Host (JavaScript) cost of one fused op call on 'stof': a LayerNorm written in tf ops (moments, as
// tfjs code spells it) recorded, flushed (plan-cache hit) and encoded by the executor, each call's
// result computed (as a read or a non-fused consumer forces). Each call is timed alone and the
// device drained after it (queue.onSubmittedWorkDone, untimed). Time spent inside WebGPU API calls
// (createBindGroup, beginComputePass, submit, ...) is measured apart: on a software adapter
// (SwiftShader) those say nothing about a GPU driver, the rest is the JavaScript of tfjs and 'stof'.
// Usage: node scripts/with_vulkan.mjs bench/fused_call_cost.mjs [--backend stof] [--rows 1024] [--hidden 768]
//          [--calls 300] [--json]
import * as tf from '@tensorflow/tfjs-core';
import * as stof from 'tfjs-backend-stof';

const argv = process.argv.slice(2);
const arg = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : dflt; };
const backendName = arg('backend', 'stof');
const rows = Number(arg('rows', 1024)), H = Number(arg('hidden', 768));
const calls = Number(arg('calls', 300));

if (!await tf.setBackend(backendName)) throw new Error(`setBackend('${backendName}') failed`);
const device = tf.findBackend('webgpu')?.device;

// Time inside the WebGPU API, by entry point.
let apiMs = 0;
const api = {};
const timeMethod = (proto, name, label) => {
  const f = proto[name];
  proto[name] = function (...args) {
    const start = performance.now();
    try { return f.apply(this, args); } finally {
      const ms = performance.now() - start;
      apiMs += ms;
      const a = api[label] ??= {calls: 0, ms: 0};
      a.calls++; a.ms += ms;
    }
  };
};
if (device) {
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  for (const m of ['createBindGroup', 'createBuffer', 'createCommandEncoder', 'createComputePipeline', 'createShaderModule']) timeMethod(Object.getPrototypeOf(device), m, m);
  for (const m of ['submit', 'writeBuffer']) timeMethod(Object.getPrototypeOf(device.queue), m, m);
  for (const m of ['beginComputePass', 'finish', 'copyBufferToBuffer']) timeMethod(Object.getPrototypeOf(encoder), m, m);
  for (const m of ['setPipeline', 'setBindGroup', 'dispatchWorkgroups', 'end']) timeMethod(Object.getPrototypeOf(pass), m, m);
  timeMethod(GPUComputePipeline.prototype, 'getBindGroupLayout', 'getBindGroupLayout');
  pass.end();
}

const seeded = (n, seed) => Float32Array.from({length: n}, (_, i) => Math.sin(i * 12.9898 + seed * 78.233) * 0.5);
const x = tf.tensor(seeded(rows * H, 1), [rows, H]), g = tf.tensor(seeded(H, 2), [H]), b = tf.tensor(seeded(H, 3), [H]);
const layerNorm = () => tf.tidy(() => {
  const {mean, variance} = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-12))), g), b);
});
const backend = tf.backend();
const call = () => { const t = layerNorm(); if (backend instanceof stof.StofBackend) backend.materialize([t.dataId]); return t; };
const drain = async () => { if (device) await device.queue.onSubmittedWorkDone(); };

for (let i = 0; i < 10; i++) { const t = call(); await t.data(); t.dispose(); }
await drain();
for (const k of Object.keys(api)) delete api[k];
const total = [], js = [];
for (let i = 0; i < calls; i++) {
  const api0 = apiMs;
  const start = performance.now();
  call().dispose();
  const ms = performance.now() - start;
  total.push(ms);
  js.push(ms - (apiMs - api0));
  await drain();
}
const us = ms => (ms * 1000).toFixed(1);
const median = xs => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
const mean = xs => xs.reduce((p, q) => p + q, 0) / xs.length;
console.log(`${backendName}: LayerNorm [${rows},${H}], ${calls} calls: JS (outside WebGPU calls) median ${us(median(js))} us, ` +
            `mean ${us(mean(js))} us (${(1000 / mean(js)).toFixed(0)} calls/s); with WebGPU calls median ${us(median(total))} us, mean ${us(mean(total))} us`);
console.log('  WebGPU API per call: ' + Object.entries(api).sort((p, q) => q[1].ms - p[1].ms)
    .map(([k, a]) => `${k} ${us(a.ms / calls)} us (${(a.calls / calls).toFixed(2)}x)`).join(', '));
if (argv.includes('--json')) {
  console.log(JSON.stringify({backend: backendName, rows, hidden: H, calls, js_median_us: median(js) * 1000, js_mean_us: mean(js) * 1000,
                              total_median_us: median(total) * 1000, total_mean_us: mean(total) * 1000}));
}
tf.dispose([x, g, b]);
