// Representative plans for the CUDA templates, made by the real planner from lazy graphs built
// here node by node (no tfjs backend): every template and parameter class that a BERT or GPT-2
// layer produces, with seeded input data (masks with their real structure), so the same cases
// serve the codegen check (test/kernels/cuda_codegen_check.mjs, no GPU) and the numerics check
// on the GPU (bench/cuda_check.mjs).
import type {DataType} from '@tensorflow/tfjs-core';

import {collectSubgraph, LazyNode, StofValue} from '../../src/fusion/graph';
import {infer} from '../../src/fusion/ops';
import {Plan, PlanOptions, planSubgraph} from '../../src/fusion/planner';
import {cudaAttentionChoice} from '../../src/kernels/cuda/attention_cuda';
import {seededValues} from '../specs/util';

export type Data = Float32Array|Int32Array;

export interface PlanCase {
  name: string;
  plan: Plan;
  /** Values of the stored inputs the plan reads (int32 for bool tensors). */
  data: Map<StofValue, Data>;
  targets: StofValue[];
}

/** Seeded values in [-scale, scale), the same on every machine (the specs' generator). */
export function seeded(size: number, seed: number, scale = 1): Float32Array {
  const v = seededValues(size, seed);
  if (scale !== 1) for (let i = 0; i < size; i++) v[i] *= scale;
  return v;
}

/** A lazy graph under construction. */
export class GraphBuilder {
  readonly data = new Map<StofValue, Data>();
  private seed = 1;

  /** A stored input; `values` from (coordinates) or seeded in [-scale, scale). */
  input(shape: number[], opts: {dtype?: DataType, scale?: number, at?: (c: number[]) => number} = {}): StofValue {
    const dtype = opts.dtype ?? 'float32';
    const v = new StofValue(shape, dtype);
    v.baseId = {};
    const size = shape.reduce((a, b) => a * b, 1);
    let values: Data;
    if (opts.at) {
      values = dtype === 'float32' ? new Float32Array(size) : new Int32Array(size);
      const c = new Array<number>(shape.length).fill(0);
      for (let i = 0; i < size; i++) {
        let r = i;
        for (let d = shape.length - 1; d >= 0; d--) { c[d] = r % shape[d]; r = Math.floor(r / shape[d]); }
        values[i] = opts.at(c);
      }
    } else {
      values = seeded(size, this.seed++, opts.scale ?? 1);
    }
    this.data.set(v, values);
    return v;
  }

  /** A float32 scalar the app wrote (inlined into the code as a constant). */
  scalar(x: number): StofValue {
    const v = new StofValue([], 'float32');
    v.baseId = {};
    v.constant = x;
    this.data.set(v, new Float32Array([x]));
    return v;
  }

  op(kernel: string, inputs: StofValue[], attrs: Record<string, unknown> = {}): StofValue {
    const r = infer(kernel, inputs, attrs as never);
    if ('reason' in r) throw new Error(`cuda_plans: ${kernel} on [${inputs.map(v => `[${v.shape}]`)}] not recorded: ${r.reason}`);
    const out = new StofValue(r.shape, r.dtype);
    out.refs = 0;  // an intermediate the app disposed (tidy), as in a model's forward
    new LazyNode(kernel, r.inputs.map(i => inputs[i]), attrs as never, out);
    return out;
  }

  // Conveniences for the spellings converted graphs use.
  add = (a: StofValue, b: StofValue) => this.op('Add', [a, b]);
  mul = (a: StofValue, b: StofValue) => this.op('Multiply', [a, b]);
  matMul = (a: StofValue, b: StofValue, transposeB = false) => this.op('BatchMatMul', [a, b], {transposeA: false, transposeB});
  reshape = (x: StofValue, shape: number[]) => this.op('Reshape', [x], {shape});
  transpose = (x: StofValue, perm: number[]) => this.op('Transpose', [x], {perm});

  gelu(x: StofValue): StofValue {
    const erf = this.op('Erf', [this.mul(x, this.scalar(Math.SQRT1_2))]);
    return this.mul(this.mul(x, this.scalar(0.5)), this.add(erf, this.scalar(1)));
  }

  layerNorm(x: StofValue, gamma: StofValue, beta: StofValue): StofValue {
    const axis = [x.shape.length - 1];
    const mean = this.op('Mean', [x], {axis, keepDims: true});
    const xc = this.op('Sub', [x, mean]);
    const variance = this.op('Mean', [this.op('Square', [xc])], {axis, keepDims: true});
    const inv = this.op('Rsqrt', [this.add(variance, this.scalar(1e-12))]);
    return this.add(this.mul(this.mul(xc, inv), gamma), beta);
  }

  plan(name: string, targets: StofValue[], options?: PlanOptions): PlanCase {
    for (const t of targets) t.refs = 1;
    return {name, plan: planSubgraph(collectSubgraph(targets), options), data: this.data, targets};
  }
}

export type MaskForm = 'none'|'padding'|'causal'|'sliding'|'dilated'|'select'|'alibi'|'allmasked';
/**
 * dilated: every other key of a causal window (alternate bits within each word of the bitmap);
 * alibi: a causal mask with a real-valued bias on the kept keys (partial tiles that no bitmap can
 * represent: the mask expression is evaluated per element).
 */
export const MASK_FORMS: MaskForm[] = ['none', 'padding', 'causal', 'sliding', 'dilated', 'select', 'alibi', 'allmasked'];

/** softmax(q kᵀ · scale + mask) v over [B, H, S, D] heads, the mask in one of the forms models use. */
/**
 * How the attention kernel is planned: the planner's defaults for a forced variant, CUDA's tiles
 * ('cuda': by sequence length), or CUDA's tiles of long sequences at any length ('cuda128': Br = 128).
 */
export type AttentionMode = PlanOptions['attention']|'cuda'|'cuda128';
const attentionOptions = (mode: AttentionMode): PlanOptions =>
    (mode === 'cuda' ? {attention: 'auto', chooseAttention: cudaAttentionChoice} :
     mode === 'cuda128' ? {attention: 'auto', chooseAttention: () => ({...cudaAttentionChoice(), Br: 128})} : {attention: mode});

export function attentionCase(B: number, H: number, S: number, D: number, form: MaskForm, attention: AttentionMode): PlanCase {
  const g = new GraphBuilder();
  const q = g.input([B, H, S, D]), k = g.input([B, H, S, D]), v = g.input([B, H, S, D]);
  let s = g.mul(g.matMul(q, k, true), g.scalar(1 / Math.sqrt(D)));
  const window = Math.max(4, Math.floor(S / 8));
  // Batch entry 1 keeps fewer keys; 'allmasked' keeps none there (uniform rows, the dense rule).
  const kept = (b: number) => (b === 0 ? S : form === 'allmasked' ? 0 : Math.floor(S / 2) + 3);
  if (form === 'padding' || form === 'allmasked') {
    s = g.add(s, g.input([B, 1, 1, S], {at: c => (c[3] < kept(c[0]) ? 0 : -1e9)}));
  } else if (form === 'causal' || form === 'sliding' || form === 'dilated') {
    // A boolean mask as a bias: log(cast(mask)) is 0 or -Infinity (the spelling of stof.attention).
    const keep = (i: number, j: number) => j <= i && (form === 'causal' || (form === 'sliding' ? i - j < window : i - j < 2 * window && (i - j) % 2 === 0));
    const m = g.input([S, S], {dtype: 'bool', at: c => (keep(c[0], c[1]) ? 1 : 0)});
    s = g.add(s, g.op('Log', [g.op('Cast', [m], {dtype: 'float32'})]));
  } else if (form === 'alibi') {
    s = g.add(s, g.input([S, S], {at: c => (c[1] <= c[0] ? -0.05 * (c[0] - c[1]) : -1e9)}));
  } else if (form === 'select') {
    // tf.where(mask, scores, -1e9) as converted graphs record it: a full-size condition and fill.
    const m = g.input([B, H, S, S], {dtype: 'bool', at: c => (c[3] <= c[2] + window ? 1 : 0)});
    s = g.op('Select', [m, s, g.input([B, H, S, S], {at: () => -1e9})]);
  }
  const out = g.matMul(g.op('Softmax', [s], {dim: -1}), v);
  return g.plan(`attention-${attention}-${form}-S${S}-D${D}`, [out], attentionOptions(attention));
}

/** x [S, hidden] projected to Q, K, V (one grouped GEMM), split into heads, attention, merged back. */
export function qkvAttentionCase(S: number, heads: number, dh: number, form: MaskForm): PlanCase {
  const g = new GraphBuilder();
  const hidden = heads * dh;
  const x = g.input([S, hidden]);
  const proj = () => g.op('_FusedMatMul', [x, g.input([hidden, hidden], {scale: 0.1}), g.input([hidden], {scale: 0.1})],
                          {transposeA: false, transposeB: false});
  const split = (t: StofValue) => g.transpose(g.reshape(t, [1, S, heads, dh]), [0, 2, 1, 3]);
  const [q, k, v] = [proj(), proj(), proj()].map(split);
  let s = g.mul(g.matMul(q, k, true), g.scalar(1 / Math.sqrt(dh)));
  if (form === 'padding') s = g.add(s, g.input([1, 1, 1, S], {at: c => (c[3] < S - 5 ? 0 : -1e9)}));
  const ctx = g.matMul(g.op('Softmax', [s], {dim: -1}), v);
  const merged = g.reshape(g.transpose(ctx, [0, 2, 1, 3]), [S, hidden]);
  return g.plan(`qkv-grouped-attention-${form}-S${S}-dh${dh}`, [merged]);
}

export function elementwiseCases(): PlanCase[] {
  const cases: PlanCase[] = [];
  {
    const g = new GraphBuilder();
    const a = g.input([3, 5, 7]), b = g.input([7]);
    const c = g.add(g.mul(g.op('Exp', [g.op('Neg', [a])]), b), g.op('Sqrt', [g.op('Abs', [b])]));
    const d = g.op('Sub', [g.op('Maximum', [c, g.op('Minimum', [a, g.scalar(0.25)])]),
                            g.op('RealDiv', [g.op('Square', [b]), g.add(g.op('Abs', [a]), g.scalar(1))])]);
    const e = g.add(g.op('Tanh', [d]), g.op('Sigmoid', [g.op('Pow', [g.op('Abs', [a]), g.scalar(1.5)])]));
    cases.push(g.plan('elementwise-broadcast-unary-binary', [g.add(e, g.op('Log', [g.op('Relu', [a])]))]));
  }
  {
    const g = new GraphBuilder();
    const a = g.input([3, 5, 7]), b = g.input([7, 5, 3]);
    const x = g.reshape(g.transpose(g.add(a, g.transpose(b, [2, 1, 0])), [1, 0, 2]), [5, 21]);
    cases.push(g.plan('elementwise-views', [g.mul(g.op('Tanh', [x]), g.op('Sigmoid', [g.reshape(g.transpose(a, [1, 0, 2]), [5, 21])]))]));
  }
  {
    const g = new GraphBuilder();
    const a = g.input([4, 9]), b = g.input([4, 9]);
    const m = g.op('Greater', [a, b]);
    const sel = g.op('Select', [m, a, g.mul(b, g.scalar(2))]);
    const out = g.add(sel, g.op('Cast', [g.op('LessEqual', [a, g.scalar(0)])], {dtype: 'float32'}));
    cases.push(g.plan('elementwise-compare-select-cast', [out]));
    const g2 = new GraphBuilder();
    const x = g2.input([4, 9]), y = g2.input([9]);
    cases.push(g2.plan('elementwise-bool-output', [g2.op('Equal', [g2.op('Relu', [x]), g2.op('Relu', [y])])]));
  }
  return cases;
}

export function rowCases(): PlanCase[] {
  const cases: PlanCase[] = [];
  for (const [B, H, S] of [[2, 3, 7], [2, 12, 128], [1, 2, 1000]]) {
    const g = new GraphBuilder();
    const x = g.input([B, H, S, S]), mask = g.input([B, 1, 1, S], {at: c => (c[3] < S - 2 ? 0 : -1e9)});
    cases.push(g.plan(`row-softmax-mask-S${S}`, [g.op('Softmax', [g.add(g.mul(x, g.scalar(0.125)), mask)], {dim: -1})]));
  }
  for (const [N, L] of [[16, 768], [5, 33], [4, 4096]]) {
    const g = new GraphBuilder();
    cases.push(g.plan(`row-layernorm-L${L}`, [g.layerNorm(g.input([N, L]), g.input([L]), g.input([L]))]));
  }
  {
    const g = new GraphBuilder();
    const x = g.input([6, 50]);
    const sum = g.op('Sum', [g.op('Exp', [x])], {axis: [1], keepDims: false});
    const mx = g.op('Max', [x], {reductionIndices: [1], keepDims: true});
    cases.push(g.plan('row-scalar-sum-max', [g.add(g.op('Log', [sum]), g.reshape(mx, [6]))]));
  }
  return cases;
}

export function gemmCases(): PlanCase[] {
  const cases: PlanCase[] = [];
  {
    const g = new GraphBuilder();
    const a = g.input([128, 256]), w = g.input([256, 384], {scale: 0.1}), b = g.input([384]);
    cases.push(g.plan('gemm-bias', [g.op('_FusedMatMul', [a, w, b], {transposeA: false, transposeB: false})]));
  }
  for (const [M, K, N] of [[128, 768, 3072], [77, 64, 130]]) {
    const g = new GraphBuilder();
    const a = g.input([M, K]), w = g.input([K, N], {scale: 0.1}), b = g.input([N]);
    cases.push(g.plan(`gemm-bias-gelu-${M}x${K}x${N}`, [g.gelu(g.add(g.matMul(a, w), b))]));
  }
  {
    const g = new GraphBuilder();
    const a = g.input([2, 4, 33, 17]), b = g.input([2, 4, 19, 17]);
    const out = g.op('Relu', [g.mul(g.matMul(a, b, true), g.scalar(0.5))]);
    cases.push(g.plan('gemm-batched-transposed-relu', [out]));
  }
  {
    // Q, K and V projections of one x, consumed inside the plan: one grouped launch.
    const g = new GraphBuilder();
    const x = g.input([64, 96]);
    const outs = [0, 1, 2].map(() => g.op('_FusedMatMul', [x, g.input([96, 96], {scale: 0.1}), g.input([96])], {transposeA: false, transposeB: false}));
    const sum = g.add(g.add(g.op('Tanh', [outs[0]]), outs[1]), g.op('Sigmoid', [outs[2]]));
    cases.push(g.plan('gemm-grouped-qkv', [sum]));
  }
  return cases;
}

/** Every case of the codegen check: each template and parameter class. */
export function codegenCases(): PlanCase[] {
  const cases = [...elementwiseCases(), ...rowCases(), ...gemmCases()];
  for (const D of [32, 64, 80, 128]) {
    for (const form of MASK_FORMS) {
      // Every D and mask with CUDA's tiles and dense; the planner's WebGPU tiles (blockwise, and the
      // row-wise variant's small Br) at one D, which is enough for their parameter classes.
      const modes: AttentionMode[] = ['dense', 'cuda'];
      if (D === 64 && form !== 'none') modes.push('blockwise');
      if (D === 64 && (form === 'causal' || form === 'padding')) modes.push('rowwise');
      // The 8-warp, 128-row class of the masked fp16 kernel (D <= 64; larger heads keep 64-row CTAs).
      if (D === 64 && form !== 'none') modes.push('cuda128');
      for (const attention of modes) cases.push(attentionCase(2, 2, 70, D, form, attention));
    }
  }
  cases.push(qkvAttentionCase(64, 4, 32, 'padding'));
  return cases;
}
