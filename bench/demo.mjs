// npm run demo: a Transformer encoder layer on 'stof' and on its base backend, on the best device
// found; prints the device, the median time per forward of each and their largest difference.
// Options: --batch 2 --seq 128 --hidden 256 --heads 4 --runs 10 --json
import * as tf from '@tensorflow/tfjs-core';
import * as stof from 'tfjs-backend-stof';

import {encoderLayer, makeInputs, makeWeights, toTensors} from './encoder_layer.mjs';

const argv = process.argv.slice(2);
const arg = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? Number(argv[i + 1]) : dflt; };
await tf.setBackend('stof');
const info = stof.backendInfo();
// A software adapter (SwiftShader) or the CPU base gets a lighter default: its times mean nothing.
const software = info.base === 'cpu' || /swiftshader|llvmpipe|lavapipe/i.test(JSON.stringify(info.adapter ?? {}));
const cfg = {batch: arg('batch', 2), seq: arg('seq', software ? 64 : 128), hidden: arg('hidden', 256), heads: arg('heads', 4),
             runs: arg('runs', software ? 3 : 20)};
cfg.ffn = 4 * cfg.hidden;

const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function measure(backendName) {
  if (!await tf.setBackend(backendName)) throw new Error(`backend ${backendName} did not initialize`);
  const t = toTensors(makeWeights(cfg));
  const inputs = makeInputs(cfg);
  const x = tf.tensor(inputs.x.values, inputs.x.shape), mask = tf.tensor(inputs.mask.values, inputs.mask.shape);
  let out;
  for (let i = 0; i < 2; i++) { out?.dispose(); out = encoderLayer(t, x, mask, cfg); await out.data(); }  // warm-up: shader compiles
  const times = [];
  for (let i = 0; i < cfg.runs; i++) {
    out.dispose();
    const start = performance.now();
    out = encoderLayer(t, x, mask, cfg);
    await out.data();  // includes the readback, as an app's forward does
    times.push(performance.now() - start);
  }
  const values = await out.data();
  out.dispose();
  const report = backendName === 'stof' ? await stof.profile(() => encoderLayer(t, x, mask, cfg)) : null;
  report?.result.dispose();
  tf.dispose([x, mask, ...Object.values(t)]);
  return {ms: median(times), values, report};
}

const device = info.base === 'webgpu' ?
    `WebGPU via ${typeof window === 'undefined' ? 'Dawn' : 'the browser'}: ${Object.values(info.adapter ?? {}).join(' ') || 'unknown adapter'}` :
    'CPU (tfjs-backend-cpu; no WebGPU adapter found)';
const onStof = await measure('stof');
const onBase = await measure(info.base);
// tfjs-backend-cpu as an independent reference, where it finishes in seconds.
const cpuFeasible = cfg.batch * cfg.seq * cfg.hidden <= 2 * 128 * 256;
const onCpu = info.base === 'cpu' ? onBase : cpuFeasible ? await measure('cpu') : null;
function maxDiff(a, b) {
  let abs = 0, rel = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    abs = Math.max(abs, d);
    rel = Math.max(rel, d / Math.max(1, Math.abs(b[i])));
  }
  return {abs, rel};
}
const vsBase = maxDiff(onStof.values, onBase.values), vsCpu = onCpu ? maxDiff(onStof.values, onCpu.values) : null;
const result = {device, base: info.base, config: cfg, stof_ms: onStof.ms, base_ms: onBase.ms,
                max_abs_diff_vs_base: vsBase.abs, max_abs_diff_vs_cpu: vsCpu?.abs ?? null, max_rel_diff_vs_cpu: vsCpu?.rel ?? null};
if (argv.includes('--json')) {
  console.log(JSON.stringify(result));
} else {
  console.log(`device      ${device}`);
  console.log(`layer       encoder, batch ${cfg.batch}, seq ${cfg.seq}, hidden ${cfg.hidden}, heads ${cfg.heads}, ffn ${cfg.ffn} (float32)`);
  console.log(`stof        ${onStof.ms.toFixed(2)} ms per forward (median of ${cfg.runs})`);
  console.log(`${info.base.padEnd(11)} ${onBase.ms.toFixed(2)} ms per forward (median of ${cfg.runs})`);
  console.log(`max |stof - ${info.base}| = ${vsBase.abs.toExponential(2)};  ` +
              (vsCpu ? `max |stof - cpu| = ${vsCpu.abs.toExponential(2)} (relative ${vsCpu.rel.toExponential(2)})` : 'cpu reference skipped (too large)'));
  if (software) console.log('note        software device: these times say nothing about GPU speed');
  if (onStof.report) {
    const byTemplate = {};
    for (const g of onStof.report.groups) byTemplate[g.template] = (byTemplate[g.template] ?? 0) + 1;
    console.log(`fusion      ${onStof.report.dispatches} launches per forward: ${Object.entries(byTemplate).map(([k, n]) => `${n} ${k}`).join(', ')}` +
                `${onStof.report.fallbacks.length ? `; fallbacks: ${onStof.report.fallbacks.map(f => f.kernel).join(', ')}` : ''}`);
  }
}
