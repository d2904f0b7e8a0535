// Masked attention benchmark (issue #5): 'stof' against tfjs-backend-webgpu running the unfused
// chain, in the same process, on the same Dawn device, with the same inputs. B=8, H=12, D=64,
// S ∈ {128, 512, 1024, 2048, 4096}; masks: none, padding (lengths S·(1 - b/16)), causal, sliding
// (128 keys each side), dilated (128 taps each side, dilation 2), Longformer (window 128 + 32 global
// tokens), BigBird (64-token blocks: 3 window, 2 global, 3 random; stof.masks.bigBird, seed 1).
// bench/device/attn_peers.py builds the same masks for the PyTorch peers.
//
// Both backends run the same chain code: scores = q kᵀ · scale, plus the mask's bias, softmax,
// times v. --mask-form picks how the mask enters it:
//   bool  (default) scores + where(mask, zeros, -Infinity) with the boolean mask, the zeros and the
//         -Infinity tensors made once per case (so no call uploads a mask-sized tensor)
//   bias  scores + a float32 bias (0 / -Infinity) made once per case
//   op    stof.attention(q, k, v, {mask}) with the boolean mask (on tfjs-backend-webgpu, the plain
//         chain; it makes its where() operands at every call)
// Each case is checked before it is timed: max relative difference against the peer, and against
// a float64 reference on 24 sampled query rows. Timing (bench/timing.mjs): trials of back-to-back
// calls, then the GPU work drained (no readback), median ms per call. Effective TFLOP/s =
// 4·B·H·D·(kept pairs)/time, with kept pairs the visible (query, key) pairs per head (mean over
// the batch for padding). The peer's scores take B·H·S²·4 bytes: where that is over the device's
// maxStorageBufferBindingSize (S = 4096: 6.4 GB against 2 GiB) the peer is recorded as not
// runnable, with the reason. Rows are written to the JSON as they finish.
//
// Usage: node scripts/with_vulkan.mjs bench/attention.mjs [--quick] [--kernel dense|blockwise|rowwise|auto]
//          [--out PATH] [--mask-form bool|bias|op] [--S 128,512] [--masks causal,sliding] [--budget-s SECONDS]
// (--budget-s: no new case starts after that many seconds; the cases left are listed in the JSON.)
import fs from 'node:fs';
import path from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import * as stof from 'tfjs-backend-stof';

import {rowDiff} from './attention_reference.mjs';
import {seeded} from './encoder_layer.mjs';
import {maxRelDiff, timeCalls} from './timing.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : dflt; };
const quick = argv.includes('--quick');
const kernelChoice = opt('kernel', 'auto');
const maskForm = opt('mask-form', 'bool');
const outPath = opt('out', 'bench/results/attention.json');
const budgetS = Number(opt('budget-s', Infinity));
const started = performance.now();
if (!['bool', 'bias', 'op'].includes(maskForm)) throw new Error(`--mask-form must be bool, bias or op, got ${maskForm}`);

const [B, H, D] = quick ? [2, 2, 64] : [8, 12, 64];
const SEQ = (opt('S') ?? (quick ? '128' : '128,512,1024,2048,4096')).split(',').map(Number);
const MASKS = (opt('masks') ?? 'none,padding,causal,sliding,dilated,longformer,bigbird').split(',');
const WINDOW = 128, GLOBAL = 32;
const PEER = 'tfjs-backend-webgpu';


/** The mask as plain values: {shape, keep (1 = visible)}, or null; built with stof.masks on 'cpu'. */
async function maskValues(kind, S) {
  if (kind === 'none') return null;
  await tf.setBackend('cpu');
  const lengths = Array.from({length: B}, (_, b) => S - Math.floor((b * S) / 16));
  const all = Array.from({length: S}, (_, i) => i);
  const t = {
    padding: () => stof.masks.padding(lengths, S),
    causal: () => stof.masks.causal(S),
    sliding: () => stof.masks.slidingWindow(S, WINDOW),
    dilated: () => stof.masks.dilated(S, WINDOW, 2),
    longformer: () => stof.masks.longformer(S, WINDOW, all.slice(0, GLOBAL)),
    bigbird: () => stof.masks.bigBird(S, {block: 64, window: 3, global: 2, random: 3, seed: 1}),
  }[kind]?.();
  if (t == null) throw new Error(`unknown mask ${kind}`);
  const keep = Uint8Array.from(t.dataSync());
  const shape = t.shape;
  t.dispose();
  return {shape, keep, lengths: kind === 'padding' ? lengths : null};
}

/** Visible (query, key) pairs per head, mean over the batch. */
function keptPairs(mask, S) {
  if (mask == null) return S * S;
  if (mask.lengths != null) return S * mask.lengths.reduce((a, b) => a + b, 0) / B;
  let n = 0;
  for (const k of mask.keep) n += k;
  return n;
}

/** The inputs of a case as tensors on the current backend (mask helpers made once, outside the timing). */
function upload(x) {
  const shape = [B, H, x.S, D];
  const t = {q: tf.tensor(x.q, shape), k: tf.tensor(x.k, shape), v: tf.tensor(x.v, shape)};
  if (x.mask != null) {
    const {shape: ms, keep} = x.mask;
    if (maskForm === 'bias') {
      t.bias = tf.tensor(Float32Array.from(keep, m => (m ? 0 : -Infinity)), ms);
    } else {
      t.mask = tf.tensor(keep, ms, 'bool');
      if (maskForm === 'bool') { t.zeros = tf.zeros(ms); t.negInf = tf.fill(ms, -Infinity); }
    }
  }
  return t;
}

/** The chain, identical on every backend. */
function chain(t, scale) {
  if (maskForm === 'op') return stof.attention(t.q, t.k, t.v, {mask: t.mask, scale});
  return tf.tidy(() => {
    let s = tf.mul(tf.matMul(t.q, t.k, false, true), scale);
    if (t.bias != null) s = tf.add(s, t.bias);
    if (t.mask != null) s = tf.add(s, tf.where(t.mask, t.zeros, t.negInf));
    return tf.matMul(tf.softmax(s), t.v);
  });
}

/** Query rows (b, h, i) checked against float64. */
function sampleRows(S) {
  const rows = [];
  for (let r = 0; r < 24; r++) {
    const i = [0, S - 1, S >> 1, WINDOW, GLOBAL - 1, GLOBAL][r % 6] ?? 0;
    rows.push([(r * 5) % B, (r * 7) % H, Math.min(S - 1, (i + r * 37) % S)]);
  }
  return rows;
}

/** Max relative difference of `out` on the sampled rows against softmax(scale q kᵀ + mask) v in float64. */
function refDiff(x, out, scale) {
  const {S, mask} = x;
  let worst = 0;
  for (const [b, h, i] of sampleRows(S)) {
    const visible = j => mask == null ? true : mask.lengths != null ? j < mask.lengths[b] : mask.keep[i * S + j] === 1;
    const e = rowDiff(x, out, (b * H + h) * S, i, S, D, scale, visible);
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

await tf.setBackend('stof');
const info = stof.backendInfo();
if (info.base !== 'webgpu') throw new Error(`no WebGPU adapter: ${JSON.stringify(info)}`);
const device = tf.findBackend('webgpu').device;
const bindingLimit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
tf.env().set('STOF_ATTENTION', kernelChoice);  // (the flag names its values if this one is not among them)

/** The kernel the attention launch ran and its tiles, as profile() reports them. */
const kernelOf = g => (g == null ? 'not fused' : `${g.variant} ${g.tiles.Br}x${g.tiles.Bc}/${g.tiles.threads}`);

const report = {
  device: `${info.adapter?.device ?? info.adapter?.vendor ?? 'unknown'} (${info.adapter?.description ?? ''}) via Dawn, webgpu ${JSON.parse(fs.readFileSync('node_modules/webgpu/package.json', 'utf8')).version}`,
  date: new Date().toISOString(),
  command: `node scripts/with_vulkan.mjs bench/attention.mjs ${argv.join(' ')}`.trim(),
  config: {B, H, D, dtype: 'float32', kernel: kernelChoice, mask_form: maskForm, window: WINDOW, global_tokens: GLOBAL,
           bigbird: {block: 64, window: 3, global: 2, random: 3, seed: 1}, max_storage_binding: bindingLimit},
  rows: [],
  skipped: [],
};
const save = () => {
  fs.mkdirSync(path.dirname(outPath), {recursive: true});
  fs.writeFileSync(outPath, JSON.stringify(report, null, 1));
};

const fmt = (x, d = 3) => (x == null ? '-' : x.toFixed(d));
console.log(`${report.device}; B=${B} H=${H} D=${D}; kernel ${kernelChoice}; mask form ${maskForm}`);
console.log('S     mask        kept%   stof ms   webgpu ms  ratio   TFLOP/s  kernel     diff(peer)  diff(f64)');
for (const S of SEQ) {
  const n = B * H * S * D;
  const base = {S, q: seeded(n, S + 1), k: seeded(n, S + 2), v: seeded(n, S + 3)};
  const scale = 1 / Math.sqrt(D);
  for (const kind of MASKS) {
    if ((performance.now() - started) / 1000 > budgetS) {
      report.skipped.push({S, mask: kind, why: `--budget-s ${budgetS} spent`});
      save();
      continue;
    }
    const x = {...base, mask: await maskValues(kind, S)};
    const kept = keptPairs(x.mask, S);
    const row = {case: `attention B=${B} H=${H} S=${S} D=${D} ${kind}`, S, mask: kind, stof_ms: null, peers: {[PEER]: null},
                 ratio: null, tflops: null, kept_pairs: kept, density: kept / (S * S), max_rel_diff: null,
                 max_rel_diff_ref64: null, peer_max_rel_diff_ref64: null, kernel: null, stof_dispatches: null, stof_groups: null};
    let peerValues = null;
    // The peer: the unfused chain on tfjs-backend-webgpu, where its S×S scores fit in one binding.
    const scoreBytes = B * H * S * S * 4;
    if (scoreBytes > bindingLimit) {
      row.peer_notes = {[PEER]: `not runnable: its scores [${B},${H},${S},${S}] float32 take ${scoreBytes} bytes (${(scoreBytes / 2 ** 30).toFixed(2)} GiB) ` +
                                `in one buffer, over the device's maxStorageBufferBindingSize ${bindingLimit} (${(bindingLimit / 2 ** 30).toFixed(2)} GiB)`};
    } else {
      await tf.setBackend('webgpu');
      const t = upload(x);
      device.pushErrorScope('out-of-memory');
      device.pushErrorScope('validation');
      try {
        const once = chain(t, scale);
        peerValues = await once.data();
        once.dispose();
        row.peers[PEER] = await timeCalls(() => chain(t, scale), {trials: quick ? 3 : 7});
        row.peer_max_rel_diff_ref64 = refDiff(x, peerValues, scale);
      } catch (e) {
        row.peer_notes = {[PEER]: `failed: ${String(e.message ?? e).slice(0, 200)}`};
      }
      const errors = [await device.popErrorScope(), await device.popErrorScope()].filter(e => e != null);
      if (errors.length > 0) {
        row.peers[PEER] = null;
        peerValues = null;
        row.peer_notes = {[PEER]: `GPU error: ${errors.map(e => e.message).join('; ').slice(0, 200)}`};
      }
      tf.dispose(Object.values(t));
    }
    // 'stof'
    await tf.setBackend('stof');
    const t = upload(x);
    try {
      const profiled = await stof.profile(() => chain(t, scale));
      const values = await profiled.result.data();
      profiled.result.dispose();
      const attn = profiled.groups.filter(g => g.template === 'attention');
      row.kernel = kernelOf(attn[0]);
      row.stof_dispatches = profiled.dispatches;
      row.stof_groups = profiled.groups.map(g => g.template);
      row.max_rel_diff_ref64 = refDiff(x, values, scale);
      if (peerValues != null) row.max_rel_diff = maxRelDiff(values, peerValues);
      row.stof_ms = await timeCalls(() => chain(t, scale), {trials: quick ? 3 : 7});
      if (row.peers[PEER] != null) row.ratio = row.peers[PEER] / row.stof_ms;
      row.tflops = 4 * B * H * D * kept / (row.stof_ms * 1e9);
    } catch (e) {
      row.stof_error = String(e.stack ?? e).slice(0, 400);
      console.log(`${S} ${kind}: stof failed: ${row.stof_error}`);
    }
    tf.dispose(Object.values(t));
    report.rows.push(row);
    save();
    console.log(`${String(S).padEnd(5)} ${kind.padEnd(11)} ${(100 * row.density).toFixed(1).padStart(5)}  ${fmt(row.stof_ms).padStart(8)}  ` +
                `${fmt(row.peers[PEER]).padStart(9)}  ${row.ratio == null ? '   -  ' : `${row.ratio.toFixed(2)}x`.padStart(6)}  ` +
                `${fmt(row.tflops, 2).padStart(7)}  ${String(row.kernel).padEnd(10)} ${row.max_rel_diff == null ? '     -    ' : row.max_rel_diff.toExponential(1).padStart(10)}  ` +
                `${row.max_rel_diff_ref64 == null ? '-' : row.max_rel_diff_ref64.toExponential(1)}${row.peer_notes ? `  (${PEER} ${row.peer_notes[PEER]})` : ''}`);
  }
}
tf.env().set('STOF_ATTENTION', 'auto');
save();
console.log(`wrote ${outPath}`);
