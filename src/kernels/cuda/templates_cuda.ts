// The compilation templates as CUDA C, from the same Kernel objects the planner gives to WGSL:
// elementwise (one thread per element) and row programs (one block per row, warp shuffles) here;
// GEMM in gemm_cuda.ts; attention and the mask analysis in attention_cuda.ts. Shapes are
// compile-time constants, so index arithmetic folds; modules are cached by source.
import {sizeOf} from '../../fusion/access';
import {Expr} from '../../fusion/expr';
import {ElementwiseKernel, Kernel, RowKernel} from '../../fusion/planner';

import {attentionCuda} from './attention_cuda';
import {attentionMmaQualifies, attentionMmaCuda} from './attention_mma_cuda';
import {checkSizes, coordLines, CudaSource, emitter, indent, signature, slotsOf, store, unit} from './cuda_common';
import {gemmCuda, GemmPrecision} from './gemm_cuda';

export {analysisScratch, cudaFormatWords, maskAnalysisCuda} from './attention_cuda';
export {attentionMmaQualifies, attentionMmaUnsupported} from './attention_mma_cuda';
export type {CudaSource} from './cuda_common';
export type {GemmPrecision} from './gemm_cuda';

const EW_BLOCK = 256;

function elementwise(k: ElementwiseKernel): CudaSource {
  const shape = k.output.shape, size = sizeOf(shape);
  checkSizes(k);
  const coords = shape.map((_, i) => `c${i}`);
  const em = emitter(k, 't', coords, undefined, 'idx');
  const value = em.emit(k.expr);
  const slots = slotsOf([k.expr]);
  return {
    label: 'elementwise',
    bindings: slots,
    grid: [Math.max(1, Math.ceil(size / EW_BLOCK)), 1, 1],
    block: [EW_BLOCK, 1, 1],
    code: unit(`${signature(k, slots)} {
  const int idx = (int)(blockIdx.x * ${EW_BLOCK}u + threadIdx.x);
  if (idx >= ${size}) return;
  ${indent(coordLines(shape, 'idx', coords), '  ')}
  ${indent(em.lines, '  ')}
  ${store(k, 'idx', value)}
}`),
  };
}

/** Threads of a row block: about four elements each (fewer, longer chains), whole warps, at most 1024. */
export function rowThreads(L: number): number {
  return Math.min(1024, Math.max(32, 2 ** Math.ceil(Math.log2(Math.max(1, L / 4)))));
}

function row(k: RowKernel): CudaSource {
  const {rowShape, rows, length: L} = k;
  checkSizes(k, [rowShape]);
  const r = rowShape.length;
  const T = rowThreads(L), warps = T / 32;
  const coords = rowShape.map((_, i) => `c${i}`);
  const leaf = (e: Expr) => (e.k === 'rv' ? `rv${e.stage}` : null);
  const stages = k.stages.map((st, s) => {
    const em = emitter(k, `s${s}_`, coords, leaf);
    const x = em.emit(st.x);
    const init = st.op === 'max' ? '(-STOF_INF)' : '0.0f';
    const combine = (a: string, b: string) => (st.op === 'max' ? `max_(${a}, ${b})` : `(${a} + ${b})`);
    // Each thread folds its columns, then the warp (shuffles), then the warps' partials (warp 0).
    return `
  float acc${s} = ${init};
  for (int col = (int)threadIdx.x; col < ${L}; col += ${T}) {
    const int ${coords[r - 1]} = col; (void)${coords[r - 1]};
    ${indent(em.lines, '    ')}
    acc${s} = ${combine(`acc${s}`, x)};
  }
  for (int o = 16; o > 0; o >>= 1) acc${s} = ${combine(`acc${s}`, `__shfl_xor_sync(0xffffffffu, acc${s}, o)`)};
  if (lane == 0) red[warp] = acc${s};
  __syncthreads();
  if (warp == 0) {
    float w = lane < ${warps} ? red[lane] : ${init};
    for (int o = 16; o > 0; o >>= 1) w = ${combine('w', '__shfl_xor_sync(0xffffffffu, w, o)')};
    if (lane == 0) red[32] = w;
  }
  __syncthreads();
  const float rv${s} = red[32];
  __syncthreads();`;
  });
  const em = emitter(k, 'o', coords, leaf);
  const value = em.emit(k.expr);
  const outStage = k.scalar ?
      `if (threadIdx.x == 0) {
    const int ${coords[r - 1]} = 0; (void)${coords[r - 1]};
    ${indent(em.lines, '    ')}
    ${store(k, 'row', value)}
  }` :
      `for (int col = (int)threadIdx.x; col < ${L}; col += ${T}) {
    const int ${coords[r - 1]} = col; (void)${coords[r - 1]};
    ${indent(em.lines, '    ')}
    ${store(k, `row * ${L} + col`, value)}
  }`;
  const slots = slotsOf([...k.stages.map(s => s.x), k.expr]);
  return {
    label: `row(L=${L},T=${T})`,
    bindings: slots,
    grid: [Math.max(rows, 1), 1, 1],
    block: [T, 1, 1],
    code: unit(`${signature(k, slots)} {
  __shared__ float red[33];
  const int row = (int)blockIdx.x;
  const int lane = (int)(threadIdx.x & 31u), warp = (int)(threadIdx.x >> 5);
  (void)lane; (void)warp;
  ${indent(coordLines(rowShape.slice(0, -1), 'row', coords), '  ')}
  ${stages.join('\n')}
  ${outStage}
}`),
  };
}

export interface CudaTemplateOptions {
  /** GEMM arithmetic: tf32 tensor cores (mma.sync) or plain fp32 FMAs (the default, exact fp32). */
  gemm?: GemmPrecision;
  /**
   * Attention arithmetic: 'fp32' (default; CUDA cores, exact fp32) or 'fp16' (tensor cores,
   * attention_mma_cuda.ts: fp16 Q/K/V/P, fp32 accumulation and softmax, ~1e-3 relative). Shapes the
   * tensor-core kernel does not take (head dims not multiples of 16, Br not a multiple of 16, ...)
   * run the fp32 kernel.
   */
  attention?: AttentionPrecision;
  /** Keys per K/V chunk of the tensor-core attention kernel (16, 32 or 64; default: by its registers). For tuning. */
  attentionKeys?: number;
  /** Query rows per CTA of the dense tensor-core attention kernel (16, 32, 64, 128; default 128 for head dims up to 64). For tuning. */
  attentionRows?: number;
  /** CTAs per SM the tensor-core attention kernel is compiled to fit (__launch_bounds__; 0: none; default by shape). For tuning. */
  attentionMinBlocks?: number;
  /** The tensor-core attention with Q/K/V packed to fp16 first (attention_mma_cuda.ts stagedOf); default by shape. */
  attentionStaged?: boolean;
  /** 16-row tiles per warp of the tensor-core attention (1 or 2; default 2 for the staged dense kernel, else 1). For tuning. */
  attentionMtiles?: number;
}

export type AttentionPrecision = 'fp32'|'fp16';

/** The CUDA C of a planned kernel (alias kernels have none: they share storage). */
export function cudaSourceOf(k: Kernel, options: CudaTemplateOptions = {}): CudaSource {
  switch (k.template) {
    case 'elementwise': return elementwise(k);
    case 'row': return row(k);
    case 'gemm': return gemmCuda(k, options.gemm ?? 'fp32');
    case 'attention': {
      const mma = {keys: options.attentionKeys, rows: options.attentionRows, minBlocks: options.attentionMinBlocks, staged: options.attentionStaged,
                   mtiles: options.attentionMtiles};
      return options.attention === 'fp16' && attentionMmaQualifies(k, mma) ? attentionMmaCuda(k, mma) : attentionCuda(k);
    }
    case 'alias': throw new Error('cuda templates: alias kernels share storage and have no code');
  }
}
