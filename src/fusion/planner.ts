// Partitions a pending subgraph into template instances (kernels). Each stored value gets one
// kernel whose body is the expression of that value, inlining every pending elementwise producer
// and view (reshape/transpose/broadcast fold into access maps), so dead intermediates never exist
// in memory. Three templates:
//   gemm        a matmul with its elementwise consumers as the epilogue (bias, GELU, scale, residual)
//   row         a row program: reductions over the last axis (softmax, LayerNorm, mean, ...) with
//               their elementwise prologue and epilogue, one workgroup per row
//   elementwise any other DAG of elementwise ops with broadcasting
// Values that a matmul reads, and values whose access maps do not compose, are stored first.
import type {DataType} from '@tensorflow/tfjs-core';

import {AccessMap, accessKey, broadcastAccess, contiguous, reshapeAccess, sizeOf, transposeAccess} from './access';
import {binary, constant, Expr, hasNode, mapLeaves, Stage, unary} from './expr';
import {LazyNode, StofValue, Subgraph} from './graph';
import {OPS} from './ops';
import {MaskSpec, maskSpec} from '../kernels/sparse/mask_format';

export type Step = {k: 'bcast', shape: number[]}|{k: 'reshape', shape: number[]}|{k: 'transpose', perm: number[]};

/** Shape and dtype of a buffer: what the templates need of a value (cached plans keep only this). */
export interface ValueInfo {
  shape: number[];
  dtype: DataType;
  /** Element type of the stored buffer, where it differs from dtype. */
  storage?: DataType|null;
}

interface KernelCommon {
  /** Buffers read, by slot. */
  inputs: ValueInfo[];
  /** The buffer this kernel stores. */
  output: ValueInfo;
  /** Kernel names of the recorded nodes this kernel computes (for profile/explain). */
  ops: string[];
}
export interface ElementwiseKernel extends KernelCommon {
  template: 'elementwise';
  expr: Expr;  // over the output's domain
}
export interface RowKernel extends KernelCommon {
  template: 'row';
  rowShape: number[];  // the row domain [..., L]
  rows: number;
  length: number;
  stages: Stage[];
  expr: Expr;          // over the row domain; constant along the row when `scalar`
  scalar: boolean;     // one output per row (a reduced value) instead of one per element
}
export interface GemmKernel extends KernelCommon {
  template: 'gemm';
  batchShape: number[];
  M: number; N: number; K: number;
  a: AccessMap;        // over [...batchShape, M, K], in slot aSlot
  b: AccessMap;        // over [...batchShape, K, N], in slot bSlot
  aSlot: number;
  bSlot: number;
  epilogue: Expr;      // over [...batchShape, M, N]
  out: AccessMap;      // where element (b, m, n) is stored in the output
  /**
   * Horizontal fusion: G GEMMs that share A (Q, K and V projections) as one launch. Group g reads
   * B from bSlots[g] through bMaps[g], applies epilogues[g] and stores at offset g·M·N of one
   * buffer (group 0 is `output`; `siblings` are the other groups' values, views of that buffer).
   */
  group?: {bSlots: number[], bMaps: AccessMap[], epilogues: Expr[], siblings: ValueInfo[]};
}
/** A reshape of a stored value: the output shares its storage. */
export interface AliasKernel extends KernelCommon {
  template: 'alias';
}
/**
 * Dense attention, one pass: out = softmax_rows(score(Q Kᵀ)) V, with score() any elementwise
 * prologue over the scores' coordinates (scale, additive or selected mask). Online softmax: the
 * S×S scores never exist in memory.
 */
export interface AttentionKernel extends KernelCommon {
  template: 'attention';
  batchShape: number[];
  Sq: number; Sk: number; D: number; Dv: number;
  q: AccessMap; k: AccessMap; v: AccessMap;  // over [...batch, Sq, D], [...batch, Sk, D], [...batch, Sk, Dv]
  qSlot: number; kSlot: number; vSlot: number;
  score: Expr;                               // over [...batch, Sq, Sk]; 'acc' is q·k
  out: AccessMap;                            // where (b, i, d) is stored
  /**
   * 'blockwise': flash-style online softmax over K/V tiles of Bc keys, Br query rows per workgroup,
   * one per invocation. 'rowwise': Br query rows per workgroup of `threads` invocations, their whole
   * score rows in workgroup memory (exact softmax, no rescaling), keys in blocks of Bc.
   */
  variant: 'blockwise'|'rowwise';
  Br: number; Bc: number;
  /** Invocations per workgroup (rowwise; blockwise has Br). */
  threads: number;
  /** Block-sparse: the mask's tile format (Br × Bc tiles) is made on the device and empty tiles are skipped. */
  mask: MaskSpec|null;
  /** What the choice of variant and tiles was made from. */
  shape: AttentionShape;
}
export type Kernel = ElementwiseKernel|RowKernel|GemmKernel|AliasKernel|AttentionKernel;

/** Shape of the buffer a kernel stores: a grouped GEMM stores its groups one after the other. */
export function storedShape(k: Kernel): number[] {
  return k.template === 'gemm' && k.group ? [k.group.epilogues.length, ...k.output.shape] : k.output.shape;
}

export interface Plan {
  kernels: Kernel[];
}

/**
 * Input buffers of one kernel: WebGPU guarantees 8 storage buffers per shader stage, one of them
 * the output. A kernel that would read more stores some of its operands first.
 */
export const MAX_INPUTS = 7;

/** Largest head dimension of the fused attention kernel (its rows live in registers). */
export const MAX_HEAD_DIM = 128;

/** Largest expression (in ops) inlined into every consumer of a value that has several. */
const INLINE_SHARED_OPS = 16;

function applyStep(m: AccessMap, s: Step): AccessMap|null {
  switch (s.k) {
    case 'bcast': return broadcastAccess(m, s.shape);
    case 'reshape': return reshapeAccess(m, s.shape);
    case 'transpose': return transposeAccess(m, s.perm);
  }
}

export function applySteps(m: AccessMap|null, steps: Step[]): AccessMap|null {
  for (const s of steps) {
    if (m == null) return null;
    m = applyStep(m, s);
  }
  return m;
}

function sameShape(a: number[], b: number[]) {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Steps that undo `steps`, given the shape before them (steps must be reshapes and transposes). */
function inverseSteps(steps: Step[], startShape: number[]): Step[]|null {
  const shapes = [startShape];
  for (const s of steps) {
    const prev = shapes[shapes.length - 1];
    if (s.k === 'bcast') { if (!sameShape(prev, s.shape)) return null; shapes.push(prev); }
    else if (s.k === 'reshape') shapes.push(s.shape);
    else shapes.push(s.perm.map(p => prev[p]));
  }
  const inv: Step[] = [];
  for (let i = steps.length - 1; i >= 0; i--) {
    const s = steps[i];
    if (s.k === 'reshape') inv.push({k: 'reshape', shape: shapes[i]});
    else if (s.k === 'transpose') {
      const perm = new Array<number>(s.perm.length);
      s.perm.forEach((p, j) => { perm[p] = j; });
      inv.push({k: 'transpose', perm});
    }
  }
  return inv;
}

function mapExprLoads(e: Expr, f: (m: AccessMap) => AccessMap|null): Expr|null {
  return mapLeaves(e, l => {
    if (l.k !== 'in') return l;
    const map = f(l.map);
    return map && {k: 'in', slot: l.slot, map};
  });
}

const isView = (n: LazyNode) => OPS[n.kernel].kind === 'reshape' || OPS[n.kernel].kind === 'transpose';
const isElementwise = (n: LazyNode) => ['unary', 'binary', 'compare', 'select', 'cast'].includes(OPS[n.kernel].kind);
const isMatmul = (n: LazyNode) => OPS[n.kernel].kind === 'matmul';
const isRowOp = (n: LazyNode) => OPS[n.kernel].kind === 'reduce' || OPS[n.kernel].kind === 'softmax';

interface Context {
  slots: StofValue[];
  ops: Set<LazyNode>;
  /** Row program: the row domain and its stages (one per reduction node / softmax). */
  row?: {shape: number[], stages: Stage[], memo: Map<LazyNode, number[]>};
  /** GEMM epilogue: the matmul that is the accumulator, and the steps from its domain to the root's. */
  gemm?: {mm: LazyNode, steps?: Step[]};
}

export class Planner {
  private readonly stored = new Set<StofValue>();
  private readonly mustStore = new Set<StofValue>();
  readonly kernels: Kernel[] = [];

  constructor(private readonly graph: Subgraph, private readonly options: PlanOptions) {
    // Matmul operands are read through access maps only (no computation in the GEMM's loads).
    for (const n of graph.nodes) {
      if (!isMatmul(n)) continue;
      for (let v of n.inputs.slice(0, 2)) {
        while (v.pending && isView(v.node!)) v = v.node!.inputs[0];
        if (v.pending) this.mustStore.add(v);
      }
    }
  }

  plan(): Plan {
    for (const t of this.graph.targets) this.store(t);
    return {kernels: mergeSiblingGemms(this.kernels, this.graph)};
  }

  private isStored(v: StofValue) {
    return !v.pending || this.stored.has(v);
  }

  /** Plans the kernel that stores `v` (after those it depends on). */
  private store(v: StofValue) {
    if (this.isStored(v)) return;
    const node = v.node!;
    if (OPS[node.kernel].kind === 'reshape') {
      // A reshape costs nothing once its input is stored contiguously: store that, share it.
      this.store(node.inputs[0]);
      this.stored.add(v);
      this.kernels.push({template: 'alias', inputs: [node.inputs[0]], output: v, ops: [node.kernel]});
      return;
    }
    const kernel = (isMatmul(node) ? this.attentionKernel(v, node) ?? this.gemmKernel(v, node) : null) ?? this.rootKernel(v);
    this.stored.add(v);
    this.kernels.push(kernel);
  }

  private load(v: StofValue, steps: Step[], ctx: Context, buffer = false): Expr|null {
    if (v.constant != null && !buffer) return constant(v.constant);  // a scalar the app wrote: part of the code
    const map = applySteps(contiguous(v.shape), steps);
    if (map == null) return null;
    let slot = ctx.slots.indexOf(v);
    if (slot < 0) slot = ctx.slots.push(v) - 1;
    return {k: 'in', slot, map};
  }

  /** `v` as an expression over the domain that `steps` map v's domain onto; null if that cannot be indexed. */
  private exprOf(v: StofValue, steps: Step[], ctx: Context): Expr|null {
    if (this.isStored(v)) return this.load(v, steps, ctx);
    const node = v.node!;
    if (ctx.gemm && node === ctx.gemm.mm) {
      if (steps.some(s => s.k === 'bcast')) return null;  // the accumulator must map 1:1
      ctx.gemm.steps = steps;
      ctx.ops.add(node);
      return this.matmulEpilogue(node, {k: 'acc'}, steps, ctx);
    }
    if (this.mustStore.has(v)) {
      this.store(v);
      return this.load(v, steps, ctx);
    }
    if (isView(node)) {
      const e = this.exprOf(node.inputs[0], [...viewStep(node), ...steps], ctx);
      if (e != null) { ctx.ops.add(node); return e; }
      this.store(v);  // the chain does not compose: store this view contiguously
      return this.load(v, steps, ctx);
    }
    if (ctx.row && isRowOp(node)) {
      const e = this.rowStage(v, node, steps, ctx);
      if (e != null) return e;
    }
    if (isElementwise(node) && this.inlinable(v)) {
      const e = this.elementwise(v, node, steps, ctx);
      if (e != null) { ctx.ops.add(node); return e; }
    }
    this.store(v);
    return this.load(v, steps, ctx);
  }

  private inlinable(v: StofValue): boolean {
    if (v.uses <= 1 && v.refs === 0) return true;
    // Shared or still referenced by the app: recomputed in each consumer if cheap.
    return this.costOf(v, 0) <= INLINE_SHARED_OPS;
  }

  private costOf(v: StofValue, depth: number): number {
    if (this.isStored(v) || depth > INLINE_SHARED_OPS) return 0;
    const node = v.node!;
    if (isView(node)) return this.costOf(node.inputs[0], depth);
    if (!isElementwise(node)) return 1;  // a reduction or matmul is read (stored, or a stage of this row), not recomputed
    let c = 1;
    for (const i of node.inputs) c += this.costOf(i, depth + 1);
    return c;
  }

  private elementwise(v: StofValue, node: LazyNode, steps: Step[], ctx: Context): Expr|null {
    const def = OPS[node.kernel];
    const args: Expr[] = [];
    for (const input of node.inputs) {
      const s = sameShape(input.shape, v.shape) ? steps : [{k: 'bcast', shape: v.shape} as Step, ...steps];
      const e = this.exprOf(input, s, ctx);
      if (e == null) return null;
      args.push(e);
    }
    switch (def.kind) {
      case 'unary': return unary(def.unary!, args[0]);
      case 'binary': case 'compare': return binary(def.binary!, args[0], args[1]);
      case 'select': return {k: 'sel', c: args[0], a: args[1], b: args[2]};
      case 'cast': {
        const from = node.inputs[0].dtype, to = v.dtype;
        return from === to || to === 'float32' ? args[0] : unary('ne0', args[0]);  // bool is already 0/1
      }
      default: throw new Error(`not elementwise: ${node.kernel}`);
    }
  }

  /** A reduction or softmax of the row program's own rows, as a stage; null if it is not row-aligned. */
  private rowStage(v: StofValue, node: LazyNode, steps: Step[], ctx: Context): Expr|null {
    const row = ctx.row!;
    const x = node.inputs[0];
    if (!sameShape(x.shape, row.shape)) return null;
    const kind = OPS[node.kernel].kind;
    if (kind === 'softmax') {
      if (steps.length !== 0) return null;  // softmax output is row-space: must be read in place
    } else {
      // The reduced value must reach the consumer as a broadcast along the row (keepDims or not).
      const scalarShape = [...row.shape.slice(0, -1), 1];
      const ref = broadcastAccess(contiguous(scalarShape), row.shape);
      const got = applySteps(contiguous(v.shape), steps);
      if (got == null || !sameShape(got.shape, row.shape) || JSON.stringify(got) !== JSON.stringify(ref)) return null;
    }
    let stageIds = row.memo.get(node);
    const xe = () => this.exprOf(x, [], ctx);
    if (stageIds == null) {
      const xExpr = xe();
      if (xExpr == null) return null;
      if (kind === 'softmax') {
        const mx = row.stages.push({op: 'max', x: xExpr}) - 1;
        const sum = row.stages.push({op: 'sum', x: unary('exp', binary('sub', xExpr, {k: 'rv', stage: mx}))}) - 1;
        stageIds = [mx, sum];
      } else {
        const op = OPS[node.kernel].reduce!;
        stageIds = [row.stages.push({op: op === 'max' ? 'max' : 'sum', x: xExpr}) - 1];
      }
      row.memo.set(node, stageIds);
    }
    ctx.ops.add(node);
    if (kind === 'softmax') {
      const xExpr = xe()!;
      return binary('div', unary('exp', binary('sub', xExpr, {k: 'rv', stage: stageIds[0]})), {k: 'rv', stage: stageIds[1]});
    }
    const r: Expr = {k: 'rv', stage: stageIds[0]};
    return OPS[node.kernel].reduce === 'mean' ? binary('div', r, constant(row.shape[row.shape.length - 1])) : r;
  }

  /** A matmul's own epilogue (bias and activation of _FusedMatMul) around `acc`, in the root's domain. */
  private matmulEpilogue(node: LazyNode, acc: Expr, steps: Step[], ctx: Context): Expr|null {
    let e = acc;
    const bias = node.inputs[2];
    if (bias != null) {
      const mmShape = node.output.shape;
      const s = sameShape(bias.shape, mmShape) ? steps : [{k: 'bcast', shape: mmShape} as Step, ...steps];
      const be = this.exprOf(bias, s, ctx);
      if (be == null) return null;
      e = binary('add', e, be);
    }
    const act = node.attrs['activation'] as string|undefined;
    if (act != null && act !== 'linear') e = unary(act === 'sigmoid' ? 'sigmoid' : act as 'relu'|'relu6'|'elu', e);
    return e;
  }

  /** Finds the row domain of v's expression: the input shape of a last-axis reduction it reaches. */
  private findRowShape(v: StofValue, depth = 0): number[]|null {
    if (this.isStored(v) || depth > 64) return null;
    const node = v.node!;
    if (isRowOp(node)) return node.inputs[0].shape;
    if (!(isView(node) || isElementwise(node)) || (depth > 0 && this.mustStore.has(v))) return null;
    for (const i of node.inputs) {
      const s = this.findRowShape(i, depth + 1);
      if (s) return s;
    }
    return null;
  }

  /** Finds a matmul whose output is inlined (1:1, not shared) into v's expression. */
  private findMatmul(v: StofValue, depth = 0): LazyNode|null {
    if (this.isStored(v) || depth > 64) return null;
    const node = v.node!;
    if (isMatmul(node)) return depth > 0 && sizeOf(v.shape) === sizeOf(node.output.shape) ? node : null;
    if (!(isView(node) || isElementwise(node)) || (depth > 0 && this.mustStore.has(v))) return null;
    for (const i of node.inputs) {
      if (!sameShape(i.shape, v.shape) && !isView(node)) continue;  // broadcast operands cannot be the accumulator
      const m = this.findMatmul(i, depth + 1);
      if (m) return m;
    }
    return null;
  }

  private rootKernel(v: StofValue): Kernel {
    const rowShape = this.findRowShape(v);
    if (rowShape != null) {
      const k = this.tryRow(v, rowShape);
      if (k && k.inputs.length <= MAX_INPUTS) return k;
    }
    const mm = this.findMatmul(v);
    if (mm != null) {
      const k = this.tryGemmEpilogue(v, mm);
      if (k && k.inputs.length <= MAX_INPUTS) return k;
    }
    let ctx: Context = {slots: [], ops: new Set()};
    let expr = this.exprOfRoot(v, ctx);
    if (ctx.slots.length > MAX_INPUTS) {
      // Too many buffers: store the root's operands, then the root reads just those.
      for (const input of v.node!.inputs) this.store(input);
      ctx = {slots: [], ops: new Set()};
      expr = this.exprOfRoot(v, ctx);
    }
    return {template: 'elementwise', inputs: ctx.slots, output: v, ops: opNames(ctx), expr};
  }

  /** The root's own node is always inlined (it is what the kernel stores). */
  private exprOfRoot(v: StofValue, ctx: Context, steps: Step[] = []): Expr {
    const node = v.node!;
    let e: Expr|null = null;
    if (isView(node)) {
      e = this.exprOf(node.inputs[0], [...viewStep(node), ...steps], ctx);
      if (e == null) {  // store the input, then copy through the view
        this.store(node.inputs[0]);
        e = this.load(node.inputs[0], [...viewStep(node), ...steps], ctx);
      }
    } else if (isElementwise(node)) {
      e = this.elementwise(v, node, steps, ctx);
    } else if (ctx.row && isRowOp(node)) {
      e = this.rowStage(v, node, steps, ctx);
    }
    if (e == null) throw new Error(`tfjs-backend-stof: cannot plan ${node.kernel} -> [${v.shape}]`);
    ctx.ops.add(node);
    return e;
  }

  private tryRow(v: StofValue, rowShape: number[]): RowKernel|null {
    const length = rowShape[rowShape.length - 1];
    const scalarShape = [...rowShape.slice(0, -1), 1];
    let steps: Step[];
    let scalar: boolean;
    if (sameShape(v.shape, rowShape)) { steps = []; scalar = false; }
    else if (sizeOf(v.shape) * length === sizeOf(rowShape) && sizeOf(v.shape) > 0 &&
             (sameShape(v.shape, scalarShape) || sameShape(v.shape, rowShape.slice(0, -1)))) {
      steps = [...(v.shape.length === rowShape.length ? [] : [{k: 'reshape', shape: scalarShape} as Step]), {k: 'bcast', shape: rowShape}];
      scalar = true;
    } else {
      return null;
    }
    const ctx: Context = {slots: [], ops: new Set(), row: {shape: rowShape, stages: [], memo: new Map()}};
    let expr: Expr;
    try {
      expr = this.exprOfRoot(v, ctx, steps);
    } catch {
      return null;
    }
    if (ctx.row!.stages.length === 0) return null;
    return {template: 'row', inputs: ctx.slots, output: v, ops: opNames(ctx), rowShape, rows: sizeOf(rowShape) / length,
            length, stages: ctx.row!.stages, expr, scalar};
  }

  private tryGemmEpilogue(v: StofValue, mm: LazyNode): GemmKernel|null {
    if (v.dtype !== 'float32') return null;  // the GEMM stores f32
    const ctx: Context = {slots: [], ops: new Set(), gemm: {mm}};
    let expr: Expr;
    try {
      expr = this.exprOfRoot(v, ctx);
    } catch {
      return null;
    }
    const steps = ctx.gemm!.steps;
    if (steps == null) return null;
    // Every value between the matmul and the root must be read only inside this kernel.
    if (!this.readOnlyInside(ctx, n => n.output === v)) return null;
    const inv = inverseSteps(steps, mm.output.shape);
    if (inv == null) return null;
    const epilogue = mapExprLoads(expr, m => applySteps(m, inv));
    const out = applySteps(contiguous(v.shape), inv);
    if (epilogue == null || out == null) return null;
    return this.gemmOf(mm, v, epilogue, out, ctx);
  }

  /** matMul(softmax(score(matMul(q, k))), v) with nothing in between read elsewhere. */
  private attentionKernel(out: StofValue, node: LazyNode): AttentionKernel|null {
    if (node.kernel !== 'BatchMatMul' || node.attrs['transposeA'] || node.attrs['transposeB']) return null;
    const [p, vv] = node.inputs;
    if (!p.pending || OPS[p.node!.kernel].kind !== 'softmax' || p.uses !== 1 || p.refs !== 0) return null;
    const x = p.node!.inputs[0];
    if (!x.pending || x.uses !== 1 || x.refs !== 0) return null;
    const sm = isMatmul(x.node!) ? x.node! : this.findMatmul(x);
    if (sm == null || sm.kernel !== 'BatchMatMul' || sm.attrs['transposeA'] || !sameShape(sm.output.shape, x.shape)) return null;
    const ctx: Context = {slots: [], ops: new Set([node, p.node!]), gemm: {mm: sm}};
    let score: Expr;
    try {
      score = sm === x.node ? (this.exprOf(x, [], ctx) as Expr) : this.exprOfRoot(x, ctx);
    } catch {
      return null;
    }
    if (score == null || ctx.gemm!.steps == null || ctx.gemm!.steps.length !== 0) return null;
    if (!this.readOnlyInside(ctx, n => n === node || n === p.node)) return null;
    const [q, k] = sm.inputs;
    const tb = sm.attrs['transposeB'] as boolean;
    const batchShape = out.shape.slice(0, -2);
    const Sq = x.shape[x.shape.length - 2], Sk = x.shape[x.shape.length - 1];
    const D = q.shape[q.shape.length - 1], Dv = vv.shape[vv.shape.length - 1];
    if (D > MAX_HEAD_DIM || Dv > MAX_HEAD_DIM) return null;
    // K as [..., Sk, D]: the scores matmul reads k transposed unless transposeB already did.
    const qm = this.operand(q, false, [...batchShape, Sq, D], ctx), km = this.operand(k, !tb, [...batchShape, Sk, D], ctx);
    const vm = this.operand(vv, false, [...batchShape, Sk, Dv], ctx);
    if (qm == null || km == null || vm == null || ctx.slots.length > MAX_INPUTS) return null;
    const masked = hasNode(score, 'in');
    const shape: AttentionShape = {batch: sizeOf(batchShape), Sq, Sk, D, Dv, masked,
                                   maskInstances: masked ? sizeOf(maskSpec(score, batchShape, Sq, Sk, 1, 1)!.maskBatch) : 0};
    const choice = attentionChoice(this.options, shape);
    // The tile format takes one binding: skipping needs a free one.
    const skip = this.options.attention !== 'dense' && ctx.slots.length < MAX_INPUTS;
    const mask = skip ? maskSpec(score, batchShape, Sq, Sk, choice.Br, choice.Bc) : null;
    return {template: 'attention', inputs: ctx.slots, output: out, ops: opNames(ctx), batchShape, Sq, Sk, D, Dv,
            q: qm.map, k: km.map, v: vm.map, qSlot: qm.slot, kSlot: km.slot, vSlot: vm.slot, score, out: contiguous(out.shape),
            ...choice, mask, shape};
  }

  /**
   * A matmul operand as a buffer read through a map over `shape` ([...batch, rows, cols]), after
   * swapping its last two dims if `transposed`. Views of a stored value fold into the map; anything
   * computed is stored first; a 1x1 constant is still read as a buffer.
   */
  private operand(x: StofValue, transposed: boolean, shape: number[], ctx: Context): {slot: number, map: AccessMap}|null {
    const r = x.shape.length;
    const perm = [...Array(r).keys()];
    if (transposed) [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
    const steps: Step[] = transposed ? [{k: 'transpose', perm}] : [];
    steps.push({k: 'bcast', shape});
    let e = this.exprOf(x, steps, ctx);
    if (e == null || e.k !== 'in') {
      this.store(x);
      e = this.load(x, steps, ctx, true);
    }
    return e && e.k === 'in' ? {slot: e.slot, map: e.map} : null;
  }

  /**
   * Whether every value the kernel computes from the accumulator (the matmul's output and what is
   * derived from it), but `keep`, is read only by the kernel's own nodes: those values are never
   * stored. Values that do not depend on the accumulator (a mask shared by every layer) are inlined
   * and may be read elsewhere too.
   */
  private readOnlyInside(ctx: Context, keep: (n: LazyNode) => boolean): boolean {
    const mm = ctx.gemm!.mm;
    const derived = new Set<LazyNode>([mm]);
    let grew = true;
    while (grew) {
      grew = false;
      for (const n of ctx.ops) {
        if (!derived.has(n) && n.inputs.some(i => i.node != null && derived.has(i.node))) { derived.add(n); grew = true; }
      }
    }
    for (const n of derived) {
      if (keep(n)) continue;
      const inside = [...ctx.ops].reduce((c, m) => c + m.inputs.filter(i => i === n.output).length, 0);
      if (n.output.uses > inside || n.output.refs > 0) return false;
    }
    return true;
  }

  private gemmKernel(v: StofValue, node: LazyNode): GemmKernel|null {
    // (A matmul reads at most A, B and a bias: within MAX_INPUTS.)
    const ctx: Context = {slots: [], ops: new Set([node]), gemm: {mm: node, steps: []}};
    const epilogue = this.matmulEpilogue(node, {k: 'acc'}, [], ctx);
    if (epilogue == null) return null;
    return this.gemmOf(node, v, epilogue, contiguous(v.shape), ctx);
  }

  private gemmOf(mm: LazyNode, v: StofValue, epilogue: Expr, out: AccessMap, ctx: Context): GemmKernel|null {
    const [a, b] = mm.inputs;
    const shape = mm.output.shape;
    const batchShape = shape.slice(0, -2);
    const [M, N] = shape.slice(-2);
    const ta = mm.attrs['transposeA'] as boolean, tb = mm.attrs['transposeB'] as boolean;
    const K = ta ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
    // A as [...batch, M, K] and B as [...batch, K, N], whatever their storage and transposes.
    const am = this.operand(a, ta, [...batchShape, M, K], ctx), bm = this.operand(b, tb, [...batchShape, K, N], ctx);
    if (am == null || bm == null) return null;
    return {template: 'gemm', inputs: ctx.slots, output: v, ops: opNames(ctx), batchShape, M, N, K, a: am.map, b: bm.map,
            aSlot: am.slot, bSlot: bm.slot, epilogue, out};
  }
}

/** The index steps of a Reshape, Identity or Transpose node, from its input's domain to its output's (none for a same-shape reshape). */
function viewStep(node: LazyNode): Step[] {
  if (OPS[node.kernel].kind === 'transpose') return [{k: 'transpose', perm: node.attrs['perm'] as number[]}];
  return sameShape(node.inputs[0].shape, node.output.shape) ? [] : [{k: 'reshape', shape: node.output.shape}];
}

function opNames(ctx: Context): string[] {
  return [...ctx.ops].map(n => n.kernel);
}

// ---- horizontal GEMM fusion ------------------------------------------------------------------

function mapSlots(e: Expr, f: (slot: number, m: AccessMap) => {slot: number, map: AccessMap}): Expr {
  return mapLeaves(e, l => (l.k === 'in' ? {k: 'in', ...f(l.slot, l.map)} : l))!;
}

const shifted = (m: AccessMap, delta: number): AccessMap => ({...m, offset: m.offset + delta});

/** `k` with every read of input `slot` moved by `delta` elements (the value now lives inside a larger buffer). */
function shiftSlot(k: Kernel, slot: number, delta: number): Kernel {
  const f = (s: number, m: AccessMap) => ({slot: s, map: s === slot ? shifted(m, delta) : m});
  const sm = (s: number, m: AccessMap) => (s === slot ? shifted(m, delta) : m);
  switch (k.template) {
    case 'elementwise': return {...k, expr: mapSlots(k.expr, f)};
    case 'row': return {...k, expr: mapSlots(k.expr, f), stages: k.stages.map(st => ({op: st.op, x: mapSlots(st.x, f)}))};
    case 'gemm': return {...k, a: sm(k.aSlot, k.a), b: sm(k.bSlot, k.b), epilogue: mapSlots(k.epilogue, f),
                         group: k.group && {...k.group, bMaps: k.group.bMaps.map((m, g) => sm(k.group!.bSlots[g], m)),
                                            epilogues: k.group.epilogues.map(e => mapSlots(e, f))}};
    case 'attention': return {...k, q: sm(k.qSlot, k.q), k: sm(k.kSlot, k.k), v: sm(k.vSlot, k.v), score: mapSlots(k.score, f),
                              mask: k.mask && {...k.mask, s0: mapSlots(k.mask.s0, f), zero: k.mask.zero && mapSlots(k.mask.zero, f)}};
    case 'alias': return k;
  }
}

/** Whether `v` is read only by nodes of this subgraph (not the app, not a later flush). */
function internal(v: StofValue, g: Subgraph): boolean {
  if (v.refs > 0 || g.targets.includes(v)) return false;
  const reads = g.nodes.reduce((c, n) => c + n.inputs.filter(i => i === v).length, 0);
  return reads === v.uses;
}

/**
 * Merges GEMMs that read the same A through the same map (Q, K, V of one input) into one grouped
 * launch: one read of A's tiles feeds G outputs, and G launches become one. Their outputs must be
 * internal (they become slices of one buffer); inputs of the later ones must exist before the first.
 */
function mergeSiblingGemms(kernels: Kernel[], g: Subgraph): Kernel[] {
  const out = [...kernels];
  for (let i = 0; i < out.length; i++) {
    const first = out[i];
    if (first.template !== 'gemm' || first.group || sizeOf(first.batchShape) !== 1) continue;
    const A = first.inputs[first.aSlot], aKey = accessKey(first.a);
    if (!internal(first.output as StofValue, g)) continue;
    const members = [i];
    const slots: ValueInfo[] = [...first.inputs];
    const slotOf = (v: ValueInfo) => { let s = slots.indexOf(v); if (s < 0) s = slots.push(v) - 1; return s; };
    for (let j = i + 1; j < out.length; j++) {
      const k = out[j];
      if (k.template !== 'gemm' || k.group || k.batchShape.length !== first.batchShape.length || k.inputs[k.aSlot] !== A ||
          accessKey(k.a) !== aKey || k.M !== first.M || k.N !== first.N || k.K !== first.K || accessKey(k.out) !== accessKey(first.out) ||
          !internal(k.output as StofValue, g) || out.some(x => x.template === 'alias' && x.inputs.includes(k.output))) continue;
      // Its inputs must be stored before `first` runs, and it must not read another member's output.
      const producedAfter = new Set(out.slice(i, j).map(x => x.output));
      if (k.inputs.some(v => producedAfter.has(v))) continue;
      const extra = k.inputs.filter(v => !slots.includes(v)).length;
      if (slots.length + extra > MAX_INPUTS) break;
      k.inputs.forEach(slotOf);
      members.push(j);
    }
    if (members.length < 2) continue;
    const groupKernels = members.map(j => out[j] as GemmKernel);
    const remap = (k: GemmKernel) => (s: number, m: AccessMap) => ({slot: slotOf(k.inputs[s]), map: m});
    const size = first.M * first.N;
    const merged: GemmKernel = {
      ...first, inputs: slots, ops: groupKernels.flatMap(k => k.ops),
      group: {bSlots: groupKernels.map(k => slotOf(k.inputs[k.bSlot])), bMaps: groupKernels.map(k => k.b),
              epilogues: groupKernels.map(k => mapSlots(k.epilogue, remap(k))), siblings: groupKernels.slice(1).map(k => k.output)},
    };
    out[i] = merged;
    for (let j = members.length - 1; j >= 1; j--) out.splice(members[j], 1);
    // Later kernels read group g at offset g·M·N of the shared buffer.
    groupKernels.forEach((gk, gi) => {
      if (gi === 0) return;
      for (let j = i + 1; j < out.length; j++) {
        const s = out[j].inputs.indexOf(gk.output);
        if (s >= 0) out[j] = shiftSlot(out[j], s, gi * size);
      }
    });
  }
  return out;
}

/** What the attention kernel's choice depends on. */
export interface AttentionShape {
  /** Product of the batch dims (batch × heads). */
  batch: number;
  Sq: number; Sk: number; D: number; Dv: number;
  /** The score reads a mask; maskInstances: distinct [Sq, Sk] masks across the batch dims. */
  masked: boolean;
  maskInstances: number;
}

export interface AttentionChoice {
  variant: 'blockwise'|'rowwise';
  Br: number;
  Bc: number;
  threads: number;
}

export interface PlanOptions {
  /**
   * 'auto': `chooseAttention` picks kernel and tiles (the search's stage 1 / tuning cache);
   * 'dense': block-wise, every key tile; 'blockwise' / 'rowwise': that kernel with default tiles,
   * skipping the mask's empty tiles.
   */
  attention: 'auto'|'dense'|'blockwise'|'rowwise';
  chooseAttention?: (s: AttentionShape) => AttentionChoice|null;
  /** Workgroup storage of the device, bytes (default: WebGPU's guaranteed 16 KiB). */
  workgroupStorage?: number;
}

/** Workgroup storage of the row-wise kernel: Q rows, score rows (Sk rounded up to Bc), reduction scratch, tile list. */
export function rowwiseStorage(Br: number, Bc: number, threads: number, Sk: number, D: number): number {
  const nKT = Math.ceil(Sk / Bc);
  return 4 * (Br * D + Br * nKT * Bc + threads + nKT + 2 * Br);
}

/** Workgroup storage of the block-wise kernel: Q rows and a K/V tile (padded rows), the tile's scores and row maxima, tile list. */
export function blockwiseStorage(Br: number, Bc: number, Sk: number, D: number, Dv: number): number {
  return 4 * (Br * (D + 4) + Bc * Math.max(D + 4, Dv) + Br * Bc + Br * 8 + Math.ceil(Sk / Bc));
}

/** Keys per tile of the block-wise kernel (8 invocations share 4 query rows, 4 keys each). */
export const BLOCKWISE_BC = 32;

/** Default tiles of a forced kernel: the largest that fit the device's workgroup storage. */
export function defaultAttentionChoice(variant: 'blockwise'|'rowwise', s: AttentionShape, storage: number): AttentionChoice|null {
  if (variant === 'blockwise') {
    for (const Br of [64, 32, 16, 8, 4]) {
      if (blockwiseStorage(Br, BLOCKWISE_BC, s.Sk, s.D, s.Dv) <= storage) return {variant, Br, Bc: BLOCKWISE_BC, threads: 2 * Br};
    }
    return null;
  }
  for (const Br of [8, 4, 2, 1]) {
    if (rowwiseStorage(Br, 32, 128, s.Sk, s.D) <= storage) return {variant, Br, Bc: 32, threads: 128};
  }
  return null;
}

function attentionChoice(o: PlanOptions, s: AttentionShape): AttentionChoice {
  const storage = o.workgroupStorage ?? 16384;
  const forced = o.attention === 'rowwise' ? 'rowwise' : o.attention === 'auto' ? null : 'blockwise';
  const c = forced != null ? defaultAttentionChoice(forced, s, storage) : o.chooseAttention?.(s) ?? defaultAttentionChoice('blockwise', s, storage);
  // Row-wise rows too long for the device, or nothing chosen: block-wise always fits (Bc shrinks).
  return c ?? defaultAttentionChoice('blockwise', s, storage) ?? {variant: 'blockwise', Br: 4, Bc: BLOCKWISE_BC, threads: 8};
}

export function planSubgraph(g: Subgraph, options: PlanOptions = {attention: 'auto'}): Plan {
  return new Planner(g, options).plan();
}

