// The kernels 'stof' records instead of running: their inputs by name, how their output shape and
// dtype follow from the inputs (as tfjs computes them), and what each means in the expression
// language. A kernel call that does not fit (another dtype, a reduction over other axes, ...) runs
// on the base as usual; `reason` says why, for profile().
import {backend_util, DataType, NamedAttrMap, util} from '@tensorflow/tfjs-core';

import {BinaryOp, UnaryOp} from './expr';

export type OpKind = 'unary'|'binary'|'compare'|'select'|'cast'|'reduce'|'softmax'|'matmul'|'reshape'|'transpose';

export interface OpDef {
  kind: OpKind;
  /** Input names in the order the node stores them. */
  inputs: string[];
  unary?: UnaryOp;
  binary?: BinaryOp;
  reduce?: 'sum'|'mean'|'max';
}

const un = (op: UnaryOp): OpDef => ({kind: 'unary', inputs: ['x'], unary: op});
const bin = (op: BinaryOp): OpDef => ({kind: 'binary', inputs: ['a', 'b'], binary: op});
const cmp = (op: BinaryOp): OpDef => ({kind: 'compare', inputs: ['a', 'b'], binary: op});
const red = (op: 'sum'|'mean'|'max'): OpDef => ({kind: 'reduce', inputs: ['x'], reduce: op});

export const OPS: Record<string, OpDef> = {
  Neg: un('neg'), Exp: un('exp'), Log: un('log'), Sqrt: un('sqrt'), Rsqrt: un('rsqrt'), Erf: un('erf'),
  Tanh: un('tanh'), Sigmoid: un('sigmoid'), Relu: un('relu'), Square: un('square'), Abs: un('abs'),
  Add: bin('add'), Sub: bin('sub'), Multiply: bin('mul'), RealDiv: bin('div'), Maximum: bin('max'),
  Minimum: bin('min'), Pow: bin('pow'), SquaredDifference: bin('sqdiff'),
  Greater: cmp('gt'), GreaterEqual: cmp('ge'), Less: cmp('lt'), LessEqual: cmp('le'), Equal: cmp('eq'),
  Select: {kind: 'select', inputs: ['condition', 't', 'e']},
  Cast: {kind: 'cast', inputs: ['x']},
  Sum: red('sum'), Mean: red('mean'), Max: red('max'),
  Softmax: {kind: 'softmax', inputs: ['logits']},
  BatchMatMul: {kind: 'matmul', inputs: ['a', 'b']},
  _FusedMatMul: {kind: 'matmul', inputs: ['a', 'b', 'bias']},
  Reshape: {kind: 'reshape', inputs: ['x']},
  Transpose: {kind: 'transpose', inputs: ['x']},
};

export interface InputInfo {
  shape: number[];
  dtype: DataType;
}

export type Inference = {shape: number[], dtype: DataType, inputs: number[]}|{reason: string};

const FLOAT = 'float32';
const isFloat = (t: InputInfo) => t.dtype === FLOAT;

/** Normalized reduction axes of a Sum/Mean/Max call. */
function reductionAxes(kernel: string, attrs: NamedAttrMap, rank: number): number[] {
  const axis = (kernel === 'Max' ? attrs['reductionIndices'] : attrs['axis']) as number|number[]|undefined;
  return util.parseAxisParam(axis ?? null as unknown as number[], new Array(rank).fill(1)).sort((a, b) => a - b);
}

/** Shape and dtype of the output, or why the call is not recorded. Input list may contain null (absent optional input). */
export function infer(kernel: string, ins: Array<InputInfo|null>, attrs: NamedAttrMap): Inference {
  const def = OPS[kernel];
  const present = ins.map((t, i) => (t == null ? -1 : i)).filter(i => i >= 0);
  const x = ins[0]!;
  switch (def.kind) {
    case 'unary':
      return isFloat(x) ? {shape: x.shape, dtype: FLOAT, inputs: [0]} : {reason: `${x.dtype} input`};
    case 'binary':
    case 'compare': {
      const [a, b] = ins as InputInfo[];
      if (!isFloat(a) || !isFloat(b)) return {reason: `${a.dtype}/${b.dtype} inputs`};
      const shape = backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
      return {shape, dtype: def.kind === 'compare' ? 'bool' : FLOAT, inputs: [0, 1]};
    }
    case 'select': {
      const [c, t, e] = ins as InputInfo[];
      if (c.dtype !== 'bool' || !isFloat(t) || !isFloat(e)) return {reason: `${c.dtype}/${t.dtype}/${e.dtype} inputs`};
      if (!util.arraysEqual(c.shape, t.shape) || !util.arraysEqual(t.shape, e.shape)) return {reason: 'shapes differ'};
      return {shape: t.shape, dtype: FLOAT, inputs: [0, 1, 2]};
    }
    case 'cast': {
      const to = attrs['dtype'] as DataType;
      if ((x.dtype !== FLOAT && x.dtype !== 'bool') || (to !== FLOAT && to !== 'bool')) return {reason: `cast ${x.dtype} to ${to}`};
      return {shape: x.shape, dtype: to, inputs: [0]};
    }
    case 'reduce': {
      if (!isFloat(x)) return {reason: `${x.dtype} input`};
      const rank = x.shape.length;
      const axes = reductionAxes(kernel, attrs, rank);
      if (rank === 0 || axes.length !== 1 || axes[0] !== rank - 1) return {reason: `axes [${axes}] of rank ${rank} (only the last axis is fused)`};
      if (x.shape[rank - 1] === 0) return {reason: 'empty reduction'};
      const keep = attrs['keepDims'] as boolean;
      return {shape: keep ? [...x.shape.slice(0, -1), 1] : x.shape.slice(0, -1), dtype: FLOAT, inputs: [0]};
    }
    case 'softmax': {
      const rank = x.shape.length;
      const dim = attrs['dim'] as number;
      if (!isFloat(x)) return {reason: `${x.dtype} input`};
      if (rank === 0 || (dim !== -1 && dim !== rank - 1)) return {reason: `softmax over dim ${dim} of rank ${rank}`};
      return {shape: x.shape, dtype: FLOAT, inputs: [0]};
    }
    case 'matmul': {
      const [a, b] = ins as InputInfo[];
      const bias = ins[2];
      if (!isFloat(a) || !isFloat(b) || (bias != null && !isFloat(bias))) return {reason: 'non-float32 operands'};
      const act = attrs['activation'] as string|undefined;
      if (act != null && !['linear', 'relu', 'relu6', 'elu', 'sigmoid'].includes(act)) return {reason: `activation ${act}`};
      if (a.shape.length < 2 || b.shape.length < 2) return {reason: 'operand of rank < 2'};
      const ta = attrs['transposeA'] as boolean, tb = attrs['transposeB'] as boolean;
      const [m, ka] = ta ? [a.shape[a.shape.length - 1], a.shape[a.shape.length - 2]] : a.shape.slice(-2);
      const [kb, n] = tb ? [b.shape[b.shape.length - 1], b.shape[b.shape.length - 2]] : b.shape.slice(-2);
      if (ka !== kb) return {reason: `inner dimensions ${ka} and ${kb} differ`};
      if (ka === 0) return {reason: 'empty inner dimension'};
      // tfjs broadcasts batches only where the flattened batch sizes are equal or one of them is 1.
      const ba = util.sizeFromShape(a.shape.slice(0, -2)), bb = util.sizeFromShape(b.shape.slice(0, -2));
      if (ba !== bb && ba !== 1 && bb !== 1) return {reason: `batch sizes ${ba} and ${bb}`};
      const batch = backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
      const shape = [...batch, m, n];
      if (bias != null) backend_util.assertAndGetBroadcastShape(shape, bias.shape);
      return {shape, dtype: FLOAT, inputs: present};
    }
    case 'reshape': {
      const shape = util.inferFromImplicitShape([...(attrs['shape'] as number[])], util.sizeFromShape(x.shape));
      if (util.sizeFromShape(shape) !== util.sizeFromShape(x.shape)) return {reason: 'size mismatch'};
      if (x.dtype !== FLOAT && x.dtype !== 'bool') return {reason: `${x.dtype} input`};
      return {shape, dtype: x.dtype, inputs: [0]};
    }
    case 'transpose': {
      if (x.dtype !== FLOAT && x.dtype !== 'bool') return {reason: `${x.dtype} input`};
      const perm = attrs['perm'] as number[];
      if (perm.length !== x.shape.length) return {reason: 'perm rank mismatch'};
      return {shape: perm.map(p => x.shape[p]), dtype: x.dtype, inputs: [0]};
    }
  }
}
