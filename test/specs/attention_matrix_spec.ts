// Issue #5, the attention test matrix: every mask family × sequence lengths × head dims, with each
// attention kernel forced (flag STOF_ATTENTION: 'dense', 'blockwise', 'rowwise') and auto-chosen, in both spellings
// (the chain written in tf.* ops, and the explicit attention() op), against the unfused chain on
// tfjs-backend-cpu: |a - b| <= 1e-4 · max(1, |b|), NaN exactly where the reference has NaN (fully
// masked rows by -Infinity); a fully masked row by -1e9 is a uniform row on both. Also: profile()
// shows one attention launch and no buffer of Sq×Sk elements per head; bad input names the shapes.
//
// Sampling (deterministic; the full cross product would compile hundreds of shaders, and one WGSL
// compile takes seconds on SwiftShader, so cases share shaders: a shader depends on the shapes and
// the spelling of the mask, not on the mask's values, so mask families that share a shape share it):
// - For each S in {1, 7, 64, 127, 512, 1000} (Sq = Sk = S), three groups:
//     the seven [.., Sq, Sk] families (causal, sliding, dilated, Longformer, BigBird, random block-
//     sparse, fully masked rows) at head dim D2[S], and padding ([B,1,1,Sk], random lengths, some 0)
//     and no mask at head dim Dp[S]. D2 and Dp each take every head dim within the first four S, so
//     every family meets every S and every head dim. The mask's spelling (boolean by select, boolean
//     as a -Infinity bias, additive float with -Infinity or -1e9, the BERT (1 - m)·-10000 bias) and
//     its shape ([Sq,Sk], [B,1,Sq,Sk], [B,H,Sq,Sk]) rotate over the groups.
// - Sq ≠ Sk groups: decode (Sq = 1, Sk = 1000 / 127 / 64), Sk = 1 (Sq = 64 / 127), and 7×512,
//   512×64, 1000×127.
// - Each (group, family) runs the reference once on 'cpu', then on 'stof' with each kernel forced
//   and 'auto', each in both spellings; where Sq or Sk >= 512 each kernel runs one spelling,
//   alternating by family so that both spellings meet every kernel there too, and auto runs for
//   every other family. Every run must be one attention launch, and a forced kernel must be the
//   one that ran ('blockwise' only where there is a mask).
// B = H = 2 for S <= 127 (so no output is under tfjs-backend-webgpu's 128-element CPU-forward size),
// B = H = 1 for S >= 512. Inputs are seeded values in [-1, 1), copied across as arrays.
import * as tf from '@tensorflow/tfjs-core';

import {ATTENTION_CHOICES} from '../../src/backend/flags';
import {attention, backendInfo, GroupReport, profile, ProfileReport, StofBackend} from '../../src/public_api';

import {seededValues} from './util';

const expectedBase = (globalThis as unknown as {__stofExpectedBase?: 'webgpu'|'cpu'}).__stofExpectedBase;

/**
 * Field of an attention GroupReport naming the kernel that ran (one of the STOF_ATTENTION choices),
 * once profile() reports it; until then the spec reads the last plan (an attention kernel with a
 * mask tile format is 'blockwise').
 */
const RTOL = 1e-4;

/** The STOF_ATTENTION values: each forced kernel, then 'auto'. */
type Kernel = typeof ATTENTION_CHOICES[number];
const FORCED = ATTENTION_CHOICES.filter(c => c !== 'auto');
const KERNELS: Kernel[] = [...FORCED, 'auto'];
type Family = 'none'|'padding'|'causal'|'sliding'|'dilated'|'longformer'|'bigbird'|'blocksparse'|'fullyMasked';
const MASK_FAMILIES: Family[] = ['causal', 'sliding', 'dilated', 'longformer', 'bigbird', 'blocksparse', 'fullyMasked'];
/**
 * How the mask enters the scores:
 *   select    boolean; chain: where(broadcastTo(mask, scores.shape), scores, fill(-Infinity))
 *   bool      boolean; chain: scores + where(mask, 0, -Infinity) on the mask's shape (as attention() does)
 *   additive  float32 bias: 0 where visible, `neg` (-Infinity or -1e9) elsewhere
 *   bert      padding only: float32 [B, Sk] of 1/0; chain: scores + reshape((1 - m) · -10000, [B,1,1,Sk])
 */
type Rep = 'select'|'bool'|'additive'|'bert';
/** Shape of a [.., Sq, Sk] mask: one for all, per batch, or per batch and head. */
type MaskLayout = '2d'|'b1'|'bh';

interface Case {
  name: string;
  B: number; H: number; Sq: number; Sk: number; D: number;
  family: Family;
  rep: Rep;
  layout: MaskLayout;
  /** Value of a masked key in an additive mask. */
  neg: number;
  /** Scale given to attention(); undefined: its default 1/sqrt(D). */
  scale?: number;
  lengths?: number[];
  seed: number;
  /** Run each kernel in one spelling only (long sequences). */
  oneSpelling: boolean;
}

// ---- masks ---------------------------------------------------------------------------------------

function lcg(seed: number) {
  let s = (seed * 2654435761 + 12345) >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 32; };
}

/**
 * Visibility of key j for query i, for one [Sq, Sk] slice. Queries sit at the end of the keys
 * (position p = i + Sk - Sq), as in decoding with a cache; the pattern is over positions.
 */
function slicePattern(family: Family, Sq: number, Sk: number, seed: number, slice: number): (i: number, j: number) => boolean {
  const off = Sk - Sq;
  const rnd = lcg(seed * 31 + slice * 7 + 1);
  switch (family) {
    case 'causal': return (i, j) => j <= i + off;
    case 'sliding': {
      const w = Math.max(1, Math.round(Sk / 16));
      return (i, j) => Math.abs(i + off - j) <= w;
    }
    case 'dilated': {
      const dil = Sk >= 64 ? 3 : 2, w = Math.max(1, Math.round(Sk / 24));
      return (i, j) => Math.abs(i + off - j) <= w * dil && (i + off - j) % dil === 0;
    }
    case 'longformer': {
      const w = Math.max(1, Math.round(Sk / 32));
      const global = new Set([0, Math.floor(Sk / 3)]);
      return (i, j) => Math.abs(i + off - j) <= w || global.has(i + off) || global.has(j);
    }
    case 'bigbird': {  // window of 3 blocks, the first block global, 2 random key blocks per query block
      const bs = Sk >= 256 ? 32 : Sk >= 32 ? 8 : 2;
      const nq = Math.ceil(Sq / bs), nk = Math.ceil(Sk / bs);
      const random = Array.from({length: nq}, () => [Math.floor(rnd() * nk), Math.floor(rnd() * nk)]);
      return (i, j) => {
        const p = i + off, kb = Math.floor(j / bs), pb = Math.floor(p / bs);
        return (p >= 0 && Math.abs(pb - kb) <= 1) || kb === 0 || (p >= 0 && pb === 0) || random[Math.floor(i / bs)].includes(kb);
      };
    }
    case 'blocksparse': {  // random blocks, density 0.3 (some query blocks see nothing)
      const bs = Sk >= 256 ? 32 : Sk >= 32 ? 16 : 2;
      const nq = Math.ceil(Sq / bs), nk = Math.ceil(Sk / bs);
      const keep = Array.from({length: nq * nk}, () => rnd() < 0.3);
      return (i, j) => keep[Math.floor(i / bs) * nk + Math.floor(j / bs)];
    }
    case 'fullyMasked': {  // random keys (0.6), and every third query row (the only row when Sq = 1) sees nothing
      const keep = Array.from({length: Sq * Sk}, () => rnd() < 0.6);
      return (i, j) => !(Sq === 1 || (i + slice) % 3 === 1) && keep[i * Sk + j];
    }
    default: throw new Error(`no slice pattern for ${family}`);
  }
}

/** The mask of a case as 1/0 values and its shape; null for no mask. */
function maskOf(c: Case): {shape: number[], keep: Uint8Array}|null {
  const {B, H, Sq, Sk} = c;
  if (c.family === 'none') return null;
  if (c.family === 'padding') {
    const keep = new Uint8Array(B * Sk);
    c.lengths!.forEach((l, b) => keep.fill(1, b * Sk, b * Sk + l));
    return {shape: c.rep === 'bert' ? [B, Sk] : [B, 1, 1, Sk], keep};
  }
  const slices = c.layout === '2d' ? 1 : c.layout === 'b1' ? B : B * H;
  const shape = c.layout === '2d' ? [Sq, Sk] : c.layout === 'b1' ? [B, 1, Sq, Sk] : [B, H, Sq, Sk];
  const keep = new Uint8Array(slices * Sq * Sk);
  for (let s = 0; s < slices; s++) {
    const visible = slicePattern(c.family, Sq, Sk, c.seed, s);
    for (let i = 0; i < Sq; i++) for (let j = 0; j < Sk; j++) keep[(s * Sq + i) * Sk + j] = visible(i, j) ? 1 : 0;
  }
  return {shape, keep};
}

// ---- the cases -----------------------------------------------------------------------------------

const SEQ = [1, 7, 64, 127, 512, 1000];
const D2 = [32, 64, 80, 128, 64, 32];   // head dim of the [.., Sq, Sk] families, by S
const DP = [128, 80, 32, 64, 32, 64];   // head dim of padding and no mask, by S
const REP2: Rep[] = ['bool', 'additive', 'select', 'bool', 'additive', 'bool'];
const LAYOUT2: MaskLayout[] = ['2d', '2d', 'b1', 'bh', '2d', '2d'];
const REPP: Rep[] = ['bool', 'additive', 'bert', 'additive', 'bool', 'additive'];

interface Group { title: string; cases: Case[] }

function makeGroups(): Group[] {
  const groups: Group[] = [];
  let seed = 1;
  const add = (title: string, base: Omit<Case, 'name'|'family'|'seed'|'neg'|'lengths'> & {neg?: number}, families: Family[],
               lengths?: (g: () => number) => number[]) => {
    const g = groups.length;
    groups.push({title, cases: families.map((family, f) => {
      const s = seed++;
      const rnd = lcg(s);
      const neg = base.neg ?? ((f + g) % 2 === 0 ? -Infinity : -1e9), lens = lengths?.(rnd);
      const rep = base.rep === 'additive' ? `additive(${neg})` : base.rep;
      const name = family === 'none' ? 'none' : family === 'padding' ? `padding ${rep} lengths [${lens}]` : `${family} ${rep} ${base.layout}`;
      return {...base, family, seed: s, neg, lengths: lens, name};
    })});
  };
  SEQ.forEach((S, s) => {
    const [B, H] = S <= 127 ? [2, 2] : [1, 1];
    const oneSpelling = S >= 512;
    const scale = s % 2 === 1 ? 2 / Math.sqrt(D2[s]) : undefined;
    add(`S=${S} D=${D2[s]} masks [${LAYOUT2[s]}] ${REP2[s]}`,
        {B, H, Sq: S, Sk: S, D: D2[s], rep: REP2[s], layout: LAYOUT2[s], scale, oneSpelling}, MASK_FAMILIES);
    const rep = REPP[s];
    // Random lengths; at S = 1 and S = 127 the last batch is all padding (NaN rows by -Infinity, uniform rows by -1e9).
    add(`S=${S} D=${DP[s]} padding ${rep}`, {B, H, Sq: S, Sk: S, D: DP[s], rep, layout: '2d', oneSpelling, neg: s === 3 ? -1e9 : -Infinity},
        ['padding'], rnd => Array.from({length: B}, (_, b) =>
            rep === 'bert' ? 1 + Math.floor(rnd() * S) : b === B - 1 && (s === 0 || s === 3) ? 0 : Math.floor(rnd() * (S + 1))));
    add(`S=${S} D=${DP[s]} no mask`, {B, H, Sq: S, Sk: S, D: DP[s], rep: 'additive', layout: '2d', oneSpelling}, ['none']);
  });
  const x = (Sq: number, Sk: number, D: number, B: number, H: number, rep: Rep, families: Family[], lengths?: number[]) =>
      add(`Sq=${Sq} Sk=${Sk} D=${D} ${families.includes('padding') ? `padding ${rep}` : families.includes('none') ? 'no mask' : `masks ${rep}`}`,
          {B, H, Sq, Sk, D, rep, layout: '2d', oneSpelling: Sq * Sk >= 512 * 64 || Sk >= 512}, families, lengths && (() => lengths));
  x(1, 1000, 128, 1, 2, 'additive', ['causal', 'sliding', 'longformer', 'fullyMasked']);  // decode
  x(1, 127, 80, 2, 2, 'bool', ['padding'], [0, 77]);
  x(1, 64, 32, 2, 2, 'additive', ['none']);
  x(64, 1, 64, 2, 2, 'bool', ['causal', 'sliding', 'fullyMasked']);                       // one key
  x(127, 1, 32, 2, 2, 'additive', ['padding'], [1, 0]);
  x(7, 512, 64, 2, 2, 'select', ['dilated', 'bigbird', 'blocksparse']);
  x(512, 64, 128, 1, 2, 'additive', ['causal', 'dilated', 'fullyMasked']);
  x(1000, 127, 80, 1, 1, 'bool', ['sliding', 'longformer', 'bigbird']);
  return groups;
}

// ---- running a case --------------------------------------------------------------------------------

interface Inputs { q: Float32Array; k: Float32Array; v: Float32Array; mask: {shape: number[], keep: Uint8Array}|null }

function inputsOf(c: Case): Inputs {
  const {B, H, Sq, Sk, D} = c;
  return {q: seededValues(B * H * Sq * D, c.seed * 3), k: seededValues(B * H * Sk * D, c.seed * 3 + 1),
          v: seededValues(B * H * Sk * D, c.seed * 3 + 2), mask: maskOf(c)};
}

/** The inputs as tensors on the current backend. */
function tensorsOf(c: Case, x: Inputs) {
  const {B, H, Sq, Sk, D} = c;
  let mask: tf.Tensor|null = null;
  if (x.mask != null) {
    const {shape, keep} = x.mask;
    if (c.rep === 'select' || c.rep === 'bool') mask = tf.tensor(keep, shape, 'bool');
    else if (c.rep === 'bert') mask = tf.tensor(Float32Array.from(keep), shape);
    else mask = tf.tensor(Float32Array.from(keep, m => (m ? 0 : c.neg)), shape);
  }
  return {q: tf.tensor(x.q, [B, H, Sq, D]), k: tf.tensor(x.k, [B, H, Sk, D]), v: tf.tensor(x.v, [B, H, Sk, D]), mask};
}

type Spelling = 'chain'|'attention()';

/** softmax(scale · q kᵀ + mask) v, written as tf.* code does, or as the explicit op. */
function run(c: Case, spelling: Spelling, t: ReturnType<typeof tensorsOf>): tf.Tensor {
  const {q, k, v, mask} = t;
  return tf.tidy(() => {
    const bert = () => tf.reshape(tf.mul(tf.sub(1, mask!), -10000), [c.B, 1, 1, c.Sk]);
    if (spelling === 'attention()') {
      return attention(q, k, v, {mask: mask == null ? undefined : c.rep === 'bert' ? bert() : mask, scale: c.scale});
    }
    let s = tf.mul(tf.matMul(q, k, false, true), c.scale ?? 1 / Math.sqrt(c.D));
    if (mask != null) {
      switch (c.rep) {
        case 'select': s = tf.where(tf.broadcastTo(mask, s.shape), s, tf.fill(s.shape, -Infinity)); break;
        case 'bool': s = tf.add(s, tf.where(mask, tf.zeros(mask.shape), tf.fill(mask.shape, -Infinity))); break;
        case 'additive': s = tf.add(s, mask); break;
        case 'bert': s = tf.add(s, bert()); break;
      }
    }
    return tf.matMul(tf.softmax(s), v);
  });
}

/** Worst relative error and NaN mismatches of `actual` against `expected`, as text ('' when within tolerance). */
function mismatch(actual: ArrayLike<number>, expected: ArrayLike<number>): string {
  if (actual.length !== expected.length) return `length ${actual.length} vs ${expected.length}`;
  let worst = 0, at = -1, nanMiss = 0, firstNan = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], b = expected[i];
    if (Number.isNaN(a) || Number.isNaN(b)) {
      if (Number.isNaN(a) !== Number.isNaN(b)) { nanMiss++; if (firstNan < 0) firstNan = i; }
      continue;
    }
    const err = Math.abs(a - b) / Math.max(1, Math.abs(b));
    if (!(err <= worst)) { worst = err; at = i; }
  }
  const out: string[] = [];
  if (nanMiss > 0) out.push(`${nanMiss} NaN mismatches (first at ${firstNan}: ${actual[firstNan]} vs ${expected[firstNan]})`);
  if (!(worst <= RTOL)) out.push(`worst rel err ${worst.toExponential(2)} at ${at}: ${actual[at]} vs ${expected[at]}`);
  return out.join('; ');
}

/** (kernel, spelling) pairs a case runs. */
function runsOf(c: Case, f: number): Array<[Kernel, Spelling]> {
  const spellings: Spelling[] = ['chain', 'attention()'];
  if (!c.oneSpelling) return KERNELS.flatMap(k => spellings.map(s => [k, s] as [Kernel, Spelling]));
  return KERNELS.filter(k => k !== 'auto' || f % 2 === 0).map((k, i) => [k, spellings[(f + i) % 2]]);
}

/** The kernel an attention launch ran, as profile() reports it. */
function kernelOf(g: GroupReport|undefined): unknown {
  return g?.variant;
}

/**
 * A forced kernel is the one that ran; it skips tiles (reported 'blockwise' / 'rowwise') where there
 * is a mask and the executor can (WebGPU), else it visits every tile ('dense' / 'rowwise-dense').
 */
function expectKernel(kernel: Kernel, ran: unknown, hasMask: boolean, what: string) {
  if (kernel === 'auto') return;
  const skips = hasMask && backendInfo().base === 'webgpu';
  const expected = {dense: 'dense', blockwise: skips ? 'blockwise' : 'dense', rowwise: skips ? 'rowwise' : 'rowwise-dense'}[kernel];
  expect(ran).withContext(`${what}: kernel that ran`).toBe(expected);
}

async function checkCase(c: Case, f: number) {
  const x = inputsOf(c);
  await tf.setBackend('cpu');
  const ref = tensorsOf(c, x);
  const refOut = run(c, 'chain', ref);
  const expected = await refOut.data() as Float32Array;
  tf.dispose([refOut, ...Object.values(ref).filter((t): t is tf.Tensor => t != null)]);
  await tf.setBackend('stof');
  const t = tensorsOf(c, x);
  try {
    for (const [kernel, spelling] of runsOf(c, f)) {
      tf.env().set('STOF_ATTENTION', kernel);
      const what = `${kernel} ${spelling} B=${c.B} H=${c.H} Sq=${c.Sq} Sk=${c.Sk} D=${c.D} ${c.name}`;
      const report = await profile(() => run(c, spelling, t));
      const actual = await report.result.data() as Float32Array;
      report.result.dispose();
      expect(mismatch(actual, expected)).withContext(what).toBe('');
      const launches = report.groups.filter(g => g.template === 'attention');
      expect(launches.length).withContext(`${what}: attention launches (${report.groups.map(g => g.template)})`).toBe(1);
      expectKernel(kernel, kernelOf(launches[0]), c.family !== 'none', what);
    }
  } finally {
    tf.env().set('STOF_ATTENTION', 'auto');
    tf.dispose(Object.values(t).filter((v): v is tf.Tensor => v != null));
  }
}

// ---- specs -----------------------------------------------------------------------------------------

describe('attention matrix (issue #5)', () => {
  beforeAll(async () => {
    tf.engine().reset();
    if (expectedBase != null) tf.env().set('STOF_BASE', expectedBase);
    expect(await tf.setBackend('stof')).toBe(true);
  });
  afterAll(() => {
    tf.env().set('STOF_ATTENTION', 'auto');
    tf.env().set('STOF_BASE', 'auto');
  });

  for (const group of makeGroups()) {
    describe(group.title, () => {
      group.cases.forEach((c, f) => {
        it(`${c.name}: ${KERNELS.join(', ')} equal the chain on tfjs-backend-cpu`, () => checkCase(c, f), 180000);
      });
    });
  }

  describe('profile()', () => {
    // B = 1, H = 3, S = 200, D = 64: the scores of all heads (120000 floats) are larger than any
    // input, mask or output, so a buffer that big can only be the S×S scores.
    const [B, H, S, D] = [1, 3, 200, 64];
    const spellings: Array<[string, Case]> = [
      ['attention() with a boolean Longformer mask [S,S]', {name: 'longformer bool', B, H, Sq: S, Sk: S, D, family: 'longformer', rep: 'bool',
        layout: '2d', neg: -Infinity, seed: 901, oneSpelling: false}],
      ['the chain with the BERT padding bias [B,1,1,S]', {name: 'padding bert', B, H, Sq: S, Sk: S, D, family: 'padding', rep: 'bert',
        layout: '2d', neg: -Infinity, seed: 902, lengths: [150], oneSpelling: false}],
    ];
    // One case per forced kernel (each compile costs seconds on SwiftShader), the spellings alternating.
    FORCED.forEach((kernel, n) => {
      const [title, c] = spellings[(n + 1) % spellings.length];
      it(`${kernel}, ${title}: one attention launch, no buffer of Sq×Sk per head`, async () => {
        await tf.setBackend('stof');
        const backend = tf.backend() as StofBackend;
        const onGpu = backendInfo().base === 'webgpu';
        const t = tensorsOf(c, inputsOf(c));
        // GPU only: the largest buffer the base acquires while the call runs (pooled or new).
        type Pool = {acquireBuffer: (size: number, ...rest: unknown[]) => unknown};
        const pool = onGpu ? (backend.base as unknown as {bufferManager: Pool}).bufferManager : null;
        let largest = 0;
        if (pool != null) {
          const acquire = pool.acquireBuffer;
          pool.acquireBuffer = function(this: Pool, size: number, ...rest: unknown[]) {
            largest = Math.max(largest, size);
            return acquire.call(this, size, ...rest);
          };
        }
        tf.env().set('STOF_ATTENTION', kernel);
        let report: ProfileReport & {result: tf.Tensor};
        try {
          report = await profile(() => run(c, c.rep === 'bert' ? 'chain' : 'attention()', t));
        } finally {
          tf.env().set('STOF_ATTENTION', 'auto');
          if (pool != null) delete (pool as Partial<Pool>).acquireBuffer;  // the prototype's again
        }
        const plan = backend.lastPlan;
        report.result.dispose();
        tf.dispose(Object.values(t).filter((v): v is tf.Tensor => v != null));
        const scores = B * H * S * S;
        const attn = report.groups.filter(g => g.template === 'attention');
        expect(attn.length).withContext(`groups: ${report.groups.map(g => g.template)}`).toBe(1);
        expectKernel(kernel, kernelOf(attn[0]), true, kernel);
        expect(report.fallbacks).toEqual([]);
        for (const name of ['BatchMatMul', '_FusedMatMul', 'Softmax', 'Exp', 'Max', 'Sum', 'Tile']) {
          expect(report.baseKernels[name]).withContext(`base kernel ${name}`).toBeUndefined();
        }
        // Output shapes of the fused groups: from the report where it has them, else the last plan.
        const outputs = report.groups.some(g => (g as {output?: unknown}).output != null) ?
            report.groups.map(g => (g as unknown as {output: {shape: number[]}}).output.shape) : plan.map(k => k.output.shape);
        for (const shape of outputs) {
          expect(shape.reduce((a, b) => a * b, 1)).withContext(`a group's output [${shape}]`).toBeLessThan(scores);
        }
        if (pool != null) expect(largest).withContext('bytes of the largest buffer acquired').toBeLessThan(scores * 4);
      }, 180000);
    });
  });

  describe('bad input names the shapes', () => {
    beforeAll(async () => { await tf.setBackend('stof'); });
    it('mismatched shapes', () => {
      const q = tf.zeros([2, 5, 8]), k = tf.zeros([2, 6, 8]), v = tf.zeros([2, 6, 4]);
      expect(() => tf.tidy(() => attention(q, tf.zeros([2, 6, 7]), v))).toThrowError(/head dims differ.*q \[2,5,8\], k \[2,6,7\], v \[2,6,4\]/);
      expect(() => tf.tidy(() => attention(q, k, tf.zeros([2, 7, 4])))).toThrowError(/k and v lengths differ.*k \[2,6,8\], v \[2,7,4\]/);
      expect(() => tf.tidy(() => attention(q, tf.zeros([3, 6, 8]), tf.zeros([3, 6, 4])))).toThrowError(/batch dims do not broadcast.*q \[2,5,8\], k \[3,6,8\]/);
      expect(() => tf.tidy(() => attention(tf.zeros([8]), k, v))).toThrowError(/rank >= 2.*q \[8\]/);
      tf.dispose([q, k, v]);
    });
    it('a mask that does not broadcast to the scores', () => {
      const q = tf.zeros([2, 5, 8]), k = tf.zeros([2, 6, 8]), v = tf.zeros([2, 6, 4]);
      expect(() => tf.tidy(() => attention(q, k, v, {mask: tf.zeros([3, 5, 6])}))).toThrowError(/mask \[3,5,6\] does not broadcast to the scores \[2,5,6\]/);
      expect(() => tf.tidy(() => attention(q, k, v, {mask: tf.ones([5, 7], 'bool')}))).toThrowError(/mask \[5,7\] does not broadcast to the scores \[2,5,6\]/);
      expect(() => tf.tidy(() => attention(q, k, v, {mask: tf.zeros([4, 6])}))).toThrowError(/mask \[4,6\] does not broadcast to the scores \[2,5,6\]/);
      expect(() => tf.tidy(() => attention(q, k, v, {mask: tf.zeros([1, 2, 5, 6])}))).toThrowError(/mask \[1,2,5,6\] does not broadcast to the scores \[2,5,6\]/);
      tf.dispose([q, k, v]);
    });
    it('non-float dtypes', () => {
      const q = tf.zeros([2, 5, 8]), k = tf.zeros([2, 6, 8]), v = tf.zeros([2, 6, 4]);
      expect(() => tf.tidy(() => attention(tf.zeros([2, 5, 8], 'int32'), k, v))).toThrowError(/q must be float32, got int32.*q \[2,5,8\]/);
      expect(() => tf.tidy(() => attention(q, tf.zeros([2, 6, 8], 'bool'), v))).toThrowError(/k must be float32, got bool.*k \[2,6,8\]/);
      expect(() => tf.tidy(() => attention(q, k, tf.zeros([2, 6, 4], 'int32')))).toThrowError(/v must be float32, got int32.*v \[2,6,4\]/);
      expect(() => tf.tidy(() => attention(q, k, v, {mask: tf.zeros([5, 6], 'int32')}))).toThrowError(/mask must be bool or float32, got int32.*\[5,6\]/);
      tf.dispose([q, k, v]);
    });
  });
});
