// Masked attention as CUDA C, from the same AttentionKernel as the WGSL template and with the same
// rules: a block takes query rows of one batch entry; K and V stream through shared memory in
// chunks of the key tiles; softmax is online (running max and sum, one rescale per chunk), so no
// score matrix is stored. Block-sparse (k.mask): the block visits only the key tiles that the tile format
// lists for its query block; full tiles compute the score without the mask term (no mask loads).
// A query block with a row that keeps no key is listed dense by the mask analysis, so that row ends
// as the unfused chain does (uniform weights, or 0/0 = NaN for -Infinity).
//
// Four threads per query row: each holds a quarter of q and of the output row in registers
// (d = lane, lane + 4, ...), the q·k partials meet through two shuffles, and all four hold the
// same scores, maximum and sum (so no further exchange). Rows of a tile's K and V are padded to a
// multiple of 4 with zeros: the unrolled loops need no bounds tests.
import {contiguousStrides, sizeOf} from '../../fusion/access';
import {Expr} from '../../fusion/expr';
import {AttentionKernel} from '../../fusion/planner';

import {formatWords, MASKED_AT_OR_BELOW, maskBits, MaskSpec, TILE_BITS, TILE_EMPTY, TILE_FULL, TILE_PARTIAL} from '../sparse/mask_format';
import {checkSizes, coordLines, CudaSource, emitter, indent, signature, slotsOf, store, unit} from './cuda_common';
import {offsetCode} from './cuda_expr';

const LANES = 4;
/** Query rows per CUDA block at most (4 threads each: 256 threads). */
const MAX_ROWS = 64;
/** Keys per shared-memory chunk at most: the chunk's scores live in registers. */
const MAX_CHUNK = 32;
/** Static shared memory a block may use. */
const SHARED_FLOATS = (48 * 1024) / 4;

/**
 * The tiles the CUDA kernels like, for PlanOptions.chooseAttention when plans run on CUDA: Bc = 32
 * keys per tile (one word of the mask's bitmap), Br = 128 query rows per block from Sq = 512 (the
 * fp16 kernel's 8-warp CTAs convert each K/V chunk once for twice the rows; H100, S = 512-4096, B=8
 * H=12 D=64: 1.055x geometric mean over 7 masks, padding and causal 1.05-1.26x, BigBird and
 * Longformer 0.89-0.96x from the coarser blocks), else 64 (more CTAs for short sequences). Any other
 * choice in a plan still runs (the fp32 kernel takes blocks of min(Br, 64) rows, key chunks of
 * min(Bc, 32)), but a tiny Br means tiny blocks.
 */
export function cudaAttentionChoice(s?: {Sq: number}): {variant: 'blockwise', Br: number, Bc: number, threads: number} {
  return {variant: 'blockwise', Br: s != null && s.Sq >= 512 ? 128 : 64, Bc: 32, threads: 64};
}

/**
 * Works for either planned variant (the row-wise WGSL kernel reads the same tile format): the
 * format fixes only which Br-row query blocks and Bc-key tiles exist. A CUDA block takes R =
 * min(Br, 64) rows of one query block (a query block of more rows spans several CUDA blocks) and
 * streams each listed tile through shared memory in chunks of C = min(Bc, 32) keys.
 */
export function attentionCuda(k: AttentionKernel): CudaSource {
  const {batchShape, Sq, Sk, D, Dv, Br, Bc, mask} = k;
  checkSizes(k, [[...batchShape, Sq, Sk]]);
  if (D < 1 || Dv < 1 || D > 256 || Dv > 256) throw new Error(`attentionCuda: head dims D = ${D}, Dv = ${Dv} outside 1..256`);
  const DL = Math.ceil(D / LANES), DVL = Math.ceil(Dv / LANES), DP = DL * LANES, DVP = DVL * LANES;
  const R = Math.min(Br, MAX_ROWS), subBlocks = Math.ceil(Br / R), threads = R * LANES;
  // The block-sparse kernel also keeps its tile list (nKT words + the count) in shared memory.
  const listWords = mask ? mask.nKT + 1 : 0;
  const C = Math.min(Bc, MAX_CHUNK, Math.floor((SHARED_FLOATS - listWords) / (DP + DVP)));
  if (C < 1) throw new Error(`attentionCuda: K and V rows of D = ${D}, Dv = ${Dv} do not fit shared memory`);
  const batch = sizeOf(batchShape), qBlocks = Math.ceil(Sq / Br);
  // A block of fewer than 32 threads is one partial warp: the shuffles name only its lanes.
  const shflMask = threads >= 32 ? '0xffffffffu' : `0x${((2 ** threads) - 1).toString(16)}u`;
  const bc = batchShape.map((_, i) => `c${i}`);
  const leaf = (e: Expr) => (e.k === 'acc' ? 'acc' : null);
  const em = emitter(k, 't', [...bc, 'ii', 'j'], leaf);
  const sc = em.emit(k.score);
  const slots = [k.qSlot, k.kSlot, k.vSlot, ...slotsOf([k.score])].filter((x, i, a) => a.indexOf(x) === i);
  const load = (slot: number, off: string) => `in${slot}[${off}]`;
  // Each visited tile: its first key j0 and length (a listed tile of the format, or a dense chunk).
  let tileLoop: string, tileLen: number, score: string;
  if (mask) {
    // Flat mask-batch index: the batch coordinates the mask depends on.
    const mStrides = contiguousStrides(mask.maskBatch);
    const mb = mask.maskBatch.map((d, i) => (d > 1 ? `c${i} * ${mStrides[i]}` : '')).filter(x => x).join(' + ') || '0';
    const fe = emitter(k, 'f', [...bc, 'ii', 'j'], leaf);
    const fv = mask.scoreFull ? fe.emit(mask.scoreFull) : null;
    tileLen = Bc;
    tileLoop = `const unsigned tb = (unsigned)((${mb}) * ${mask.nQT} + qb) * ${mask.nKT + 1}u;
  if (threadIdx.x == 0) tileCount = tiles[tb];
  __syncthreads();
  const unsigned nt = tileCount;
  // The block's tile list into shared memory: no dependent global load at each tile.
  for (unsigned t = threadIdx.x; t < nt; t += ${threads}u) tileList[t] = tiles[tb + 1u + t];
  __syncthreads();
  for (unsigned t = 0; t < nt; t++) {
    const unsigned entry = tileList[t];
    const int j0 = (int)(entry & 0xffffu) * ${Bc};
    const bool full = (entry >> 16) == ${TILE_FULL}u;
    (void)full;`;
    score = fv == null ? `${indent(em.lines, '          ')}\n          s = ${sc};` : `if (full) {
            ${indent(fe.lines, '            ')}
            s = ${fv};
          } else {
            ${indent(em.lines, '            ')}
            s = ${sc};
          }`;
  } else {
    tileLen = C;
    tileLoop = `for (int j0 = 0; j0 < ${Sk}; j0 += ${C}) {`;
    score = `${indent(em.lines, '          ')}\n          s = ${sc};`;
  }
  const qOff = offsetCode(k.q, [...bc, 'ii', 'd']), kOff = offsetCode(k.k, [...bc, 'jt', 'd']), vOff = offsetCode(k.v, [...bc, 'jt', 'd']);
  const tileParam = mask ? ['const unsigned* __restrict__ tiles'] : [];
  return {
    label: `attention(${mask ? 'blockwise' : 'dense'},D=${D},Dv=${Dv},Br=${Br},Bc=${Bc},R=${R},C=${C})`,
    bindings: slots,
    tileParam: mask != null,
    grid: [Math.max(1, batch * qBlocks * subBlocks), 1, 1],
    block: [threads, 1, 1],
    code: unit(`${signature(k, slots, tileParam)} {
  __shared__ float ks[${C * DP}];
  __shared__ float vs[${C * DVP}];
  ${mask ? `__shared__ unsigned tileCount;\n  __shared__ unsigned tileList[${mask.nKT}];` : ''}
  const int flat = (int)blockIdx.x / ${subBlocks}, sub = (int)blockIdx.x % ${subBlocks};
  const int bi = flat / ${qBlocks}, qb = flat % ${qBlocks};
  const int lane = (int)(threadIdx.x % ${LANES}u);
  const int lr = sub * ${R} + (int)(threadIdx.x / ${LANES}u);  // row within the query block
  const int i = qb * ${Br} + lr;
  const bool valid = lr < ${Br} && i < ${Sq};
  const int ii = valid ? i : ${Sq - 1};  // rows past the end compute a copy of a real row, unstored
  (void)sub;
  ${indent(coordLines(batchShape, 'bi', bc), '  ')}
  float q[${DL}], o[${DVL}];
  #pragma unroll
  for (int u = 0; u < ${DL}; u++) { const int d = lane + ${LANES} * u; q[u] = d < ${D} ? ${load(k.qSlot, qOff)} : 0.0f; }
  #pragma unroll
  for (int u = 0; u < ${DVL}; u++) o[u] = 0.0f;
  float m = -STOF_INF, l = 0.0f;
  const float ninf = -STOF_INF;
  ${tileLoop}
  // kc: the chunk's first key (not c0: c0, c1, ... are the batch coordinates that the offsets read).
  for (int kc = j0; kc < j0 + ${tileLen} && kc < ${Sk}; kc += ${C}) {
    for (int t = (int)threadIdx.x; t < ${C * DP}; t += ${threads}) {
      const int r = t / ${DP}, d = t % ${DP};
      const int jt = kc + r < ${Sk} ? kc + r : ${Sk - 1};
      ks[t] = d < ${D} ? ${load(k.kSlot, kOff)} : 0.0f;
    }
    for (int t = (int)threadIdx.x; t < ${C * DVP}; t += ${threads}) {
      const int r = t / ${DVP}, d = t % ${DVP};
      const int jt = kc + r < ${Sk} ? kc + r : ${Sk - 1};
      vs[t] = d < ${Dv} ? ${load(k.vSlot, vOff)} : 0.0f;
    }
    __syncthreads();
    // Keys of this chunk: within the tile and the sequence.
    const int jn = min(min(${C}, j0 + ${tileLen} - kc), ${Sk} - kc);
    // Scores of the chunk (registers: the loops are unrolled), then one rescale per chunk.
    float sc[${C}];
    float tmax = m;
    #pragma unroll
    for (int jj = 0; jj < ${C}; jj++) {
      float acc = 0.0f;
      #pragma unroll
      for (int u = 0; u < ${DL}; u++) acc = fmaf(q[u], ks[jj * ${DP} + lane + ${LANES} * u], acc);
      // The row's four partial sums: every lane ends with the same bits (addition commutes).
      acc += __shfl_xor_sync(${shflMask}, acc, 1);
      acc += __shfl_xor_sync(${shflMask}, acc, 2);
      float s = ninf;
      if (jj < jn) {
        const int j = kc + jj;
        (void)j;  // a score without a mask does not read it
        {
          ${score}
        }
        tmax = max_(tmax, s);
      }
      sc[jj] = s;
    }
    // Only -inf so far: no weight yet (a row of only -inf ends 0/0 = NaN, as the chain gives).
    if (tmax != ninf) {
      const float alpha = exp_(m - tmax);
      l *= alpha;
      #pragma unroll
      for (int u = 0; u < ${DVL}; u++) o[u] *= alpha;
      #pragma unroll
      for (int jj = 0; jj < ${C}; jj++) {
        if (jj < jn) {
          const float p = exp_(sc[jj] - tmax);
          l += p;
          #pragma unroll
          for (int u = 0; u < ${DVL}; u++) o[u] = fmaf(p, vs[jj * ${DVP} + lane + ${LANES} * u], o[u]);
        }
      }
      m = tmax;
    }
    __syncthreads();
  }
  }
  if (valid) {
    #pragma unroll
    for (int u = 0; u < ${DVL}; u++) {
      const int e = lane + ${LANES} * u;
      if (e < ${Dv}) ${store(k, offsetCode(k.out, [...bc, 'i', 'e']), 'o[u] / l')}
    }
  }
}`),
  };
}

/** Warps (rows at a time) per block of the row-wise analysis. */
const ROW_WARPS = 8;

/** The row-wise analysis' scratch per (mask batch entry, query block): tile flags x3, row flags, a block counter. */
function rowScratchWords(m: MaskSpec): number {
  return 3 * Math.ceil(m.nKT / 32) + Math.ceil(m.Br / 32) + 1;
}

/**
 * Scratch the analysis needs zeroed before it runs (words at `offset` of the format buffer), or
 * null: the row-wise analysis (Bc a multiple of 32) merges its blocks' flags there.
 */
export function analysisScratch(m: MaskSpec): {offset: number, words: number}|null {
  if (m.Bc % 32 !== 0) return null;
  return {offset: formatWords(m) + (maskBits(m)?.words ?? 0), words: sizeOf(m.maskBatch) * m.nQT * rowScratchWords(m)};
}

/**
 * The analysis for tiles of whole words (Bc a multiple of 32): a warp per row, ROW_WARPS rows per
 * block, so a query block spreads over Br / ROW_WARPS blocks (GPT-2 at S = 1024: 128 blocks, not 8).
 * A row's keys go 32 at a time: each step is one ballot (the row's bitmap word), and the tile flags
 * (any kept, not full, a kept element under a non-zero mask term) are warp-uniform bits in registers,
 * 32 tiles to a word, OR-ed into the query block's scratch once per row and 32 tiles. The block that
 * finishes last (a counter after a fence) lists the query block's tiles. The per-element form below
 * took 0.25 ms per layer for GPT-2's causal mask at S = 1024 on an H200 (8 blocks, shared atomics on
 * one word per row); this one took 0.047 ms with one block per query block.
 */
function maskAnalysisByRows(k: AttentionKernel, em: ReturnType<typeof emitter>, s0: string, zero: string|null, slots: number[],
                            groups: number, coords: string[]): CudaSource {
  const m = k.mask!;
  const {Sq, Sk} = k;
  const {Br, Bc, nQT, nKT} = m;
  const bits = maskBits(m);
  const perTile = Bc / 32, tileWords = Math.ceil(nKT / 32);
  const parts = Math.ceil(Br / ROW_WARPS);
  const scratch = analysisScratch(m)!;
  return {
    label: `mask-analysis(Br=${Br},Bc=${Bc}${bits ? ',bits' : ''},rows)`,
    bindings: slots,
    grid: [Math.max(1, groups) * parts, 1, 1],
    block: [32 * ROW_WARPS, 1, 1],
    code: unit(`${signature(k, slots, [], 'unsigned')} {
  __shared__ bool last;
  const int flat = (int)blockIdx.x / ${parts}, part = (int)blockIdx.x % ${parts};
  const int mb = flat / ${nQT}, qt = flat % ${nQT};
  const int lane = (int)(threadIdx.x & 31u), warp = (int)(threadIdx.x >> 5);
  // This query block's scratch: any kept / not full / mixed per tile, kept per row, the block counter.
  unsigned* const anyG = out + ${scratch.offset}u + (unsigned)flat * ${rowScratchWords(m)}u;
  unsigned* const notFullG = anyG + ${tileWords};
  unsigned* const mixedG = notFullG + ${tileWords};
  unsigned* const rowKept = mixedG + ${tileWords};
  unsigned* const done = rowKept + ${Math.ceil(Br / 32)};
  ${indent(coordLines(m.maskBatch, 'mb', coords), '  ')}
  const int r = part * ${ROW_WARPS} + warp;
  if (r < ${Br}) {
    const int i = qt * ${Br} + r;
    unsigned rowAny = 0u;
    for (int tg = 0; tg < ${nKT}; tg += 32) {
      unsigned anyW = 0u, notFullW = 0u, mixedW = 0u;
      for (int t = 0; t < 32 && tg + t < ${nKT}; t++) {
        for (int w = 0; w < ${perTile}; w++) {
          const int j = (tg + t) * ${Bc} + w * 32 + lane;
          bool kept = false, in = false, noop = false;
          if (i < ${Sq} && j < ${Sk}) {
            ${indent(em.lines, '            ')}
            in = true;
            kept = !(${s0} <= ${MASKED_AT_OR_BELOW}.0f);  // NaN is kept
            noop = ${zero ? `${zero} != 0.0f` : 'false'};
          }
          const unsigned word = __ballot_sync(0xffffffffu, kept);
          const unsigned notFull = __ballot_sync(0xffffffffu, in && (!kept || !noop));
          const unsigned mixed = __ballot_sync(0xffffffffu, kept && !noop);
          ${bits ? `if (lane == 0) out[${formatWords(m)}u + (unsigned)((mb * ${nQT * Br} + i) * ${bits.rowWords} + (tg + t) * ${perTile} + w)] = word;` : '(void)mixed;'}
          if (word != 0u) anyW |= 1u << t;
          if (notFull != 0u) notFullW |= 1u << t;
          if (mixed != 0u) mixedW |= 1u << t;
        }
      }
      rowAny |= anyW;
      if (lane == 0) {
        if (anyW) atomicOr(&anyG[tg / 32], anyW);
        if (notFullW) atomicOr(&notFullG[tg / 32], notFullW);
        if (mixedW) atomicOr(&mixedG[tg / 32], mixedW);
      }
    }
    if (lane == 0 && rowAny != 0u) atomicOr(&rowKept[r / 32], 1u << (r % 32));
  }
  // The last block of the query block to finish sees every other block's flags (fence, then count).
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(done, 1u) == ${parts - 1}u;
  __syncthreads();
  if (!last || threadIdx.x != 0) return;
  __threadfence();
  const volatile unsigned* const anyV = anyG;
  const volatile unsigned* const notFullV = notFullG;
  const volatile unsigned* const mixedV = mixedG;
  const volatile unsigned* const rowV = rowKept;
  bool dense = false;
  for (int q = 0; q < ${Br}; q++) {
    if (qt * ${Br} + q < ${Sq} && (rowV[q / 32] & (1u << (q % 32))) == 0u) dense = true;
  }
  const unsigned base = (unsigned)flat * ${nKT + 1}u;
  unsigned n = 0u;
  for (int kt = 0; kt < ${nKT}; kt++) {
    const unsigned bit = 1u << (kt % 32);
    const bool anyB = (anyV[kt / 32] & bit) != 0u, notFullB = (notFullV[kt / 32] & bit) != 0u, mixedB = (mixedV[kt / 32] & bit) != 0u;
    (void)mixedB;
    const unsigned kind = dense ? ${TILE_PARTIAL}u : (!anyB ? ${TILE_EMPTY}u : (!notFullB ? ${TILE_FULL}u : ${bits ? `(mixedB ? ${TILE_PARTIAL}u : ${TILE_BITS}u)` : `${TILE_PARTIAL}u`}));
    if (kind != ${TILE_EMPTY}u) { out[base + 1u + n] = (unsigned)kt | (kind << 16); n++; }
  }
  out[base] = n;
}`),
  };
}

/** Words of the CUDA analysis' output: the tile format, then the bitmap where the mask has one, then the analysis' scratch. */
export function cudaFormatWords(m: MaskSpec): number {
  return formatWords(m) + (maskBits(m)?.words ?? 0) + (analysisScratch(m)?.words ?? 0);
}

/**
 * The mask's tile format (../sparse/mask_format.ts), one block of 256 threads per (mask batch
 * entry, query block), exactly as the WGSL analysis: every score element of the block is classified
 * from the mask expression at q·k = 0, tile by tile; then thread 0 lists the non-empty tiles. A
 * block with a query row that keeps no key lists every tile as partial. Where the mask has a bitmap
 * (maskBits), each warp's 32 elements are one word of a row (Bc is a multiple of 32), stored from a
 * ballot, and partial tiles with no kept element under a non-zero mask term become TILE_BITS.
 */
export function maskAnalysisCuda(k: AttentionKernel): CudaSource {
  const m = k.mask;
  if (m == null) throw new Error('maskAnalysisCuda: the attention kernel has no mask (dense)');
  const {Sq, Sk} = k;
  const {Br, Bc, nQT, nKT} = m;
  const groups = sizeOf(m.maskBatch) * nQT;
  const coords = m.maskBatch.map((_, i) => `c${i}`);
  const em = emitter(k, 'a', [...coords, 'i', 'j']);
  const s0 = em.emit(m.s0);
  const zero = m.zero ? em.emit(m.zero) : null;
  const slots = slotsOf(m.zero ? [m.s0, m.zero] : [m.s0]);
  const words = Math.ceil(Br / 32);
  const bits = maskBits(m);
  const mixedKind = bits ? `(mixedB == 0 ? ${TILE_BITS}u : ${TILE_PARTIAL}u)` : `${TILE_PARTIAL}u`;
  // Tiles of whole 32-key words (every CUDA plan): a warp per row, one ballot per word.
  if (Bc % 32 === 0) return maskAnalysisByRows(k, em, s0, zero, slots, groups, coords);
  return {
    label: `mask-analysis(Br=${Br},Bc=${Bc}${bits ? ',bits' : ''})`,
    bindings: slots,
    grid: [Math.max(1, groups), 1, 1],
    block: [256, 1, 1],
    code: unit(`${signature(k, slots, [], 'unsigned')} {
  __shared__ unsigned kinds[${nKT}];
  __shared__ unsigned rowKept[${words}];
  const int flat = (int)blockIdx.x;
  const int mb = flat / ${nQT}, qt = flat % ${nQT};
  ${indent(coordLines(m.maskBatch, 'mb', coords), '  ')}
  if (threadIdx.x < ${words}u) rowKept[threadIdx.x] = 0u;
  __syncthreads();
  for (int kt = 0; kt < ${nKT}; kt++) {
    int anyKept = 0, notFull = 0, mixed = 0;
    for (int e = (int)threadIdx.x; e < ${Br * Bc}; e += 256) {
      const int r = e / ${Bc};
      const int i = qt * ${Br} + r;
      const int j = kt * ${Bc} + e % ${Bc};
      bool kept = false;
      if (i < ${Sq} && j < ${Sk}) {
        ${indent(em.lines, '        ')}
        kept = !(${s0} <= ${MASKED_AT_OR_BELOW}.0f);  // NaN is kept
        const bool noop = ${zero ? `${zero} != 0.0f` : 'false'};
        if (kept) { anyKept = 1; atomicOr(&rowKept[r / 32], 1u << (r % 32)); }
        if (!kept || !noop) notFull = 1;
        if (kept && !noop) mixed = 1;
      }
      ${bits ? `// Warp-uniform trip count (Br·Bc is a multiple of 32): the ballot is row i's word of keys j - lane + 0..31.
      const unsigned word = __ballot_sync(0xffffffffu, kept);
      if ((threadIdx.x & 31u) == 0u) out[${formatWords(m)}u + (unsigned)((mb * ${nQT * Br} + i) * ${bits.rowWords} + j / 32)] = word;` : '(void)mixed;'}
    }
    // Block-wide OR of the flags (also the barrier before kinds[] is read).
    const int anyB = __syncthreads_or(anyKept), notFullB = __syncthreads_or(notFull), mixedB = __syncthreads_or(mixed);
    (void)mixedB;
    if (threadIdx.x == 0) kinds[kt] = anyB == 0 ? ${TILE_EMPTY}u : (notFullB == 0 ? ${TILE_FULL}u : ${mixedKind});
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    bool dense = false;
    for (int r = 0; r < ${Br}; r++) {
      if (qt * ${Br} + r < ${Sq} && (rowKept[r / 32] & (1u << (r % 32))) == 0u) dense = true;
    }
    const unsigned base = (unsigned)flat * ${nKT + 1}u;
    unsigned n = 0u;
    for (int kt = 0; kt < ${nKT}; kt++) {
      const unsigned kind = dense ? ${TILE_PARTIAL}u : kinds[kt];
      if (kind != ${TILE_EMPTY}u) { out[base + 1u + n] = (unsigned)kt | (kind << 16); n++; }
    }
    out[base] = n;
  }
}`),
  };
}
