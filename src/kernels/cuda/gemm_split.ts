// A planned GEMM that cuBLASLt cannot take whole, as a few launches around cuBLASLt: operands that
// are no strided matrix (e.g. the attention output read through the head merge) are first copied
// contiguous; cuBLASLt computes the product (with the bias where that is all the epilogue is);
// the rest of the epilogue (GELU, residual add, scale, ...) runs as an elementwise kernel that reads
// the product. On CUDA this beats the generated GEMM by far (cuBLASLt's kernels are tuned, ours are
// not); the extra passes over operands and output cost a few percent at BERT sizes. A grouped GEMM
// (Q, K, V sharing A) becomes one such sequence per group, stored at its offset.
import {AccessMap, contiguous, isIdentity, mergeTerms} from '../../fusion/access';
import {Expr, mapLeaves} from '../../fusion/expr';
import {ElementwiseKernel, GemmKernel, ValueInfo} from '../../fusion/planner';

import {LtProblem, ltOperandOk, ltProblemOf} from './cublaslt';

/** A kernel whose output is a scratch buffer read by later launches of the step through `slot`. */
export interface ScratchKernel {
  kernel: ElementwiseKernel;
  slot: number;
}

export interface SplitStep {
  /** Operands copied contiguous first (their slots extend the GEMM's inputs). */
  packs: ScratchKernel[];
  /** The product, with no epilogue or with the one cuBLASLt applies (bias, ReLU). */
  lt: LtProblem;
  aSlot: number;
  bSlot: number;
  /** The rest of the epilogue over the product (read through slot `scratchSlot`), or null. */
  epilogue: ElementwiseKernel|null;
  scratchSlot: number;
  /** Element offset of this step's output in the GEMM's output buffer (a group's place). */
  outOffset: number;
}

const copyOf = (inputs: ValueInfo[], slot: number, map: AccessMap, ops: string[]): ElementwiseKernel =>
    ({template: 'elementwise', inputs, output: {shape: [...map.shape], dtype: 'float32'}, ops, expr: {k: 'in', slot, map}});

/** The steps of `k` around cuBLASLt, or null when its output layout does not suit it. */
export function splitGemm(k: GemmKernel): SplitStep[]|null {
  if (!isIdentity(mergeTerms(k.out))) return null;
  const groups = k.group ?
      k.group.epilogues.map((epilogue, g) => ({...k, group: undefined, bSlot: k.group!.bSlots[g], b: k.group!.bMaps[g], epilogue})) : [k];
  const size = k.M * k.N;
  const steps: SplitStep[] = [];
  for (const [g, gemm] of groups.entries()) {
    let one: GemmKernel = gemm;
    const packs: ScratchKernel[] = [];
    for (const side of ['a', 'b'] as const) {
      const map = one[side], slot = side === 'a' ? one.aSlot : one.bSlot;
      if (ltOperandOk(map)) continue;
      const packed = one.inputs.length;
      const inputs = [...one.inputs, {shape: [...map.shape], dtype: 'float32' as const}];
      packs.push({kernel: copyOf(one.inputs, slot, map, one.ops), slot: packed});
      one = {...one, inputs, [side]: contiguous(map.shape), ...(side === 'a' ? {aSlot: packed} : {bSlot: packed})};
    }
    const whole = ltProblemOf(one);
    if (whole != null) {
      steps.push({packs, lt: whole, aSlot: one.aSlot, bSlot: one.bSlot, epilogue: null, scratchSlot: -1, outOffset: g * size});
      continue;
    }
    const plain = ltProblemOf({...one, epilogue: {k: 'acc'}});
    if (plain == null) return null;
    const domain = [...k.batchShape, k.M, k.N];
    const scratchSlot = one.inputs.length;
    const expr = mapLeaves(one.epilogue, (leaf: Expr) => (leaf.k === 'acc' ? {k: 'in', slot: scratchSlot, map: contiguous(domain)} : leaf));
    if (expr == null) return null;
    steps.push({
      packs, lt: plain, aSlot: one.aSlot, bSlot: one.bSlot, scratchSlot, outOffset: g * size,
      epilogue: {template: 'elementwise', inputs: [...one.inputs, {shape: domain, dtype: 'float32'}], output: {shape: domain, dtype: k.output.dtype},
                 ops: k.ops, expr},
    });
  }
  return steps;
}
