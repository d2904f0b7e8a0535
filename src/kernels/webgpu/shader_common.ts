// Pieces every WGSL template shares: the shader record, the dispatch grid, buffer declarations,
// typed loads and stores, and domain coordinates.
import {contiguousStrides} from '../../fusion/access';
export {slotsOf} from '../../fusion/expr';
import {Kernel, ValueInfo} from '../../fusion/planner';

export interface Shader {
  code: string;
  workgroups: [number, number, number];
  /** Slot of each input binding, in binding order after the output (binding 0). */
  bindings: number[];
  /** Binding of the mask's tile format (block-sparse attention). */
  tileBinding?: number;
}

export const MAX_GRID = 65535;
export const isInt = (dtype: string) => dtype === 'bool' || dtype === 'int32';
/** Whether a buffer holds i32 (bool and int32 tensors, and int32 buffers relabelled float32). */
export const intBuffer = (v: ValueInfo) => isInt(v.storage ?? v.dtype);

/** Spreads `groups` workgroups over x and y (each at most 65535). */
export function grid(groups: number): [number, number, number] {
  if (groups <= MAX_GRID) return [Math.max(groups, 1), 1, 1];
  return [MAX_GRID, Math.ceil(groups / MAX_GRID), 1];
}

export function declarations(k: Kernel, slots: number[], outBinding = true): string {
  const lines: string[] = [];
  if (outBinding) lines.push(`@group(0) @binding(0) var<storage, read_write> out: array<${isInt(k.output.dtype) ? 'i32' : 'f32'}>;`);
  slots.forEach((slot, i) => {
    lines.push(`@group(0) @binding(${i + 1}) var<storage, read> in${slot}: array<${intBuffer(k.inputs[slot]) ? 'i32' : 'f32'}>;`);
  });
  return lines.join('\n');
}

export function loader(k: Kernel) {
  return (slot: number, offset: string) => (intBuffer(k.inputs[slot]) ? `f32(in${slot}[${offset}])` : `in${slot}[${offset}]`);
}

export function store(k: Kernel, index: string, value: string): string {
  return isInt(k.output.dtype) ? `out[${index}] = i32(${value} != 0.0);` : `out[${index}] = ${value};`;
}

/** `let cN = ...` for each domain coordinate of the linear index `idx` over `shape`. */
export function coordLines(shape: number[], idx: string, names: string[]): string[] {
  const strides = contiguousStrides(shape);
  return shape.map((d, i) => {
    const q = strides[i] === 1 ? idx : `(${idx} / ${strides[i]})`;
    return `let ${names[i]} = ${i === 0 ? q : `${q} % ${d}`};`;
  });
}

