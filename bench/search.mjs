// Search benchmark (issue #7): for each attention case (B=8, H=12, D=64; S × mask) and the BERT-base
// encoder layer, every fused candidate the search considers (row-wise × rows × threads, block-wise ×
// tile class) is forced in turn (search.withCandidate) and its attention launch timed on the device
// (profile() timestamp queries, median of 5 calls); stage 1's prediction for each comes from the
// cost model on this device's measured profile. Reported per case: the best measured candidate
// (what stage 2 finds with the whole space), stage 1's pick and its time, what tune() picks within
// its budget and the search time it spent, the best single fixed configuration over all cases
// (lowest geometric mean) and the ratio fixed/tuned, and the Spearman rank correlation between
// predicted and measured time over the candidates (per case; pooled over cases on ratios to the
// case's best). Writes bench/results/search.json.
// Usage: node scripts/with_vulkan.mjs bench/search.mjs [--quick] [--S 128,512] [--masks none,causal] [--out PATH]
import fs from 'node:fs';

import * as tf from '@tensorflow/tfjs-core';
import * as stof from 'tfjs-backend-stof';

import {encoderLayer, makeInputs, makeWeights, toTensors} from './encoder_layer.mjs';
import {median, timeCalls} from './timing.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : dflt; };
const quick = argv.includes('--quick');
const outPath = opt('out', 'bench/results/search.json');
const [B, H, D] = quick ? [1, 2, 64] : [8, 12, 64];
const SEQ = (opt('S') ?? (quick ? '64,200' : '128,512,1024,2048,4096')).split(',').map(Number);
const MASKS = (opt('masks') ?? (quick ? 'none,sliding' : 'none,padding,causal,sliding,bigbird')).split(',');
const LAYERS = quick ? [] : [[8, 128], [8, 512]];
const {search} = stof;

tf.env().set('STOF_TUNING_CACHE', 'off');  // measure, do not reuse an earlier run's results
await tf.setBackend('stof');
const backend = tf.backend();
const profile = backend.deviceProfile;
if (profile == null) throw new Error(`no measured device profile (base ${stof.backendInfo().base}): this bench needs WebGPU`);

function maskOf(kind, S) {
  const lengths = Array.from({length: B}, (_, b) => S - Math.floor((b * S) / 16));
  return {
    none: () => null, padding: () => stof.masks.padding(lengths, S), causal: () => stof.masks.causal(S),
    sliding: () => stof.masks.slidingWindow(S, 128), bigbird: () => stof.masks.bigBird(S, {block: 64, window: 3, global: 2, random: 3, seed: 1}),
  }[kind]();
}

/** Device ms of the launches under `signature` in one call of fn (mean over them), median of `n` calls. */
async function deviceMs(fn, signature, n = 5) {
  const xs = [];
  for (let i = 0; i < n; i++) {
    const r = await stof.profile(fn);
    tf.dispose(r.result);
    const ms = r.groups.filter(g => g.search === signature && g.ms != null).map(g => g.ms);
    if (ms.length === 0) throw new Error(`no timed launch under ${signature}: ${r.groups.map(g => g.template)}`);
    xs.push(ms.reduce((a, b) => a + b, 0) / ms.length);
  }
  return median(xs);
}

const key = c => `${c.variant} ${c.Br}x${c.Bc}/${c.threads}`;

function ranks(xs) {
  const order = xs.map((x, i) => [x, i]).sort((a, b) => a[0] - b[0]);
  const r = new Array(xs.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
    for (let k = i; k <= j; k++) r[order[k][1]] = (i + j) / 2;
    i = j + 1;
  }
  return r;
}
function spearman(a, b) {
  const ra = ranks(a), rb = ranks(b), n = a.length;
  const ma = ra.reduce((x, y) => x + y, 0) / n, mb = rb.reduce((x, y) => x + y, 0) / n;
  let num = 0, da = 0, db = 0;
  for (let i = 0; i < n; i++) { num += (ra[i] - ma) * (rb[i] - mb); da += (ra[i] - ma) ** 2; db += (rb[i] - mb) ** 2; }
  return num / Math.sqrt(da * db);
}

/** Sweeps one case: fn() runs it; returns the row. */
async function sweep(name, fn, wall) {
  const probe = await stof.profile(fn, {timing: false});
  tf.dispose(probe.result);
  const attn = probe.groups.find(g => g.template === 'attention');
  const signature = attn.search;
  const [, batch, Sq, Sk, Dk, Dv, mi] = signature.split('|');
  const shape = {batch: +batch, Sq: +Sq, Sk: +Sk, D: +Dk, Dv: +Dv, masked: +mi > 0, maskInstances: +mi};
  const cands = search.fusedAttentionCandidates(shape).flatMap(c => search.variants(c));
  const rows = [];
  for (const c of cands) {
    const predicted = search.score(c, profile);
    if (!Number.isFinite(predicted)) continue;  // does not fit the device
    const choice = search.choiceOf(c);
    try {
      const ms = await search.withCandidate(signature, c, () => deviceMs(fn, signature));
      rows.push({config: key(choice), predicted_ms: predicted, measured_ms: ms});
    } catch (e) {
      rows.push({config: key(choice), predicted_ms: predicted, measured_ms: null, error: String(e.message ?? e).slice(0, 200)});
    }
  }
  const ok = rows.filter(r => r.measured_ms != null);
  const best = ok.reduce((a, b) => (b.measured_ms < a.measured_ms ? b : a));
  const pick = ok.reduce((a, b) => (b.predicted_ms < a.predicted_ms ? b : a));
  // What tune() does with its budget (2 s per signature by default), from an empty cache.
  search.tuningCache.clear?.();
  const tuned = await stof.tune(fn, [], {retune: true});
  const g = tuned.groups.find(x => x.signature === signature);
  const tunedKey = g?.best ? key(search.choiceOf(g.best)) : null;
  const row = {
    case: name, signature, candidates: rows, best: best.config, best_ms: best.measured_ms,
    stage1_pick: pick.config, stage1_pick_ms: pick.measured_ms, stage1_over_best: pick.measured_ms / best.measured_ms,
    tune_pick: tunedKey, tune_pick_ms: ok.find(r => r.config === tunedKey)?.measured_ms ?? null,
    tune_spent_ms: g?.spentMs ?? null, tune_measured: g?.measured ?? 0,
    spearman: ok.length > 2 ? spearman(ok.map(r => r.predicted_ms), ok.map(r => r.measured_ms)) : null,
  };
  if (wall) {
    // Whole-call wall time with the tuned choice and with stage 1's (the layer: GEMMs, LayerNorms too).
    const of = cfg => search.fusedAttentionCandidates(shape).flatMap(c => search.variants(c)).find(c => key(search.choiceOf(c)) === cfg);
    row.wall_tuned_ms = await search.withCandidate(signature, of(best.config), () => timeCalls(fn));
    row.wall_stage1_ms = await search.withCandidate(signature, of(pick.config), () => timeCalls(fn));
  }
  return row;
}

const report = {
  device: `${stof.backendInfo().adapter?.device ?? 'unknown'} via Dawn`, date: new Date().toISOString(),
  command: `node scripts/with_vulkan.mjs bench/search.mjs ${argv.join(' ')}`.trim(), profile, rows: [],
};
const save = () => fs.writeFileSync(outPath, JSON.stringify(report, null, 1));
const rnd = shape => tf.randomUniform(shape, -1, 1, 'float32', 7);
for (const S of SEQ) {
  const q = rnd([B, H, S, D]), k = rnd([B, H, S, D]), v = rnd([B, H, S, D]);
  for (const m of MASKS) {
    const mask = maskOf(m, S);
    const fn = () => stof.attention(q, k, v, {mask: mask ?? undefined});
    const row = await sweep(`attention B=${B} H=${H} S=${S} D=${D} ${m}`, fn, false);
    report.rows.push(row);
    save();
    console.log(`${row.case}: best ${row.best} ${row.best_ms.toFixed(3)} ms; stage 1 ${row.stage1_pick} ${row.stage1_pick_ms.toFixed(3)} ms ` +
                `(${row.stage1_over_best.toFixed(2)}x); tune ${row.tune_pick} in ${row.tune_spent_ms?.toFixed(0)} ms; spearman ${row.spearman?.toFixed(2)}`);
    mask?.dispose();
  }
  tf.dispose([q, k, v]);
}
for (const [batch, seq] of LAYERS) {
  const cfg = {batch, seq, hidden: 768, heads: 12, ffn: 3072};
  const w = toTensors(makeWeights(cfg));
  const inp = makeInputs(cfg);
  const x = tf.tensor(inp.x.values, inp.x.shape), mask = tf.tensor(inp.mask.values, inp.mask.shape);
  const fn = () => encoderLayer(w, x, mask, cfg);
  const row = await sweep(`BERT-base encoder layer B=${batch} S=${seq}`, fn, true);
  report.rows.push(row);
  save();
  console.log(`${row.case}: best ${row.best}; stage 1 ${row.stage1_pick} (${row.stage1_over_best.toFixed(2)}x); layer wall ${row.wall_tuned_ms.toFixed(3)} vs ${row.wall_stage1_ms.toFixed(3)} ms`);
  tf.dispose([...Object.values(w), x, mask]);
}

// The best single fixed configuration: lowest geometric mean of measured ms over the cases that all ran it.
const configs = new Map();
for (const r of report.rows) for (const c of r.candidates) if (c.measured_ms != null) (configs.get(c.config) ?? configs.set(c.config, []).get(c.config)).push(Math.log(c.measured_ms / r.best_ms));
let fixed = null, fixedScore = Infinity;
for (const [cfg, logs] of configs) {
  if (logs.length !== report.rows.length) continue;
  const s = logs.reduce((a, b) => a + b, 0) / logs.length;
  if (s < fixedScore) { fixedScore = s; fixed = cfg; }
}
const pooledP = [], pooledM = [];
for (const r of report.rows) {
  for (const c of r.candidates) if (c.measured_ms != null) { pooledP.push(c.predicted_ms / r.candidates.reduce((a, b) => Math.min(a, b.predicted_ms), Infinity)); pooledM.push(c.measured_ms / r.best_ms); }
  const f = r.candidates.find(c => c.config === fixed);
  r.fixed = fixed;
  r.fixed_ms = f?.measured_ms ?? null;
  r.tuned_over_fixed = r.fixed_ms != null ? r.fixed_ms / (r.tune_pick_ms ?? r.best_ms) : null;
}
const ratios = report.rows.map(r => r.tuned_over_fixed).filter(x => x != null);
report.summary = {
  fixed, tuned_over_fixed_geomean: Math.exp(ratios.reduce((a, b) => a + Math.log(b), 0) / ratios.length),
  tuned_over_fixed_min: Math.min(...ratios),
  spearman_mean: report.rows.reduce((a, r) => a + (r.spearman ?? 0), 0) / report.rows.length,
  spearman_pooled: spearman(pooledP, pooledM),
  stage1_over_best_geomean: Math.exp(report.rows.reduce((a, r) => a + Math.log(r.stage1_over_best), 0) / report.rows.length),
};
save();
console.log('case | best | stage-1 pick (x best) | tune pick | tune ms | fixed/tuned | spearman');
for (const r of report.rows) {
  console.log(`${r.case} | ${r.best} ${r.best_ms.toFixed(3)} | ${r.stage1_pick} (${r.stage1_over_best.toFixed(2)}x) | ${r.tune_pick} | ` +
              `${r.tune_spent_ms?.toFixed(0)} | ${r.tuned_over_fixed?.toFixed(2)} | ${r.spearman?.toFixed(2)}`);
}
console.log(JSON.stringify(report.summary));
console.log(`wrote ${outPath}`);
