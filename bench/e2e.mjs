// End-to-end benchmark: whole converted models (tf.loadGraphModel on the tensorflowjs_converter-format
// fixtures of test/fixtures/make_fixtures.mjs) on 'stof' against tfjs-backend-webgpu and ONNX Runtime
// Web's WebGPU execution providers, all on the same Dawn GPUDevice in one process, with the same
// weights (ORT runs the export's model.onnx: torch.onnx.export from bench/hf/export_hf.py, or the
// Node-written graph of bench/hf/onnx_writer.mjs where the export has none).
// Cases: BERT-base B in {1, 8} x S in {128, 512}; GPT-2 small prefill B=1, S in {512, 1024}; the long
// encoder (BERT-base with a sliding-window(256) + 4-global-token mask) B=1, S=4096. --quick: tiny
// configs, for a check on SwiftShader (times mean nothing there).
// Each case runs once on every backend and is checked for agreement with 'stof' (|a - b| / max(1, |b|)
// <= --agree-rtol) before it is timed. A timed call is one forward as an app makes it: int inputs from
// the CPU in, last_hidden_state read back to the CPU; trials interleave the backends; median reported.
// Writes bench/results/e2e.json ({device, date, command, rows: [{case, stof_ms, peers: {name: ms}, ...}]}).
//
// Usage: node scripts/with_vulkan.mjs bench/e2e.mjs [--quick] [--hf DIR] [--peers webgpu,ort-webgpu,ort-jsep]
//          [--cases REGEX] [--trials 10] [--case-seconds 60] [--agree-rtol 1e-3] [--out PATH]
//          (peer stof-noreplay: 'stof' with STOF_REPLAY off, the converter on every forward;
//           stof-nograph: replay with STOF_CUDA_GRAPH / STOF_WEBGPU_GRAPH off, each kernel launched from the host)
//          [--device webgpu|cuda] [--precision fp32|tf32|fp16]   ('stof' on Dawn or on CUDA, STOF_DEVICE/STOF_PRECISION)
//   --hf DIR: export root of bench/hf/export_hf.py (DIR/bert_base, DIR/gpt2_base, DIR/long_base; the
//   *_tiny ones with --quick). Models missing there are generated with seeded weights by
//   bench/hf/gen_node.mjs into tmp/e2e_node/.
import fs from 'node:fs';
import path from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';
import * as stof from 'tfjs-backend-stof';

import {makeRng, writeFixture} from '../test/fixtures/make_fixtures.mjs';
import {loadFixture} from '../test/fixtures/load_fixture.mjs';
import {generate} from './hf/gen_node.mjs';
import {buildFixture, readExport, worstRel} from './hf/hf_format.mjs';
import {writeOnnx} from './hf/onnx_writer.mjs';
import {ORT_KINDS, createSession, runSession} from './hf/ort_node.mjs';

const argv = process.argv.slice(2);
const opt = (k, d) => (argv.includes(`--${k}`) ? argv[argv.indexOf(`--${k}`) + 1] : d);
const quick = argv.includes('--quick');
const outPath = opt('out', quick ? 'tmp/e2e_quick.json' : 'bench/results/e2e.json');
const trials = Number(opt('trials', quick ? 3 : 10));
const caseSeconds = Number(opt('case-seconds', 60));
const agreeRtol = Number(opt('agree-rtol', 1e-3));
const peers = opt('peers', 'webgpu,ort-webgpu,ort-jsep') === 'none' ? [] : opt('peers', 'webgpu,ort-webgpu,ort-jsep').split(',');
const caseFilter = new RegExp(opt('cases', '.'));
const hfRoot = opt('hf', null);
const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const PEER_NAMES = {'webgpu': 'tfjs-backend-webgpu', 'stof-noreplay': 'stof without graph replay', 'stof-nograph': 'stof replay without CUDA graph or recorded WebGPU commands', 'ort-webgpu': 'ort-web-webgpu-ep', 'ort-jsep': 'ort-web-jsep'};

const MODELS = quick ? [
  {name: 'bert_tiny', label: 'BERT tiny', cases: [[1, 16], [2, 32]]},
  {name: 'gpt2_tiny', label: 'GPT-2 tiny prefill', cases: [[1, 32]]},
  {name: 'long_tiny', label: 'long encoder tiny (w=4, 2 global)', cases: [[1, 64]]},
] : [
  {name: 'bert_base', label: 'BERT-base', cases: [[1, 128], [1, 512], [8, 128], [8, 512]]},
  {name: 'gpt2_base', label: 'GPT-2 small prefill', cases: [[1, 512], [1, 1024]]},
  {name: 'long_base', label: 'long encoder (BERT-base, w=256, 4 global)', cases: [[1, 4096]]},
];

// --device webgpu (default) | cuda: where 'stof' runs (STOF_DEVICE); the peers always use Dawn's device.
const stofDevice = opt('device', 'webgpu');
tf.env().set('STOF_DEVICE', stofDevice);
tf.env().set('STOF_PRECISION', opt('precision', 'fp32'));
await tf.setBackend('stof');
const info = stof.backendInfo();
if (info.base !== stofDevice) throw new Error(`'stof' did not set up on ${stofDevice}: ${JSON.stringify(info)}`);
if (!await tf.setBackend('webgpu')) throw new Error('no WebGPU adapter for the peers');
const device = tf.backend().device;
await tf.setBackend('stof');
const webgpuPkg = JSON.parse(fs.readFileSync('node_modules/webgpu/package.json', 'utf8')).version;
const ortPkg = JSON.parse(fs.readFileSync('node_modules/onnxruntime-web/package.json', 'utf8')).version;
const deviceName = stofDevice === 'cuda' ?
    `${info.adapter?.device} (${info.adapter?.architecture}): 'stof' on CUDA (precision ${opt('precision', 'fp32')}), peers via Dawn, webgpu ${webgpuPkg}` :
    `${info.adapter?.device ?? info.adapter?.vendor ?? 'unknown'} (${info.adapter?.description ?? ''}) via Dawn, webgpu ${webgpuPkg}`;
console.log(`device: ${deviceName}; onnxruntime-web ${ortPkg}`);

/** Timing inputs: random ids, full attention mask, a sentence pair's token types. */
function caseInputs(exp, B, S, seed) {
  const rng = makeRng(seed);
  const vocab = exp.manifest.hf_config.vocab_size;
  const input_ids = Int32Array.from({length: B * S}, () => 1 + Math.floor(rng.uniform() * (vocab - 1)));
  const attention_mask = new Int32Array(B * S).fill(1);
  if (exp.manifest.model === 'gpt2') return {input_ids, attention_mask};
  return {input_ids, attention_mask, token_type_ids: Int32Array.from({length: B * S}, (_, i) => (i % S >= S / 2 ? 1 : 0))};
}

/** A runner per backend: run(inputs, [B, S]) -> Float32Array (one forward, read back). */
// replay false: 'stof' with STOF_REPLAY off (every forward through the converter), for A/B in one run.
/** `flags`: 'stof' flags set around each forward of this runner (its peers' A/B switches). */
async function tfjsRunner(backend, fixtureDir, flags = {}) {
  if (!await tf.setBackend(backend)) throw new Error(`setBackend('${backend}') failed`);
  const model = await loadFixture(fixtureDir, tfconv);
  return {
    async run(inputs, shape) {
      await tf.setBackend(backend);
      const before = Object.fromEntries(Object.keys(flags).map(k => [k, tf.env().get(k)]));
      for (const [k, v] of Object.entries(flags)) tf.env().set(k, v);
      const feeds = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, tf.tensor2d(v, shape, 'int32')]));
      try {
        const out = model.execute(feeds);
        const data = await out.data();
        out.dispose();
        return data;
      } finally {
        tf.dispose(Object.values(feeds));
        for (const [k, v] of Object.entries(before)) tf.env().set(k, v);
      }
    },
    /** One more forward under stof.profile(): its launches and how it replayed (graph forwards, declines). */
    async profile(inputs, shape, options) {
      await tf.setBackend(backend);
      const feeds = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, tf.tensor2d(v, shape, 'int32')]));
      try {
        const report = await stof.profile(() => model.execute(feeds), options);
        report.result.dispose();
        return report;
      } finally {
        tf.dispose(Object.values(feeds));
      }
    },
    dispose: () => model.dispose(),
  };
}

async function ortRunner(kind, onnxBytes, dtype) {
  const s = await createSession(kind, onnxBytes, device);
  return {run: (inputs, shape) => runSession(s, inputs, shape, dtype), dispose: () => s.session.release()};
}

/** The export for `name`: from --hf, else generated (seeded) into tmp/e2e_node. */
function exportFor(name) {
  const fromHf = hfRoot && fs.existsSync(path.join(hfRoot, name, 'manifest.json')) ? path.join(hfRoot, name) : null;
  const dir = fromHf ?? path.join('tmp/e2e_node', name);
  if (!fromHf && !fs.existsSync(path.join(dir, 'manifest.json'))) generate('tmp/e2e_node', name, {reference: 'no', onnx: false});
  return readExport(dir);
}

const rows = [];
const notes = [];
let disagreements = 0;
for (const m of MODELS) {
  const cases = m.cases.filter(([B, S]) => caseFilter.test(`${m.label} B=${B} S=${S}`));
  if (cases.length === 0) continue;
  const t0 = performance.now();
  const exp = exportFor(m.name);
  const fixtureDir = writeFixture(path.join('tmp/e2e_fixtures', m.name), buildFixture(exp));
  let onnxBytes = null, onnxSource = null;
  if (exp.manifest.onnx) {
    onnxBytes = fs.readFileSync(path.join(exp.dir, exp.manifest.onnx.file));
    onnxSource = `${exp.manifest.onnx.exporter} / ${exp.manifest.onnx.module}, opset ${exp.manifest.onnx.opset}`;
  } else if (peers.some(p => p.startsWith('ort-'))) {
    onnxBytes = writeOnnx(exp.manifest.model, exp.manifest.hf_config, exp.manifest.structure, exp.weights).bytes;
    onnxSource = `node (bench/hf/onnx_writer.mjs)${exp.manifest.onnx_error ? `; the export has none: ${JSON.stringify(exp.manifest.onnx_error)}` : ''}`;
  }
  const weightsSource = exp.manifest.source?.generator ?? 'unknown';
  console.log(`${m.label}: weights ${weightsSource} (${exp.dir}), fixture ${fixtureDir}, ONNX ${onnxSource ?? '-'} ` +
              `(${((performance.now() - t0) / 1000).toFixed(1)} s)`);

  const runners = {};
  const peerErrors = {};
  for (const p of ['stof', ...peers]) {
    try {
      const t1 = performance.now();
      if (p === 'stof' || p === 'webgpu') runners[p] = await tfjsRunner(p, fixtureDir);
      else if (p === 'stof-noreplay') runners[p] = await tfjsRunner('stof', fixtureDir, {STOF_REPLAY: false});
      else if (p === 'stof-nograph') runners[p] = await tfjsRunner('stof', fixtureDir, {STOF_CUDA_GRAPH: false, STOF_WEBGPU_GRAPH: false});
      else if (ORT_KINDS[p]) runners[p] = await ortRunner(p, onnxBytes, exp.manifest.onnx?.input_dtype ?? 'int64');
      else throw new Error(`unknown peer ${p}`);
      console.log(`  loaded on ${p} (${((performance.now() - t1) / 1000).toFixed(1)} s)`);
    } catch (e) {
      if (p === 'stof') throw e;
      peerErrors[p] = `load: ${e.message.split('\n')[0]}`;
      console.log(`  ${p}: ${peerErrors[p]}`);
    }
  }

  for (const [ci, [B, S]] of cases.entries()) {
    const name = `${m.label} B=${B} S=${S}`;
    const inputs = caseInputs(exp, B, S, 100 + ci);
    const shape = [B, S];
    const row = {case: name, model: m.name, batch: B, seq: S, stof_ms: null, peers: {}, max_rel_diff_vs_stof: {}, agree: true,
                 weights: weightsSource, onnx: onnxSource, errors: {...peerErrors}};
    // once each (compiles), then agreement with 'stof'
    const outputs = {};
    for (const [p, r] of Object.entries(runners)) {
      try {
        await r.run(inputs, shape);
        outputs[p] = await r.run(inputs, shape);
      } catch (e) {
        if (p === 'stof') throw e;
        row.errors[p] = `run: ${e.message.split('\n')[0]}`;
      }
    }
    for (const p of Object.keys(outputs)) {
      if (p === 'stof') continue;
      const {err} = worstRel(outputs[p], outputs.stof);
      row.max_rel_diff_vs_stof[PEER_NAMES[p]] = err;
      if (!(err <= agreeRtol)) { row.agree = false; row.errors[p] = `disagrees with stof: max rel diff ${err.toExponential(2)} > ${agreeRtol}`; }
    }
    if (!row.agree) disagreements++;
    try { row.stof_dispatches = (await runners.stof.profile(inputs, shape)).dispatches; } catch (e) { row.errors.profile = e.message.split('\n')[0]; }
    // timing: interleaved trials, each peer stops after --case-seconds (3 trials at least)
    const samples = Object.fromEntries(Object.keys(outputs).map(p => [p, []]));
    for (let t = 0; t < trials; t++) {
      for (const p of Object.keys(samples)) {
        const spent = samples[p].reduce((a, b) => a + b, 0) / 1000;
        if (samples[p].length >= 3 && spent > caseSeconds) continue;
        const start = performance.now();
        await runners[p].run(inputs, shape);
        samples[p].push(performance.now() - start);
      }
    }
    try {
      const r = (await runners.stof.profile(inputs, shape, {timing: false})).replay;  // timing would replay kernel by kernel
      row.stof_replay = {graphs: r.graphs, replayed: r.replayed, graphDeclined: r.graphDeclined.map(d => d.reason), notReplayed: r.notReplayed.map(d => d.reason)};
    } catch (e) { row.errors.replay = e.message.split('\n')[0]; }
    row.stof_ms = median(samples.stof);
    for (const p of Object.keys(samples)) if (p !== 'stof') row.peers[PEER_NAMES[p]] = median(samples[p]);
    row.trials = Object.fromEntries(Object.entries(samples).map(([p, s]) => [p === 'stof' ? 'stof' : PEER_NAMES[p], s.length]));
    if (Object.keys(row.errors).length === 0) delete row.errors;
    rows.push(row);
    console.log(`  ${name.padEnd(52)} stof ${row.stof_ms.toFixed(2)} ms` +
                Object.entries(row.peers).map(([p, ms]) => `  ${p} ${ms.toFixed(2)} ms (x${(ms / row.stof_ms).toFixed(2)})`).join('') +
                `  ${row.agree ? 'agree' : 'DISAGREE'}${row.errors ? ` ${JSON.stringify(row.errors)}` : ''}` +
                (row.stof_replay ? `  replay ${JSON.stringify(row.stof_replay)}` : ''));
  }
  for (const r of Object.values(runners)) await r.dispose();
}

if (peers.some(p => p.startsWith('ort-'))) {
  notes.push(`ORT: onnxruntime-web ${ortPkg} in Node on the 'webgpu' package's Dawn, same GPUDevice as tfjs (C++ EP: EP option device; JSEP: ` +
             'env.webgpu.adapter whose requestDevice() returns it); Dawn writeBuffer/setBindGroup patched to copy views of the wasm SharedArrayBuffer (bench/hf/ort_node.mjs).');
}
const report = {device: deviceName, date: new Date().toISOString(), command: `node scripts/with_vulkan.mjs bench/e2e.mjs ${argv.join(' ')}`.trim(),
                peer_info: {'tfjs-backend-webgpu': 'tfjs 4.22 WebGPU backend (the base of stof)', 'ort-web-webgpu-ep': ORT_KINDS['ort-webgpu'].ep,
                            'ort-web-jsep': ORT_KINDS['ort-jsep'].ep},
                timing: `median of up to ${trials} interleaved trials of one forward (int inputs uploaded, last_hidden_state read back); agreement rtol ${agreeRtol}`,
                notes, rows};
fs.mkdirSync(path.dirname(outPath), {recursive: true});
fs.writeFileSync(outPath, JSON.stringify(report, null, 1));
console.log(`wrote ${outPath}\n`);
const peerCols = [...new Set(rows.flatMap(r => Object.keys(r.peers)))];
console.log(['case'.padEnd(52), 'stof ms'.padStart(9), ...peerCols.map(p => p.padStart(20))].join(' '));
for (const r of rows) {
  console.log([r.case.padEnd(52), r.stof_ms.toFixed(2).padStart(9),
               ...peerCols.map(p => (r.peers[p] == null ? '-' : `${r.peers[p].toFixed(2)} (x${(r.peers[p] / r.stof_ms).toFixed(2)})`).padStart(20))].join(' ') +
              (r.agree ? '' : '  DISAGREE'));
}
if (quick) console.log('(--quick: tiny models; on a software adapter these times say nothing about GPU speed)');
process.exitCode = disagreements ? 1 : 0;
