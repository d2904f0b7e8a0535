// Masked attention on the CUDA executor (issue #8): the planner's real attention kernel (the plan of
// softmax(q kᵀ · scale + log(cast(mask))) v, as stof.attention spells a boolean mask, with CUDA's
// tiles (cudaAttentionChoice: Bc = 32, Br = 64 below S = 512, else 128; test/kernels/cuda_plans.ts
// builds it the same way) timed in fp16 (tensor cores, attention_mma_cuda.ts) and fp32 (CUDA cores, attention_cuda.ts). B=8, H=12, D=64,
// S ∈ {128, 512, 1024, 2048, 4096}; masks as bench/attention.mjs builds them with stof.masks (the
// predicates of src/kernels/sparse/masks.ts, repeated here in plain JS) and bench/device/attn_peers.py
// for the PyTorch peers: none, padding (lengths S - floor(b·S/16)), causal, sliding (|i-j| <= 128),
// dilated (|i-j| <= 256, i-j even), longformer (window 128 + the first 32 tokens global), bigbird
// (64-token blocks: 3 window, 2 global, 3 random, seed 1).
//
// Timing: CUDA events around each attention launch (executor timing), 5 warm-up runs, then --iters
// (default 30) runs back to back with no host synchronization, median. The mask's tile format is
// made once per mask (first run, untimed), as one analysis serves every layer of a forward pass.
// Each variant is checked against float64 on 24 sampled query rows (max |a-b|/max(1,|b|)).
// Effective TFLOP/s (fp16) = 4·B·H·D·(kept pairs per head)/time.
// Kernels are compiled first in --jobs processes (NVRTC disk cache), then timed in this one.
//
//   npm run build && node bench/cuda_attention.mjs [--S 128,512] [--masks none,causal] [--iters 30] [--tiles 128x32]
//        [--out bench/results/cuda_attention_stof.json] [--jobs 12] [--no-fp32] [--tune] [--staging]
// (--tune: also time other chunk (64 keys) and CTA (64 rows) sizes of the dense fp16 kernel, mask
// none, and the fp16 kernel compiled without __launch_bounds__, every mask.)
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {rowDiff} from './attention_reference.mjs';
import {loadTsc as load} from '../scripts/load_tsc.mjs';

const {collectSubgraph, LazyNode, StofValue} = await load('src/fusion/graph.js');
const {infer} = await load('src/fusion/ops.js');
const {planSubgraph} = await load('src/fusion/planner.js');
const {cudaAttentionChoice} = await load('src/kernels/cuda/attention_cuda.js');
const {CudaExecutor} = await load('src/kernels/cuda/executor.js');
const {cudaSourceOf} = await load('src/kernels/cuda/templates_cuda.js');
const {seeded} = await load('test/kernels/cuda_plans.js');

const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : dflt; };
const SEQ = opt('S', '128,512,1024,2048,4096').split(',').map(Number);
const MASKS = opt('masks', 'none,padding,causal,sliding,dilated,longformer,bigbird').split(',');
const iters = Number(opt('iters', 30)), warmup = 5;
const outPath = opt('out', 'bench/results/cuda_attention_stof.json');
const jobs = Number(opt('jobs', Math.min(12, os.availableParallelism())));
const precompile = opt('precompile', null)?.split('/').map(Number);
const withFp32 = !argv.includes('--no-fp32'), tune = argv.includes('--tune'), staging = argv.includes('--staging');
const [B, H, D] = [8, 12, 64];
/** --tiles BRxBC: the tile format's query rows and keys per tile (default: the executor's, cudaAttentionChoice). */
const tilesArg = opt('tiles', null)?.split('x').map(Number);
const tiles = s => (tilesArg ? {...cudaAttentionChoice(s), Br: tilesArg[0], Bc: tilesArg[1]} : cudaAttentionChoice(s));
const WINDOW = 128, GLOBAL = 32, scale = 1 / Math.sqrt(D);

const VARIANTS = [
  {name: 'fp16', options: {attention: 'fp16', cublasLt: false}},
  ...(withFp32 ? [{name: 'fp32', options: {attention: 'fp32', cublasLt: false}}] : []),
  // --tune: other chunk / CTA sizes of the dense fp16 kernel (mask none); no __launch_bounds__ (every mask).
  ...(tune ? [{name: 'fp16_kc64', options: {attention: 'fp16', attentionKeys: 64, cublasLt: false}, only: 'none'},
              {name: 'fp16_r64', options: {attention: 'fp16', attentionRows: 64, cublasLt: false}, only: 'none'},
              {name: 'fp16_lb0', options: {attention: 'fp16', attentionMinBlocks: 0, cublasLt: false}}] : []),
  // --staging: the fp16 kernel with Q/K/V packed to fp16 first (staged) and converted per CTA (direct), forced, every
  // mask; and staged with two 16-row tiles per warp (mt2: 64-key chunks where they fit, k32: 32-key chunks).
  ...(staging ? [{name: 'fp16_staged', options: {attention: 'fp16', attentionStaged: true, cublasLt: false}},
                 {name: 'fp16_direct', options: {attention: 'fp16', attentionStaged: false, cublasLt: false}},
                 {name: 'fp16_mt2', options: {attention: 'fp16', attentionStaged: true, attentionMtiles: 2, cublasLt: false}},
                 {name: 'fp16_mt2_k32', options: {attention: 'fp16', attentionStaged: true, attentionMtiles: 2, attentionKeys: 32, cublasLt: false}}] : []),
];

// ---- masks (src/kernels/sparse/masks.ts, bench/attention.mjs) -------------------------------------
const lengthsOf = S => Array.from({length: B}, (_, b) => S - Math.floor((b * S) / 16));
function bigBirdBlocks(S, block = 64, window = 3, global = 2, random = 3, seed0 = 1) {
  const nb = Math.ceil(S / block), keep = new Uint8Array(nb * nb);
  let seed = seed0 >>> 0;
  const rnd = n => { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return (seed >>> 8) % n; };
  const half = Math.floor(window / 2);
  for (let bi = 0; bi < nb; bi++) {
    for (let bj = 0; bj < nb; bj++) if (Math.abs(bi - bj) <= half || bi < global || bj < global) keep[bi * nb + bj] = 1;
    for (let r = 0; r < random; r++) keep[bi * nb + rnd(nb)] = 1;
  }
  return {nb, keep};
}
/** keep(i, j) of an [S, S] mask, or null for none / padding. */
function predicate(kind, S) {
  switch (kind) {
    case 'causal': return (i, j) => j <= i;
    case 'sliding': return (i, j) => Math.abs(i - j) <= WINDOW;
    case 'dilated': return (i, j) => Math.abs(i - j) <= 2 * WINDOW && (i - j) % 2 === 0;
    case 'longformer': return (i, j) => Math.abs(i - j) <= WINDOW || i < GLOBAL || j < GLOBAL;
    case 'bigbird': { const {nb, keep} = bigBirdBlocks(S); return (i, j) => keep[Math.floor(i / 64) * nb + Math.floor(j / 64)] === 1; }
    case 'none': case 'padding': return null;
  }
  throw new Error(`unknown mask ${kind}`);
}
function maskData(kind, S) {
  if (kind === 'none') return null;
  if (kind === 'padding') {
    const out = new Int32Array(B * S);
    lengthsOf(S).forEach((l, b) => out.fill(1, b * S, b * S + l));
    return {shape: [B, 1, 1, S], data: out, visible: (b, i, j) => out[b * S + j] === 1};
  }
  const keep = predicate(kind, S), out = new Int32Array(S * S);
  for (let i = 0; i < S; i++) for (let j = 0; j < S; j++) out[i * S + j] = keep(i, j) ? 1 : 0;
  return {shape: [S, S], data: out, visible: (b, i, j) => out[i * S + j] === 1};
}
/** Visible (query, key) pairs per head, mean over the batch. */
function keptPairs(kind, S, m) {
  if (m == null) return S * S;
  if (kind === 'padding') return (S * lengthsOf(S).reduce((a, b) => a + b, 0)) / B;
  let n = 0;
  for (const x of m.data) n += x;
  return n;
}

// ---- the plan (a lazy graph built node by node, as test/kernels/cuda_plans.ts does) --------------
function input(shape, dtype = 'float32') {
  const v = new StofValue(shape, dtype);
  v.baseId = {};
  return v;
}
function op(kernel, inputs, attrs = {}) {
  const r = infer(kernel, inputs, attrs);
  if ('reason' in r) throw new Error(`${kernel}: ${r.reason}`);
  const out = new StofValue(r.shape, r.dtype);
  out.refs = 0;
  new LazyNode(kernel, r.inputs.map(i => inputs[i]), attrs, out);
  return out;
}
function attentionPlan(S, kind) {
  const shape = [B, H, S, D];
  const q = input(shape), k = input(shape), v = input(shape);
  const c = new StofValue([], 'float32');
  c.baseId = {};
  c.constant = scale;
  let s = op('Multiply', [op('BatchMatMul', [q, k], {transposeA: false, transposeB: true}), c]);
  let m = null;
  if (kind !== 'none') {
    m = input(kind === 'padding' ? [B, 1, 1, S] : [S, S], 'bool');
    s = op('Add', [s, op('Log', [op('Cast', [m], {dtype: 'float32'})])]);
  }
  const out = op('BatchMatMul', [op('Softmax', [s], {dim: -1}), v], {transposeA: false, transposeB: false});
  out.refs = 1;
  const plan = planSubgraph(collectSubgraph([out]), {attention: 'auto', chooseAttention: tiles});
  const att = plan.kernels.filter(x => x.template === 'attention');
  if (att.length !== 1) throw new Error(`S=${S} ${kind}: the plan has ${att.length} attention kernels (${plan.kernels.map(x => x.template)})`);
  return {plan, kernel: att[0], q, k, v, m, out};
}

const cases = SEQ.flatMap(S => MASKS.map(mask => ({S, mask})));

if (argv.includes('--plans-only')) {  // no GPU needed: the kernels each case would run
  for (const {S, mask} of cases) {
    const {plan, kernel} = attentionPlan(S, mask);
    console.log(`S=${S} ${mask}: ${plan.kernels.map(x => x.template).join(', ')}; ${VARIANTS.map(v => cudaSourceOf(kernel, v.options).label).join(' | ')}`);
  }
  process.exit(0);
}

// ---- compile in parallel first (NVRTC, disk cache) -------------------------------------------------
function executor(options) {
  const e = CudaExecutor.create(options);
  if (!('run' in e)) { console.log(`CUDA executor unavailable: ${e.reason}`); process.exit(1); }
  return e;
}
if (precompile) {
  const [part, parts] = precompile;
  const exs = VARIANTS.map(v => executor(v.options));
  let n = 0;
  for (const {S, mask} of cases) {
    for (const [vi, v] of VARIANTS.entries()) {
      if (v.only && v.only !== mask) continue;
      if (n++ % parts !== part) continue;
      for (const k of attentionPlan(S, mask).plan.kernels) exs[vi].prepare(k);
    }
  }
  exs.forEach(e => e.dispose());
  process.exit(0);
}
const t0 = Date.now();
if (jobs > 1) {
  const pass = argv.filter((a, i) => a !== '--jobs' && argv[i - 1] !== '--jobs');
  const codes = await Promise.all(Array.from({length: jobs}, (_, part) => new Promise(resolve => {
    const p = spawn(process.execPath, [new URL(import.meta.url).pathname, ...pass, '--precompile', `${part}/${jobs}`], {stdio: ['ignore', 'inherit', 'inherit']});
    p.on('close', resolve);
  })));
  console.log(`# compiled in ${jobs} processes: ${((Date.now() - t0) / 1000).toFixed(1)} s${codes.some(c => c !== 0) ? ` (exit codes ${codes})` : ''}`);
}

// ---- run ----------------------------------------------------------------------------------------
const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const exs = VARIANTS.map(v => executor(v.options));
const dev = exs[0].device;
const report = {
  device: `${dev.name} (${dev.arch}, ${dev.multiprocessors} SMs)`,
  date: new Date().toISOString(),
  command: `node bench/cuda_attention.mjs ${argv.join(' ')}`.trim(),
  config: {B, H, D, scale, tiles: tilesArg ? {Br: tilesArg[0], Bc: tilesArg[1]} : {Br: 'cudaAttentionChoice: 64 below S = 512, else 128', Bc: 32}, window: WINDOW, global_tokens: GLOBAL, bigbird: {block: 64, window: 3, global: 2, random: 3, seed: 1},
           iters, warmup, mask_spelling: 'scores + log(cast(bool mask)) (stof.attention)'},
  rows: [],
};
const save = () => {
  fs.mkdirSync(path.dirname(outPath), {recursive: true});
  fs.writeFileSync(outPath, JSON.stringify(report, null, 1));
};

/** Max |a - b| / max(1, |b|) of `out` on 24 sampled rows against softmax(scale q kᵀ + mask) v in float64; NaN/inf count infinite. */
function refDiff(S, x, m, out) {
  let worst = 0;
  for (let r = 0; r < 24; r++) {
    const b = (r * 5) % B, h = (r * 7) % H;
    const i = Math.min(S - 1, ([0, S - 1, S >> 1, WINDOW, GLOBAL - 1, GLOBAL][r % 6] + r * 37) % S);
    const e = rowDiff(x, out, (b * H + h) * S, i, S, D, scale, j => !m || m.visible(b, i, j));
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

const fmt = (x, d = 3) => (x == null ? '-' : x.toFixed(d));
console.log(`# ${report.device}; B=${B} H=${H} D=${D}; tiles ${tilesArg ? `Br=${tilesArg[0]} Bc=${tilesArg[1]}` : 'Br=64 (S < 512) / 128, Bc=32'}; ${iters} timed runs (median), CUDA events`);
console.log('S     mask        kept%   fp16 ms   fp32 ms  fp32/fp16  TFLOP/s(fp16)  diff f64 (fp16, fp32)  kernel');
for (const S of SEQ) {
  const n = B * H * S * D;
  const x = {q: seeded(n, S + 1), k: seeded(n, S + 2), v: seeded(n, S + 3)};
  for (const kind of MASKS) {
    const m = maskData(kind, S);
    const kept = keptPairs(kind, S, m);
    const row = {S, mask: kind, kept_pairs: kept, density: kept / (S * S), stof_fp16_ms: null, stof_fp32_ms: null, tflops_eff: null,
                 max_rel_diff_f64: {}, kernels: {}};
    try {
      const {plan, kernel, q, k, v, m: mv, out} = attentionPlan(S, kind);
      for (const [vi, variant] of VARIANTS.entries()) {
        if (variant.only && variant.only !== kind) continue;
        const ex = exs[vi];
        row.kernels[variant.name] = cudaSourceOf(kernel, variant.options).label;
        const inputs = new Map([[q, ex.upload(x.q, q.shape, 'float32')], [k, ex.upload(x.k, k.shape, 'float32')], [v, ex.upload(x.v, v.shape, 'float32')]]);
        if (mv) inputs.set(mv, ex.upload(m.data, mv.shape, 'bool'));
        const once = timed => {
          const values = ex.runPlan(plan, new Map(inputs), kk => (kk.template === 'attention' ? timed : undefined));
          const result = ex.retain(values.get(out));
          for (const [val, buf] of values) if (!inputs.has(val)) ex.release(buf);
          return result;
        };
        const first = once();
        row.max_rel_diff_f64[variant.name] = refDiff(S, x, m, ex.read(first));
        ex.release(first);
        for (let i = 0; i < warmup; i++) ex.release(once());
        ex.synchronize();
        const timers = [];
        for (let i = 0; i < iters; i++) { const t = {}; timers.push(t); ex.release(once(t)); }
        ex.collectTimes();  // the one wait, after the loop
        row[`stof_${variant.name}_ms`] = median(timers.map(t => t.ms));
        for (const b of inputs.values()) ex.release(b);
      }
      if (row.stof_fp16_ms != null) row.tflops_eff = (4 * B * H * D * kept) / (row.stof_fp16_ms * 1e9);
    } catch (e) {
      row.error = e.stack.split('\n').slice(0, 3).join(' | ');
      console.log(`S=${S} ${kind}: ${row.error}`);
    }
    report.rows.push(row);
    save();
    const d = row.max_rel_diff_f64;
    console.log(`${String(S).padEnd(5)} ${kind.padEnd(11)} ${(row.density * 100).toFixed(1).padStart(5)}  ${fmt(row.stof_fp16_ms).padStart(8)}  ${fmt(row.stof_fp32_ms).padStart(8)}  ` +
                `${row.stof_fp32_ms && row.stof_fp16_ms ? (row.stof_fp32_ms / row.stof_fp16_ms).toFixed(2).padStart(8) : '       -'}  ` +
                `${fmt(row.tflops_eff, 1).padStart(12)}   ${d.fp16 == null ? '-' : d.fp16.toExponential(1)}, ${d.fp32 == null ? '-' : d.fp32.toExponential(1)}` +
                `${VARIANTS.filter(v => v.name.startsWith('fp16_') && row[`stof_${v.name}_ms`] != null).map(v => `  ${v.name}: ${fmt(row[`stof_${v.name}_ms`])} ms (${d[v.name]?.toExponential(1)})`).join('')}  ${row.kernels.fp16 ?? ''}`);
  }
}
console.log(`# ${((Date.now() - t0) / 1000).toFixed(0)} s`);
exs.forEach(e => e.dispose());
