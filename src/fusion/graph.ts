// The lazy graph: every tensor of the 'stof' backend is a StofValue; an intercepted kernel records a
// LazyNode instead of running. Values keep two counts: `refs`, the app's references (tfjs incRef /
// disposeData), and `uses`, the pending nodes that still read the value. Storage is freed when
// both reach zero; a value the app disposed is never computed unless a pending node needs it.
import type {DataType, NamedAttrMap} from '@tensorflow/tfjs-core';

let nextValueId = 0;

export class StofValue {
  readonly id = nextValueId++;
  /** App references (tfjs refcount semantics). */
  refs = 1;
  /** Unexecuted nodes reading this value. */
  uses = 0;
  /** The base backend's data id once the value is stored there. */
  baseId: object|null = null;
  /** Producer, while the value is pending. */
  node: LazyNode|null = null;
  /**
   * Element type of the stored buffer when it differs from `dtype`: tfjs-backend-webgpu casts
   * int32 -> float32 by relabelling an int32 buffer.
   */
  storage: DataType|null = null;
  /** The value of a float32 scalar written by the app (tf.mul(x, 0.5)): inlined into kernels. */
  constant: number|null = null;
  /** The value's index in the subgraph whose signature was made last (valid while `stamp` matches). */
  slot = 0;
  stamp = 0;
  /** Equal to the collect count of the last collectSubgraph that visited the value. */
  seen = 0;
  private externalSig: string|null = null;

  constructor(readonly shape: number[], readonly dtype: DataType) {}

  get pending(): boolean {
    return this.baseId == null && this.node != null;
  }
  /**
   * The value's part of a signature as a stored input: its constant, or its type and shape. Made
   * once (a stored value's storage and constant are set when it is stored and do not change).
   */
  get signature(): string {
    if (this.externalSig == null) this.externalSig = this.constant != null ? `c${this.constant}` : `${this.dtype}/${this.storage}[${this.shape}]`;
    return this.externalSig;
  }
  get size(): number {
    let n = 1;
    for (const d of this.shape) n *= d;
    return n;
  }
}

/** JSON of attribute objects seen before (a graph replay passes the same object on every forward). */
const attrsJson = new WeakMap<NamedAttrMap, string>();

export class LazyNode {
  /** The node's part of a subgraph signature, made once when it is recorded (flushes are hot). */
  readonly sig: string;

  /** `attrs` is the node's copy; `callerAttrs` the kernel call's object, whose JSON is cached. */
  constructor(
      readonly kernel: string, readonly inputs: StofValue[], readonly attrs: NamedAttrMap,
      readonly output: StofValue, callerAttrs: NamedAttrMap = attrs) {
    for (const v of inputs) v.uses++;
    output.node = this;
    let json = attrsJson.get(callerAttrs);
    if (json == null) attrsJson.set(callerAttrs, json = JSON.stringify(attrs));
    this.sig = `${kernel}${json}:${output.dtype}[${output.shape}]`;
  }
}

/**
 * The pending subgraph that `targets` need, in a deterministic topological order (inputs first),
 * with the stored values it reads (`external`) in first-use order.
 */
export interface Subgraph {
  nodes: LazyNode[];
  external: StofValue[];
  targets: StofValue[];
}

let collectCount = 0;

export function collectSubgraph(targets: StofValue[]): Subgraph {
  const nodes: LazyNode[] = [];
  const external: StofValue[] = [];
  const mark = ++collectCount;
  // Iterative DFS (graphs of thousands of nodes must not overflow the stack).
  const visit = (root: StofValue) => {
    const stack: Array<{v: StofValue, i: number}> = [{v: root, i: 0}];
    while (stack.length) {
      const top = stack[stack.length - 1];
      const v = top.v;
      if (top.i === 0) {
        if (v.seen === mark) { stack.pop(); continue; }
        v.seen = mark;
        if (!v.pending) { external.push(v); stack.pop(); continue; }
      }
      const node = v.node!;
      if (top.i < node.inputs.length) {
        stack.push({v: node.inputs[top.i++], i: 0});
      } else {
        nodes.push(node);
        stack.pop();
      }
    }
  };
  for (const t of targets) visit(t);
  return {nodes, external, targets};
}

let signatureStamp = 0;

/**
 * A string that identifies the subgraph's structure, ops, attributes, shapes and dtypes; with
 * `liveness`, also which node outputs the app holds and how many pending nodes read each (that
 * decides what may be inlined: the plan cache's key). Values are numbered in the subgraph's order
 * (stored inputs, then node outputs); flushes are hot, so one pass and no maps.
 */
export function signature(g: Subgraph, liveness = false): string {
  const stamp = ++signatureStamp;
  const external = g.external, nodes = g.nodes;
  let s = '';
  for (let i = 0; i < external.length; i++) {
    const v = external[i];
    v.stamp = stamp;
    v.slot = i;
    s += v.signature + ';';
  }
  for (let j = 0; j < nodes.length; j++) {
    const n = nodes[j];
    s += n.sig + '(';
    for (const v of n.inputs) s += (v.stamp === stamp ? v.slot : -1) + ',';
    s += ')';
    if (liveness) s += (n.output.refs > 0 ? 'L' : '') + n.output.uses;
    s += ';';
    n.output.stamp = stamp;
    n.output.slot = external.length + j;
  }
  s += '->';
  for (const t of g.targets) s += (t.stamp === stamp ? t.slot : -1) + ',';
  return s;
}
