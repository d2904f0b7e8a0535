// Masked attention on tensor cores (precision 'fp16'): the FlashAttention-2 scheme with
// mma.sync.m16n8k16 (fp16 inputs, fp32 accumulation), from the same AttentionKernel and tile format
// as the fp32 kernel (attention_cuda.ts), with the same rules:
//   - a CTA of W = R/16 warps takes R query rows of one batch entry (block-sparse: R = min(Br, 64)
//     rows of one query block of the format; dense: 128); each warp owns 16 rows (its Q fragments
//     in registers, converted fp32 -> fp16 once);
//   - K and V stream through shared memory (fp16, rows padded by 8 halves: ldmatrix without bank
//     conflicts) in chunks of KC keys; the next chunk's fp32 values are loaded into registers while
//     the current one is computed (cp.async cannot convert), then converted and stored;
//   - S = Q·Kᵀ on tensor cores, then the score expression (`k.score`, the same Expr the fp32 kernel
//     emits: scale, the mask term read where the tile is partial, `scoreFull` without loads where it
//     is full) per element of the accumulator fragment, keys past Sk -> -inf;
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
import {Expr} from '../../fusion/expr';
import {AttentionKernel} from '../../fusion/planner';

import {TILE_FULL} from '../sparse/mask_format';
import {checkSizes, coordLines, CudaSource, emitter, indent, signature, slotsOf, store, unit} from './cuda_common';
import {offsetCode} from './cuda_expr';

/** Query rows per CTA at most (4 warps of 16). */
const MAX_ROWS = 64;
/** Static shared memory a CTA may use (bytes). */
const SHARED_BYTES = 48 * 1024;
/** Registers (floats per thread) the next chunk's K and V may take while the current one is computed. */
const PREFETCH_FLOATS = 64;
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
}

/**
 * Rows per CTA: block-sparse min(Br, 64) (the format's query blocks). Dense (no format): 128 (8
 * warps share each K/V chunk: half the loads and conversions per row; H100: 1.84 against 2.07 ms
 * at S = 4096, D = 64) where the plan has CUDA's tiles (Br >= 64) and D, Dv <= 64 (larger head dims
 * would spill at 128 registers), 64 for larger heads, else Br (the planner's small dense tiles).
 */
function rowsOf(k: AttentionKernel, o: MmaOptions): number {
  if (k.mask) return Math.min(k.Br, MAX_ROWS);
  if (o.rows != null) return o.rows;
  if (k.Br >= MAX_ROWS) return k.D <= 64 && k.Dv <= 64 ? 2 * MAX_ROWS : MAX_ROWS;
  return k.Br % 16 === 0 ? k.Br : MAX_ROWS;
}

/**
 * CTAs per SM the kernel is compiled for (__launch_bounds__) unless the options say: 4 for the
 * block-sparse kernel with head dims up to 64 (128 registers, a few spilled: 12 -> 16 warps per SM;
 * H100, S = 4096: dilated 1.33 -> 1.09 ms, padding 1.91 -> 1.76), 2 for the dense 128-row CTA.
 */
function minBlocksOf(k: AttentionKernel, o: MmaOptions, T: number): number|undefined {
  if (o.minBlocks !== undefined) return o.minBlocks || undefined;
  if (k.mask && T === 128 && k.D <= 64 && k.Dv <= 64) return 4;
  if (!k.mask && T === 256 && k.D <= 64 && k.Dv <= 64) return 2;
  return undefined;
}

/** Why the tensor-core kernel cannot take `k` (the fp32 kernel runs it instead), or null when it can. */
export function attentionMmaUnsupported(k: AttentionKernel, o: MmaOptions = {}): string|null {
  const {D, Dv, Br, Bc, mask} = k;
  if (D % 16 !== 0 || Dv % 16 !== 0 || D < 16 || Dv < 16 || D > 128 || Dv > 128) return `head dims D = ${D}, Dv = ${Dv} are not multiples of 16 in 16..128`;
  const R = rowsOf(k, o);
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

interface MmaParams { R: number; W: number; T: number; KC: number; prefetch: boolean; }

/** Registers (per thread) the tensor-core kernel may plan for fragments and prefetched values. */
const REG_BUDGET = 120;

function mmaParams(k: AttentionKernel, o: MmaOptions): MmaParams|null {
  const {D, Dv, Bc, mask} = k;
  const keys = o.keys;
  const R = rowsOf(k, o), W = R / 16, T = 32 * W;
  const listBytes = mask ? 4 * (mask.nKT + 1) : 0;
  const fits = (kc: number) => kc * (D + PAD + Dv + PAD) * 2 + listBytes <= SHARED_BYTES;
  const ok = (kc: number) => (!mask || Bc % kc === 0) && fits(kc);
  // Q fragments, O fragments, S fragments; the next chunk's K and V as fp32 while prefetching.
  const base = (kc: number) => D / 4 + Dv / 2 + kc / 2;
  const pf = (kc: number) => (kc * (D + Dv)) / T;
  // Keys per chunk: 32 where its next chunk can be prefetched into registers (64 measured slower on
  // the H100 at D = 64: more registers, fewer warps); else the largest that fits, loaded after the
  // chunk before is done.
  if (keys != null) return ok(keys) ? {R, W, T, KC: keys, prefetch: base(keys) + pf(keys) <= 1.5 * REG_BUDGET} : null;
  for (const KC of [32]) if (ok(KC) && base(KC) + pf(KC) <= REG_BUDGET) return {R, W, T, KC, prefetch: true};
  for (const KC of [64, 32, 16]) if (ok(KC) && (KC === 16 || base(KC) <= REG_BUDGET)) return {R, W, T, KC, prefetch: false};
  return null;
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
  const {R, T, KC, prefetch} = mmaParams(k, o)!;
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
  const slots = [k.qSlot, k.kSlot, k.vSlot, ...slotsOf([k.score])].filter((x, i, a) => a.indexOf(x) === i);
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
  // The score of every element of the chunk's accumulator fragments (rows g, g + 8; keys 2·tq, +1 of each n-tile).
  const scoreLoop = (lines: string[], value: string) => `#pragma unroll
      for (int n = 0; n < ${NT}; n++) {
        #pragma unroll
        for (int e = 0; e < 4; e++) {
          const int j = kc + n * 8 + 2 * tq + (e & 1);
          const int ii = (e & 2) ? ii1 : ii0;
          const float acc = s[n][e];
          (void)j; (void)ii; (void)acc;  // not every score reads them
          float sv = ninf;
          if (j < jend) {
            ${indent(lines, '            ')}
            sv = ${value};
          }
          s[n][e] = sv;
        }
      }`;
  let chunkSetup: string, scoreCode: string, listDecl = '', listLoad = '';
  if (mask) {
    const mStrides = contiguousStrides(mask.maskBatch);
    const mb = mask.maskBatch.map((d, i) => (d > 1 ? `c${i} * ${mStrides[i]}` : '')).filter(x => x).join(' + ') || '0';
    const fe = emitter(k, 'fx', [...bc, 'ii', 'j'], leaf);
    const fv = mask.scoreFull ? fe.emit(mask.scoreFull) : null;
    const CPT = Bc / KC;  // chunks per tile
    listDecl = `__shared__ unsigned tileList[${mask.nKT}];`;
    listLoad = `const unsigned tb = (unsigned)((${mb}) * ${mask.nQT} + qb) * ${mask.nKT + 1}u;
  const int nt = (int)tiles[tb];  // every thread reads the count (one broadcast load, no barrier)
  // The CTA's tile list into shared memory: no dependent global load per chunk.
  for (int t = (int)threadIdx.x; t < nt; t += ${T}) tileList[t] = tiles[tb + 1u + (unsigned)t];
  __syncthreads();
  const int nc = nt * ${CPT};`;
    // Chunk c: its first key, and whether its tile is full (no mask term).
    chunkSetup = `const unsigned entry_ = tileList[c${CPT > 1 ? ` / ${CPT}` : ''}];
    const int kc = (int)(entry_ & 0xffffu) * ${Bc}${CPT > 1 ? ` + (c % ${CPT}) * ${KC}` : ''};
    const bool full = (entry_ >> 16) == ${TILE_FULL}u;
    (void)full;`;
    const chunkOf = `const unsigned entryN_ = tileList[cn${CPT > 1 ? ` / ${CPT}` : ''}];
      const int kn = (int)(entryN_ & 0xffffu) * ${Bc}${CPT > 1 ? ` + (cn % ${CPT}) * ${KC}` : ''};`;
    scoreCode = fv == null ? scoreLoop(em.lines, sc) : `if (full) {
      ${scoreLoop(fe.lines, fv)}
    } else {
      ${scoreLoop(em.lines, sc)}
    }`;
    return build(chunkOf);
  }
  listLoad = `const int nc = ${Math.ceil(Sk / KC)};`;
  chunkSetup = `const int kc = c * ${KC};`;
  scoreCode = scoreLoop(em.lines, sc);
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
    const tileParam = mask ? ['const unsigned* __restrict__ tiles'] : [];
    // a0: (row g, columns 2tq, 2tq + 1), a1: row g + 8, a2 / a3: the same 8 columns further.
    const qLoads = [['qr0', '0'], ['qr1', '0'], ['qr0', '8'], ['qr1', '8']].map(([row, dc], x) =>
        `{ const int qi = ${row}; const int d = kk * 16 + ${dc} + 2 * tq; float x_, y_; ${pair(k.qSlot, k.q, bc.concat('qi'), 'x_', 'y_')} qa[kk][${x}] = h2_(x_, y_); }`);
    return {
      label: `attention-mma(${mask ? 'blockwise' : 'dense'},fp16,D=${D},Dv=${Dv},Br=${Br},Bc=${Bc},R=${R},KC=${KC}${prefetch ? '' : ',no-prefetch'}${minBlocks ? `,minBlocks=${minBlocks}` : ''})`,
      bindings: slots,
      tileParam: mask != null,
      grid: [Math.max(1, batch * qBlocks * subBlocks), 1, 1],
      block: [T, 1, 1],
      code: unit(`${MMA_HELPERS}
${signature(k, slots, tileParam).replace('__global__ void', minBlocks ? `__global__ void __launch_bounds__(${T}, ${minBlocks})` : '__global__ void')} {
  __shared__ __align__(16) unsigned ks[${(KC * DP) / 2}];
  __shared__ __align__(16) unsigned vs[${(KC * DVP) / 2}];
  ${listDecl}
  const int flat = (int)blockIdx.x / ${subBlocks}, sub = (int)blockIdx.x % ${subBlocks};
  const int bi = flat / ${qBlocks}, qb = flat % ${qBlocks};
  const int lane = (int)(threadIdx.x & 31u), warp = (int)(threadIdx.x >> 5);
  const int g = lane >> 2, tq = lane & 3;
  (void)sub;
  ${indent(coordLines(batchShape, 'bi', bc), '  ')}
  // This thread's two rows: g and g + 8 of its warp's 16 (rows past Sq compute a copy of the last row, unstored).
  const int lr0 = sub * ${R} + warp * 16 + g, lr1 = lr0 + 8;
  const int i0 = qb * ${QB} + lr0, i1 = qb * ${QB} + lr1;
  const bool valid0 = i0 < ${Sq}, valid1 = i1 < ${Sq};
  const int ii0 = valid0 ? i0 : ${Sq - 1}, ii1 = valid1 ? i1 : ${Sq - 1};
  const float ninf = -STOF_INF;
  // Q as A fragments (fp16), once: [k-step][a0..a3].
  unsigned qa[${KS}][4];
  {
    const int qr0 = ii0, qr1 = ii1;
    #pragma unroll
    for (int kk = 0; kk < ${KS}; kk++) {
      ${qLoads.join('\n      ')}
    }
  }
  float o[${NO}][4];
  #pragma unroll
  for (int n = 0; n < ${NO}; n++) { o[n][0] = 0.0f; o[n][1] = 0.0f; o[n][2] = 0.0f; o[n][3] = 0.0f; }
  float m0 = ninf, m1 = ninf, l0 = 0.0f, l1 = 0.0f;
  const unsigned ksBase = smem_addr_(ks), vsBase = smem_addr_(vs);
  // ldmatrix row addresses of this lane: K (x4: keys +0/+8, d +0/+8 -> b0, b1 of two n-tiles), V (x4.trans).
  const unsigned kLane = (unsigned)((((lane & 7) + ((lane >> 4) << 3)) * ${DP} + (((lane >> 3) & 1) << 3)) * 2);
  const unsigned vLane = (unsigned)((((lane & 7) + (((lane >> 3) & 1) << 3)) * ${DVP} + ((lane >> 4) << 3)) * 2);
  ${listLoad}
  ${prefetch ? `float kr[${PK}][2], vr[${PV}][2];` : ''}
  if (nc > 0) {
    const int cn = 0;
    ${nextChunk}
    ${prefetch ? `${fetch}
    ${commit}` : direct}
  }
  __syncthreads();
  for (int c = 0; c < nc; c++) {
    ${chunkSetup}
    const int jend = min(kc + ${KC}, ${Sk});
    ${prefetch ? `// The next chunk's K and V into registers: their latency hides behind this chunk's math.
    if (c + 1 < nc) {
      const int cn = c + 1;
      ${nextChunk}
      ${fetch}
    }` : ''}
    // S = Q·Kᵀ: [n-tile of 8 keys][c0..c3].
    float s[${NT}][4];
    #pragma unroll
    for (int n = 0; n < ${NT}; n++) { s[n][0] = 0.0f; s[n][1] = 0.0f; s[n][2] = 0.0f; s[n][3] = 0.0f; }
    #pragma unroll
    for (int kk = 0; kk < ${KS}; kk++) {
      #pragma unroll
      for (int np = 0; np < ${NT / 2}; np++) {
        unsigned b0, b1, b2, b3;
        ldsm4_(b0, b1, b2, b3, ksBase + kLane + (unsigned)((np * 16 * ${DP} + kk * 16) * 2));
        mma_(s[2 * np], qa[kk], b0, b1);
        mma_(s[2 * np + 1], qa[kk], b2, b3);
      }
    }
    {
    ${scoreCode}
    }
    // Online softmax: the rows' maxima over the quad (all four lanes hold the same bits after).
    // fmaxf skips NaN; a NaN score still ends its row NaN (its weight exp(NaN) = NaN reaches the
    // sum and the output), as the fp32 kernel's NaN-propagating maximum does.
    float mx0 = m0, mx1 = m1;
    #pragma unroll
    for (int n = 0; n < ${NT}; n++) {
      mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
      mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    // Only -inf so far: subtract 0 (every weight is exp(-inf) = 0, no -inf - -inf).
    const float mu0 = mx0 == ninf ? 0.0f : mx0, mu1 = mx1 == ninf ? 0.0f : mx1;
    const float L2E = 1.4426950408889634f;
    const float alpha0 = ex2_((m0 - mu0) * L2E), alpha1 = ex2_((m1 - mu1) * L2E);
    m0 = mx0; m1 = mx1;
    l0 *= alpha0; l1 *= alpha1;
    #pragma unroll
    for (int n = 0; n < ${NO}; n++) { o[n][0] *= alpha0; o[n][1] *= alpha0; o[n][2] *= alpha1; o[n][3] *= alpha1; }
    #pragma unroll
    for (int n = 0; n < ${NT}; n++) {
      s[n][0] = ex2_((s[n][0] - mu0) * L2E); s[n][1] = ex2_((s[n][1] - mu0) * L2E);
      s[n][2] = ex2_((s[n][2] - mu1) * L2E); s[n][3] = ex2_((s[n][3] - mu1) * L2E);
      l0 += s[n][0] + s[n][1]; l1 += s[n][2] + s[n][3];
    }
    // O += P·V: P's accumulator layout is the A-fragment layout of 16 keys (two n-tiles).
    #pragma unroll
    for (int kp = 0; kp < ${KP}; kp++) {
      unsigned pa[4];
      pa[0] = h2_(s[2 * kp][0], s[2 * kp][1]);
      pa[1] = h2_(s[2 * kp][2], s[2 * kp][3]);
      pa[2] = h2_(s[2 * kp + 1][0], s[2 * kp + 1][1]);
      pa[3] = h2_(s[2 * kp + 1][2], s[2 * kp + 1][3]);
      #pragma unroll
      for (int op = 0; op < ${NO / 2}; op++) {
        unsigned b0, b1, b2, b3;
        ldsm4t_(b0, b1, b2, b3, vsBase + vLane + (unsigned)((kp * 16 * ${DVP} + op * 16) * 2));
        mma_(o[2 * op], pa, b0, b1);
        mma_(o[2 * op + 1], pa, b2, b3);
      }
    }
    __syncthreads();
    if (c + 1 < nc) {
      ${prefetch ? commit : `const int cn = c + 1;
      ${nextChunk}
      ${direct}`}
    }
    __syncthreads();
  }
  // The rows' sums over the quad; 0/0 = NaN for a row that never saw a finite score.
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  #pragma unroll
  for (int n = 0; n < ${NO}; n++) {
    #pragma unroll
    for (int e = 0; e < 4; e++) {
      const int i = (e & 2) ? i1 : i0;
      const int col = n * 8 + 2 * tq + (e & 1);
      if ((e & 2) ? valid1 : valid0) ${store(k, offsetCode(k.out, [...bc, 'i', 'col']), `o[n][e] / ((e & 2) ? l1 : l0)`)}
    }
  }
}`),
    };
  }
}
