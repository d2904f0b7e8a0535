// On the GPU machine: 'stof' with STOF_DEVICE='cuda' against tfjs-backend-cpu, through the package as
// users load it. The converted fixtures (tiny BERT, GPT-2, long encoder) at several batch sizes and
// lengths with seeded ids and padding, and tf.* attention chains with every mask family, must agree
// within 1e-4 relative (|a-b| / max(1, |b|); 1e-2 with --precision fp16, 5e-3 with tf32). Prints one
// PASS/FAIL line per case with the difference, the profile of the first BERT run (launches, fallbacks,
// copies), and exits 1 on a failure.
//
//   npm run build && node bench/cuda_backend_check.mjs [--precision fp32|tf32|fp16]
import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';
import * as stof from 'tfjs-backend-stof';
import v8 from 'node:v8';
import vm from 'node:vm';

import {loadFixture} from '../test/fixtures/load_fixture.mjs';
import {makeMaskedAttention, makeRng, writeFixture, writeNamed} from '../test/fixtures/make_fixtures.mjs';

const argv = process.argv.slice(2);
const precision = argv.includes('--precision') ? argv[argv.indexOf('--precision') + 1] : 'fp32';
const BOUND = {fp32: 1e-4, tf32: 5e-3, fp16: 1e-2}[precision];
tf.env().set('STOF_DEVICE', 'cuda');
tf.env().set('STOF_PRECISION', precision);
if (!await tf.setBackend('stof')) throw new Error('STOF_DEVICE=cuda did not initialize (see the warning above)');
console.log(`device: ${JSON.stringify(stof.backendInfo())}, precision ${precision}, bound ${BOUND}`);

let failures = 0;
const rows = [];
function compare(name, a, b) {
  let worst = 0, nan = false;
  for (let i = 0; i < b.length; i++) {
    if (Number.isNaN(a[i]) !== Number.isNaN(b[i])) nan = true;
    if (Number.isNaN(b[i]) || a[i] === b[i]) continue;
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  }
  const ok = !nan && a.length === b.length && worst <= BOUND;
  if (!ok) failures++;
  rows.push({name, worst, ok});
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}: max rel diff ${worst.toExponential(2)}${nan ? ' (NaN where the reference has none, or the reverse)' : ''}`);
}

/** Runs f on 'stof' (CUDA) and on 'cpu' with the same inputs (made by make(), as plain arrays). */
async function both(name, make, f) {
  const outs = [];
  for (const backend of ['stof', 'cpu']) {
    await tf.setBackend(backend);
    const inputs = make();
    const y = f(inputs);
    const ys = Array.isArray(y) ? y : [y];
    outs.push(await Promise.all(ys.map(t => t.data())));
    tf.dispose([...ys, ...Object.values(inputs)]);
  }
  outs[1].forEach((ref, i) => compare(`${name}${outs[1].length > 1 ? `[${i}]` : ''}`, outs[0][i], ref));
}

// ---- converted fixtures ------------------------------------------------------------------------
const fixtures = {};
for (const m of ['bert', 'gpt2', 'long']) fixtures[m] = writeNamed('tmp/cuda_backend_check', m);
const graphs = {};
for (const backend of ['stof', 'cpu']) {
  await tf.setBackend(backend);
  graphs[backend] = {};
  for (const m of Object.keys(fixtures)) graphs[backend][m] = await loadFixture(fixtures[m].dir, tfconv);
}
function feedsFor(m, B, S, seed) {
  const rng = makeRng(seed), cfg = fixtures[m].config;
  const ids = Int32Array.from({length: B * S}, () => Math.floor(rng.uniform() * cfg.vocab));
  const lengths = Array.from({length: B}, (_, b) => (b === 0 ? S : 1 + Math.floor(rng.uniform() * S)));
  const mask = Int32Array.from({length: B * S}, (_, i) => (i % S < lengths[Math.floor(i / S)] ? 1 : 0));
  const feeds = {input_ids: tf.tensor2d(ids, [B, S], 'int32'), attention_mask: tf.tensor2d(mask, [B, S], 'int32')};
  if (m !== 'gpt2') feeds.token_type_ids = tf.tensor2d(Int32Array.from({length: B * S}, (_, i) => (i % S >= S / 2 ? 1 : 0)), [B, S], 'int32');
  return feeds;
}
let profiled = false;
for (const [m, B, S] of [['bert', 1, 1], ['bert', 1, 7], ['bert', 2, 16], ['bert', 3, 45], ['gpt2', 1, 1], ['gpt2', 2, 16],
                         ['gpt2', 2, 33], ['long', 1, 64], ['long', 2, 100]]) {
  await both(`${m} B=${B} S=${S}`, () => feedsFor(m, B, S, 7 * B + S), feeds => {
    const g = graphs[tf.getBackend()][m];
    return g.execute(feeds);
  });
  if (!profiled && m === 'bert') {
    profiled = true;
    await tf.setBackend('stof');
    const feeds = feedsFor(m, B, S, 1);
    const r = await stof.profile(() => graphs.stof[m].execute(feeds));
    console.log(`profile bert B=${B} S=${S}: ${r.dispatches} launches; groups ${JSON.stringify(count(r.groups.map(g => g.template)))}; ` +
                `base kernels ${JSON.stringify(r.baseKernels)}; copies ${JSON.stringify(r.copies)}; fallbacks ${JSON.stringify(r.fallbacks)}`);
    tf.dispose([r.result, ...Object.values(feeds)]);
  }
}
function count(xs) {
  const c = {};
  for (const x of xs) c[x] = (c[x] ?? 0) + 1;
  return c;
}

// ---- replayed forwards as CUDA graphs: new inputs each time, every output kept to the end ---------
// Forward 1 is captured for replay, 2 replays, 3 replays and captures the CUDA graph, 4 on launch it.
for (const [m, B, S] of [['bert', 2, 24], ['gpt2', 2, 40], ['long', 1, 80]]) {  // signatures not run above
  const kinds = [], outs = [];
  for (let i = 0; i < 6; i++) {
    await tf.setBackend('stof');
    const feeds = feedsFor(m, B, S, 100 + i);
    const r = await stof.profile(() => graphs.stof[m].execute(feeds), {timing: false});  // timing would turn graphs off
    kinds.push(r.replay.graphs ? 'graph' : r.replay.replayed ? 'replayed' : r.replay.captured ? 'captured' : 'as usual');
    outs.push(r.result);
    tf.dispose(Object.values(feeds));
  }
  const ok = kinds.join() === 'captured,replayed,replayed,graph,graph,graph';
  if (!ok) failures++;
  console.log(`${ok ? 'PASS' : 'FAIL'} ${m} B=${B} S=${S} forwards: ${kinds.join(', ')}`);
  for (let i = 0; i < outs.length; i++) {  // read only now: a later forward must not have written an earlier output
    await tf.setBackend('stof');
    const got = await outs[i].data();
    outs[i].dispose();
    await tf.setBackend('cpu');
    const feeds = feedsFor(m, B, S, 100 + i);
    const ref = graphs.cpu[m].execute(feeds);
    compare(`${m} B=${B} S=${S} forward ${i + 1} (${kinds[i]}), read after all six`, got, await ref.data());
    tf.dispose([ref, ...Object.values(feeds)]);
  }
}

// A mask fed as a model input: the graph rewrites its buffer, so its tile format must be made in the graph.
{
  const dir = writeFixture('tmp/cuda_backend_check/masked_attention', makeMaskedAttention({heads: 3, seq: 100, dim: 64}));
  const model = {};
  for (const backend of ['stof', 'cpu']) { await tf.setBackend(backend); model[backend] = await loadFixture(dir, tfconv); }
  const feedsOf = i => {
    const rng = makeRng(500 + i), x = () => tf.tensor4d(Float32Array.from({length: 3 * 100 * 64}, () => rng.uniform() * 2 - 1), [1, 3, 100, 64]);
    const keep = 10 + 15 * i;  // a padding mask that keeps a different number of keys each forward
    return {q: x(), k: x(), v: x(), mask: tf.tensor4d(Float32Array.from({length: 100 * 100}, (_, j) => (j % 100 < keep ? 0 : -1e9)), [1, 1, 100, 100])};
  };
  const kinds = [], outs = [];
  for (let i = 0; i < 6; i++) {
    await tf.setBackend('stof');
    const f = feedsOf(i);
    const r = await stof.profile(() => model.stof.execute(f), {timing: false});
    kinds.push(r.replay.graphs ? 'graph' : r.replay.replayed ? 'replayed' : r.replay.captured ? 'captured' : 'as usual');
    outs.push(r.result);
    tf.dispose(Object.values(f));
  }
  const ok = kinds.join() === 'captured,replayed,replayed,graph,graph,graph';
  if (!ok) failures++;
  console.log(`${ok ? 'PASS' : 'FAIL'} masked attention (mask as an input) forwards: ${kinds.join(', ')}`);
  for (let i = 0; i < 6; i++) {
    const got = await outs[i].data();
    outs[i].dispose();
    await tf.setBackend('cpu');
    const f = feedsOf(i), ref = model.cpu.execute(f);
    compare(`masked attention, mask as an input, forward ${i + 1} (${kinds[i]}), read after all six`, got, await ref.data());
    tf.dispose([ref, ...Object.values(f)]);
  }
}

// ---- attention chains with masks (the intercepted spelling) ------------------------------------
const rngInputs = (shapes, seed) => () => {
  const rng = makeRng(seed);
  return Object.fromEntries(Object.entries(shapes).map(([k, s]) => [k, tf.tensor(Float32Array.from({length: s.reduce((a, b) => a * b, 1)}, () => rng.uniform() * 2 - 1), s)]));
};
for (const [S, D, kind] of [[1, 64, 'none'], [127, 64, 'causal'], [200, 32, 'padding'], [300, 80, 'sliding'], [513, 128, 'causal'], [64, 64, 'allmasked']]) {
  const B = 2, H = 3;
  await both(`attention S=${S} D=${D} ${kind}`, rngInputs({q: [B, H, S, D], k: [B, H, S, D], v: [B, H, S, D]}, S + D), ({q, k, v}) => {
    const i = tf.reshape(tf.range(0, S, 1, 'int32'), [S, 1]), j = tf.reshape(tf.range(0, S, 1, 'int32'), [1, S]);
    let keep;
    if (kind === 'none') keep = tf.cast(tf.onesLike(tf.add(i, j)), 'bool');
    else if (kind === 'causal') keep = tf.lessEqual(j, i);
    else if (kind === 'sliding') keep = tf.lessEqual(tf.abs(tf.sub(i, j)), 16);
    else if (kind === 'padding') keep = tf.less(j, tf.scalar(Math.floor(S / 3), 'int32'));
    else keep = tf.less(j, tf.scalar(-1, 'int32'));  // every key masked: uniform rows
    const bias = tf.mul(tf.sub(1, tf.cast(keep, 'float32')), -1e9);
    const scores = tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(D)), bias);
    return tf.matMul(tf.softmax(scores), v);
  });
}

// ---- reads into page-locked memory: arrays the app keeps are never written by later reads --------
{
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const seeds = [11, 12, 13, 14, 15, 16];
  const inputOf = seed => { const rng = makeRng(seed); return Float32Array.from({length: 1024 * 256}, () => rng.uniform() * 4 - 2); };
  await tf.setBackend('stof');
  const exec = tf.backend().base.exec, st0 = exec.stats().pinned;
  const kept = [];
  for (const [i, seed] of seeds.entries()) {
    const x = tf.tensor2d(inputOf(seed), [1024, 256]), y = tf.tanh(tf.mul(x, 1.5));  // 1 MB, computed on the device
    kept.push(await y.data());
    tf.dispose([x, y]);
    // Reads dropped at once, with collections between: their blocks are recycled under the kept arrays.
    for (let j = 0; j < 3; j++) { const z = tf.exp(tf.fill([1024, 256], i + j)); await z.data(); z.dispose(); }
    gc();
    await new Promise(r => setTimeout(r, 1));
  }
  const st = exec.stats().pinned;
  console.log(`pinned reads: ${JSON.stringify(st)} (before: ${JSON.stringify(st0)})`);
  if (st.pinnedReads - st0.pinnedReads < 24 || st.recycled === st0.recycled) {
    failures++;
    console.log('FAIL the page-locked pool was not used or never recycled a block');
  }
  await tf.setBackend('cpu');
  for (const [i, seed] of seeds.entries()) {
    const ref = tf.tidy(() => tf.tanh(tf.mul(tf.tensor2d(inputOf(seed), [1024, 256]), 1.5)));
    compare(`page-locked read ${i + 1} of 6, kept while 18 more reads came and went`, kept[i], await ref.data());
    ref.dispose();
  }
}

// ---- no leaks over repeated forwards -------------------------------------------------------------
await tf.setBackend('stof');
const feeds = feedsFor('bert', 2, 16, 3);
for (let i = 0; i < 3; i++) {  // captured, replayed, replayed and captured as a CUDA graph (which holds its buffers); then counted
  const warm = graphs.stof.bert.execute(feeds);
  await warm.data();
  warm.dispose();
}
const backend = tf.backend();
const before = {tensors: tf.memory().numTensors, bytes: backend.base.exec.stats().inUseBytes};
for (let i = 0; i < 100; i++) {
  const y = graphs.stof.bert.execute(feeds);
  await y.data();
  y.dispose();
}
const after = {tensors: tf.memory().numTensors, bytes: backend.base.exec.stats().inUseBytes};
const flat = after.tensors === before.tensors && after.bytes === before.bytes;
if (!flat) failures++;
console.log(`${flat ? 'PASS' : 'FAIL'} 100 BERT forwards: tensors ${before.tensors} -> ${after.tensors}, device bytes in use ${before.bytes} -> ${after.bytes}`);

console.log(`\n${rows.length} comparisons, ${failures} failed; worst ${Math.max(...rows.map(r => r.worst)).toExponential(2)} (bound ${BOUND})`);
process.exit(failures === 0 ? 0 : 1);
