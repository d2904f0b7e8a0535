// A replayed forward on the WebGPU base as a recorded command list, the counterpart of a CUDA graph
// (cuda_graph.ts). The trace's steps run once on fixed input buffers to reach a steady state, then
// once more with the device watched (src/kernels/webgpu/command_recorder.ts): the commands run as
// usual and are kept. A later forward writes its inputs into the fixed buffers, encodes the kept
// passes and copies (the same pipelines and bind groups) and copies the outputs out into new
// tensors, in one submit: no recording, planning, uniforms or bind groups on the host. Every buffer
// the recording uses stays out of the pool while the graph lives. Flag STOF_WEBGPU_GRAPH (default
// true) turns it off for A/B runs.
import {DataId, DataType, engine, env, Tensor, util} from '@tensorflow/tfjs-core';

import {CommandRecorder, encodeRecording, pinsOf, RecordRefused, Recording} from '../kernels/webgpu/command_recorder';
import type {WebGPUBase, WebGPUExecutor} from '../kernels/webgpu/executor';

import type {StofBackend} from './stof_backend';

if ((env() as unknown as {flagRegistry: Record<string, unknown>}).flagRegistry['STOF_WEBGPU_GRAPH'] == null) {
  env().registerFlag('STOF_WEBGPU_GRAPH', () => true);
}

export interface Shaped {
  shape: number[];
  dtype: DataType;
}

interface Fixed extends Shaped {
  id: DataId;
  buffer: GPUBuffer;
  /** The base tensor's shape and element type (its buffer's layout; may differ from the tensor's). */
  stored: Shaped;
  bytes: number;
}

/** Why forwards on this backend cannot be recorded command lists now, or null. */
export function webgpuGraphsOff(backend: StofBackend): string|null {
  if (backend.baseName !== 'webgpu') return 'not on the WebGPU base';
  if (!env().getBool('STOF_WEBGPU_GRAPH')) return 'STOF_WEBGPU_GRAPH is false';
  if (backend.profiler.timing) return 'profile() times kernels';
  if ((backend.base as unknown as {activeTimers?: unknown}).activeTimers != null) return 'tf.time() times kernels';
  return null;
}

const FOUR_BYTES = new Set(['float32', 'int32', 'bool']);

export class WebGPUForwardGraph {
  private disposed = false;

  private constructor(private readonly backend: StofBackend, private readonly recording: Recording,
                      private readonly inputs: Fixed[], private readonly outputs: Fixed[]) {}

  /** Dispatches one forward encodes. */
  get launches() { return this.recording.dispatches; }

  private get base() { return this.backend.base as unknown as WebGPUBase; }

  /** The base tensor behind a tensor of 'stof' (computed if pending) and its buffer, if on the GPU. */
  private static stored(backend: StofBackend, dataId: DataId) {
    const base = backend.base as unknown as WebGPUBase;
    const id = backend.baseData(dataId);
    const data = base.tensorMap.get(id);
    return {id, data, buffer: data?.resource instanceof GPUBuffer ? data.resource : null};
  }

  /**
   * This forward, and the graph of later ones: as CudaForwardGraph.capture. `run` runs the trace's
   * steps on the given input ids and returns the output ids (one reference each for the caller).
   */
  static capture(backend: StofBackend, inputs: Tensor[], run: (ids: DataId[]) => DataId[], outputs: Shaped[]):
      {graph: WebGPUForwardGraph|null, declined?: string, out: Tensor[]|null} {
    const base = backend.base as unknown as WebGPUBase;
    const executor = backend.executor as WebGPUExecutor;
    backend.materializeAll();  // the app's pending work runs now, not in the recording
    const bad = [...inputs, ...outputs].find(t => !FOUR_BYTES.has(t.dtype) || util.sizeFromShape(t.shape) === 0);
    const fixedIn = inputs.map(t => {
      const info = base.makeTensorInfo(t.shape, t.dtype);
      base.uploadToGPU(info.dataId);
      const fixed = {id: backend.wrapBase({dataId: info.dataId, shape: t.shape, dtype: t.dtype}), buffer: base.tensorMap.get(info.dataId).resource as GPUBuffer,
                     shape: t.shape, dtype: t.dtype, stored: {shape: t.shape, dtype: t.dtype}, bytes: 4 * util.sizeFromShape(t.shape)};
      return fixed;
    });
    const fixedIds = fixedIn.map(f => f.id);
    const disposeAll = (ids: DataId[]) => ids.forEach(id => backend.disposeData(id));
    let rehearsal: DataId[];
    try {
      if (!WebGPUForwardGraph.copyIn(backend, inputs, fixedIn)) {
        disposeAll(fixedIds);
        return {graph: null, declined: 'an input stored as another element type than its dtype', out: null};
      }
      rehearsal = run(fixedIds);
      backend.materialize(rehearsal);
    } catch (e) {
      disposeAll(fixedIds);
      throw e;
    }
    const out = rehearsal.map((dataId, i) => engine().makeTensorFromTensorInfo({dataId, ...outputs[i]}, backend));
    if (bad != null) {
      disposeAll(fixedIds);
      return {graph: null, declined: `a ${bad.dtype} [${bad.shape}] input or output`, out};
    }
    // The recording rewrites the fixed inputs: what is made from them must be made in it.
    executor.forgetDerived(fixedIn.map(f => backend.baseData(f.id)));
    base.endComputePassEncoder();
    if (base.commandEncoder != null) base.submitQueue();
    const recorder = new CommandRecorder(base.device, base.bufferManager, pinsOf(base.bufferManager));
    const restore = WebGPUForwardGraph.refuseReads(base, recorder);
    let outIds: DataId[] = [];
    let recording: Recording|null = null;
    let fixedOut: Fixed[] = [];
    try {
      outIds = run(fixedIds);
      backend.materialize(outIds);
      fixedOut = outIds.map((id, i) => {
        const s = WebGPUForwardGraph.stored(backend, id);
        if (s.buffer == null) recorder.refuse('an output left on the CPU');
        return {id, buffer: s.buffer!, ...outputs[i], stored: {shape: s.data.shape!, dtype: s.data.dtype as DataType},
                bytes: 4 * util.sizeFromShape(s.data.shape!)};
      });
      base.endComputePassEncoder();
      if (base.commandEncoder != null) base.submitQueue();
      restore();
      recording = recorder.stop();
    } catch (e) {
      restore();
      recorder.abort();
      base.endComputePassEncoder();
      if (base.commandEncoder != null) base.submitQueue();
      disposeAll([...outIds, ...fixedIds]);
      if (e instanceof RecordRefused) return {graph: null, declined: e.message, out};
      throw e;
    }
    if (recording == null) {
      disposeAll([...outIds, ...fixedIds]);
      return {graph: null, declined: recorder.refused!, out};
    }
    return {graph: new WebGPUForwardGraph(backend, recording, fixedIn, fixedOut), out};
  }

  /** Reads of GPU data while recording would not be repeated by a replay: refused. */
  private static refuseReads(base: WebGPUBase, recorder: CommandRecorder): () => void {
    const b = base as unknown as Record<string, unknown>;
    const names = ['read', 'readSync', 'readToGPU'];
    const saved = names.map(n => [n, Object.prototype.hasOwnProperty.call(b, n), b[n]] as const);
    for (const n of names) {
      const orig = b[n] as (id: DataId, ...rest: unknown[]) => unknown;
      b[n] = function(this: unknown, id: DataId, ...rest: unknown[]) {
        if (base.tensorMap.get(id)?.resource != null) recorder.refuse(`a ${n} of GPU data`);
        return orig.call(base, id, ...rest);
      };
    }
    return () => { for (const [n, own, f] of saved) { if (own) b[n] = f; else delete b[n]; } };
  }

  /**
   * The inputs into the fixed buffers: host values written, GPU values copied (in the base's open
   * encoder). False where an input's buffer holds another element type than its dtype says (an
   * int32 buffer relabelled float32): the forward then runs its steps.
   */
  private static copyIn(backend: StofBackend, inputs: Tensor[], fixed: Fixed[]): boolean {
    const base = backend.base as unknown as WebGPUBase;
    const found = inputs.map(t => WebGPUForwardGraph.stored(backend, t.dataId));
    if (found.some((s, i) => s.data?.dtype !== fixed[i].stored.dtype || (s.buffer == null && s.data.values == null))) return false;
    found.forEach((s, i) => {
      const dst = fixed[i].buffer;
      if (s.buffer === dst) return;
      if (s.buffer != null) {
        base.ensureCommandEncoderReady();
        base.endComputePassEncoder();
        base.commandEncoder!.copyBufferToBuffer(s.buffer, 0, dst, 0, fixed[i].bytes);
        base.commandQueueOwnedIds.add(s.id);
        return;
      }
      const v = s.data.values!;
      const typed = s.data.dtype === 'float32' ? (v instanceof Float32Array ? v : Float32Array.from(v)) :
                                                 (v instanceof Int32Array ? v : Int32Array.from(v));
      base.device.queue.writeBuffer(dst, 0, typed.buffer, typed.byteOffset, fixed[i].bytes);
    });
    return true;
  }

  /** One forward: the inputs in, the recorded commands, the outputs out into new tensors; one submit (null: see copyIn). */
  run(inputs: Tensor[]): Tensor[]|null {
    const base = this.base;
    // Commands still open may read the fixed buffers (the last forward's copies out): they go first,
    // so that this forward's host inputs (queue writes) land after them.
    base.endComputePassEncoder();
    if (base.commandEncoder != null) base.submitQueue();
    if (!WebGPUForwardGraph.copyIn(this.backend, inputs, this.inputs)) return null;
    base.ensureCommandEncoderReady();
    const enc = base.commandEncoder!;
    encodeRecording(enc, this.recording);
    const out = this.outputs.map(o => {
      const info = base.makeTensorInfo(o.stored.shape, o.stored.dtype);
      base.uploadToGPU(info.dataId);
      enc.copyBufferToBuffer(o.buffer, 0, base.tensorMap.get(info.dataId).resource as GPUBuffer, 0, o.bytes);
      const dataId = this.backend.wrapBase({dataId: info.dataId, shape: o.shape, dtype: o.dtype});
      return engine().makeTensorFromTensorInfo({dataId, shape: o.shape, dtype: o.dtype}, this.backend);
    });
    base.submitQueue();
    return out;
  }

  dispose() {
    if (this.disposed) return;
    this.disposed = true;
    const base = this.base;
    if ((base as unknown as {disposed?: boolean}).disposed) return;  // its pool destroyed every buffer
    if (!this.backend.isDisposed) for (const f of [...this.inputs, ...this.outputs]) this.backend.disposeData(f.id);
    // Commands that use the pinned buffers are submitted before the pins go (the pool may hand them out next).
    base.endComputePassEncoder();
    if (base.commandEncoder != null) base.submitQueue();
    pinsOf(base.bufferManager).unpin(this.recording.pinned);
    this.recording.upload?.destroy();
  }
}
