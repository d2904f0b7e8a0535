// Validation against Hugging Face transformers: builds the graph-model fixtures (tensorflowjs_converter
// format, test/fixtures/make_fixtures.mjs) from the weights that bench/hf/export_hf.py exported from
// seeded random-init BertModel / GPT2Model (and the long encoder), runs them with tf.loadGraphModel on
// 'stof', tfjs-backend-webgpu and tfjs-backend-cpu (and the export's model.onnx on ONNX Runtime Web's
// WebGPU EP, same device), and compares each last hidden state with HF's (relative error
// |a - e| / max(1, |e|), pass at <= --rtol, default 1e-4). Writes JSON and prints a table.
//
// Usage: node scripts/with_vulkan.mjs bench/hf/validate_hf.mjs [--dir DIR] [--models a,b] [--generate]
//          [--backends stof,webgpu,cpu,ort-webgpu,ort-jsep] [--cpu-max-gflop 20] [--rtol 1e-4] [--out PATH]
//          [--device auto|cuda|webgpu|cpu]
//   --dir: the export root (one sub-directory per model, as export_hf.py --out writes); default tmp/hf_node.
//   --generate: first writes the export root with bench/hf/gen_node.mjs (Node, seeded, no torch: the
//   plumbing check for machines without torch; also done when DIR does not exist).
import fs from 'node:fs';
import path from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';
import * as stof from 'tfjs-backend-stof';

import {writeFixture} from '../../test/fixtures/make_fixtures.mjs';
import {loadFixture} from '../../test/fixtures/load_fixture.mjs';
import {generate} from './gen_node.mjs';
import {buildFixture, listExports, readExport, worstRel} from './hf_format.mjs';
import {createSession, runSession} from './ort_node.mjs';

const argv = process.argv.slice(2);
const opt = (k, d) => (argv.includes(`--${k}`) ? argv[argv.indexOf(`--${k}`) + 1] : d);
const root = opt('dir', 'tmp/hf_node');
const rtol = Number(opt('rtol', 1e-4));
const cpuMaxGflop = Number(opt('cpu-max-gflop', 20));
const outPath = opt('out', 'bench/results/validate_hf.json');
const wanted = opt('backends', 'stof,webgpu,cpu,ort-webgpu').split(',');

if (argv.includes('--generate') || !fs.existsSync(root)) {
  for (const name of opt('models', 'bert_tiny,gpt2_tiny,long_tiny').split(',')) console.log(`generated ${generate(root, name)}`);
}
let exports = listExports(root);
if (opt('models')) exports = Object.fromEntries(Object.entries(exports).filter(([k]) => opt('models').split(',').includes(k)));
if (Object.keys(exports).length === 0) throw new Error(`no exports (manifest.json) under ${root}`);

// --device auto (default: CUDA, then WebGPU, then CPU) | cuda | webgpu | cpu: where 'stof' runs; peers use Dawn.
tf.env().set('STOF_DEVICE', opt('device', 'auto'));
await tf.setBackend('stof');
const info = stof.backendInfo();
const hasGpu = info.base !== 'cpu' && tf.findBackendFactory('webgpu') != null && await tf.setBackend('webgpu');
const device = hasGpu ? tf.backend().device : null;
await tf.setBackend('stof');
const deviceName = info.base === 'cuda' ? `${info.adapter?.device} (${info.adapter?.architecture}): 'stof' on CUDA, peers via Dawn` :
    hasGpu ? `${info.adapter?.vendor ?? ''} ${info.adapter?.device ?? info.adapter?.architecture ?? ''} ${info.adapter?.description ?? ''}`.trim() + ' via Dawn' :
    'CPU only (no WebGPU adapter)';
console.log(`device: ${deviceName}`);

/** ~FLOPs of one forward (matmuls only). */
function gflop(exp) {
  const [B, S] = exp.inputShape;
  let params = 0;
  for (const [name, w] of exp.weights) if (w.shape.length === 2 && !/embedding|wte|wpe/.test(name)) params += w.shape[0] * w.shape[1];
  const hf = exp.manifest.hf_config, H = hf.hidden_size ?? hf.n_embd, L = hf.num_hidden_layers ?? hf.n_layer;
  return (2 * B * S * params + 4 * B * S * S * H * L) / 1e9;
}

async function runTfjs(backend, dir, exp) {
  if (!await tf.setBackend(backend)) throw new Error(`setBackend('${backend}') failed`);
  const model = await loadFixture(dir, tfconv);
  const shape = exp.inputShape;
  const feeds = Object.fromEntries(Object.entries(exp.inputs).map(([k, v]) => [k, tf.tensor2d(v, shape, 'int32')]));
  try {
    const t0 = performance.now();
    const out = model.execute(feeds);
    const data = await out.data();
    const ms = performance.now() - t0;
    out.dispose();
    return {data, ms, shape: out.shape};
  } finally {
    tf.dispose(Object.values(feeds));
    model.dispose();
  }
}

async function runOrt(kind, exp) {
  const onnxPath = path.join(exp.dir, exp.manifest.onnx.file);
  const s = await createSession(kind, fs.readFileSync(onnxPath), device);
  try {
    const t0 = performance.now();
    const data = await runSession(s, exp.inputs, exp.inputShape, exp.manifest.onnx.input_dtype ?? 'int64');
    return {data, ms: performance.now() - t0};
  } finally {
    await s.session.release();
  }
}

const rows = [];
for (const [name, dir] of Object.entries(exports)) {
  const exp = readExport(dir);
  const src = exp.manifest.source ?? {};
  if (exp.expected == null) { console.log(`${name}: no last_hidden_state in the export, skipped`); continue; }
  const t0 = performance.now();
  const fixture = buildFixture(exp);
  const fixtureDir = writeFixture(path.join(dir, 'tfjs'), fixture);
  console.log(`${name}: fixture ${fixtureDir} built in ${((performance.now() - t0) / 1000).toFixed(1)} s` +
              (fixture.config.unusedWeights?.length ? `; HF weights not used: ${fixture.config.unusedWeights.join(', ')}` : ''));
  const base = {model: name, kind: exp.manifest.model, input_shape: exp.inputShape, source: src.generator ?? 'unknown',
                versions: Object.fromEntries(Object.entries(src).filter(([k]) => ['transformers', 'torch'].includes(k))),
                reference: exp.manifest.outputs.last_hidden_state.reference ?? null};
  for (const backend of wanted) {
    const row = {...base, backend};
    try {
      if (backend.startsWith('ort-')) {
        if (!hasGpu) throw new Error('skipped: no WebGPU adapter');
        if (!exp.manifest.onnx) throw new Error(`skipped: no ONNX in the export${exp.manifest.onnx_error ? ` (${exp.manifest.onnx_error})` : ''}`);
        row.onnx = `${exp.manifest.onnx.exporter} / ${exp.manifest.onnx.module}`;
        Object.assign(row, await runOrt(backend, exp));
      } else {
        if (backend === 'webgpu' && !hasGpu) throw new Error('skipped: no WebGPU adapter');
        if (backend === 'cpu' && gflop(exp) > cpuMaxGflop) throw new Error(`skipped: ${gflop(exp).toFixed(0)} GFLOP > --cpu-max-gflop ${cpuMaxGflop}`);
        Object.assign(row, await runTfjs(backend, fixtureDir, exp));
      }
      const {err, at} = worstRel(row.data, exp.expected);
      Object.assign(row, {max_rel_err: err, worst_at: at, got: row.data[at], want: exp.expected[at], pass: err <= rtol});
    } catch (e) {
      row.error = e.message.split('\n')[0];
      row.pass = row.error.startsWith('skipped') ? null : false;
    }
    delete row.data;
    delete row.shape;
    rows.push(row);
    console.log(`  ${backend.padEnd(11)} ${row.error ?? `max rel err ${row.max_rel_err.toExponential(2)} ${row.pass ? 'ok' : 'FAIL'} (first run ${row.ms.toFixed(0)} ms)`}`);
  }
}

const report = {device: deviceName, date: new Date().toISOString(), command: `node bench/hf/validate_hf.mjs ${argv.join(' ')}`.trim(), rtol, root, rows};
fs.mkdirSync(path.dirname(outPath), {recursive: true});
fs.writeFileSync(outPath, JSON.stringify(report, null, 1));
console.log(`wrote ${outPath}\n`);
const backends = [...new Set(rows.map(r => r.backend))];
console.log(['model'.padEnd(12), 'source'.padEnd(12), ...backends.map(b => b.padEnd(12))].join(' '));
for (const name of [...new Set(rows.map(r => r.model))]) {
  const rs = rows.filter(r => r.model === name);
  const cell = r => (r == null ? '-' : r.error ? (r.pass === null ? 'skip' : 'ERROR') : `${r.max_rel_err.toExponential(1)}${r.pass ? '' : '!'}`);
  console.log([name.padEnd(12), String(rs[0].source).split(' ')[0].padEnd(12), ...backends.map(b => cell(rs.find(r => r.backend === b)).padEnd(12))].join(' '));
}
const failed = rows.filter(r => r.pass === false);
console.log(`\n${rows.filter(r => r.pass).length} passed, ${failed.length} failed, ${rows.filter(r => r.pass === null).length} skipped (rtol ${rtol}; '!' = over it)`);
process.exitCode = failed.length ? 1 : 0;
