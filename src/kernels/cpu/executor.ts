// Runs planned kernels in TypeScript: the executor when the base is tfjs-backend-cpu, and the
// reference the WebGPU kernels are tested against. Same plans, same expression semantics.
import type {BackendValues, DataType, KernelBackend} from '@tensorflow/tfjs-core';

import {AccessMap, contiguousStrides, sizeOf} from '../../fusion/access';
import {evalBinary, evalUnary, Expr} from '../../fusion/expr';
import type {GroupReport} from '../../backend/profiler';
import {Kernel, storedShape} from '../../fusion/planner';

type Arr = ArrayLike<number>;
type Fn = (c: Int32Array) => number;

/** Offset function of an access map (closure over its terms). */
function offsetFn(m: AccessMap): (c: Int32Array) => number {
  const terms: Array<[number, number, number, number]> = [];
  m.dims.forEach((ts, i) => ts.forEach(t => terms.push([i, t.div, t.mod, t.stride])));
  const base = m.offset;
  return c => {
    let off = base;
    for (const [i, div, mod, stride] of terms) {
      const q = div === 1 ? c[i] : Math.floor(c[i] / div);
      off += (mod === 0 ? q : q % mod) * stride;
    }
    return off;
  };
}

interface Env {
  inputs: Arr[];
  acc: number;
  rv: Float64Array;
}

function compile(e: Expr, env: Env): Fn {
  switch (e.k) {
    case 'in': { const off = offsetFn(e.map); const data = () => env.inputs[e.slot]; return c => data()[off(c)]; }
    case 'acc': return () => env.acc;
    case 'rv': return () => env.rv[e.stage];
    case 'c': { const v = e.v; return () => v; }
    // Each op rounds to float32, as the unfused chain on tfjs-backend-cpu stores every step
    // (s + -1e9 must give -1e9, so that a fully masked row is uniform there and here).
    case 'u': { const a = compile(e.a, env); const op = e.op; return c => Math.fround(evalUnary(op, a(c))); }
    case 'b': { const a = compile(e.a, env), b = compile(e.b, env); const op = e.op; return c => Math.fround(evalBinary(op, a(c), b(c))); }
    case 'sel': { const k = compile(e.c, env), a = compile(e.a, env), b = compile(e.b, env); return c => (k(c) !== 0 ? a(c) : b(c)); }
  }
}

function unravelInto(i: number, strides: number[], shape: number[], c: Int32Array) {
  for (let d = 0; d < shape.length; d++) c[d] = Math.floor(i / strides[d]) % shape[d];
}

function outputArray(dtype: DataType, size: number) {
  return dtype === 'bool' ? new Uint8Array(size) : new Float32Array(size);
}

/** Computes a kernel's output values from its inputs' values. */
export function evaluateKernel(k: Kernel, inputs: Arr[]): Float32Array|Uint8Array {
  const env: Env = {inputs, acc: 0, rv: new Float64Array(k.template === 'row' ? k.stages.length : 0)};
  const shape = k.output.shape;
  const out = outputArray(k.output.dtype, sizeOf(storedShape(k)));
  switch (k.template) {
    case 'elementwise': {
      const f = compile(k.expr, env);
      const strides = contiguousStrides(shape), c = new Int32Array(shape.length);
      for (let i = 0; i < out.length; i++) {
        unravelInto(i, strides, shape, c);
        out[i] = f(c);
      }
      return out;
    }
    case 'row': {
      const rowShape = k.rowShape, r = rowShape.length, L = k.length;
      const stages = k.stages.map(s => ({op: s.op, f: compile(s.x, env)}));
      const f = compile(k.expr, env);
      const lead = rowShape.slice(0, -1), leadStrides = contiguousStrides(lead);
      const c = new Int32Array(r);
      for (let row = 0; row < k.rows; row++) {
        for (let d = 0; d < lead.length; d++) c[d] = Math.floor(row / leadStrides[d]) % lead[d];
        stages.forEach((s, si) => {
          let acc = s.op === 'max' ? -Infinity : 0;
          for (let col = 0; col < L; col++) {
            c[r - 1] = col;
            const x = s.f(c);
            acc = s.op === 'max' ? (Number.isNaN(x) || x > acc ? x : acc) : acc + x;
          }
          env.rv[si] = acc;
        });
        if (k.scalar) {
          c[r - 1] = 0;
          out[row] = f(c);
        } else {
          for (let col = 0; col < L; col++) {
            c[r - 1] = col;
            out[row * L + col] = f(c);
          }
        }
      }
      return out;
    }
    case 'gemm': {
      const {M, N, K, batchShape} = k;
      const rank = batchShape.length + 2;
      const aOff = offsetFn(k.a), oOff = offsetFn(k.out);
      const A = inputs[k.aSlot];
      const groups = k.group ? k.group.epilogues.map((e, g) => ({B: inputs[k.group!.bSlots[g]], bOff: offsetFn(k.group!.bMaps[g]), epi: compile(e, env)})) :
                               [{B: inputs[k.bSlot], bOff: offsetFn(k.b), epi: compile(k.epilogue, env)}];
      const batch = sizeOf(batchShape), bStrides = contiguousStrides(batchShape);
      const ca = new Int32Array(rank), cb = new Int32Array(rank), co = new Int32Array(rank);
      groups.forEach(({B, bOff, epi}, g) => {
        const base = g * sizeOf(shape);
        for (let bi = 0; bi < batch; bi++) {
          for (let d = 0; d < batchShape.length; d++) ca[d] = cb[d] = co[d] = Math.floor(bi / bStrides[d]) % batchShape[d];
          for (let m = 0; m < M; m++) {
            for (let n = 0; n < N; n++) {
              let acc = 0;
              ca[rank - 2] = m; cb[rank - 1] = n;
              for (let kk = 0; kk < K; kk++) {
                ca[rank - 1] = kk; cb[rank - 2] = kk;
                acc += A[aOff(ca)] * B[bOff(cb)];
              }
              env.acc = Math.fround(acc);
              co[rank - 2] = m; co[rank - 1] = n;
              out[base + oOff(co)] = epi(co);
            }
          }
        }
      });
      return out;
    }
    case 'attention': {
      // The unfused chain, in float64: scores, prologue, softmax (max-subtracted), times V.
      const {Sq, Sk, D, Dv, batchShape} = k;
      const rank = batchShape.length + 2;
      const qOff = offsetFn(k.q), kOff = offsetFn(k.k), vOff = offsetFn(k.v), oOff = offsetFn(k.out);
      const Q = inputs[k.qSlot], Kx = inputs[k.kSlot], V = inputs[k.vSlot];
      const score = compile(k.score, env);
      const batch = sizeOf(batchShape), bStrides = contiguousStrides(batchShape);
      const c = new Int32Array(rank), s = new Float64Array(Sk);
      for (let bi = 0; bi < batch; bi++) {
        for (let d = 0; d < batchShape.length; d++) c[d] = Math.floor(bi / bStrides[d]) % batchShape[d];
        for (let i = 0; i < Sq; i++) {
          let mx = -Infinity;
          for (let j = 0; j < Sk; j++) {
            let acc = 0;
            for (let d = 0; d < D; d++) {
              c[rank - 2] = i; c[rank - 1] = d; const qa = Q[qOff(c)];
              c[rank - 2] = j; const ka = Kx[kOff(c)];
              acc += qa * ka;
            }
            env.acc = Math.fround(acc);
            c[rank - 2] = i; c[rank - 1] = j;
            s[j] = score(c);
            mx = Number.isNaN(s[j]) || s[j] > mx ? s[j] : mx;
          }
          let sum = 0;
          for (let j = 0; j < Sk; j++) { s[j] = Math.exp(s[j] - mx); sum += s[j]; }
          for (let e = 0; e < Dv; e++) {
            let o = 0;
            for (let j = 0; j < Sk; j++) { c[rank - 2] = j; c[rank - 1] = e; o += s[j] * V[vOff(c)]; }
            c[rank - 2] = i; c[rank - 1] = e;
            out[oOff(c)] = o / sum;
          }
        }
      }
      return out;
    }
    case 'alias':
      throw new Error('alias kernels share storage; nothing to evaluate');
  }
}

/** Executes kernels on tfjs-backend-cpu's storage. */
export class CpuExecutor {
  readonly lastDispatches = 1;  // one pass over the data per kernel
  readonly sparse = false;  // attention in float64 over every key (the reference)
  constructor(private readonly base: KernelBackend) {}

  run(k: Kernel, inputIds: object[], timed?: GroupReport): object {
    const start = timed ? performance.now() : 0;
    const inputs = inputIds.map(id => this.base.readSync(id) as unknown as Arr);
    const values = evaluateKernel(k, inputs);
    if (timed) timed.ms = performance.now() - start;  // the CPU pass, synchronous
    return this.base.write(values as BackendValues, storedShape(k), k.output.dtype);
  }
}
