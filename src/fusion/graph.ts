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

  constructor(readonly shape: number[], readonly dtype: DataType) {}

  get pending(): boolean {
    return this.baseId == null && this.node != null;
  }
  get size(): number {
    let n = 1;
    for (const d of this.shape) n *= d;
    return n;
  }
}

export class LazyNode {
  /** The node's part of a subgraph signature, made once when it is recorded (flushes are hot). */
  readonly sig: string;

  constructor(
      readonly kernel: string, readonly inputs: StofValue[], readonly attrs: NamedAttrMap,
      readonly output: StofValue) {
    for (const v of inputs) v.uses++;
    output.node = this;
    this.sig = `${kernel}${JSON.stringify(attrs)}:${output.dtype}[${output.shape}]`;
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

export function collectSubgraph(targets: StofValue[]): Subgraph {
  const nodes: LazyNode[] = [];
  const external: StofValue[] = [];
  const seen = new Set<StofValue>();
  // Iterative DFS (graphs of thousands of nodes must not overflow the stack).
  const visit = (root: StofValue) => {
    const stack: Array<{v: StofValue, i: number}> = [{v: root, i: 0}];
    while (stack.length) {
      const top = stack[stack.length - 1];
      const v = top.v;
      if (top.i === 0) {
        if (seen.has(v)) { stack.pop(); continue; }
        seen.add(v);
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

/** A string that identifies the subgraph's structure, ops, attributes, shapes and dtypes. */
export function signature(g: Subgraph): string {
  const index = new Map<StofValue, string>();
  g.external.forEach((v, i) => index.set(v, `e${i}`));
  g.nodes.forEach((n, i) => index.set(n.output, `n${i}`));
  const parts: string[] = g.external.map(v => (v.constant != null ? `c${v.constant}` : `${v.dtype}/${v.storage}[${v.shape}]`));
  for (const n of g.nodes) {
    parts.push(`${n.sig}(${n.inputs.map(v => index.get(v)).join(',')})`);
  }
  parts.push(`->${g.targets.map(t => index.get(t)).join(',')}`);
  return parts.join(';');
}
