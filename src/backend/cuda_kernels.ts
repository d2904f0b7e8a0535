// CUDA implementations of the tfjs kernels that converted BERT / GPT-2 graphs run outside the fused
// groups (embedding lookups, slices, splits, concatenations, transposes, casts, int/bool
// arithmetic), so that on STOF_DEVICE=cuda their tensors stay on the device. Each entry parses the
// kernel's attributes as tfjs-backend-cpu does (tfjs-core's slice_util, backend_util, util), throws
// where it throws (naming the bad values), and launches the generic kernels of movement_cuda.ts.
// An entry returns null for what it does not handle (string or complex64 tensors, inputs of
// different dtypes where tfjs would convert): the caller then runs tfjs-backend-cpu's kernel.
//
// Differences from tfjs-backend-cpu, all in cases tfjs-core's ops do not produce or that cpu gets wrong:
//  - GatherV2: an index outside [0, dim) throws where the indices' values are on the host (as cpu);
//    where they are only on the device it gives 0 (as tfjs-backend-webgpu): a kernel cannot throw.
//  - StridedSlice with a shrink axis and a stride other than 1 elsewhere: TensorFlow's semantics
//    (x[1, ::2] of [[0..3], [4..7], ...] is [4, 6]); tfjs-backend-cpu's general path indexes the
//    input with the shrunk output shape there: it returns [1, 2], or throws an out-of-range error.
//  - Cast int32 -> float32 rounds to float32 beyond 2^24 (cpu keeps the int32 values, relabelled).
import {backend_util, DataType, NamedAttrMap, NamedTensorInfoMap, slice_util, TensorInfo, TypedArray, util} from '@tensorflow/tfjs-core';

import type {CudaBuffer, CudaExecutor} from '../kernels/cuda/executor';
import {absExpr, BinaryOp, binaryExpr, castBuffer, concatBuffers, fillBuffer, gatherBuffer, mapBuffer, sliceBuffer, splitBuffer, storageOf,
        tileBuffer, transposeBuffer} from '../kernels/cuda/movement_cuda';

export interface DeviceHost {
  readonly exec: CudaExecutor;
  /** The device buffer holding a tensor of 'stof''s CUDA base (uploads host values if needed). */
  buffer(info: TensorInfo): CudaBuffer;
  /** Host values of a small tensor (e.g. a shape tensor) without counting a fallback; null if it is only on the device. */
  hostValues(info: TensorInfo): TypedArray|null;
  /** Wraps a new device buffer (refs 1) as an output tensor. */
  adopt(buf: CudaBuffer, shape: number[], dtype: DataType): TensorInfo;
}

export type CudaKernelFunc = (args: {inputs: NamedTensorInfoMap, attrs: NamedAttrMap, host: DeviceHost}) => TensorInfo|TensorInfo[]|null;

/** dtypes stored as 4-byte elements on the device. */
const DEVICE_DTYPES = new Set<string>(['float32', 'int32', 'bool']);
const onDevice = (...ts: TensorInfo[]) => ts.every(t => DEVICE_DTYPES.has(t.dtype));

/** Thrown where a kernel cannot run on the device after all: the table's entry returns null. */
class Decline extends Error {}

/**
 * A tensor's device buffer. One stored as the other kind (int vs float) than the tensor's dtype says
 * makes the kernel decline: tfjs-backend-cpu's Cast int32 -> float32 relabels the int32 values
 * without converting them, so such a tensor's buffer may hold ints. (Buffers are fetched before
 * any output is allocated, so declining leaves nothing behind.)
 */
function deviceBuffer(host: DeviceHost, t: TensorInfo): CudaBuffer {
  const b = host.buffer(t);
  if (storageOf(b.dtype) !== storageOf(t.dtype)) throw new Decline(`a ${t.dtype} tensor [${t.shape}] is stored as ${b.dtype}`);
  return b;
}

const declining = (f: CudaKernelFunc): CudaKernelFunc => args => {
  try {
    return f(args);
  } catch (e) {
    if (e instanceof Decline) return null;
    throw e;
  }
};

/** The tensors of Concat and Pack: tfjs passes the array itself as the inputs. */
const listOf = (inputs: NamedTensorInfoMap): TensorInfo[] => Object.values(inputs).filter((t): t is TensorInfo => t != null);

/** 32-bit pattern of `value` stored as `dtype` (the typed array's conversion, as tfjs-backend-cpu's fill). */
function bitsOf(value: number, dtype: string): number {
  if (dtype === 'float32') return new Int32Array(Float32Array.of(value).buffer)[0];
  return dtype === 'bool' ? Uint8Array.of(value)[0] : Int32Array.of(value)[0];
}

function output(host: DeviceHost, buf: CudaBuffer, shape: number[], dtype: DataType): TensorInfo {
  try {
    return host.adopt(buf, shape, dtype);
  } catch (e) {
    host.exec.release(buf);
    throw e;
  }
}

/** Outputs of a kernel with several; if wrapping one fails, the rest are released. */
function outputs(host: DeviceHost, bufs: CudaBuffer[], shapes: number[][], dtype: DataType): TensorInfo[] {
  const out: TensorInfo[] = [];
  bufs.forEach((b, i) => {
    try {
      out.push(host.adopt(b, shapes[i], dtype));
    } catch (e) {
      bufs.slice(i).forEach(r => host.exec.release(r));
      throw e;
    }
  });
  return out;
}

const gatherV2: CudaKernelFunc = ({inputs, attrs, host}) => {
  const {x, indices} = inputs as {x: TensorInfo, indices: TensorInfo};
  if (!onDevice(x) || indices.dtype !== 'int32') return null;
  const {axis, batchDims} = attrs as {axis: number, batchDims?: number};
  const parsedAxis = util.parseAxisParam(axis, x.shape)[0];
  const axisDim = x.shape[parsedAxis];
  const known = host.hostValues(indices);
  if (known != null) {  // as tfjs-backend-cpu: every index in range
    for (const index of known) {
      util.assert(index <= axisDim - 1 && index >= 0, () => `GatherV2: the index value ${index} is not in [0, ${axisDim - 1}]`);
    }
  }
  const info = backend_util.segment_util.collectGatherOpShapeInfo(x, indices, parsedAxis, batchDims ?? 0);
  const outShape = info.outputShape;
  const size = util.sizeFromShape(outShape);
  const count = size === 0 ? 0 : util.sizeFromShape(indices.shape) / info.batchSize;
  const g = {batch: info.batchSize, outer: info.outerSize, dim: info.dimSize, slice: info.sliceSize, count};
  const buf = size === 0 ? host.exec.alloc(outShape, x.dtype) : gatherBuffer(host.exec, deviceBuffer(host, x), deviceBuffer(host, indices), g, outShape, x.dtype);
  return output(host, buf, outShape, x.dtype);
};

/** The extent of each dimension of a strided slice (TensorFlow's processing shape, from sliceInfo's canonical begin/end/strides). */
function processingShape(begin: number[], end: number[], strides: number[]): number[] {
  return begin.map((b, i) => {
    const interval = end[i] - b, st = strides[i];
    if (interval === 0 || (interval < 0) !== (st < 0)) return 0;
    return Math.trunc(interval / st) + (interval % st !== 0 ? 1 : 0);
  });
}

const stridedSlice: CudaKernelFunc = ({inputs, attrs, host}) => {
  const {x} = inputs as {x: TensorInfo};
  if (!onDevice(x)) return null;
  const a = attrs as unknown as {begin: number[], end: number[], strides: number[], beginMask: number, endMask: number,
                                 ellipsisMask: number, newAxisMask: number, shrinkAxisMask: number};
  const info = slice_util.sliceInfo(x.shape, a.begin, a.end, a.strides, a.beginMask, a.endMask, a.ellipsisMask, a.newAxisMask, a.shrinkAxisMask);
  const outShape = info.finalShape;
  // The copy runs over the dense shape (x's rank; shrunk axes have extent 1), the output is finalShape:
  // both have the same extents other than 1, in the same order.
  const domain = processingShape(info.begin, info.end, info.strides);
  if (domain.length !== x.shape.length || util.sizeFromShape(domain) !== util.sizeFromShape(outShape)) return null;  // unknown extents
  if (util.sizeFromShape(outShape) === 0) return output(host, host.exec.alloc(outShape, x.dtype), outShape, x.dtype);
  return output(host, sliceBuffer(host.exec, deviceBuffer(host, x), x.shape, info.begin, info.strides, domain, x.dtype, outShape), outShape, x.dtype);
};

const slice: CudaKernelFunc = ({inputs, attrs, host}) => {
  const {x} = inputs as {x: TensorInfo};
  if (!onDevice(x)) return null;
  const {begin, size} = attrs as {begin: number|number[], size?: number|number[]};
  const [$begin, $size] = slice_util.parseSliceParams(x, begin, size);
  slice_util.assertParamsValid(x, $begin, $size);
  // tfjs-backend-cpu reads undefined there; on the device it would be a stray access.
  $begin.forEach((b, i) => {
    if (b < 0 || $size[i] < 0) throw new Error(`Slice: begin [${$begin}] and size [${$size}] are outside the input's shape [${x.shape}] at axis ${i}`);
  });
  if (util.sizeFromShape($size) === 0) return output(host, host.exec.alloc($size, x.dtype), $size, x.dtype);
  return output(host, sliceBuffer(host.exec, deviceBuffer(host, x), x.shape, $begin, $begin.map(() => 1), $size, x.dtype), $size, x.dtype);
};

const splitV: CudaKernelFunc = ({inputs, attrs, host}) => {
  const {x} = inputs as {x: TensorInfo};
  if (!onDevice(x)) return null;
  const {numOrSizeSplits, axis} = attrs as {numOrSizeSplits: number|number[], axis: number};
  const $axis = util.parseAxisParam(axis, x.shape)[0];
  // prepareSplitSize fills in a -1 in place: a copy, so the attrs stay as given (the cpu fallback reads them).
  const sizes = backend_util.prepareSplitSize(x, Array.isArray(numOrSizeSplits) ? [...numOrSizeSplits] : numOrSizeSplits, $axis);
  sizes.forEach((s, i) => {
    if (s < 0) throw new Error(`SplitV: split size ${s} (sizes [${sizes}], index ${i}) is negative`);
  });
  const shapes = sizes.map(s => x.shape.map((e, d) => (d === $axis ? s : e)));
  const bufs = util.sizeFromShape(x.shape) === 0 ? shapes.map(s => host.exec.alloc(s, x.dtype)) :
                                                   splitBuffer(host.exec, deviceBuffer(host, x), x.shape, $axis, sizes, x.dtype);
  return outputs(host, bufs, shapes, x.dtype);
};

const unpack: CudaKernelFunc = ({inputs, attrs, host}) => {
  const {value} = inputs as {value: TensorInfo};
  if (!onDevice(value)) return null;
  const rank = value.shape.length;
  let {axis} = attrs as {axis: number};
  if (axis < 0) axis += rank;
  if (!(axis >= 0 && axis < rank)) throw new Error(`Unpack: axis ${(attrs as {axis: number}).axis} is outside the rank ${rank} of [${value.shape}]`);
  const num = value.shape[axis];
  const outShape = value.shape.filter((_, d) => d !== axis);
  const sizes = new Array<number>(num).fill(1);
  const bufs = util.sizeFromShape(outShape) === 0 ? sizes.map(() => host.exec.alloc(outShape, value.dtype)) :
      splitBuffer(host.exec, deviceBuffer(host, value), value.shape, axis, sizes, value.dtype, sizes.map(() => outShape));
  return outputs(host, bufs, sizes.map(() => outShape), value.dtype);
};

/** Concat of same-dtype tensors, as tfjs-backend-cpu: empty inputs are skipped. */
function concatOf(host: DeviceHost, tensors: TensorInfo[], axis: number, shapes: number[][], outShape: number[]): TensorInfo {
  const dtype = tensors[0].dtype;
  const parts = tensors.map((t, i) => ({t, shape: shapes[i]})).filter(p => util.sizeFromShape(p.shape) > 0);
  if (util.sizeFromShape(outShape) === 0) return output(host, host.exec.alloc(outShape, dtype), outShape, dtype);
  const buf = concatBuffers(host.exec, parts.map(p => ({buf: deviceBuffer(host, p.t), shape: p.shape})), axis, outShape, dtype);
  return output(host, buf, outShape, dtype);
}

const concat: CudaKernelFunc = ({inputs, attrs, host}) => {
  const tensors = listOf(inputs);
  if (tensors.length === 0 || !onDevice(...tensors) || tensors.some(t => t.dtype !== tensors[0].dtype)) return null;
  const $axis = util.parseAxisParam((attrs as {axis: number}).axis, tensors[0].shape)[0];
  const shapes = tensors.map(t => t.shape);
  backend_util.assertParamsConsistent(shapes, $axis);
  return concatOf(host, tensors, $axis, shapes, backend_util.computeOutShape(shapes, $axis));
};

const pack: CudaKernelFunc = ({inputs, attrs, host}) => {
  const tensors = listOf(inputs);
  if (tensors.length === 0 || !onDevice(...tensors)) return null;
  const {shape, dtype} = tensors[0];
  tensors.forEach(t => {
    util.assertShapesMatch(shape, t.shape, 'All tensors passed to stack must have matching shapes');
    util.assert(dtype === t.dtype, () => 'All tensors passed to stack must have matching dtypes');
  });
  let {axis} = attrs as {axis: number};
  if (axis < 0) axis += shape.length + 1;  // as expandDims
  if (!(axis >= 0 && axis <= shape.length)) throw new Error(`Pack: axis ${(attrs as {axis: number}).axis} is outside [-${shape.length + 1}, ${shape.length}] for tensors of shape [${shape}]`);
  const expanded = [...shape.slice(0, axis), 1, ...shape.slice(axis)];
  const outShape = [...shape.slice(0, axis), tensors.length, ...shape.slice(axis)];
  return concatOf(host, tensors, axis, tensors.map(() => expanded), outShape);
};

const transpose: CudaKernelFunc = ({inputs, attrs, host}) => {
  const {x} = inputs as {x: TensorInfo};
  if (!onDevice(x)) return null;
  const {perm} = attrs as {perm: number[]};
  const rank = x.shape.length;
  if (perm.length !== rank || [...perm].sort((p, q) => p - q).some((p, i) => p !== i)) {
    throw new Error(`Transpose: perm [${perm}] is not a permutation of the axes of [${x.shape}]`);
  }
  const outShape = perm.map(p => x.shape[p]);
  if (util.sizeFromShape(outShape) === 0) return output(host, host.exec.alloc(outShape, x.dtype), outShape, x.dtype);
  return output(host, transposeBuffer(host.exec, deviceBuffer(host, x), x.shape, perm, x.dtype), outShape, x.dtype);
};

const tile: CudaKernelFunc = ({inputs, attrs, host}) => {
  const {x} = inputs as {x: TensorInfo};
  if (!onDevice(x)) return null;
  const {reps} = attrs as {reps: number[]};
  if (reps.length !== x.shape.length || reps.some(r => !Number.isInteger(r) || r < 0)) {
    throw new Error(`Tile: reps [${reps}] must be ${x.shape.length} non-negative integers for a tensor of shape [${x.shape}]`);
  }
  const outShape = x.shape.map((n, d) => n * reps[d]);
  if (util.sizeFromShape(outShape) === 0) return output(host, host.exec.alloc(outShape, x.dtype), outShape, x.dtype);
  return output(host, tileBuffer(host.exec, deviceBuffer(host, x), x.shape, reps, x.dtype), outShape, x.dtype);
};

const cast: CudaKernelFunc = ({inputs, attrs, host}) => {
  const {x} = inputs as {x: TensorInfo};
  const {dtype} = attrs as {dtype: DataType};
  if (!onDevice(x) || !DEVICE_DTYPES.has(dtype)) return null;
  if (util.sizeFromShape(x.shape) === 0) return output(host, host.exec.alloc(x.shape, dtype), x.shape, dtype);
  return output(host, castBuffer(host.exec, deviceBuffer(host, x), x.shape, x.dtype, dtype), x.shape, dtype);
};

function filled(host: DeviceHost, shape: number[], dtype: DataType, value: number): TensorInfo {
  return output(host, fillBuffer(host.exec, shape, dtype, bitsOf(value, dtype)), shape, dtype);
}

const fill: CudaKernelFunc = ({attrs, host}) => {
  const {shape, value, dtype} = attrs as {shape: number[], value: number|string, dtype?: DataType};
  const $dtype = dtype || util.inferDtype(value);
  if (!DEVICE_DTYPES.has($dtype) || typeof value !== 'number') return null;
  return filled(host, shape, $dtype, value);
};

const zerosLike: CudaKernelFunc = ({inputs, host}) => {
  const {x} = inputs as {x: TensorInfo};
  return onDevice(x) ? filled(host, x.shape, x.dtype, 0) : null;
};

const onesLike: CudaKernelFunc = ({inputs, host}) => {
  const {x} = inputs as {x: TensorInfo};
  return onDevice(x) ? filled(host, x.shape, x.dtype, 1) : null;
};

/**
 * Range: the values are made on the host and uploaded (no fallback: nothing is read back). A float32
 * range is a running float32 sum in tfjs-backend-cpu (values[i] = values[i-1] + step, rounded each
 * time), which a parallel kernel would not reproduce bit for bit.
 */
const range: CudaKernelFunc = ({attrs, host}) => {
  const {start, stop, dtype} = attrs as {start: number, stop: number, step: number, dtype: 'float32'|'int32'};
  let {step} = attrs as {step: number};
  if (dtype !== 'float32' && dtype !== 'int32') return null;
  const empty = start === stop || (start < stop && step < 0) || (stop < start && step > 1);
  const n = empty ? 0 : Math.abs(Math.ceil((stop - start) / step));
  if (!Number.isSafeInteger(n)) throw new Error(`Range: start ${start}, stop ${stop}, step ${step} give ${n} elements`);
  const values = dtype === 'int32' ? new Int32Array(n) : new Float32Array(n);
  if (stop < start && step === 1) step = -1;  // tfjs adjusts a default step's sign
  if (n > 0) values[0] = start;
  for (let i = 1; i < n; i++) values[i] = values[i - 1] + step;
  return output(host, host.exec.upload(values, [n], dtype), [n], dtype);
};

function binary(op: BinaryOp, logical = false): CudaKernelFunc {
  const comparison = op !== 'Add' && op !== 'Sub';
  return ({inputs, host}) => {
    const {a, b} = inputs as {a: TensorInfo, b: TensorInfo};
    // Different dtypes: tfjs-backend-cpu computes in JavaScript numbers and stores as a's dtype; leave that to it.
    if (!onDevice(a, b) || a.dtype !== b.dtype || (logical && a.dtype !== 'bool')) return null;
    const outShape = backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const outDtype: DataType = comparison ? 'bool' : a.dtype;
    if (util.sizeFromShape(outShape) === 0) return output(host, host.exec.alloc(outShape, outDtype), outShape, outDtype);
    const expr = binaryExpr(op, storageOf(a.dtype), outDtype);
    const buf = mapBuffer(host.exec, op, expr, [{buf: deviceBuffer(host, a), shape: a.shape, dtype: a.dtype}, {buf: deviceBuffer(host, b), shape: b.shape, dtype: b.dtype}],
                          outShape, outDtype);
    return output(host, buf, outShape, outDtype);
  };
}

const abs: CudaKernelFunc = ({inputs, host}) => {
  const {x} = inputs as {x: TensorInfo};
  if (!onDevice(x)) return null;
  if (util.sizeFromShape(x.shape) === 0) return output(host, host.exec.alloc(x.shape, x.dtype), x.shape, x.dtype);
  const buf = mapBuffer(host.exec, 'Abs', absExpr(storageOf(x.dtype)), [{buf: deviceBuffer(host, x), shape: x.shape, dtype: x.dtype}], x.shape, x.dtype);
  return output(host, buf, x.shape, x.dtype);
};

/** tfjs kernel name -> CUDA implementation (ExpandDims, Squeeze, Reshape are metadata only: the backend handles them). */
export const CUDA_KERNELS: Record<string, CudaKernelFunc> = {
  GatherV2: declining(gatherV2),
  StridedSlice: declining(stridedSlice),
  Slice: declining(slice),
  SplitV: declining(splitV),
  Concat: declining(concat),
  Pack: declining(pack),
  Unpack: declining(unpack),
  Transpose: declining(transpose),
  Tile: declining(tile),
  Cast: declining(cast),
  Fill: declining(fill),
  ZerosLike: declining(zerosLike),
  OnesLike: declining(onesLike),
  Range: declining(range),
  Add: declining(binary('Add')),
  Sub: declining(binary('Sub')),
  GreaterEqual: declining(binary('GreaterEqual')),
  Less: declining(binary('Less')),
  LessEqual: declining(binary('LessEqual')),
  LogicalAnd: declining(binary('LogicalAnd', true)),
  LogicalOr: declining(binary('LogicalOr', true)),
  Abs: declining(abs),
};
