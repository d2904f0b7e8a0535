// Cases for the CUDA implementations of tfjs kernels (src/backend/cuda_kernels.ts): each kernel with
// a list of attribute combinations (negative strides, masks, shrink axes, batchDims, rank 1..6,
// extent-1 dimensions, empty outputs, int32 and bool), seeded inputs, and a harness that runs a case
// on tfjs-backend-cpu and on a CudaExecutor through a DeviceHost made here. The codegen check
// (test/kernels/cuda_movement_check.mjs, stand-in driver: shapes, dtypes, nvcc) and the numerics
// check on the GPU (bench/cuda_movement_check.mjs: values) share them.
import {backend_util, DataType, getKernel, KernelBackend, NamedAttrMap, NamedTensorInfoMap, slice_util, TensorInfo, TypedArray,
        util} from '@tensorflow/tfjs-core';

import {CUDA_KERNELS, DeviceHost} from '../../src/backend/cuda_kernels';
import type {CudaBuffer, CudaExecutor} from '../../src/kernels/cuda/executor';
import {seededValues} from '../specs/util';

export interface TensorSpec {
  shape: number[];
  dtype?: DataType;
  /** Values, or seeded: float32 in [-4, 4), int32 in [-50, 50], bool 0/1; `max`: ints in [0, max). */
  values?: number[];
  max?: number;
  /** The dtype the backend stores the values as, where tfjs relabels (cpu's Cast int32 -> float32 keeps int32 values). */
  storedAs?: DataType;
}

export interface MovementCase {
  name: string;
  kernel: string;
  /** Named inputs, or a list (Concat, Pack: tfjs passes the array as the inputs). */
  inputs: Record<string, TensorSpec>|TensorSpec[];
  attrs?: NamedAttrMap;
  /** The indices' values are only on the device (no host-side validation). */
  deviceOnly?: boolean;
  /** The CUDA kernel must throw an error matching this (naming the bad values). */
  throws?: RegExp;
  /** The CUDA kernel must decline (return null): tfjs-backend-cpu runs it. */
  declines?: boolean;
  /** tfjs-backend-cpu computes this differently (why); the expected values come from `reference`. */
  cpuDiffers?: string;
  reference?: (inputs: Map<string, {spec: TensorSpec, values: TypedArray}>) => Result[];
}

export interface Result {
  shape: number[];
  dtype: DataType;
  values: ArrayLike<number>;
}

const f = (shape: number[], values?: number[]): TensorSpec => ({shape, dtype: 'float32', values});
const i32 = (shape: number[], values?: number[]): TensorSpec => ({shape, dtype: 'int32', values});
const b8 = (shape: number[], values?: number[]): TensorSpec => ({shape, dtype: 'bool', values});
const idx = (shape: number[], max: number): TensorSpec => ({shape, dtype: 'int32', max});

/** Every case, in kernel order. */
export function movementCases(): MovementCase[] {
  const cases: MovementCase[] = [];
  const add = (kernel: string, name: string, c: Omit<MovementCase, 'name'|'kernel'>) => cases.push({kernel, name: `${kernel}/${name}`, ...c});

  // ---- GatherV2 ----
  add('GatherV2', 'embedding [64,32] by [2,7]', {inputs: {x: f([64, 32]), indices: idx([2, 7], 64)}, attrs: {axis: 0, batchDims: 0}});
  add('GatherV2', 'positions [40,16] by [1,10]', {inputs: {x: f([40, 16]), indices: i32([1, 10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])}, attrs: {axis: 0}});
  add('GatherV2', 'scalar index', {inputs: {x: f([12, 5]), indices: i32([], [7])}, attrs: {axis: 0, batchDims: 0}});
  add('GatherV2', 'int32 params', {inputs: {x: i32([10, 3]), indices: idx([4], 10)}, attrs: {axis: 0, batchDims: 0}});
  add('GatherV2', 'bool params', {inputs: {x: b8([6, 2]), indices: idx([3], 6)}, attrs: {axis: 0, batchDims: 0}});
  add('GatherV2', 'axis 1', {inputs: {x: f([3, 5, 4]), indices: idx([2, 2], 5)}, attrs: {axis: 1, batchDims: 0}});
  add('GatherV2', 'axis -1', {inputs: {x: f([3, 5, 4]), indices: idx([6], 4)}, attrs: {axis: -1, batchDims: 0}});
  add('GatherV2', 'batchDims 1', {inputs: {x: f([2, 5, 3]), indices: idx([2, 4], 5)}, attrs: {axis: 1, batchDims: 1}});
  add('GatherV2', 'batchDims -1', {inputs: {x: f([2, 5, 3]), indices: idx([2, 4], 5)}, attrs: {axis: 1, batchDims: -1}});
  add('GatherV2', 'batchDims 2', {inputs: {x: f([2, 3, 5, 2]), indices: idx([2, 3, 2], 5)}, attrs: {axis: 2, batchDims: 2}});
  add('GatherV2', 'rank 6', {inputs: {x: f([2, 1, 3, 2, 4, 3]), indices: idx([5], 4)}, attrs: {axis: 4, batchDims: 0}});
  add('GatherV2', 'extent-1 dims', {inputs: {x: f([1, 7, 1]), indices: idx([1, 3], 7)}, attrs: {axis: 1, batchDims: 0}});
  add('GatherV2', 'empty indices', {inputs: {x: f([8, 4]), indices: i32([0])}, attrs: {axis: 0, batchDims: 0}});
  add('GatherV2', 'index out of range (host values)', {inputs: {x: f([64, 4]), indices: i32([3], [1, 70, 2])}, attrs: {axis: 0, batchDims: 0},
                                                      throws: /index value 70 is not in \[0, 63\]/});
  add('GatherV2', 'index out of range (device only): 0', {
    inputs: {x: f([8, 3]), indices: i32([4], [-1, 8, 3, 7])}, attrs: {axis: 0, batchDims: 0}, deviceOnly: true,
    cpuDiffers: 'tfjs-backend-cpu throws; on the device an index outside [0, dim) gives 0, as tfjs-backend-webgpu',
    reference: m => [gatherReference(m.get('x')!, m.get('indices')!, 0, 0)],
  });

  // ---- StridedSlice ---- (x [4, 6, 5] unless said)
  const ss = (begin: number[], end: number[], strides: number[], masks: Partial<Record<'beginMask'|'endMask'|'ellipsisMask'|'newAxisMask'|'shrinkAxisMask', number>> = {}) =>
      ({begin, end, strides, beginMask: 0, endMask: 0, ellipsisMask: 0, newAxisMask: 0, shrinkAxisMask: 0, ...masks});
  const x3 = f([4, 6, 5]);
  add('StridedSlice', 'simple', {inputs: {x: x3}, attrs: ss([1, 0, 0], [3, 6, 5], [1, 1, 1])});
  add('StridedSlice', 'strides 2', {inputs: {x: x3}, attrs: ss([0, 1, 0], [4, 6, 5], [2, 2, 1])});
  add('StridedSlice', 'negative strides + masks', {inputs: {x: x3}, attrs: ss([0, 5, 0], [0, 0, 0], [-1, -2, -1], {beginMask: 5, endMask: 5})});
  add('StridedSlice', 'begin/end masks', {inputs: {x: x3}, attrs: ss([2, 1, 3], [0, 4, 0], [1, 1, 1], {beginMask: 1, endMask: 4})});
  add('StridedSlice', 'ellipsis', {inputs: {x: x3}, attrs: ss([0, 1], [0, 3], [1, 1], {ellipsisMask: 1})});
  add('StridedSlice', 'new axis', {inputs: {x: x3}, attrs: ss([0, 0, 0], [0, 0, 2], [1, 1, 1], {beginMask: 1, endMask: 1, newAxisMask: 2})});
  add('StridedSlice', 'shrink x[:, 0]', {inputs: {x: x3}, attrs: ss([0, 0], [0, 1], [1, 1], {beginMask: 1, endMask: 1, shrinkAxisMask: 2})});
  add('StridedSlice', 'shrink last token x[:, -1, :]', {inputs: {x: x3}, attrs: ss([0, -1, 0], [0, 0, 0], [1, 1, 1], {beginMask: 5, endMask: 5, shrinkAxisMask: 2})});
  add('StridedSlice', 'ellipsis + new axis + shrink', {inputs: {x: x3}, attrs: ss([0, 0, 2], [0, 0, 3], [1, 1, 1], {ellipsisMask: 1, newAxisMask: 2, shrinkAxisMask: 4})});
  add('StridedSlice', 'shrink + stride 2 x[1, ::2]', {
    inputs: {x: x3}, attrs: ss([1, 0], [2, 0], [1, 2], {beginMask: 2, endMask: 2, shrinkAxisMask: 1}),
    cpuDiffers: 'tfjs-backend-cpu indexes x with the shrunk output shape (other values or an error); TensorFlow semantics here',
    reference: m => [stridedSliceReference(m.get('x')!, ss([1, 0], [2, 0], [1, 2], {beginMask: 2, endMask: 2, shrinkAxisMask: 1}))],
  });
  add('StridedSlice', 'shrink + negative stride x[::-2, 3]', {
    inputs: {x: f([5, 4])}, attrs: ss([0, 3], [0, 4], [-2, 1], {beginMask: 1, endMask: 1, shrinkAxisMask: 2}),
    cpuDiffers: 'tfjs-backend-cpu indexes x with the shrunk output shape (other values or an error); TensorFlow semantics here',
    reference: m => [stridedSliceReference(m.get('x')!, ss([0, 3], [0, 4], [-2, 1], {beginMask: 1, endMask: 1, shrinkAxisMask: 2}))],
  });
  add('StridedSlice', 'empty', {inputs: {x: x3}, attrs: ss([2, 0, 0], [2, 6, 5], [1, 1, 1])});
  add('StridedSlice', 'identity', {inputs: {x: x3}, attrs: ss([0, 0, 0], [0, 0, 0], [1, 1, 1], {beginMask: 7, endMask: 7})});
  add('StridedSlice', 'end beyond the shape', {inputs: {x: x3}, attrs: ss([1, 2, 0], [100, 100, 100], [1, 3, 2])});
  add('StridedSlice', 'rank 1, stride -3', {inputs: {x: f([10])}, attrs: ss([8], [1], [-3])});
  add('StridedSlice', 'rank 6', {inputs: {x: f([2, 3, 1, 4, 2, 3])}, attrs: ss([0, 1, 0, 1, 0, 2], [2, 3, 1, 4, 2, 0], [1, 1, 1, 2, 1, -1], {endMask: 32})});
  add('StridedSlice', 'int32 strides 2,3', {inputs: {x: i32([5, 4])}, attrs: ss([1, 0], [5, 4], [2, 3])});
  add('StridedSlice', 'bool', {inputs: {x: b8([3, 4])}, attrs: ss([0, 1], [3, 4], [1, 2])});

  // ---- Slice ----
  add('Slice', 'rank 3, size -1', {inputs: {x: x3}, attrs: {begin: [1, 2, 0], size: [2, -1, 3]}});
  add('Slice', 'numbers', {inputs: {x: x3}, attrs: {begin: 1, size: 2}});
  add('Slice', 'empty', {inputs: {x: x3}, attrs: {begin: [0, 0, 0], size: [0, 6, 5]}});
  add('Slice', 'rank 1', {inputs: {x: f([10])}, attrs: {begin: [3], size: [4]}});
  add('Slice', 'int32', {inputs: {x: i32([3, 8])}, attrs: {begin: [0, 2], size: [3, 5]}});
  add('Slice', 'bool rank 5', {inputs: {x: b8([2, 3, 2, 1, 4])}, attrs: {begin: [1, 0, 1, 0, 1], size: [1, 3, 1, 1, 2]}});
  add('Slice', 'attention rows [1,12,64,64]', {inputs: {x: f([1, 12, 64, 64])}, attrs: {begin: [0, 0, 0, 0], size: [1, 12, 10, 64]}});
  add('Slice', 'rank 6', {inputs: {x: f([2, 2, 3, 1, 2, 4])}, attrs: {begin: [1, 0, 1, 0, 0, 1], size: [1, 2, 2, 1, 1, 3]}});
  add('Slice', 'out of bounds', {inputs: {x: f([4, 5])}, attrs: {begin: [2, 1], size: [3, 2]}, throws: /begin\[0\] \+ size\[0\] \(5\) would overflow input.shape\[0\] \(4\)/});
  add('Slice', 'negative begin', {inputs: {x: f([4, 5])}, attrs: {begin: [-2, 1], size: [1, 2]}, throws: /begin \[-2,1\] and size \[1,2\]/});

  // ---- SplitV ----
  add('SplitV', 'QKV [4,12] into 4,4,4', {inputs: {x: f([4, 12])}, attrs: {numOrSizeSplits: [4, 4, 4], axis: 1}});
  add('SplitV', 'count 3, axis -1', {inputs: {x: f([2, 9])}, attrs: {numOrSizeSplits: 3, axis: -1}});
  add('SplitV', 'sizes with -1', {inputs: {x: f([6, 3])}, attrs: {numOrSizeSplits: [2, -1, 1], axis: 0}});
  add('SplitV', 'a size 0', {inputs: {x: f([5, 2])}, attrs: {numOrSizeSplits: [0, 5], axis: 0}});
  add('SplitV', 'int32 rank 4', {inputs: {x: i32([2, 3, 6, 2])}, attrs: {numOrSizeSplits: [1, 3, 2], axis: 2}});
  add('SplitV', 'bad sizes', {inputs: {x: f([6, 3])}, attrs: {numOrSizeSplits: [2, 2], axis: 0}, throws: /sum of sizes must match/});

  // ---- Concat ----
  add('Concat', '3 inputs, axis 1', {inputs: [f([2, 3]), f([2, 5]), f([2, 1])], attrs: {axis: 1}});
  add('Concat', 'axis 0', {inputs: [f([1, 4]), f([3, 4])], attrs: {axis: 0}});
  add('Concat', 'rank 4, axis -1', {inputs: [f([2, 1, 3, 2]), f([2, 1, 3, 4])], attrs: {axis: -1}});
  add('Concat', 'rank 5, axis 2', {inputs: [f([2, 1, 3, 2, 2]), f([2, 1, 1, 2, 2]), f([2, 1, 2, 2, 2])], attrs: {axis: 2}});
  add('Concat', 'an empty input', {inputs: [f([2, 0]), f([2, 3])], attrs: {axis: 1}});
  add('Concat', 'all empty', {inputs: [f([0, 3]), f([0, 3])], attrs: {axis: 0}});
  add('Concat', 'int32', {inputs: [i32([3, 2]), i32([3, 3])], attrs: {axis: 1}});
  add('Concat', 'bool', {inputs: [b8([2, 2]), b8([1, 2])], attrs: {axis: 0}});
  add('Concat', 'one input', {inputs: [f([3, 2])], attrs: {axis: 0}});
  add('Concat', 'rank 1', {inputs: [f([3]), f([4])], attrs: {axis: 0}});
  add('Concat', 'shapes disagree', {inputs: [f([2, 3]), f([3, 3])], attrs: {axis: 1}, throws: /2,3.*3,3|3,3.*2,3/});
  add('Concat', 'int32 values labelled float32 (cpu Cast)', {inputs: [f([2, 3]), {shape: [2, 3], dtype: 'float32', storedAs: 'int32'}], attrs: {axis: 0},
                                                           declines: true});
  add('Concat', 'mixed dtypes', {inputs: [f([2, 3]), i32([2, 3])], attrs: {axis: 0}, declines: true});

  // ---- Pack ----
  add('Pack', 'axis 0', {inputs: [f([2, 3]), f([2, 3]), f([2, 3])], attrs: {axis: 0}});
  add('Pack', 'axis 1', {inputs: [f([2, 3]), f([2, 3])], attrs: {axis: 1}});
  add('Pack', 'axis 2', {inputs: [f([2, 3]), f([2, 3])], attrs: {axis: 2}});
  add('Pack', 'axis -1', {inputs: [i32([2, 3]), i32([2, 3]), i32([2, 3])], attrs: {axis: -1}});
  add('Pack', 'bool', {inputs: [b8([4]), b8([4])], attrs: {axis: 0}});
  add('Pack', 'one input', {inputs: [f([2, 3])], attrs: {axis: 1}});
  add('Pack', 'scalars', {inputs: [i32([], [3]), i32([], [5]), i32([], [7])], attrs: {axis: 0}});
  add('Pack', 'empty', {inputs: [f([0, 2]), f([0, 2])], attrs: {axis: 1}});
  add('Pack', 'shapes disagree', {inputs: [f([2, 3]), f([3, 2])], attrs: {axis: 0}, throws: /matching shapes/});

  // ---- Unpack ----
  add('Unpack', 'axis 0', {inputs: {value: f([3, 4])}, attrs: {axis: 0}});
  add('Unpack', 'axis 1', {inputs: {value: f([2, 3, 4])}, attrs: {axis: 1}});
  add('Unpack', 'axis -1, int32', {inputs: {value: i32([2, 3, 4])}, attrs: {axis: -1}});
  add('Unpack', 'extent 1', {inputs: {value: f([1, 5])}, attrs: {axis: 0}});
  add('Unpack', 'empty pieces', {inputs: {value: f([4, 0])}, attrs: {axis: 0}});

  // ---- Transpose ----
  add('Transpose', '2D', {inputs: {x: f([3, 4])}, attrs: {perm: [1, 0]}});
  add('Transpose', 'heads [2,5,3,4] -> [0,2,1,3]', {inputs: {x: f([2, 5, 3, 4])}, attrs: {perm: [0, 2, 1, 3]}});
  add('Transpose', 'keys [2,3,5,4] -> [0,1,3,2]', {inputs: {x: f([2, 3, 5, 4])}, attrs: {perm: [0, 1, 3, 2]}});
  add('Transpose', 'rank 6', {inputs: {x: f([2, 3, 1, 2, 3, 2])}, attrs: {perm: [5, 0, 3, 1, 4, 2]}});
  add('Transpose', 'identity', {inputs: {x: f([2, 3, 4])}, attrs: {perm: [0, 1, 2]}});
  add('Transpose', 'extent-1 dims', {inputs: {x: f([1, 4, 1, 3])}, attrs: {perm: [2, 0, 3, 1]}});
  add('Transpose', 'int32 rank 3', {inputs: {x: i32([2, 3, 4])}, attrs: {perm: [2, 0, 1]}});
  add('Transpose', 'bool', {inputs: {x: b8([3, 2])}, attrs: {perm: [1, 0]}});
  add('Transpose', 'empty', {inputs: {x: f([0, 3])}, attrs: {perm: [1, 0]}});
  add('Transpose', 'rank 1', {inputs: {x: f([5])}, attrs: {perm: [0]}});
  add('Transpose', 'int32 values labelled float32 (cpu Cast)', {inputs: {x: {shape: [2, 3], dtype: 'float32', storedAs: 'int32'}}, attrs: {perm: [1, 0]},
                                                              declines: true});
  add('Transpose', 'bad perm', {inputs: {x: f([2, 3])}, attrs: {perm: [0, 0]}, throws: /perm \[0,0\] is not a permutation/});

  // ---- Tile ----
  add('Tile', '[2,3] x [2,1]', {inputs: {x: f([2, 3])}, attrs: {reps: [2, 1]}});
  add('Tile', 'rank 1', {inputs: {x: f([3])}, attrs: {reps: [4]}});
  add('Tile', 'rank 3', {inputs: {x: f([2, 1, 3])}, attrs: {reps: [1, 3, 2]}});
  add('Tile', 'int32 rank 4', {inputs: {x: i32([2, 2, 1, 3])}, attrs: {reps: [2, 1, 3, 1]}});
  add('Tile', 'rank 6', {inputs: {x: f([1, 2, 1, 2, 1, 2])}, attrs: {reps: [2, 1, 2, 1, 3, 1]}});
  add('Tile', 'reps 0', {inputs: {x: f([2, 3])}, attrs: {reps: [0, 2]}});
  add('Tile', 'bool', {inputs: {x: b8([2, 2])}, attrs: {reps: [2, 2]}});
  add('Tile', 'bad reps', {inputs: {x: f([2, 3])}, attrs: {reps: [2]}, throws: /reps \[2\] must be 2 non-negative integers/});

  // ---- Cast ----
  const special = [0, -0, 1.5, -2.7, 2.5, -0.5, 1e9, 3e9, -3e9, 5e9, 1e20, -1e20, NaN, Infinity, -Infinity, 2147483647, -2147483648, 16777217];
  add('Cast', 'float32 -> int32 (special values)', {inputs: {x: f([special.length], special)}, attrs: {dtype: 'int32'}});
  add('Cast', 'float32 -> int32', {inputs: {x: f([4, 5])}, attrs: {dtype: 'int32'}});
  add('Cast', 'float32 -> bool', {inputs: {x: f([special.length], special)}, attrs: {dtype: 'bool'}});
  add('Cast', 'int32 -> float32', {inputs: {x: i32([3, 4])}, attrs: {dtype: 'float32'}});
  add('Cast', 'int32 -> bool', {inputs: {x: i32([3, 4])}, attrs: {dtype: 'bool'}});
  add('Cast', 'bool -> int32', {inputs: {x: b8([5])}, attrs: {dtype: 'int32'}});
  add('Cast', 'bool -> float32', {inputs: {x: b8([2, 3])}, attrs: {dtype: 'float32'}});
  add('Cast', 'int32 -> int32', {inputs: {x: i32([6])}, attrs: {dtype: 'int32'}});
  add('Cast', 'float32 -> float32', {inputs: {x: f([2, 2])}, attrs: {dtype: 'float32'}});
  add('Cast', 'empty', {inputs: {x: f([0, 4])}, attrs: {dtype: 'int32'}});
  add('Cast', 'to complex64', {inputs: {x: f([2])}, attrs: {dtype: 'complex64'}, declines: true});

  // ---- Fill, ZerosLike, OnesLike, Range ----
  add('Fill', 'float32', {inputs: {}, attrs: {shape: [3, 4], value: 2.5, dtype: 'float32'}});
  add('Fill', 'int32 from 3.7', {inputs: {}, attrs: {shape: [5], value: 3.7, dtype: 'int32'}});
  add('Fill', 'bool', {inputs: {}, attrs: {shape: [2, 2], value: 1, dtype: 'bool'}});
  add('Fill', 'scalar', {inputs: {}, attrs: {shape: [], value: -7.25, dtype: 'float32'}});
  add('Fill', 'NaN', {inputs: {}, attrs: {shape: [3], value: NaN, dtype: 'float32'}});
  add('Fill', 'dtype inferred', {inputs: {}, attrs: {shape: [2, 3], value: 4}});
  add('Fill', 'empty', {inputs: {}, attrs: {shape: [0, 3], value: 1, dtype: 'float32'}});
  add('Fill', 'string', {inputs: {}, attrs: {shape: [2], value: 'a', dtype: 'string'}, declines: true});
  for (const [name, x] of [['float32', f([3, 4])], ['int32', i32([5])], ['bool', b8([2, 2])], ['empty', f([0])]] as Array<[string, TensorSpec]>) {
    add('ZerosLike', name, {inputs: {x}});
    add('OnesLike', name, {inputs: {x}});
  }
  add('Range', 'int32 0..10', {inputs: {}, attrs: {start: 0, stop: 10, step: 1, dtype: 'int32'}});
  add('Range', 'float32 running sum 0..1 by 0.1', {inputs: {}, attrs: {start: 0, stop: 1, step: 0.1, dtype: 'float32'}});
  add('Range', 'int32 10..0 by -3', {inputs: {}, attrs: {start: 10, stop: 0, step: -3, dtype: 'int32'}});
  add('Range', 'int32 fractional', {inputs: {}, attrs: {start: 0.5, stop: 7.3, step: 1.7, dtype: 'int32'}});
  add('Range', 'step 1 going down', {inputs: {}, attrs: {start: 5, stop: 1, step: 1, dtype: 'float32'}});
  add('Range', 'empty', {inputs: {}, attrs: {start: 5, stop: 5, step: 1, dtype: 'float32'}});

  // ---- elementwise on int32 / bool (and float32) ----
  add('Add', 'int32 broadcast [2,1,3] + [4,1]', {inputs: {a: i32([2, 1, 3]), b: i32([4, 1])}});
  add('Add', 'int32 wraps', {inputs: {a: i32([3], [2147483647, -2147483648, 5]), b: i32([3], [1, -1, -7])}});
  add('Add', 'bool (stored modulo 256)', {inputs: {a: b8([4], [0, 1, 1, 0]), b: b8([4], [0, 1, 0, 1])}});
  add('Add', 'float32 broadcast', {inputs: {a: f([3, 1]), b: f([1, 4])}});
  add('Add', 'rank 6 broadcast', {inputs: {a: i32([2, 1, 3, 1, 2, 1]), b: i32([1, 2, 1, 2, 1, 3])}});
  add('Add', 'empty', {inputs: {a: i32([0, 3]), b: i32([1, 3])}});
  add('Add', 'int32 + float32', {inputs: {a: i32([3]), b: f([3])}, declines: true});
  add('Add', 'shapes do not broadcast', {inputs: {a: i32([2, 3]), b: i32([4])}, throws: /2,3.*4|4.*2,3/});
  add('Sub', 'int32 scalar b', {inputs: {a: i32([2, 5]), b: i32([], [7])}});
  add('Sub', 'bool (0 - 1 is 255)', {inputs: {a: b8([4], [0, 1, 1, 0]), b: b8([4], [0, 1, 0, 1])}});
  add('GreaterEqual', 'int32 [3,1] vs [1,4]', {inputs: {a: i32([3, 1]), b: i32([1, 4])}});
  add('GreaterEqual', 'float32 with NaN', {inputs: {a: f([4], [1, NaN, -0, 2]), b: f([4], [1, 0, 0, NaN])}});
  add('Less', 'int32 positions vs length', {inputs: {a: i32([1, 8], [0, 1, 2, 3, 4, 5, 6, 7]), b: i32([2, 1], [3, 6])}});
  add('Less', 'float32', {inputs: {a: f([2, 3]), b: f([3])}});
  add('LessEqual', 'int32 scalar', {inputs: {a: i32([6]), b: i32([], [0])}});
  add('LessEqual', 'bool', {inputs: {a: b8([4], [0, 0, 1, 1]), b: b8([4], [0, 1, 0, 1])}});
  add('LogicalAnd', 'bool broadcast', {inputs: {a: b8([2, 3]), b: b8([3])}});
  add('LogicalOr', 'bool', {inputs: {a: b8([4], [0, 0, 1, 1]), b: b8([4], [0, 1, 0, 1])}});
  add('LogicalAnd', 'int32', {inputs: {a: i32([3]), b: i32([3])}, declines: true});
  add('Abs', 'int32', {inputs: {x: i32([3, 4])}});
  add('Abs', 'float32 with -0 and NaN', {inputs: {x: f([5], [-0, -1.5, NaN, -Infinity, 3])}});
  add('Abs', 'bool', {inputs: {x: b8([3])}});
  return cases;
}

/** Model-sized cases (BERT-base / GPT-2 shapes) for the numerics check on the GPU: multi-block grids, big offsets. */
export function largeMovementCases(): MovementCase[] {
  const cases: MovementCase[] = [];
  const add = (kernel: string, name: string, c: Omit<MovementCase, 'name'|'kernel'>) => cases.push({kernel, name: `${kernel}/large ${name}`, ...c});
  add('GatherV2', 'word embeddings [30522,768] by [8,128]', {inputs: {x: f([30522, 768]), indices: idx([8, 128], 30522)}, attrs: {axis: 0, batchDims: 0}, deviceOnly: true});
  add('GatherV2', 'GPT-2 positions [1024,768] by [1,1024]', {inputs: {x: f([1024, 768]), indices: idx([1, 1024], 1024)}, attrs: {axis: 0, batchDims: 0}});
  add('Transpose', 'heads [8,128,12,64] -> [0,2,1,3]', {inputs: {x: f([8, 128, 12, 64])}, attrs: {perm: [0, 2, 1, 3]}});
  add('Transpose', 'keys [8,12,128,64] -> [0,1,3,2]', {inputs: {x: f([8, 12, 128, 64])}, attrs: {perm: [0, 1, 3, 2]}});
  add('SplitV', 'GPT-2 c_attn [4,256,2304] into 3', {inputs: {x: f([4, 256, 2304])}, attrs: {numOrSizeSplits: 3, axis: 2}});
  add('Concat', 'KV cache [1,12,1023,64] + [1,12,1,64]', {inputs: [f([1, 12, 1023, 64]), f([1, 12, 1, 64])], attrs: {axis: 2}});
  add('Pack', 'present [1,12,1024,64] x 2', {inputs: [f([1, 12, 1024, 64]), f([1, 12, 1024, 64])], attrs: {axis: 0}});
  add('StridedSlice', 'last token [8,128,768]', {inputs: {x: f([8, 128, 768])},
                                                attrs: {begin: [0, -1, 0], end: [0, 0, 0], strides: [1, 1, 1], beginMask: 5, endMask: 5, ellipsisMask: 0, newAxisMask: 0, shrinkAxisMask: 2}});
  add('StridedSlice', 'causal mask rows [1,1,1024,1024]', {inputs: {x: b8([1, 1, 1024, 1024])},
                                                          attrs: {begin: [0, 0, 512, 0], end: [0, 0, 1024, 1024], strides: [1, 1, 1, 1], beginMask: 3, endMask: 3, ellipsisMask: 0, newAxisMask: 0, shrinkAxisMask: 0}});
  add('Slice', 'attention mask [8,1,1,512] to 128', {inputs: {x: f([8, 1, 1, 512])}, attrs: {begin: [0, 0, 0, 0], size: [8, 1, 1, 128]}});
  add('Tile', 'mask [8,1,1,128] x [1,12,128,1]', {inputs: {x: f([8, 1, 1, 128])}, attrs: {reps: [1, 12, 128, 1]}});
  add('Unpack', 'qkv [3,8,12,128,64]', {inputs: {value: f([3, 8, 12, 128, 64])}, attrs: {axis: 0}});
  add('Cast', 'mask int32 -> float32 [8,512]', {inputs: {x: i32([8, 512])}, attrs: {dtype: 'float32'}});
  add('Cast', 'float32 -> int32 [8,128,768]', {inputs: {x: f([8, 128, 768])}, attrs: {dtype: 'int32'}});
  add('GreaterEqual', 'causal [1024,1] vs [1,1024]', {inputs: {a: i32([1024, 1], Array.from({length: 1024}, (_, i) => i)), b: i32([1, 1024], Array.from({length: 1024}, (_, i) => i))}});
  add('Sub', 'positions [8,512] - [8,1]', {inputs: {a: i32([8, 512]), b: i32([8, 1])}});
  add('OnesLike', '[8,512] int32', {inputs: {x: i32([8, 512])}});
  add('Fill', '[8,12,128,128] float32', {inputs: {}, attrs: {shape: [8, 12, 128, 128], value: -1e9, dtype: 'float32'}});
  add('Range', 'GPT-2 positions 0..1024', {inputs: {}, attrs: {start: 0, stop: 1024, step: 1, dtype: 'int32'}});
  return cases;
}

// ---- inputs ----------------------------------------------------------------------------------------

function valuesOf(spec: TensorSpec, seed: number): TypedArray {
  const dtype = spec.storedAs ?? spec.dtype ?? 'float32';
  const n = util.sizeFromShape(spec.shape);
  if (spec.values != null) {
    if (spec.values.length !== n) throw new Error(`case input [${spec.shape}] has ${spec.values.length} values`);
    return dtype === 'float32' ? Float32Array.from(spec.values) : dtype === 'bool' ? Uint8Array.from(spec.values) : Int32Array.from(spec.values);
  }
  const r = seededValues(n, seed);
  if (dtype === 'float32') return r.map(v => Math.round(v * 4 * 64) / 64);  // a few fractional bits
  if (dtype === 'bool') return Uint8Array.from(r, v => (v > 0 ? 1 : 0));
  if (spec.max != null) return Int32Array.from(r, v => Math.min(spec.max! - 1, Math.floor((v + 1) / 2 * spec.max!)));
  return Int32Array.from(r, v => Math.round(v * 50));
}

export interface PreparedCase {
  /** As the kernels receive them: named, or the array (Concat, Pack). */
  inputs: NamedTensorInfoMap;
  byName: Map<string, {spec: TensorSpec, values: TypedArray, info: TensorInfo}>;
}

/** The case's inputs as tensors of `backend` (tfjs-backend-cpu). */
export function prepare(c: MovementCase, backend: KernelBackend, seed = 1): PreparedCase {
  const byName = new Map<string, {spec: TensorSpec, values: TypedArray, info: TensorInfo}>();
  const entries: Array<[string, TensorSpec]> = Array.isArray(c.inputs) ? c.inputs.map((s, i) => [String(i), s]) : Object.entries(c.inputs);
  const infos = entries.map(([name, spec], i) => {
    const dtype = spec.dtype ?? 'float32';
    const values = valuesOf(spec, seed * 100 + i + 1);
    const info: TensorInfo = {dataId: backend.write(values, spec.shape, spec.storedAs ?? dtype), shape: spec.shape, dtype};
    byName.set(name, {spec, values, info});
    return [name, info] as const;
  });
  const inputs = Array.isArray(c.inputs) ? (infos.map(([, t]) => t) as unknown as NamedTensorInfoMap) : Object.fromEntries(infos);
  return {inputs, byName};
}

// ---- running ---------------------------------------------------------------------------------------

const asList = <T>(x: T|T[]): T[] => (Array.isArray(x) ? x : [x]);

/** tfjs-backend-cpu's kernel on the case (what the CUDA kernel must agree with). */
export function runCpu(c: MovementCase, p: PreparedCase, backend: KernelBackend): Result[] {
  const kernel = getKernel(c.kernel, 'cpu');
  if (kernel == null) throw new Error(`tfjs-backend-cpu has no kernel ${c.kernel}`);
  // Attributes are copied: some cpu kernels fill in arrays in place (SplitV's -1).
  const attrs = structuredClone(c.attrs ?? {});
  const out = kernel.kernelFunc({inputs: p.inputs, attrs, backend});
  return asList(out).map(t => ({shape: t.shape, dtype: t.dtype, values: backend.readSync(t.dataId) as TypedArray}));
}

/**
 * A DeviceHost over a CudaExecutor for tensors of tfjs-backend-cpu: uploads inputs once (as the
 * dtype they are stored as, like the CUDA base), keeps the outputs' buffers.
 */
export class TestHost implements DeviceHost {
  private readonly uploaded = new Map<object, CudaBuffer>();
  readonly outputs = new Map<object, CudaBuffer>();

  constructor(readonly exec: CudaExecutor, private readonly backend: KernelBackend, private readonly hostVisible = true) {}

  buffer(info: TensorInfo): CudaBuffer {
    let b = this.uploaded.get(info.dataId) ?? this.outputs.get(info.dataId);
    if (b == null) {
      const stored = (this.backend as unknown as {data: {get(id: object): {dtype: DataType}}}).data.get(info.dataId).dtype;
      this.uploaded.set(info.dataId, b = this.exec.upload(this.backend.readSync(info.dataId) as TypedArray, info.shape, stored));
    }
    return b;
  }

  hostValues(info: TensorInfo): TypedArray|null {
    return this.hostVisible && !this.outputs.has(info.dataId) ? this.backend.readSync(info.dataId) as TypedArray : null;
  }

  adopt(buf: CudaBuffer, shape: number[], dtype: DataType): TensorInfo {
    const dataId = {};
    this.outputs.set(dataId, buf);
    return {dataId, shape, dtype};
  }

  bufferOf(info: TensorInfo): CudaBuffer {
    const b = this.outputs.get(info.dataId);
    if (b == null) throw new Error(`no device buffer for an output [${info.shape}]`);
    return b;
  }

  dispose() {
    for (const b of [...this.uploaded.values(), ...this.outputs.values()]) this.exec.release(b);
    this.uploaded.clear();
    this.outputs.clear();
  }
}

/** The CUDA kernel on the case: its outputs (null: declined). */
export function runCuda(c: MovementCase, p: PreparedCase, host: TestHost): Array<TensorInfo & {buf: CudaBuffer}>|null {
  const impl = CUDA_KERNELS[c.kernel];
  if (impl == null) throw new Error(`CUDA_KERNELS has no ${c.kernel}`);
  const out = impl({inputs: p.inputs, attrs: structuredClone(c.attrs ?? {}), host});
  if (out == null) return null;
  return asList(out).map(t => ({...t, buf: host.bufferOf(t)}));
}

// ---- references where tfjs-backend-cpu differs -------------------------------------------------------

/** TensorFlow's strided slice, element by element over the dense processing shape. */
export function stridedSliceReference(x: {spec: TensorSpec, values: TypedArray}, a: Record<string, number|number[]>): Result {
  const {shape} = x.spec;
  const info = slice_util.sliceInfo(shape, a.begin as number[], a.end as number[], a.strides as number[], a.beginMask as number,
                                    a.endMask as number, a.ellipsisMask as number, a.newAxisMask as number, a.shrinkAxisMask as number);
  const dense = info.begin.map((b, d) => {
    const st = info.strides[d];
    const n = Math.ceil((info.end[d] - b) / st);
    return Math.max(0, n);
  });
  const xs = util.computeStrides(shape);
  const out: number[] = [];
  const walk = (d: number, offset: number) => {
    if (d === shape.length) { out.push(x.values[offset]); return; }
    for (let c = 0; c < dense[d]; c++) walk(d + 1, offset + (info.begin[d] + c * info.strides[d]) * (d < xs.length ? xs[d] : 1));
  };
  walk(0, 0);
  return {shape: info.finalShape, dtype: x.spec.dtype ?? 'float32', values: out};
}

/** GatherV2 with 0 for indices outside [0, dim) (the device's answer). */
export function gatherReference(x: {spec: TensorSpec, values: TypedArray, info?: TensorInfo}, ind: {spec: TensorSpec, values: TypedArray},
                                axis: number, batchDims: number): Result {
  const xInfo = {shape: x.spec.shape} as TensorInfo, iInfo = {shape: ind.spec.shape} as TensorInfo;
  const g = backend_util.segment_util.collectGatherOpShapeInfo(xInfo, iInfo, axis, batchDims);
  const count = util.sizeFromShape(ind.spec.shape) / g.batchSize;
  const out: number[] = [];
  for (let b = 0; b < g.batchSize; b++) {
    for (let o = 0; o < g.outerSize; o++) {
      for (let n = 0; n < count; n++) {
        const i = ind.values[b * count + n];
        for (let s = 0; s < g.sliceSize; s++) out.push(i >= 0 && i < g.dimSize ? x.values[((b * g.outerSize + o) * g.dimSize + i) * g.sliceSize + s] : 0);
      }
    }
  }
  return {shape: g.outputShape, dtype: x.spec.dtype ?? 'float32', values: out};
}
