// npm run demo: a converted BERT graph model (the tensorflowjs_converter-format fixture of
// test/fixtures, seeded weights) loaded with tf.loadGraphModel and run on 'stof' and on its base
// backend, on the best device found (CUDA, then WebGPU, then the CPU; on CUDA the peer is
// tfjs-backend-webgpu where it runs, else tfjs-backend-cpu). Prints the device, the fusion plan summary (launches by
// template), the median time per forward of each and their largest difference.
// Options: --model tiny|base (default: base on a GPU, tiny on a software device or the CPU)
//          --batch 2 --seq 128 --runs 20 --json
import fs from 'node:fs';

import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';
import * as stof from 'tfjs-backend-stof';

import {loadFixture} from '../test/fixtures/load_fixture.mjs';
import {CONFIGS, makeBert, writeFixture} from '../test/fixtures/make_fixtures.mjs';

const argv = process.argv.slice(2);
const arg = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : dflt; };
await tf.setBackend('stof');
const info = stof.backendInfo();
// A software adapter (SwiftShader) or the CPU base gets a lighter default: its times mean nothing.
const software = info.base === 'cpu' || /swiftshader|llvmpipe|lavapipe/i.test(JSON.stringify(info.adapter ?? {}));
const size = arg('model', software ? 'tiny' : 'base');
if (!(size in CONFIGS.bert)) throw new Error(`--model must be tiny or base, got ${size}`);
const cfg = {batch: Number(arg('batch', 2)), seq: Number(arg('seq', software ? 16 : 128)), runs: Number(arg('runs', software ? 3 : 20))};
const model = CONFIGS.bert[size];
if (cfg.seq > model.maxPositions) throw new Error(`--seq ${cfg.seq} is over the ${size} model's ${model.maxPositions} positions`);

// The fixture is written once per size, then loaded from files as an app loads its model.
const dir = `tmp/demo/bert-${size}`;
if (!fs.existsSync(`${dir}/model.json`)) writeFixture(dir, makeBert(model));

// Seeded inputs: token ids, a padding mask (the second sequence is half padding), segment ids.
const n = cfg.batch * cfg.seq;
const ids = Int32Array.from({length: n}, (_, i) => (i * 7919 + 13) % model.vocab);
const attention = Int32Array.from({length: n}, (_, i) => (Math.floor(i / cfg.seq) % 2 === 1 && i % cfg.seq >= cfg.seq / 2 ? 0 : 1));
const segments = Int32Array.from({length: n}, (_, i) => (i % cfg.seq >= cfg.seq / 2 ? 1 : 0));

const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function measure(backendName) {
  if (!await tf.setBackend(backendName)) throw new Error(`backend ${backendName} did not initialize`);
  const graph = await loadFixture(dir, tfconv);
  const shape = [cfg.batch, cfg.seq];
  const feeds = {input_ids: tf.tensor2d(ids, shape, 'int32'), attention_mask: tf.tensor2d(attention, shape, 'int32'),
                 token_type_ids: tf.tensor2d(segments, shape, 'int32')};
  const forward = () => graph.execute(feeds);
  let out;
  for (let i = 0; i < 2; i++) { out?.dispose(); out = forward(); await out.data(); }  // warm-up: shader compiles
  const times = [];
  for (let i = 0; i < cfg.runs; i++) {
    out.dispose();
    const start = performance.now();
    out = forward();
    await out.data();  // includes the readback, as an app's forward does
    times.push(performance.now() - start);
  }
  const values = await out.data();
  out.dispose();
  const report = backendName === 'stof' ? await stof.profile(forward) : null;
  report?.result.dispose();
  tf.dispose(Object.values(feeds));
  graph.dispose();
  return {ms: median(times), values, report};
}

// On CUDA the tfjs peer is tfjs-backend-webgpu on the same GPU where it initializes.
const peer = info.base !== 'cuda' ? info.base : (tf.findBackendFactory('webgpu') != null && await tf.setBackend('webgpu') ? 'webgpu' : 'cpu');
await tf.setBackend('stof');
const device = info.base === 'cuda' ? `CUDA: ${info.adapter?.device ?? 'unknown GPU'} (${info.adapter?.architecture ?? '?'})` :
    info.base === 'webgpu' ?
    `WebGPU via ${typeof window === 'undefined' ? 'Dawn' : 'the browser'}: ${Object.values(info.adapter ?? {}).join(' ') || 'unknown adapter'}` :
    'CPU (tfjs-backend-cpu; no WebGPU adapter found)';
const onStof = await measure('stof');
const onBase = await measure(peer);
// tfjs-backend-cpu as an independent reference, where it finishes in seconds.
const onCpu = peer === 'cpu' ? onBase : size === 'tiny' ? await measure('cpu') : null;
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
const byTemplate = {};
for (const g of onStof.report.groups) byTemplate[g.template] = (byTemplate[g.template] ?? 0) + 1;
const result = {device, base: info.base, peer, model: `bert-${size}`, config: cfg, stof_ms: onStof.ms, base_ms: onBase.ms,
                launches: onStof.report.dispatches, groups: byTemplate, fallbacks: onStof.report.fallbacks.length,
                max_abs_diff_vs_base: vsBase.abs, max_rel_diff_vs_base: vsBase.rel, max_rel_diff_vs_cpu: vsCpu?.rel ?? null};
if (argv.includes('--json')) {
  console.log(JSON.stringify(result));
} else {
  console.log(`device      ${device}`);
  console.log(`model       converted BERT (${size}: ${model.layers} layers, hidden ${model.hidden}), tf.loadGraphModel + execute, ` +
              `batch ${cfg.batch}, seq ${cfg.seq} (float32)`);
  console.log(`fusion      ${onStof.report.dispatches} launches per forward: ${Object.entries(byTemplate).map(([k, c]) => `${c} ${k}`).join(', ')}` +
              `; ${onStof.report.fallbacks.length} fallbacks (kernels run unfused on the base, e.g. int32 shape work)` +
              (onStof.report.copies ? `; host<->device copies ${onStof.report.copies.toDevice} up, ${onStof.report.copies.toHost} down` : ''));
  console.log(`stof        ${onStof.ms.toFixed(2)} ms per forward (median of ${cfg.runs}, readback included)`);
  console.log(`${peer.padEnd(11)} ${onBase.ms.toFixed(2)} ms per forward (median of ${cfg.runs})`);
  console.log(`max |stof - ${peer}| = ${vsBase.abs.toExponential(2)} (relative ${vsBase.rel.toExponential(2)});  ` +
              (vsCpu ? `relative to cpu ${vsCpu.rel.toExponential(2)}` : 'cpu reference skipped (base size)'));
  if (software) console.log('note        software device: these times say nothing about GPU speed');
}
