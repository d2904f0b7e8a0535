// Candidate builders for the fusion choices of the STOF search: masked attention (row-wise,
// block-wise with a tile class, or unfused GEMM + softmax + GEMM; the mask created inside the
// attention kernel or separately), a GEMM epilogue fused or separate, and LayerNorm in a GEMM
// epilogue or as a row kernel. They turn shapes (and the mask analysis' tile occupancy) into
// KernelEstimates; they do not need the device: score() judges limits and speed.
import {BLOCKWISE_BC, blockwiseStorage, rowwiseStorage} from '../fusion/planner';

import type {Candidate, KernelEstimate} from './cost_model';

const F32 = 4;
/** Flops per attention score besides the two dot products: scale, mask, max, exp, sum. */
export const SOFTMAX_FLOPS = 8;
/** Rows per workgroup of the row-wise attention kernel, and its key blocks (the mask's tile width). */
export const ROWWISE_ROWS = [1, 2, 4, 8, 16, 32];
export const ROWWISE_KEY_BLOCK = 32;
/** Tile classes Br × Bc of the block-wise attention kernel (2·Br invocations); the mask analysis reports occupancy for each. */
export const BLOCK_TILES: ReadonlyArray<{Br: number, Bc: number}> = [16, 32, 64].map(Br => ({Br, Bc: BLOCKWISE_BC}));
/** GEMM output tiles; each invocation computes 4 × 4 outputs. */
export const GEMM_TILES: ReadonlyArray<{BM: number, BN: number}> = [{BM: 32, BN: 32}, {BM: 64, BN: 64}, {BM: 128, BN: 64}];
/** Accumulators one invocation can hold in registers (a LayerNorm epilogue needs the tile's whole rows). */
export const MAX_ACCUMULATORS = 64;
/** Rows of LayerNorm-epilogue GEMM tiles (BN is the whole row). */
export const LAYERNORM_ROWS = [4, 8, 16, 32];

export const tileKey = (Br: number, Bc: number) => `${Br}x${Bc}`;

// ---- GEMM ------------------------------------------------------------------------------------

export interface GemmDesc {
  /** Independent matmuls (batched); a weight shared by rows goes into M instead. Default 1. */
  batch?: number;
  M: number; N: number; K: number;
  /** Elementwise work on the output: bytes it reads besides the accumulator (bias, residual), flops per output element. */
  epilogue?: {inputBytes: number, flopsPerElement: number};
}

export interface GemmTile {
  BM: number;
  BN: number;
  /** K panel width; default: the widest of 32, 16, 8, 4 whose two operand panels fit in 32 KiB. */
  BK?: number;
  /** Default BM·BN/16 (4 × 4 outputs per invocation). */
  invocations?: number;
}

/** The widest K panel whose A and B panels fit in `bytes` of workgroup storage. */
export function panelWidth(BM: number, BN: number, bytes = 32768): number {
  return [32, 16, 8, 4].find(bk => (BM + BN) * bk * F32 <= bytes) ?? 4;
}

/** A register-blocked GEMM with a K loop over BK-wide panels in workgroup storage. */
export function gemmKernel(g: GemmDesc, t: GemmTile, name = 'gemm'): KernelEstimate {
  const batch = g.batch ?? 1;
  const inv = t.invocations ?? Math.max(32, t.BM * t.BN / 16);
  const BK = t.BK ?? panelWidth(t.BM, t.BN);
  const mb = Math.ceil(g.M / t.BM), nb = Math.ceil(g.N / t.BN);
  return {
    name,
    workgroups: batch * mb * nb,
    invocations: inv,
    bytes: batch * (g.M * g.K + g.K * g.N + g.M * g.N) * F32 + (g.epilogue?.inputBytes ?? 0),
    // Each A panel is read by nb workgroups, each B panel by mb: all but the first read hit the cache.
    cachedBytes: batch * (g.M * g.K * (nb - 1) + g.K * g.N * (mb - 1)) * F32,
    flops: batch * g.M * g.N * (2 * g.K + (g.epilogue?.flopsPerElement ?? 0)),
    barriers: 2 * Math.ceil(g.K / BK),
    serialLoads: Math.ceil(g.K / BK),  // each K panel is loaded, then waited for at the barrier
    sharedBytes: (t.BM + t.BN) * BK * F32,
  };
}

/** An elementwise kernel over `elements` outputs (4 per invocation). */
export function elementwiseKernel(elements: number, bytes: number, flops: number, name = 'elementwise'): KernelEstimate {
  return {name, workgroups: Math.max(1, Math.ceil(elements / 1024)), invocations: 256, bytes, flops};
}

/** 'gemm-epilogue-fused' (one kernel) and 'gemm-epilogue-separate' (GEMM, then an elementwise kernel), per tile. */
export function gemmEpilogueCandidates(g: GemmDesc, tiles: ReadonlyArray<GemmTile> = GEMM_TILES): Candidate[] {
  const out: Candidate[] = [];
  const elements = (g.batch ?? 1) * g.M * g.N;
  const epi = g.epilogue ?? {inputBytes: 0, flopsPerElement: 0};
  for (const t of tiles) {
    const params = {BM: t.BM, BN: t.BN, BK: t.BK ?? panelWidth(t.BM, t.BN)};
    out.push({scheme: 'gemm-epilogue-fused', params, space: {vec: [4, 1]}, kernels: [gemmKernel(g, t)]});
    out.push({
      scheme: 'gemm-epilogue-separate', params, space: {vec: [4, 1]},
      kernels: [gemmKernel({...g, epilogue: undefined}, t),
                elementwiseKernel(elements, 2 * elements * F32 + epi.inputBytes, elements * epi.flopsPerElement, 'epilogue')],
    });
  }
  return out;
}

// ---- LayerNorm ---------------------------------------------------------------------------------

export interface LayerNormDesc {
  /** Rows normalized (tokens). */
  M: number;
  /** Row length (hidden size): the producing GEMM's N. */
  N: number;
  /** The producing GEMM's inner dimension. */
  K: number;
  /** A residual added before the normalization (read M·N). */
  residual?: boolean;
  /** A bias added by the GEMM. */
  bias?: boolean;
}

/** Flops per element of LayerNorm: mean, variance, normalize, scale and shift. */
const LAYERNORM_FLOPS = 8;

/**
 * LayerNorm(GEMM + bias + residual): 'layernorm-gemm-epilogue' (GEMM tiles span whole rows, the
 * row statistics are reduced in the epilogue) or 'layernorm-row' (the GEMM stores bias + residual,
 * a row kernel normalizes; rows per workgroup is a stage-2 parameter).
 */
export function layerNormCandidates(d: LayerNormDesc, tiles: ReadonlyArray<GemmTile> = GEMM_TILES): Candidate[] {
  const addBytes = ((d.residual ? d.M * d.N : 0) + (d.bias ? d.N : 0)) * F32;
  const addFlops = (d.residual ? 1 : 0) + (d.bias ? 1 : 0);
  const out: Candidate[] = [];
  for (const BM of LAYERNORM_ROWS) {
    const inv = 256;
    // Whole-row tiles have wide B panels: a panel width for 32 KiB of storage, and a narrower one for 16 KiB (WebGPU's default limit).
    for (const BK of new Set([panelWidth(BM, d.N), panelWidth(BM, d.N, 16384)])) {
      const c: Candidate = {
        scheme: 'layernorm-gemm-epilogue', params: {BM, BN: d.N, BK}, space: {vec: [4, 1]},
        kernels: [gemmKernel({M: d.M, N: d.N, K: d.K, epilogue: {inputBytes: addBytes + 2 * d.N * F32, flopsPerElement: addFlops + LAYERNORM_FLOPS}},
                             {BM, BN: d.N, BK, invocations: inv}, 'gemm+layernorm')],
      };
      c.kernels[0].barriers! += 4;  // two row reductions across the tile
      if (BM * d.N / inv > MAX_ACCUMULATORS) c.infeasible = `a ${BM}×${d.N} tile needs ${BM * d.N / inv} accumulators per invocation (> ${MAX_ACCUMULATORS})`;
      out.push(c);
    }
  }
  for (const t of tiles) {
    out.push({
      scheme: 'layernorm-row', params: {BM: t.BM, BN: t.BN, BK: t.BK ?? panelWidth(t.BM, t.BN)}, space: {rows: [1, 2, 4], vec: [4, 1]},
      kernels: [
        gemmKernel({M: d.M, N: d.N, K: d.K, epilogue: {inputBytes: addBytes, flopsPerElement: addFlops}}, t),
        {name: 'layernorm', workgroups: d.M, invocations: 256, bytes: (2 * d.M * d.N + 2 * d.N) * F32,
         flops: d.M * d.N * LAYERNORM_FLOPS, barriers: 4},
      ],
    });
  }
  return out;
}

// ---- attention ---------------------------------------------------------------------------------

export interface AttentionMask {
  /** Distinct [Sq, Sk] masks (1: one shared by batch and heads; B: one per sequence, e.g. padding). */
  instances: number;
  /** Bytes per element of the stored mask (4: an additive float bias; 1: bool). */
  bytesPerElement: number;
  /** Set while the mask is an expression of pending ops: it can be computed inside the attention kernel. */
  pending?: {inputBytes: number, flopsPerElement: number};
  /** Attention calls sharing the mask (the layers of a forward): its creation and analysis are amortized. Default 1. */
  uses?: number;
  /** The analysis (tile kinds, row ranges) of this mask is already cached. */
  analyzed?: boolean;
}

export interface AttentionDesc {
  B: number; H: number; Sq: number; Sk: number; D: number;
  /** Head dimension of V (default D). */
  Dv?: number;
  /** Fraction of non-empty Br×Bc tiles per tile class tileKey(Br, Bc), from the mask analysis; a class not listed counts as dense. */
  tileOccupancy?: Record<string, number>;
  /** Fraction of the non-empty tiles that are full (no element mask loaded): one number or per tile class. Default 0 with a mask. */
  fullFraction?: number|Record<string, number>;
  /** Fraction of (query, key) pairs visible (row-wise kernels skip at this granularity). Default: the smallest tile occupancy, else 1. */
  density?: number;
  mask?: AttentionMask;
}

interface MaskMode {
  fused: boolean;  // the mask expression is evaluated inside the kernel: nothing to skip
  kernels: KernelEstimate[];  // mask creation and analysis, amortized over uses
}

function maskModes(d: AttentionDesc): MaskMode[] {
  const m = d.mask;
  if (m == null) return [{fused: false, kernels: []}];
  const uses = Math.max(1, m.uses ?? 1);
  const elements = m.instances * d.Sq * d.Sk;
  const analysis: KernelEstimate[] = m.analyzed ? [] : [{
    name: 'mask-analysis', launches: 1 / uses, workgroups: Math.max(1, Math.ceil(elements / 4096)), invocations: 256,
    bytes: elements * m.bytesPerElement / uses, flops: elements / uses,
  }];
  if (m.pending == null) return [{fused: false, kernels: analysis}];
  const create: KernelEstimate = {
    ...elementwiseKernel(elements, (m.pending.inputBytes + elements * m.bytesPerElement) / uses, elements * m.pending.flopsPerElement / uses, 'mask'),
    launches: 1 / uses,
  };
  return [{fused: true, kernels: []}, {fused: false, kernels: [create, ...analysis]}];
}

const fullOf = (d: AttentionDesc, key: string) =>
    typeof d.fullFraction === 'number' ? d.fullFraction : d.fullFraction?.[key] ?? (d.mask == null ? 1 : 0);

/**
 * Attention candidates: 'attention-rowwise' (params.rows: whole score rows in workgroup storage,
 * skipping invisible keys), 'attention-blockwise' (params.Br, params.Bc: flash-style online softmax
 * over tiles, empty tiles skipped) and 'attention-unfused' (QKᵀ GEMM, softmax, PV GEMM; the S×S
 * scores go through memory). With a pending mask, params.maskFused says whether the kernel
 * evaluates the mask itself (1) or reads it after a separate creation and analysis (0).
 */
export function attentionCandidates(d: AttentionDesc): Candidate[] {
  const BH = d.B * d.H, Dv = d.Dv ?? d.D, {Sq, Sk, D} = d;
  const occupancies = Object.values(d.tileOccupancy ?? {});
  const density = Math.min(1, d.density ?? (occupancies.length > 0 && d.mask != null ? Math.min(...occupancies) : 1));
  const qkvo = BH * (Sq * (D + Dv) + Sk * (D + Dv)) * F32;  // Q, K, V read and O written once
  const kvBytes = BH * Sk * (D + Dv) * F32;
  const scoreFlops = 2 * D + 2 * Dv + SOFTMAX_FLOPS;
  const m = d.mask;
  const out: Candidate[] = [];

  for (const mode of maskModes(d)) {
    const maskParam: Record<string, number> = m?.pending ? {maskFused: mode.fused ? 1 : 0} : {};
    const inlineFlops = mode.fused ? m!.pending!.flopsPerElement : 0;
    const inlineBytes = mode.fused ? m!.pending!.inputBytes : 0;

    for (const rows of ROWWISE_ROWS) {
      if (rows > 1 && rows / 2 >= Sq) break;
      const dens = mode.fused ? 1 : density;
      const groups = Math.ceil(Sq / rows), W = BH * groups;
      // Row bitmaps of the analysis (one bit per key) where a mask is read.
      const bitmap = m != null && !mode.fused ? m.instances * Sq * (Sk / 8 + 8) : 0;
      // Keys a group of rows touches: the analysis' occupancy of rows × 32 tiles where it has that class,
      // else the visible keys of one row widened by the group's height (exact for banded masks).
      const groupOcc = mode.fused ? undefined : d.tileOccupancy?.[tileKey(rows, 32)];
      const cols = Sk * Math.max(dens, Math.min(1, groupOcc ?? dens + (rows - 1) / Sk));
      // About 16 scores per invocation (a power of two, at least one per row: the row reductions split the workgroup).
      const threads = 2 ** Math.ceil(Math.log2(Math.min(256, Math.max(64, rows, rows * Sk / 16))));
      out.push({
        scheme: 'attention-rowwise', params: {rows, ...maskParam}, space: {threads: [...new Set([threads, 64, 128, 256])].filter(t => t >= rows)},
        kernels: [...mode.kernels, {
          name: 'attention-rowwise', workgroups: W, invocations: threads,
          bytes: qkvo + bitmap + inlineBytes,
          cachedBytes: Math.max(0, W * cols * (D + Dv) * F32 - kvBytes) + (bitmap > 0 ? (BH / m!.instances - 1) * bitmap : 0),
          flops: BH * Sq * Sk * (dens * scoreFlops + inlineFlops),
          barriers: 4 + 2 * Math.log2(Math.max(1, threads / rows)),
          // Each invocation's output columns loop over the keys, a V row load each; the score phase, a K row per key.
          serialLoads: Math.ceil(rows * Dv / 4 / threads) * cols + Math.ceil(cols / threads),
          sharedBytes: rowwiseStorage(rows, ROWWISE_KEY_BLOCK, threads, Sk, D),
        }],
      });
    }

    for (const {Br, Bc} of BLOCK_TILES) {
      const key = tileKey(Br, Bc);
      const occ = mode.fused ? 1 : Math.min(1, d.tileOccupancy?.[key] ?? 1);
      const full = mode.fused ? 1 : fullOf(d, key);  // fused: no mask loads (it is computed)
      const rb = Math.ceil(Sq / Br), cb = Math.ceil(Sk / Bc);
      const tiles = BH * rb * cb * occ, W = BH * rb;
      // Partial tiles' mask elements and the tile list, where a stored mask is read.
      const maskRead = m != null && !mode.fused ? m.instances * rb * cb * occ * ((1 - full) * Br * Bc * m.bytesPerElement + 8) : 0;
      out.push({
        scheme: 'attention-blockwise', params: {Br, Bc, ...maskParam},
        kernels: [...mode.kernels, {
          // 4 query rows × 4 keys per invocation.
          name: 'attention-blockwise', workgroups: W, invocations: 2 * Br,
          bytes: qkvo + maskRead + inlineBytes,
          cachedBytes: Math.max(0, tiles * Bc * (D + Dv) * F32 - kvBytes) + (maskRead > 0 ? (BH / m!.instances - 1) * maskRead : 0),
          // Online softmax rescales the Br × Dv accumulator at every tile.
          flops: tiles * (Br * Bc * (scoreFlops + inlineFlops) + Br * (2 * Dv + 4)),
          barriers: 3 * tiles / W + 2,
          // Per tile, the K and V tile loads of each invocation (vec4s) wait on memory before the barrier.
          serialLoads: (tiles / W) * Math.ceil(Bc * (D + Dv) / 4 / (2 * Br)),
          sharedBytes: blockwiseStorage(Br, Bc, Sk, D, Dv),
        }],
      });
    }
  }

  // Unfused: the mask (stored or pending) is read or computed by the softmax kernel's prologue.
  const scores = BH * Sq * Sk;
  const maskBytes = m == null ? 0 : m.pending ? m.pending.inputBytes : m.instances * Sq * Sk * m.bytesPerElement;
  out.push({
    scheme: 'attention-unfused', params: {BM: 64, BN: 64}, space: {vec: [4, 1]},
    kernels: [
      gemmKernel({batch: BH, M: Sq, N: Sk, K: D}, {BM: 64, BN: 64}, 'qk-gemm'),
      {name: 'softmax', workgroups: scores / Sk, invocations: 256, bytes: 2 * scores * F32 + maskBytes,
       cachedBytes: m != null && !m.pending ? (BH / m.instances - 1) * maskBytes : 0,
       flops: scores * (SOFTMAX_FLOPS + (m?.pending?.flopsPerElement ?? 0)), barriers: 4},
      gemmKernel({batch: BH, M: Sq, N: Dv, K: Sk}, {BM: 64, BN: 64}, 'pv-gemm'),
    ],
  });
  return out;
}
