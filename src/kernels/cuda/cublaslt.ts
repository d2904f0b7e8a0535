// GEMMs through cuBLASLt where a planned GEMM is one that cuBLASLt computes as is: strided
// (optionally transposed) operands, a contiguous output, and an epilogue of nothing, a bias along
// n, or ReLU of that. Row-major is had by the usual swap: D = A·B row-major is Dᵀ = Bᵀ·Aᵀ
// column-major, so cuBLASLt's (m, n) are our (N, M) and its per-row bias is our per-column bias.
// Other epilogues (tfjs's GELU is erf-based; cuBLASLt's GELU is the tanh approximation) run as an
// elementwise kernel after the product (gemm_split.ts).
import {AccessMap, isIdentity, mergeTerms, sizeOf} from '../../fusion/access';
import {Expr} from '../../fusion/expr';
import {GemmKernel} from '../../fusion/planner';

import type {CudaDevice, DevicePtr} from './cuda_device';
import type {Api} from './cuda_libs';

// cublasLt.h / library_types.h values.
const CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77, CUDA_R_32F = 0;
const DESC_TRANSA = 3, DESC_TRANSB = 4, DESC_EPILOGUE = 7, DESC_BIAS_POINTER = 8, DESC_BIAS_BATCH_STRIDE = 10;
const LAYOUT_BATCH_COUNT = 5, LAYOUT_STRIDED_BATCH_OFFSET = 6;
const PREF_MAX_WORKSPACE_BYTES = 1;
const EPILOGUE = {none: 1, relu: 2, bias: 4, relu_bias: 6, gelu: 32, gelu_bias: 36} as const;
const OP_N = 0, OP_T = 1;
/** sizeof(cublasLtMatmulHeuristicResult_t): algo (64 bytes), workspaceSize, state, wavesCount, reserved[4]. */
const HEURISTIC_BYTES = 96;
const WORKSPACE_BYTES = 32 << 20;

export type LtEpilogue = keyof typeof EPILOGUE;

/** One operand as cuBLASLt sees it: element offset, leading dimension, transposed or not, batch stride. */
export interface LtOperand {
  offset: number;
  ld: number;
  /** Row-major [rows, cols] stored transposed (i.e. as [cols, rows]). */
  transposed: boolean;
  batchStride: number;
}

export interface LtProblem {
  M: number; N: number; K: number; batch: number;
  a: LtOperand; b: LtOperand;
  epilogue: LtEpilogue;
  /** Input slot of the bias (epilogues with a bias), and its element offset. */
  biasSlot: number|null;
  biasOffset: number;
}

/** Single term (div 1, no effective modulo) stride of domain dim d, or null. */
function plainStride(m: AccessMap, d: number): number|null {
  const terms = m.dims[d];
  if (m.shape[d] === 1 || terms.length === 0) return 0;  // size 1, or broadcast
  if (terms.length !== 1) return null;
  const t = terms[0];
  return t.div === 1 && (t.mod === 0 || t.mod >= m.shape[d]) ? t.stride : null;
}

/** A map over [...batch, R, C] as a strided matrix (row-major, or transposed), or null. */
function operand(m: AccessMap): LtOperand|null {
  const r = m.shape.length;
  const R = m.shape[r - 2], C = m.shape[r - 1];
  const sr = plainStride(m, r - 2), sc = plainStride(m, r - 1);
  if (sr == null || sc == null || (sr === 0 && R > 1) || (sc === 0 && C > 1)) return null;  // broadcast rows or columns
  // The flat batch index must step by one stride: batch dims nested like a contiguous array.
  let batchStride: number|null = null, inner = 1;
  for (let d = r - 3; d >= 0; d--) {
    const s = plainStride(m, d);
    if (s == null) return null;
    if (m.shape[d] === 1) continue;
    if (batchStride == null) batchStride = s / inner;
    if (s !== batchStride * inner) return null;
    inner *= m.shape[d];
  }
  if (batchStride != null && !Number.isInteger(batchStride)) return null;
  if (sc === 1 && (sr >= C || R === 1)) return {offset: m.offset, ld: Math.max(sr, C), transposed: false, batchStride: batchStride ?? 0};
  if (sr === 1 && (sc >= R || C === 1)) return {offset: m.offset, ld: Math.max(sc, R), transposed: true, batchStride: batchStride ?? 0};
  return null;
}

/** Whether cuBLASLt can read a GEMM operand through this map (a strided matrix, batches at one stride). */
export function ltOperandOk(m: AccessMap): boolean {
  return operand(mergeTerms(m)) != null;
}

/** `e` is a load of a bias along n (constant in batch and m, unit stride in n): its slot and offset. */
function biasOf(e: Expr, rank: number): {slot: number, offset: number}|null {
  if (e.k !== 'in') return null;
  const m = mergeTerms(e.map);
  if (m.dims.some((terms, d) => d !== rank - 1 && terms.length > 0)) return null;
  return plainStride(m, rank - 1) === 1 ? {slot: e.slot, offset: m.offset} : null;
}

/** The cuBLASLt form of a planned GEMM, or null when it needs the generated template. */
export function ltProblemOf(k: GemmKernel): LtProblem|null {
  if (k.group || !isIdentity(mergeTerms(k.out))) return null;
  const a = operand(mergeTerms(k.a)), b = operand(mergeTerms(k.b));
  if (a == null || b == null) return null;
  const rank = k.batchShape.length + 2;
  let e = k.epilogue, relu = false;
  if (e.k === 'u' && e.op === 'relu') { relu = true; e = e.a; }
  let bias: {slot: number, offset: number}|null = null;
  if (e.k === 'b' && e.op === 'add') {
    const [acc, x] = e.a.k === 'acc' ? [e.a, e.b] : [e.b, e.a];
    if (acc.k !== 'acc') return null;
    bias = biasOf(x, rank);
    if (bias == null) return null;
  } else if (e.k !== 'acc') {
    return null;
  }
  const epilogue: LtEpilogue = bias ? (relu ? 'relu_bias' : 'bias') : (relu ? 'relu' : 'none');
  return {M: k.M, N: k.N, K: k.K, batch: sizeOf(k.batchShape), a, b, epilogue, biasSlot: bias?.slot ?? null, biasOffset: bias?.offset ?? 0};
}

interface Plan {
  desc: bigint;
  layouts: bigint[];  // A', B', C = D
  algo: Uint8Array;   // the chosen heuristic result (its first 64 bytes are the algo)
}

/** cuBLASLt matmuls on the device's stream, plans cached per problem. */
export class LtGemm {
  private readonly handle: bigint;
  private readonly workspace: DevicePtr;
  private readonly plans = new Map<string, Plan>();

  constructor(private readonly api: Api, private readonly device: CudaDevice) {
    const h = new BigUint64Array(1);
    this.check(api['cublasLtCreate'](h), 'cublasLtCreate');
    this.handle = h[0];
    this.workspace = device.alloc(WORKSPACE_BYTES);
  }

  private check(r: number, what: string) {
    if (r !== 0) throw new Error(`cuBLASLt ${what} failed with status ${r}`);
  }

  private setAttr(fn: string, obj: bigint, attr: number, value: ArrayBufferView) {
    this.check(this.api[fn](obj, attr, value, value.byteLength), `${fn}(${attr})`);
  }

  /** The plan of a problem object (the executor keeps one per planned kernel): no key to build per launch. */
  private readonly planOf = [new WeakMap<LtProblem, Plan>(), new WeakMap<LtProblem, Plan>()];

  private plan(p: LtProblem, tf32: boolean): Plan {
    const known = this.planOf[tf32 ? 1 : 0].get(p);
    if (known != null) return known;
    const key = JSON.stringify([p.M, p.N, p.K, p.batch, p.a, p.b, p.epilogue, tf32]);
    const hit = this.plans.get(key);
    if (hit) {
      this.planOf[tf32 ? 1 : 0].set(p, hit);
      return hit;
    }
    const api = this.api;
    const desc = new BigUint64Array(1);
    this.check(api['cublasLtMatmulDescCreate'](desc, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F), 'cublasLtMatmulDescCreate');
    // Column-major problem m = N, n = M: A' is our B (N×K), B' is our A (K×M).
    this.setAttr('cublasLtMatmulDescSetAttribute', desc[0], DESC_TRANSA, new Int32Array([p.b.transposed ? OP_T : OP_N]));
    this.setAttr('cublasLtMatmulDescSetAttribute', desc[0], DESC_TRANSB, new Int32Array([p.a.transposed ? OP_T : OP_N]));
    this.setAttr('cublasLtMatmulDescSetAttribute', desc[0], DESC_EPILOGUE, new Uint32Array([EPILOGUE[p.epilogue]]));
    if (p.biasSlot != null) this.setAttr('cublasLtMatmulDescSetAttribute', desc[0], DESC_BIAS_BATCH_STRIDE, new BigInt64Array([0n]));
    // Stored (column-major) shapes: our row-major [R, C] with leading dimension ld is col-major C×R.
    const layout = (rows: number, cols: number, ld: number, batchStride: number) => {
      const l = new BigUint64Array(1);
      this.check(api['cublasLtMatrixLayoutCreate'](l, CUDA_R_32F, rows, cols, ld), 'cublasLtMatrixLayoutCreate');
      if (p.batch > 1) {
        this.setAttr('cublasLtMatrixLayoutSetAttribute', l[0], LAYOUT_BATCH_COUNT, new Int32Array([p.batch]));
        this.setAttr('cublasLtMatrixLayoutSetAttribute', l[0], LAYOUT_STRIDED_BATCH_OFFSET, new BigInt64Array([BigInt(batchStride)]));
      }
      return l[0];
    };
    const aL = p.b.transposed ? layout(p.K, p.N, p.b.ld, p.b.batchStride) : layout(p.N, p.K, p.b.ld, p.b.batchStride);
    const bL = p.a.transposed ? layout(p.M, p.K, p.a.ld, p.a.batchStride) : layout(p.K, p.M, p.a.ld, p.a.batchStride);
    const dL = layout(p.N, p.M, p.N, p.M * p.N);
    const pref = new BigUint64Array(1);
    this.check(api['cublasLtMatmulPreferenceCreate'](pref), 'cublasLtMatmulPreferenceCreate');
    this.setAttr('cublasLtMatmulPreferenceSetAttribute', pref[0], PREF_MAX_WORKSPACE_BYTES, new BigUint64Array([BigInt(WORKSPACE_BYTES)]));
    const results = new Uint8Array(HEURISTIC_BYTES), returned = [0];
    this.check(api['cublasLtMatmulAlgoGetHeuristic'](this.handle, desc[0], aL, bL, dL, dL, pref[0], 1, results, returned), 'cublasLtMatmulAlgoGetHeuristic');
    api['cublasLtMatmulPreferenceDestroy'](pref[0]);
    if (returned[0] < 1) throw new Error(`cuBLASLt has no algorithm for ${key}`);
    const plan = {desc: desc[0], layouts: [aL, bL, dL], algo: results};
    this.plans.set(key, plan);
    this.planOf[tf32 ? 1 : 0].set(p, plan);
    return plan;
  }

  /** D = epilogue(A·B) on the stream; pointers are the buffers' bases (offsets are applied here). */
  run(p: LtProblem, a: DevicePtr, b: DevicePtr, d: DevicePtr, bias: DevicePtr|null, tf32: boolean) {
    const plan = this.plan(p, tf32);
    if (bias != null) {
      this.setAttr('cublasLtMatmulDescSetAttribute', plan.desc, DESC_BIAS_POINTER, new BigUint64Array([bias + BigInt(4 * p.biasOffset)]));
    }
    const one = new Float32Array([1]), zero = new Float32Array([0]);
    const [aL, bL, dL] = plan.layouts;
    const A = b + BigInt(4 * p.b.offset), B = a + BigInt(4 * p.a.offset);
    this.device.libraryLaunch(A, B, d, this.workspace, ...(bias != null ? [bias] : []));
    this.check(this.api['cublasLtMatmul'](this.handle, plan.desc, one, A, aL, B, bL, zero, d, dL, d, dL, plan.algo, this.workspace,
                                          WORKSPACE_BYTES, this.device.stream), 'cublasLtMatmul');
  }

  dispose() {
    for (const p of this.plans.values()) {
      this.api['cublasLtMatmulDescDestroy'](p.desc);
      p.layouts.forEach(l => this.api['cublasLtMatrixLayoutDestroy'](l));
    }
    this.plans.clear();
    this.device.free(this.workspace);
    this.api['cublasLtDestroy'](this.handle);
  }
}
