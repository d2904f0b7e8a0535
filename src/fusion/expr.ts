// The scalar expression language of the templates: what one output element (or one row stage) is,
// in terms of loads of input buffers through access maps. WGSL, CUDA C and the CPU executor are all
// generated from it. Values are f32; a bool is 0 or 1 (stored as i32 by the WebGPU base).
import {AccessMap, accessKey} from './access';

export type UnaryOp = 'neg'|'exp'|'log'|'sqrt'|'rsqrt'|'erf'|'tanh'|'sigmoid'|'relu'|'square'|'abs'|'ne0'|'elu'|'relu6';
export type BinaryOp = 'add'|'sub'|'mul'|'div'|'max'|'min'|'pow'|'sqdiff'|'gt'|'ge'|'lt'|'le'|'eq';
export type ReduceOp = 'sum'|'max';

export type Expr =
  | {k: 'in', slot: number, map: AccessMap}          // element of input buffer `slot`
  | {k: 'acc'}                                       // the GEMM accumulator
  | {k: 'rv', stage: number}                         // a row program's reduced value (per row)
  | {k: 'c', v: number}                              // constant
  | {k: 'u', op: UnaryOp, a: Expr}
  | {k: 'b', op: BinaryOp, a: Expr, b: Expr}
  | {k: 'sel', c: Expr, a: Expr, b: Expr};           // c != 0 ? a : b

/** A row program stage: reduces `x` over the row (the last axis of the row domain). */
export interface Stage {
  op: ReduceOp;
  x: Expr;
}

export const unary = (op: UnaryOp, a: Expr): Expr => ({k: 'u', op, a});
export const binary = (op: BinaryOp, a: Expr, b: Expr): Expr => ({k: 'b', op, a, b});
export const constant = (v: number): Expr => ({k: 'c', v});

/** Visits every node, parents first (a tree: a shared subtree is visited at each occurrence). */
export function walk(e: Expr, f: (e: Expr) => void): void {
  f(e);
  switch (e.k) {
    case 'u': walk(e.a, f); break;
    case 'b': walk(e.a, f); walk(e.b, f); break;
    case 'sel': walk(e.c, f); walk(e.a, f); walk(e.b, f); break;
    default: break;
  }
}

/** Whether some node of `e` is of kind `k`. */
export function hasNode(e: Expr, k: Expr['k']): boolean {
  let found = false;
  walk(e, x => { if (x.k === k) found = true; });
  return found;
}

/** `e` with every leaf replaced by f(leaf); null when f refuses a leaf. */
export function mapLeaves(e: Expr, f: (leaf: Expr) => Expr|null): Expr|null {
  switch (e.k) {
    case 'u': { const a = mapLeaves(e.a, f); return a && {k: 'u', op: e.op, a}; }
    case 'b': { const a = mapLeaves(e.a, f), b = mapLeaves(e.b, f); return a && b && {k: 'b', op: e.op, a, b}; }
    case 'sel': {
      const c = mapLeaves(e.c, f), a = mapLeaves(e.a, f), b = mapLeaves(e.b, f);
      return c && a && b && {k: 'sel', c, a, b};
    }
    default: return f(e);
  }
}

/** Structural key (for code caches): same key, same generated code. */
export function exprKey(e: Expr): string {
  switch (e.k) {
    case 'in': return `in${e.slot}<${accessKey(e.map)}>`;
    case 'acc': return 'acc';
    case 'rv': return `rv${e.stage}`;
    case 'c': return Object.is(e.v, -0) ? '-0' : String(e.v);
    case 'u': return `${e.op}(${exprKey(e.a)})`;
    case 'b': return `${e.op}(${exprKey(e.a)},${exprKey(e.b)})`;
    case 'sel': return `sel(${exprKey(e.c)},${exprKey(e.a)},${exprKey(e.b)})`;
  }
}

/** A readable form for explain(). */
export function exprText(e: Expr, names: (slot: number) => string = s => `in${s}`): string {
  switch (e.k) {
    case 'in': return names(e.slot);
    case 'acc': return 'acc';
    case 'rv': return `r${e.stage}`;
    case 'c': return String(e.v);
    case 'u': return `${e.op}(${exprText(e.a, names)})`;
    case 'b': return `${e.op}(${exprText(e.a, names)}, ${exprText(e.b, names)})`;
    case 'sel': return `(${exprText(e.c, names)} ? ${exprText(e.a, names)} : ${exprText(e.b, names)})`;
  }
}

// Scalar semantics shared by the CPU executor and the reference tests. They follow
// tfjs-backend-cpu: NaN propagates through max/min, erf is Abramowitz-Stegun 7.1.26 as tfjs has it.
const ERF_P = 0.3275911, A1 = 0.254829592, A2 = -0.284496736, A3 = 1.421413741, A4 = -1.453152027, A5 = 1.061405429;
export function erf(x: number): number {
  const s = Math.sign(x), a = Math.abs(x);
  const t = 1.0 / (1.0 + ERF_P * a);
  return s * (1.0 - (((((A5 * t + A4) * t) + A3) * t + A2) * t + A1) * t * Math.exp(-a * a));
}

export function evalUnary(op: UnaryOp, a: number): number {
  switch (op) {
    case 'neg': return -a;
    case 'exp': return Math.exp(a);
    case 'log': return Math.log(a);
    case 'sqrt': return Math.sqrt(a);
    case 'rsqrt': return 1 / Math.sqrt(a);
    case 'erf': return erf(a);
    case 'tanh': return Math.tanh(a);
    case 'sigmoid': return 1 / (1 + Math.exp(-a));
    case 'relu': return a < 0 ? 0 : a;
    case 'relu6': return a < 0 ? 0 : (a > 6 ? 6 : a);
    case 'elu': return a >= 0 ? a : Math.exp(a) - 1;
    case 'square': return a * a;
    case 'abs': return Math.abs(a);
    case 'ne0': return a !== 0 ? 1 : 0;
  }
}

export function evalBinary(op: BinaryOp, a: number, b: number): number {
  switch (op) {
    case 'add': return a + b;
    case 'sub': return a - b;
    case 'mul': return a * b;
    case 'div': return a / b;
    case 'max': return Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b);
    case 'min': return Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b);
    case 'pow': return Math.pow(a, b);
    case 'sqdiff': return (a - b) * (a - b);
    case 'gt': return a > b ? 1 : 0;
    case 'ge': return a >= b ? 1 : 0;
    case 'lt': return a < b ? 1 : 0;
    case 'le': return a <= b ? 1 : 0;
    case 'eq': return a === b ? 1 : 0;
  }
}

/** Slots the expressions read, in first-use order. */
export function slotsOf(exprs: Expr[]): number[] {
  const out: number[] = [];
  for (const e of exprs) walk(e, x => { if (x.k === 'in' && !out.includes(x.slot)) out.push(x.slot); });
  return out;
}

/**
 * `e` as a·acc + b with constants a, b (constants, acc, +, -, ·, / by a constant, negation), or
 * null when it is not of that form or reads a buffer. Lets a kernel fold the score's scale into one
 * fused multiply-add with the softmax's exp2.
 */
export function affineInAcc(e: Expr): {a: number, b: number}|null {
  switch (e.k) {
    case 'acc': return {a: 1, b: 0};
    case 'c': return {a: 0, b: e.v};
    case 'u': {
      const x = e.op === 'neg' ? affineInAcc(e.a) : null;
      return x && {a: -x.a, b: -x.b};
    }
    case 'b': {
      const x = affineInAcc(e.a), y = affineInAcc(e.b);
      if (x == null || y == null) return null;
      switch (e.op) {
        case 'add': return {a: x.a + y.a, b: x.b + y.b};
        case 'sub': return {a: x.a - y.a, b: x.b - y.b};
        case 'mul': return x.a === 0 ? {a: x.b * y.a, b: x.b * y.b} : y.a === 0 ? {a: x.a * y.b, b: x.b * y.b} : null;
        case 'div': return y.a === 0 ? {a: x.a / y.b, b: x.b / y.b} : null;
        default: return null;
      }
    }
    default: return null;
  }
}
