// Masked attention on tensor cores (precision 'fp16'): the FlashAttention-2 scheme with
// mma.sync.m16n8k16 (fp16 inputs, fp32 accumulation), from the same AttentionKernel and tile format
// as the fp32 kernel (attention_cuda.ts), with the same rules:
//   - a CTA of W = R/16 warps takes R query rows of one batch entry (block-sparse: R = min(Br, 64)
//     rows of one query block of the format; dense: 128); each warp owns 16 rows (its Q fragments
//     in registers, converted fp32 -> fp16 once);
//   - K and V stream through shared memory (fp16, rows padded by 8 halves: ldmatrix without bank
//     conflicts) in chunks of KC keys; the next chunk's fp32 values are loaded into registers while
//     the current one is computed (cp.async cannot convert), then converted and stored. Staged
//     (stagedOf): Q, K and V are first packed to fp16 by three small kernels, and K/V chunks go
//     global -> shared by cp.async into two buffers; with the registers that frees, a warp may own
//     two 16-row tiles (mtilesOf), so each K/V fragment feeds two MMAs;
//   - S = Q·Kᵀ on tensor cores, then the score expression (`k.score`, the same Expr the fp32 kernel
//     emits: scale, the mask term read where the tile is partial, `scoreFull` without loads where it
//     is full) per element of the accumulator fragment, keys past Sk -> -inf. Where the score
//     without its mask term is a scale of acc, the softmax runs on acc itself (the scale folds into
//     exp2's multiply-add): full tiles cost nothing per element, partial tiles of a two-valued mask
//     (TILE_BITS) take one bit per score from the analysis' bitmap, other partial tiles evaluate
//     the expression and map it back to acc's units;
//   - online softmax in fp32 registers: each thread holds two rows (g and g + 8 of its warp's 16),
//     the row maximum meets across the quad through two shuffles (NaN-propagating max_, as the fp32
//     kernel), partial row sums stay per thread until the end; a row with only -inf so far gets no
//     weight (its maximum is taken as 0, so exp(-inf - 0) = 0 and no -inf - -inf = NaN appears), and
//     a row that never sees a finite score ends 0/0 = NaN, as the unfused chain gives;
//   - P (fp32 -> fp16, the accumulator layout is the A-fragment layout) times V (ldmatrix.trans) on
//     tensor cores into O (fp32 registers), written fp32 after dividing by the row sum.
// Block-sparse: the CTA walks the tile list the mask analysis made for its query block (empty tiles
// are not listed; full tiles compute `scoreFull`, no mask loads); a query block with a row that keeps
// no key is listed dense (every tile partial) by the analysis, so such rows end uniform or NaN as in
// the fp32 kernel. Sizes: D and Dv multiples of 16 up to 128 (fragments of 16), Br a multiple of 16
// (at most 64 rows per CTA; a larger Br that is a multiple of 64 takes several CTAs per query
// block), Bc a multiple of 16 where the kernel is block-sparse; anything else runs the fp32 kernel
// (attentionMmaQualifies says why). fp16 inputs: |q|, |k|, |v| above 65504 overflow (inf), and
// values below 6e-8 flush to 0; the products accumulate in fp32.
import {AccessMap, contiguousStrides, sizeOf} from '../../fusion/access';
import {affineInAcc, Expr} from '../../fusion/expr';
import {AttentionKernel} from '../../fusion/planner';

import {formatWords, maskBits, TILE_BITS, TILE_FULL} from '../sparse/mask_format';
import {checkSizes, coordLines, CudaSource, emitter, indent, intBuffer, signature, slotsOf, store, unit} from './cuda_common';
import {f32c, offsetCode} from './cuda_expr';

/** Query rows per CTA of 16-row warps at most (4 warps), except the 8-warp CTAs of head dims up to 64. */
const MAX_ROWS = 64;
/** Static shared memory a CTA may use (bytes). */
const SHARED_BYTES = 48 * 1024;
/** Halves of padding per shared K/V row: rows 16 bytes apart modulo 128, so ldmatrix has no bank conflicts. */
const PAD = 8;

/** Tuning of the tensor-core kernel (defaults: chosen from the shape). */
export interface MmaOptions {
  /** Keys per K/V chunk: 16, 32 or 64 (a divisor of Bc where block-sparse). */
  keys?: number;
  /** Query rows per CTA of the dense (unmasked) kernel: 16, 32, 64 or 128 (block-sparse: min(Br, 64)). */
  rows?: number;
  /** CTAs per SM to fit (__launch_bounds__: registers capped at 64K / (threads · minBlocks)); 0: none; default minBlocksOf. */
  minBlocks?: number;
  /** Q, K and V packed to fp16 by separate kernels first (stagedOf), K/V then streamed with cp.async; default by shape. */
  staged?: boolean;
  /** 16-row tiles per warp (1 or 2): with 2, each K/V fragment loaded from shared memory feeds two MMAs. */
  mtiles?: number;
}

/**
 * Whether Q, K and V go through fp16 copies first (packHalf), so that K/V stream into double-buffered
 * shared memory by cp.async without registers and are converted once instead of per CTA. Default:
 * the dense kernel from S = 2048 with head dims up to 64 (as measured), with two row tiles per warp
 * (mtilesOf). H100, B=8, H=12, D=64 (bench/cuda_attention.mjs --staging): dense S=4096 1.61 ms
 * against 1.86 converting per CTA, S=2048 0.476 against 0.486; S <= 1024 slower (the packing
 * passes, 6 bytes per element); block-sparse plans mixed (S=4096 padding and causal 7-12% faster;
 * sliding, dilated, Longformer and BigBird 6-28% slower), so they convert per CTA.
 */
function stagedOf(k: AttentionKernel, o: MmaOptions): boolean {
  return o.staged ?? (!k.mask && k.D <= 64 && k.Dv <= 64 && k.Sq >= STAGED_MIN_S && k.Sk >= STAGED_MIN_S);
}
/** Sequence length (queries and keys) from which the dense kernel is staged by default. */
const STAGED_MIN_S = 2048;
/**
 * 16-row tiles per warp: 2 for the staged dense kernel (each K/V fragment read from shared memory
 * feeds two MMAs; the registers cp.async frees hold the second tile: S=4096 1.61 against 1.82 ms),
 * else 1 (block-sparse CTAs of 64 rows would have two warps: 1.1-1.8x slower).
 */
function mtilesOf(k: AttentionKernel, o: MmaOptions): number {
  return o.mtiles ?? (!k.mask && stagedOf(k, o) ? 2 : 1);
}

/**
 * Rows per CTA. Dense (no format): 128 (8 warps share each K/V chunk: half the loads and
 * conversions per row; H100: 1.84 against 2.07 ms at S = 4096, D = 64) where the plan has CUDA's
 * tiles (Br >= 64) and D, Dv <= 64 (larger head dims would spill at 128 registers), 64 for larger
 * heads, else Br (the planner's small dense tiles). Block-sparse: within the format's query blocks,
 * 128 where they have 128 rows or more and D, Dv <= 64 (as dense), else min(Br, 64).
 */
function rowsOf(k: AttentionKernel, o: MmaOptions): number {
  if (k.mask) return k.Br >= 2 * MAX_ROWS && k.D <= 64 && k.Dv <= 64 ? 2 * MAX_ROWS : Math.min(k.Br, MAX_ROWS);
  if (o.rows != null) return o.rows;
  if (k.Br >= MAX_ROWS) return k.D <= 64 && k.Dv <= 64 ? 2 * MAX_ROWS : MAX_ROWS;
  return k.Br % 16 === 0 ? k.Br : MAX_ROWS;
}

/**
 * CTAs per SM the kernel is compiled for (__launch_bounds__) unless the options say: 4 for the
 * block-sparse kernel with head dims up to 64 (128 registers, a few spilled: 12 -> 16 warps per SM;
 * H100, S = 4096: dilated 1.33 -> 1.09 ms, padding 1.91 -> 1.76), 2 for 128-row CTAs.
 */
function minBlocksOf(k: AttentionKernel, o: MmaOptions, T: number): number|undefined {
  if (o.minBlocks !== undefined) return o.minBlocks || undefined;
  if (mtilesOf(k, o) > 1) return undefined;
  if (k.mask && T === 128 && k.D <= 64 && k.Dv <= 64) return 4;
  if (T === 256 && k.D <= 64 && k.Dv <= 64) return 2;
  return undefined;
}

/** Why the tensor-core kernel cannot take `k` (the fp32 kernel runs it instead), or null when it can. */
export function attentionMmaUnsupported(k: AttentionKernel, o: MmaOptions = {}): string|null {
  const {D, Dv, Br, Bc, mask} = k;
  if (D % 16 !== 0 || Dv % 16 !== 0 || D < 16 || Dv < 16 || D > 128 || Dv > 128) return `head dims D = ${D}, Dv = ${Dv} are not multiples of 16 in 16..128`;
  const R = rowsOf(k, o), MT = mtilesOf(k, o);
  if (MT !== 1 && MT !== 2) return `row tiles per warp ${MT} not 1 or 2`;
  if (R % (16 * MT) !== 0) return `rows per CTA ${R} not a multiple of ${16 * MT} (${MT} row tiles per warp)`;
  if (mask && (R % 16 !== 0 || Br % R !== 0)) return `Br = ${Br} is not a multiple of 16 (or of 64 above 64)`;
  if (![16, 32, 64, 128].includes(R)) return `rows per CTA ${R} not 16, 32, 64 or 128`;
  if (mask && Bc % 16 !== 0) return `Bc = ${Bc} is not a multiple of 16`;
  if (o.keys != null && ![16, 32, 64].includes(o.keys)) return `keys per chunk ${o.keys} not 16, 32 or 64`;
  if (mmaParams(k, o) == null) return `K and V chunks${o.keys != null ? ` of ${o.keys} keys` : ''} do not fit shared memory (or do not divide Bc)`;
  return null;
}

export function attentionMmaQualifies(k: AttentionKernel, o: MmaOptions = {}): boolean {
  return attentionMmaUnsupported(k, o) == null;
}

interface MmaParams { R: number; MT: number; W: number; T: number; KC: number; prefetch: boolean; staged: boolean; }

/** Registers (per thread) the tensor-core kernel may plan for fragments and prefetched values. */
const REG_BUDGET = 120;

function mmaParams(k: AttentionKernel, o: MmaOptions): MmaParams|null {
  const {D, Dv, Bc, mask} = k;
  const keys = o.keys;
  const R = rowsOf(k, o), MT = mtilesOf(k, o), W = R / (16 * MT), T = 32 * W;
  const listBytes = mask ? 4 * (mask.nKT + 1) : 0;
  const staged = stagedOf(k, o), stages = staged ? 2 : 1;
  const fits = (kc: number) => stages * kc * (D + PAD + Dv + PAD) * 2 + listBytes <= SHARED_BYTES;
  const ok = (kc: number) => (!mask || Bc % kc === 0) && fits(kc);
  // Staged: no registers hold the next chunk (cp.async); the largest chunk that fits two stages.
  if (staged) {
    if (keys != null) return ok(keys) ? {R, MT, W, T, KC: keys, prefetch: false, staged} : null;
    for (const KC of [64, 32, 16]) if (ok(KC)) return {R, MT, W, T, KC, prefetch: false, staged};
    return null;
  }
  // Q fragments, O fragments, S fragments; the next chunk's K and V as fp32 while prefetching.
  const base = (kc: number) => MT * (D / 4 + Dv / 2 + kc / 2);
  const pf = (kc: number) => (kc * (D + Dv)) / T;
  // Keys per chunk: 32 where its next chunk can be prefetched into registers (64 measured slower on
  // the H100 at D = 64: more registers, fewer warps); else the largest that fits, loaded after the
  // chunk before is done.
  if (keys != null) return ok(keys) ? {R, MT, W, T, KC: keys, prefetch: base(keys) + pf(keys) <= 1.5 * REG_BUDGET, staged} : null;
  for (const KC of [32]) if (ok(KC) && base(KC) + pf(KC) <= REG_BUDGET) return {R, MT, W, T, KC, prefetch: true, staged};
  for (const KC of [64, 32, 16]) if (ok(KC) && (KC === 16 || base(KC) <= REG_BUDGET)) return {R, MT, W, T, KC, prefetch: false, staged};
  return null;
}

const range = (n: number) => Array.from({length: n}, (_, i) => i);

/** `op` over `xs` as a balanced tree of C expressions ('add': +, else a function name). */
function tree(op: string, xs: string[]): string {
  if (xs.length === 1) return xs[0];
  const h = Math.ceil(xs.length / 2), a = tree(op, xs.slice(0, h)), b = tree(op, xs.slice(h));
  return op === 'add' ? `(${a} + ${b})` : `${op}(${a}, ${b})`;
}

/** Whether `map` over [..., rows, d] reads (d, d + 1) as one aligned float2 for every even d. */
function pairAligned(m: AccessMap): boolean {
  const last = m.dims[m.dims.length - 1];
  if (last.length !== 1 || last[0].stride !== 1 || last[0].div !== 1 || last[0].mod !== 0) return false;
  return m.offset % 2 === 0 && m.dims.slice(0, -1).every(ts => ts.every(t => t.stride % 2 === 0));
}

/** Inline-PTX helpers of the tensor-core kernel (no cuda_fp16.h: NVRTC may not find it). */
const MMA_HELPERS = `
__device__ __forceinline__ unsigned smem_addr_(const void* p) {
  unsigned r;
  asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
  return r;
}
// Two floats as fp16x2 (round to nearest): lo in the low half.
__device__ __forceinline__ unsigned h2_(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
__device__ __forceinline__ float ex2_(float x) { float y; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y; }
__device__ __forceinline__ void ldsm4_(unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3, unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];" : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr) : "memory");
}
__device__ __forceinline__ void ldsm4t_(unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3, unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];" : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr) : "memory");
}
// 16 bytes global -> shared, asynchronously; src_bytes 0 fills zeros (keys past Sk).
__device__ __forceinline__ void cp16_(unsigned dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_commit_() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait_() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }
// D = A·B + D, A 16x16 (row), B 16x8 (col), fp16 in, fp32 accumulate.
__device__ __forceinline__ void mma_(float* c, const unsigned* a, unsigned b0, unsigned b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
`;

export function attentionMmaCuda(k: AttentionKernel, o: MmaOptions = {}): CudaSource {
  const why = attentionMmaUnsupported(k, o);
  if (why != null) throw new Error(`attentionMmaCuda: ${why} (use the fp32 kernel)`);
  const {batchShape, Sq, Sk, D, Dv, Br, Bc, mask} = k;
  checkSizes(k, [[...batchShape, Sq, Sk]]);
  const {R, MT, T, KC, prefetch, staged} = mmaParams(k, o)!;
  const minBlocks = minBlocksOf(k, o, T);
  // Block-sparse: CTAs of R rows within the format's query blocks of Br. Dense: query blocks of R.
  const QB = mask ? Br : R;
  const subBlocks = QB / R, batch = sizeOf(batchShape), qBlocks = Math.ceil(Sq / QB);
  const DP = D + PAD, DVP = Dv + PAD;     // halves per shared row
  const NT = KC / 8, KS = D / 16, NO = Dv / 8, KP = KC / 16;
  const PK = (KC * D) / 2 / T, PV = (KC * Dv) / 2 / T;  // fp32 pairs per thread per chunk (exact: KC·D/2 is a multiple of 128)
  const bc = batchShape.map((_, i) => `c${i}`);
  const leaf = (e: Expr) => (e.k === 'acc' ? 'acc' : null);
  const em = emitter(k, 'sx', [...bc, 'ii', 'j'], leaf);
  const sc = em.emit(k.score);
  // The softmax works on t, the score in units where score = A·t + B: where the score without its
  // mask term is affine in acc (a scale), t = acc, so full tiles need no work per element and the
  // scale folds into exp2's multiply-add (p = 2^(t·C - max·C), C = A·log2 e); partial tiles map
  // their score to t. Otherwise t is the score (A = 1, B = 0).
  const affine = mask ? (mask.scoreFull ? affineInAcc(mask.scoreFull) : null) : affineInAcc(k.score);
  const lin = affine && affine.a > 0 && Number.isFinite(affine.a) && Number.isFinite(affine.b) ? affine : null;
  const toT = (v: string) => (lin == null ? v : `(${lin.b === 0 ? v : `${v} - ${f32c(lin.b)}`}) * ${f32c(1 / lin.a)}`);
  const C = (lin?.a ?? 1) * Math.LOG2E;
  // Two-valued masks: partial tiles of kind TILE_BITS read one bit per score from the bitmap.
  const bits = mask ? maskBits(mask) : null;
  const KW = Math.max(1, KC / 32);  // bitmap words per row and chunk
  // Staged: Q, K and V come as fp16 copies (parameters qh, kh, vh); the score's loads (the mask) stay.
  const slots = (staged ? slotsOf([k.score]) : [k.qSlot, k.kSlot, k.vSlot, ...slotsOf([k.score])]).filter((x, i, a) => a.indexOf(x) === i);
  /** `x = ...; y = ...;` from elements (d, d + 1) of `map` (one float2 where aligned), `cond` false: zeros. */
  const pair = (slot: number, m: AccessMap, coords: string[], x: string, y: string, cond = '') => {
    const off = (d: string) => offsetCode(m, [...coords, d]);
    const z = (v: string) => (cond ? `${cond} ? ${v} : 0.0f` : v);
    if (pairAligned(m)) {
      const ld = `*reinterpret_cast<const float2*>(in${slot} + ${off('d')})`;
      return `{ float2 v2_; ${cond ? `v2_.x = 0.0f; v2_.y = 0.0f; if (${cond}) v2_ = ${ld};` : `v2_ = ${ld};`} ${x} = v2_.x; ${y} = v2_.y; }`;
    }
    return `${x} = ${z(`in${slot}[${off('d')}]`)}; ${y} = ${z(`in${slot}[${off('(d + 1)')}]`)};`;
  };
  // t of every element of the chunk's accumulator fragments (rows g, g + 8; keys 2·tq, +1 of each
  // n-tile), from the expression \`value\`; keys past the chunk's end (\`checked\`) or not set in
  // the bitmap word (\`bitmap\`) get -inf. t = acc where nothing is checked is no code at all.
  const scoreLoop = (lines: string[], value: string, test: 'none'|'checked'|'bitmap') => (test === 'none' && value === 'acc' && lines.length === 0 ? '' : `#pragma unroll
      for (int mt = 0; mt < ${MT}; mt++) {
      #pragma unroll
      for (int n = 0; n < ${NT}; n++) {
        #pragma unroll
        for (int e = 0; e < 4; e++) {
          const int j = kc + n * 8 + 2 * tq + (e & 1);
          const int ii = iiR[2 * mt + (e >> 1)];
          const float acc = s[mt][n][e];
          (void)j; (void)ii; (void)acc;  // not every score reads them
          float sv = ninf;
          if (${test === 'checked' ? 'j < jend' : test === 'bitmap' ? '(mw_[2 * mt + (e >> 1)][(n * 8) >> 5] >> (((n * 8) & 31) + (e & 1))) & 1u' : 'true'}) {
            ${indent(lines, '            ')}
            sv = ${value};
          }
          s[mt][n][e] = sv;
        }
      }
      }`);
  // Chunks that end at kc + KC (all but a last one past Sk) need no bounds test.
  const bounded = (lines: string[], value: string) => {
    const none = scoreLoop(lines, value, 'none');
    if (Sk % KC === 0 && !mask) return none;
    const checked = scoreLoop(lines, value, 'checked');
    return none === '' ? `if (jend != kc + ${KC}) {
      ${checked}
    }` : `if (jend == kc + ${KC}) {
      ${none}
    } else {
      ${checked}
    }`;
  };
  let chunkSetup: string, scoreCode: string, listDecl = '', listLoad = '';
  if (mask) {
    const mStrides = contiguousStrides(mask.maskBatch);
    const mb = mask.maskBatch.map((d, i) => (d > 1 ? `c${i} * ${mStrides[i]}` : '')).filter(x => x).join(' + ') || '0';
    const fe = emitter(k, 'fx', [...bc, 'ii', 'j'], leaf);
    const fv = mask.scoreFull ? fe.emit(mask.scoreFull) : null;
    const CPT = Bc / KC;  // chunks per tile
    listDecl = `__shared__ unsigned tileList[${mask.nKT}];`;
    listLoad = `const int mbv = ${mb};
  const unsigned tb = (unsigned)(mbv * ${mask.nQT} + qb) * ${mask.nKT + 1}u;
  const int nt = (int)tiles[tb];  // every thread reads the count (one broadcast load, no barrier)
  // The CTA's tile list into shared memory: no dependent global load per chunk.
  for (int t = (int)threadIdx.x; t < nt; t += ${T}) tileList[t] = tiles[tb + 1u + (unsigned)t];
  __syncthreads();
  const int nc = nt * ${CPT};${bits ? `
  // This thread's rows in the bitmap (after the format's words).
  const unsigned* __restrict__ bitsAt = tiles + ${formatWords(mask)}u;
  int rowOff_[${2 * MT}];
  #pragma unroll
  for (int r = 0; r < ${2 * MT}; r++) rowOff_[r] = (mbv * ${mask.nQT * Br} + iiR[r]) * ${bits.rowWords};` : ''}`;
    // Chunk c: its first key, and its tile's kind (full: no mask term; bits: the bitmap; else the mask expression).
    chunkSetup = `const unsigned entry_ = tileList[c${CPT > 1 ? ` / ${CPT}` : ''}];
    const int kc = (int)(entry_ & 0xffffu) * ${Bc}${CPT > 1 ? ` + (c % ${CPT}) * ${KC}` : ''};
    const unsigned kind_ = entry_ >> 16;
    (void)kind_;${bits ? `
    // A bitmap tile: this thread's bits of its rows, shifted to its keys (2·tq), loaded before the
    // chunk's MMAs so that their latency hides behind them.
    unsigned mw_[${2 * MT}][${KW}];
    #pragma unroll
    for (int r = 0; r < ${2 * MT}; r++) {
      #pragma unroll
      for (int w = 0; w < ${KW}; w++) mw_[r][w] = kind_ == ${TILE_BITS}u ? bitsAt[rowOff_[r] + (kc >> 5) + w] >> ((kc & 31) + 2 * tq) : 0u;
    }` : ''}`;
    const chunkOf = `const unsigned entryN_ = tileList[cn${CPT > 1 ? ` / ${CPT}` : ''}];
      const int kn = (int)(entryN_ & 0xffffu) * ${Bc}${CPT > 1 ? ` + (cn % ${CPT}) * ${KC}` : ''};`;
    const partial = scoreLoop(em.lines, toT(sc), 'checked');
    const fullT = lin ? {lines: [] as string[], value: 'acc'} : {lines: fe.lines, value: fv!};
    scoreCode = fv == null ? partial : `if (kind_ == ${TILE_FULL}u) {
      ${bounded(fullT.lines, fullT.value)}
    }${bits ? ` else if (kind_ == ${TILE_BITS}u) {
      ${scoreLoop(fullT.lines, fullT.value, 'bitmap')}
    }` : ''} else {
      ${partial}
    }`;
    return build(chunkOf);
  }
  listLoad = `const int nc = ${Math.ceil(Sk / KC)};`;
  chunkSetup = `const int kc = c * ${KC};`;
  scoreCode = lin ? bounded([], 'acc') : bounded(em.lines, sc);
  return build(`const int kn = cn * ${KC};`);

  function build(nextChunk: string): CudaSource {
    // Loads of chunk `kn` into registers (fp32 pairs), and their conversion into shared memory.
    // Pair t of a chunk: key row t / (D/2), columns 2·(t % (D/2)) and + 1; where D/2 divides the
    // threads, a thread's pairs share the columns and step by whole rows (one base address).
    const rowCol = (dim: number, p: string) => ((T % (dim / 2)) === 0 ?
        `const int r = (int)threadIdx.x / ${dim / 2} + ${p} * ${T / (dim / 2)}, d = ((int)threadIdx.x % ${dim / 2}) * 2;` :
        `const int t = (int)threadIdx.x + ${p} * ${T}; const int r = t / ${dim / 2}, d = (t % ${dim / 2}) * 2;`);
    // K and V stream through the same loops: pairs of their rows, into registers or shared memory.
    const sides = [{n: PK, dim: D, pitch: DP, slot: k.kSlot, map: k.k, regs: 'kr', smem: 'ks'},
                   {n: PV, dim: Dv, pitch: DVP, slot: k.vSlot, map: k.v, regs: 'vr', smem: 'vs'}];
    const fetch = sides.map(x => `#pragma unroll
      for (int p = 0; p < ${x.n}; p++) {
        ${rowCol(x.dim, 'p')}
        const int jt = kn + r;
        ${pair(x.slot, x.map, bc.concat('jt'), `${x.regs}[p][0]`, `${x.regs}[p][1]`, `jt < ${Sk}`)}
      }`).join('\n      ');
    const commit = sides.map(x => `#pragma unroll
      for (int p = 0; p < ${x.n}; p++) {
        const int t = (int)threadIdx.x + p * ${T};
        ${x.smem}[(t / ${x.dim / 2}) * ${x.pitch / 2} + t % ${x.dim / 2}] = h2_(${x.regs}[p][0], ${x.regs}[p][1]);
      }`).join('\n      ');
    // Without prefetching: each pair is loaded, converted and stored (no registers held across the math).
    const direct = sides.map(x => `#pragma unroll 4
      for (int p = 0; p < ${x.n}; p++) {
        ${rowCol(x.dim, 'p')}
        const int jt = kn + r;
        float x_, y_;
        ${pair(x.slot, x.map, bc.concat('jt'), 'x_', 'y_', `jt < ${Sk}`)}
        ${x.smem}[r * ${x.pitch / 2} + d / 2] = h2_(x_, y_);
      }`).join('\n      ');
    // Staged: the chunk's K and V rows (fp16, contiguous per batch entry) as 16-byte cp.async copies
    // into stage \`st\` of the shared buffers; keys past Sk are zero-filled.
    const stageBytes = (pitch: number) => KC * pitch * 2;
    const issue = [{dim: D, pitch: DP, h: 'kh', smem: 'ks'}, {dim: Dv, pitch: DVP, h: 'vh', smem: 'vs'}].map(x => {
      const n = (KC * x.dim) / 8, per = Math.ceil(n / T);
      return `#pragma unroll
      for (int p = 0; p < ${per}; p++) {
        const int t = (int)threadIdx.x + p * ${T};
        ${n % T !== 0 ? `if (t >= ${n}) break;` : ''}
        const int r = t / ${x.dim / 8}, q8 = t % ${x.dim / 8}, jt = kn + r;
        cp16_(${x.smem}Base + (unsigned)(st * ${stageBytes(x.pitch)} + (r * ${x.pitch} + q8 * 8) * 2),
              ${x.h} + (bi * ${Sk} + min(jt, ${Sk - 1})) * ${x.dim / 2} + q8 * 4, jt < ${Sk} ? 16 : 0);
      }`;
    }).join('\n      ');
    const tileParam = mask ? ['const unsigned* __restrict__ tiles'] : [];
    const lead = staged ? ['qh', 'kh', 'vh'].map(n => `const unsigned* __restrict__ ${n}`) : [];
    // a0: (row g, columns 2tq, 2tq + 1), a1: row g + 8, a2 / a3: the same 8 columns further.
    const qLoads = [['iiR[2 * mt]', '0'], ['iiR[2 * mt + 1]', '0'], ['iiR[2 * mt]', '8'], ['iiR[2 * mt + 1]', '8']].map(([row, dc], x) => (staged ?
        `qa[mt][kk][${x}] = qh[(bi * ${Sq} + ${row}) * ${D / 2} + kk * 8 + ${Number(dc) / 2} + tq];` :
        `{ const int qi = ${row}; const int d = kk * 16 + ${dc} + 2 * tq; float x_, y_; ${pair(k.qSlot, k.q, bc.concat('qi'), 'x_', 'y_')} qa[mt][kk][${x}] = h2_(x_, y_); }`));
    const stages = staged ? 2 : 1;
    // Before the loop: the first chunk (staged: its copies in flight; else in shared memory).
    const first = staged ? `${issue}
    cp_commit_();` : prefetch ? `${fetch}
    ${commit}` : direct;
    // At the top of chunk c: the next chunk's copies start (staged) or its loads into registers.
    const ahead = staged ? `if (c + 1 < nc) {
      const int cn = c + 1, st = cn & 1;
      ${nextChunk}
      ${issue}
      cp_commit_();
      cp_wait_<1>();  // chunk c has landed; c + 1 is in flight
    } else {
      cp_wait_<0>();
    }
    __syncthreads();` : prefetch ? `// The next chunk's K and V into registers: their latency hides behind this chunk's math.
    if (c + 1 < nc) {
      const int cn = c + 1;
      ${nextChunk}
      ${fetch}
    }` : '';
    // After chunk c's math: (staged) the stage is free once every warp is done with it; else the
    // next chunk replaces this one in the single buffer.
    const behind = staged ? '__syncthreads();' : `__syncthreads();
    if (c + 1 < nc) {
      ${prefetch ? commit : `const int cn = c + 1;
      ${nextChunk}
      ${direct}`}
    }
    __syncthreads();`;
    return {
      label: `attention-mma(${mask ? 'blockwise' : 'dense'},fp16,D=${D},Dv=${Dv},Br=${Br},Bc=${Bc},R=${R}${MT > 1 ? `,MT=${MT}` : ''},KC=${KC}${staged ? ',staged' : prefetch ? '' : ',no-prefetch'}${minBlocks ? `,minBlocks=${minBlocks}` : ''})`,
      bindings: slots,
      staged: staged ? [packHalf(k, k.qSlot, k.q, Sq, D), packHalf(k, k.kSlot, k.k, Sk, D), packHalf(k, k.vSlot, k.v, Sk, Dv)] : undefined,
      tileParam: mask != null,
      grid: [Math.max(1, batch * qBlocks * subBlocks), 1, 1],
      block: [T, 1, 1],
      code: unit(`${MMA_HELPERS}
${signature(k, slots, tileParam, undefined, lead).replace('__global__ void', minBlocks ? `__global__ void __launch_bounds__(${T}, ${minBlocks})` : '__global__ void')} {
  __shared__ __align__(16) unsigned ks[${(stages * KC * DP) / 2}];
  __shared__ __align__(16) unsigned vs[${(stages * KC * DVP) / 2}];
  ${listDecl}
  const int flat = (int)blockIdx.x / ${subBlocks}, sub = (int)blockIdx.x % ${subBlocks};
  const int bi = flat / ${qBlocks}, qb = flat % ${qBlocks};
  const int lane = (int)(threadIdx.x & 31u), warp = (int)(threadIdx.x >> 5);
  const int g = lane >> 2, tq = lane & 3;
  (void)sub;
  ${indent(coordLines(batchShape, 'bi', bc), '  ')}
  // This thread's rows: g and g + 8 of each of its warp's MT tiles of 16 (row r = 2·mt + h); rows
  // past Sq compute a copy of the last row, unstored.
  int iR[${2 * MT}], iiR[${2 * MT}];
  #pragma unroll
  for (int r = 0; r < ${2 * MT}; r++) {
    iR[r] = qb * ${QB} + sub * ${R} + warp * ${16 * MT} + (r >> 1) * 16 + (r & 1) * 8 + g;
    iiR[r] = iR[r] < ${Sq} ? iR[r] : ${Sq - 1};
  }
  const float ninf = -STOF_INF;
  // Q as A fragments (fp16), once: [tile][k-step][a0..a3].
  unsigned qa[${MT}][${KS}][4];
  #pragma unroll
  for (int mt = 0; mt < ${MT}; mt++) {
    #pragma unroll
    for (int kk = 0; kk < ${KS}; kk++) {
      ${qLoads.join('\n      ')}
    }
  }
  float o[${MT}][${NO}][4];
  float mR[${2 * MT}], lR[${2 * MT}];
  #pragma unroll
  for (int mt = 0; mt < ${MT}; mt++) {
    #pragma unroll
    for (int n = 0; n < ${NO}; n++) { o[mt][n][0] = 0.0f; o[mt][n][1] = 0.0f; o[mt][n][2] = 0.0f; o[mt][n][3] = 0.0f; }
    mR[2 * mt] = ninf; mR[2 * mt + 1] = ninf; lR[2 * mt] = 0.0f; lR[2 * mt + 1] = 0.0f;
  }
  const unsigned ksBase = smem_addr_(ks), vsBase = smem_addr_(vs);
  // ldmatrix row addresses of this lane: K (x4: keys +0/+8, d +0/+8 -> b0, b1 of two n-tiles), V (x4.trans).
  const unsigned kLane = (unsigned)((((lane & 7) + ((lane >> 4) << 3)) * ${DP} + (((lane >> 3) & 1) << 3)) * 2);
  const unsigned vLane = (unsigned)((((lane & 7) + (((lane >> 3) & 1) << 3)) * ${DVP} + ((lane >> 4) << 3)) * 2);
  ${listLoad}
  ${prefetch ? `float kr[${PK}][2], vr[${PV}][2];` : ''}
  if (nc > 0) {
    const int cn = 0, st = 0;
    (void)st;
    ${nextChunk}
    ${first}
  }
  __syncthreads();
  for (int c = 0; c < nc; c++) {
    ${chunkSetup}
    const int jend = min(kc + ${KC}, ${Sk});
    ${ahead}
    const unsigned ksAt = ksBase${staged ? ` + (unsigned)((c & 1) * ${stageBytes(DP)})` : ''}, vsAt = vsBase${staged ? ` + (unsigned)((c & 1) * ${stageBytes(DVP)})` : ''};
    // S = Q·Kᵀ: [tile][n-tile of 8 keys][c0..c3]; each K fragment feeds the MT tiles.
    float s[${MT}][${NT}][4];
    #pragma unroll
    for (int mt = 0; mt < ${MT}; mt++) {
      #pragma unroll
      for (int n = 0; n < ${NT}; n++) { s[mt][n][0] = 0.0f; s[mt][n][1] = 0.0f; s[mt][n][2] = 0.0f; s[mt][n][3] = 0.0f; }
    }
    #pragma unroll
    for (int kk = 0; kk < ${KS}; kk++) {
      #pragma unroll
      for (int np = 0; np < ${NT / 2}; np++) {
        unsigned b0, b1, b2, b3;
        ldsm4_(b0, b1, b2, b3, ksAt + kLane + (unsigned)((np * 16 * ${DP} + kk * 16) * 2));
        #pragma unroll
        for (int mt = 0; mt < ${MT}; mt++) {
          mma_(s[mt][2 * np], qa[mt][kk], b0, b1);
          mma_(s[mt][2 * np + 1], qa[mt][kk], b2, b3);
        }
      }
    }
    {
    ${scoreCode}
    }
    // Online softmax per row: the maxima over the quad (all four lanes hold the same bits after).
    // fmaxf skips NaN; a NaN score still ends its row NaN (its weight exp(NaN) = NaN reaches the
    // sum and the output), as the fp32 kernel's NaN-propagating maximum does.
    const float C_ = ${f32c(C)};  // A·log2 e
    // Every row's maximum and rescale first, then every row's weights: each step one basic block
    // over all rows, so the scheduler interleaves the rows' independent chains (the kernel is bound
    // by latency at two warps per scheduler).
    float mus[${2 * MT}];
    bool huge = false;
    #pragma unroll
    for (int r = 0; r < ${2 * MT}; r++) {
      const int mt = r >> 1, h = (r & 1) * 2;
      // Pairwise trees, not a chain of NT dependent steps.
      float mx = fmaxf(mR[r], ${tree('fmaxf', range(NT).map(n => `fmaxf(s[mt][${n}][h], s[mt][${n}][h + 1])`))});
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      // Only -inf so far: subtract 0 (every weight is exp(-inf) = 0, no -inf - -inf).
      const float mu = mx == ninf ? 0.0f : mx;
      const float alpha = ex2_((mR[r] - mu) * C_);
      mR[r] = mx;
      lR[r] *= alpha;
      #pragma unroll
      for (int n = 0; n < ${NO}; n++) { o[mt][n][h] *= alpha; o[mt][n][h + 1] *= alpha; }
      mus[r] = mu;
      huge = huge || !(fabsf(mu * C_) < 4096.0f);
    }
    // p = 2^(t·C - mu·C) in one multiply-add, where the rounding of mu·C is below 2^-12 in the
    // exponent. Huge scores (a row that keeps no key under a large finite bias: all equal) are
    // subtracted first, exactly, so that equal scores get equal weights 1 (rare: one test per warp).
    if (__any_sync(0xffffffffu, huge)) {
      #pragma unroll
      for (int r = 0; r < ${2 * MT}; r++) {
        const int mt = r >> 1, h = (r & 1) * 2;
        const float mu = mus[r];
        #pragma unroll
        for (int n = 0; n < ${NT}; n++) { s[mt][n][h] = ex2_((s[mt][n][h] - mu) * C_); s[mt][n][h + 1] = ex2_((s[mt][n][h + 1] - mu) * C_); }
      }
    } else {
      #pragma unroll
      for (int r = 0; r < ${2 * MT}; r++) {
        const int mt = r >> 1, h = (r & 1) * 2;
        const float nmc = -mus[r] * C_;
        #pragma unroll
        for (int n = 0; n < ${NT}; n++) { s[mt][n][h] = ex2_(fmaf(s[mt][n][h], C_, nmc)); s[mt][n][h + 1] = ex2_(fmaf(s[mt][n][h + 1], C_, nmc)); }
      }
    }
    #pragma unroll
    for (int r = 0; r < ${2 * MT}; r++) {
      const int mt = r >> 1, h = (r & 1) * 2;
      lR[r] += ${tree('add', range(NT).map(n => `(s[mt][${n}][h] + s[mt][${n}][h + 1])`))};
    }
    // O += P·V: P's accumulator layout is the A-fragment layout of 16 keys (two n-tiles); each V
    // fragment feeds the MT tiles.
    #pragma unroll
    for (int kp = 0; kp < ${KP}; kp++) {
      unsigned pa[${MT}][4];
      #pragma unroll
      for (int mt = 0; mt < ${MT}; mt++) {
        pa[mt][0] = h2_(s[mt][2 * kp][0], s[mt][2 * kp][1]);
        pa[mt][1] = h2_(s[mt][2 * kp][2], s[mt][2 * kp][3]);
        pa[mt][2] = h2_(s[mt][2 * kp + 1][0], s[mt][2 * kp + 1][1]);
        pa[mt][3] = h2_(s[mt][2 * kp + 1][2], s[mt][2 * kp + 1][3]);
      }
      #pragma unroll
      for (int op = 0; op < ${NO / 2}; op++) {
        unsigned b0, b1, b2, b3;
        ldsm4t_(b0, b1, b2, b3, vsAt + vLane + (unsigned)((kp * 16 * ${DVP} + op * 16) * 2));
        #pragma unroll
        for (int mt = 0; mt < ${MT}; mt++) {
          mma_(o[mt][2 * op], pa[mt], b0, b1);
          mma_(o[mt][2 * op + 1], pa[mt], b2, b3);
        }
      }
    }
    ${behind}
  }
  // The rows' sums over the quad; 0/0 = NaN for a row that never saw a finite score.
  #pragma unroll
  for (int r = 0; r < ${2 * MT}; r++) {
    lR[r] += __shfl_xor_sync(0xffffffffu, lR[r], 1);
    lR[r] += __shfl_xor_sync(0xffffffffu, lR[r], 2);
  }
  #pragma unroll
  for (int mt = 0; mt < ${MT}; mt++) {
    #pragma unroll
    for (int n = 0; n < ${NO}; n++) {
      #pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = 2 * mt + (e >> 1), i = iR[r];
        const int col = n * 8 + 2 * tq + (e & 1);
        if (i < ${Sq}) ${store(k, offsetCode(k.out, [...bc, 'i', 'col']), 'o[mt][n][e] / lR[r]')}
      }
    }
  }
}`),
    };
  }
}

/**
 * The fp16 copy of the staged kernel's Q, K or V: \`map\` over [...batch, rows, dim] read as fp32 and
 * written as pairs of halves, contiguous ([batch, rows, dim]; a K/V shared across heads is copied
 * per head). One thread per pair.
 */
function packHalf(k: AttentionKernel, slot: number, map: AccessMap, rows: number, dim: number): {source: CudaSource, words: number} {
  const words = (sizeOf(k.batchShape) * rows * dim) / 2;
  const bc = k.batchShape.map((_, i) => `c${i}`);
  const off = (d: string) => offsetCode(map, [...bc, 'r', d]);
  const ld = (d: string) => (intBuffer(k.inputs[slot]) ? `(float)in${slot}[${off(d)}]` : `in${slot}[${off(d)}]`);
  return {
    words,
    source: {
      label: `pack-fp16(rows=${rows},dim=${dim})`,
      bindings: [slot],
      grid: [Math.max(1, Math.ceil(words / 256)), 1, 1],
      block: [256, 1, 1],
      code: unit(`${MMA_HELPERS}
${signature(k, [slot], [], 'unsigned')} {
  const int t = (int)(blockIdx.x * 256u + threadIdx.x);
  if (t >= ${words}) return;
  const int d = (t % ${dim / 2}) * 2, r = (t / ${dim / 2}) % ${rows}, bi = t / ${(dim / 2) * rows};
  (void)bi;
  ${indent(coordLines(k.batchShape, 'bi', bc), '  ')}
  out[t] = h2_(${ld('d')}, ${ld('(d + 1)')});
}`),
    },
  };
}
