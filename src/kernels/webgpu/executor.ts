// Runs planned kernels on tfjs-backend-webgpu's device: its buffers (no copies), its command
// encoder and compute pass (so fused and unfused work interleave in order), its submit batching.
import {BackendValues, env, KernelBackend, TensorInfo} from '@tensorflow/tfjs-core';

import {sizeOf} from '../../fusion/access';
import {AttentionKernel, Kernel, storedShape} from '../../fusion/planner';
import {formatWords} from '../sparse/mask_format';
import {evaluateKernel} from '../cpu/executor';
import type {GroupReport, Profiler} from '../../backend/profiler';
import {noteBindGroup} from './command_recorder';
import {maskAnalysis, Shader, shaderOf} from './templates';

/** The parts of tfjs-backend-webgpu's WebGPUBackend (4.x) that the executor uses. */
export interface WebGPUBase extends KernelBackend {
  device: GPUDevice;
  tensorMap: {has(dataId: object): boolean, get(dataId: object): {
    resource?: GPUBuffer|GPUTexture|GPUExternalTexture|null, values?: ArrayLike<number>|null, dtype?: string, shape?: number[]}};
  commandEncoder: GPUCommandEncoder|null;
  computePassEncoder: GPUComputePassEncoder|null;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
  bufferManager: {
    acquireBuffer(size: number, usage: number, mappedAtCreation?: boolean, reuse?: boolean): GPUBuffer;
    releaseBuffer(buffer: GPUBuffer, reuse?: boolean): void;
  };
  makeTensorInfo(shape: number[], dtype: string, values?: BackendValues): {dataId: object};
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  runWebGPUProgram(...args: unknown[]): unknown;
}

const HOOK = Symbol.for('tfjs-backend-stof.dispatchHook');
/** Output bytes after which the executor submits (so disposed buffers can be reused). */
const SUBMIT_BYTES = 64 << 20;
/** tfjs-backend-webgpu's CPU_HANDOFF_SIZE_THRESHOLD. */
const CPU_FORWARD_SIZE = 128;
/** Usage of the base's tensor buffers (its pool is keyed by size and usage); read when used (no GPU globals at import). */
const storageUsage = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
/** int32 values below this size that live on the CPU stay there when GPU programs read them. */
const HOST_INT_SIZE = 128;

interface Compiled {
  shader: Shader;
  pipeline: GPUComputePipeline;
  /** The pipeline's bind group layout (asked once: getBindGroupLayout makes a new object per call). */
  layout: GPUBindGroupLayout;
  /** Number of the pipeline, for bind group keys. */
  id: number;
}

export class WebGPUExecutor {
  private readonly compiled = new WeakMap<Kernel, Compiled>();
  private readonly pipelines = new Map<string, Omit<Compiled, 'shader'>>();

  constructor(private readonly base: WebGPUBase, private profiler: Profiler) {
    // Count the base's own programs too, so profile() reports every dispatch of a forward. The base
    // instance can outlive a 'stof' backend: hook it once, point the hook at the current profiler.
    // While 'stof' runs a base kernel, the small int32 values that program reads keep their CPU copy
    // (see hostIntCopy); the base used directly as 'webgpu' is left as it is.
    const hooked = base as WebGPUBase & {[HOOK]?: {profiler: Profiler, executor: WebGPUExecutor}};
    if (hooked[HOOK] == null) {
      const hook = {profiler, executor: this};
      hooked[HOOK] = hook;
      const run = base.runWebGPUProgram.bind(base);
      base.runWebGPUProgram = (program: unknown, inputs: TensorInfo[], ...rest: unknown[]) => {
        hook.profiler.baseDispatch();
        const executor = hook.executor;
        if (executor.onBase === 0) return run(program, inputs, ...rest);
        const copies: object[] = [];
        const ins = inputs.map(input => {
          const id = executor.hostIntCopy(input.dataId, copies);
          executor.upload(id, false);  // the program uploads what this leaves (complex64 it refuses)
          return id === input.dataId ? input : Object.create(input, {dataId: {value: id, enumerable: true}}) as TensorInfo;
        });
        const out = run(program, ins, ...rest);
        copies.forEach(id => base.disposeData(id));
        return out;
      };
    }
    hooked[HOOK]!.profiler = profiler;
    hooked[HOOK]!.executor = this;
  }

  /** Depth of base kernels that 'stof' is running (runOnBase). */
  onBase = 0;

  /** Runs a base kernel for 'stof' (its GPU programs read copies of small host int32 values). */
  runOnBase<T>(f: () => T): T {
    this.onBase++;
    try {
      return f();
    } finally {
      this.onBase--;
    }
  }

  /**
   * Puts a tensor's CPU values on the GPU in a buffer of the base's pool, written with
   * queue.writeBuffer (ordered after every submitted command, before the open encoder: the buffer
   * came free from the pool once the commands that used it were submitted). The base's own
   * uploadToGPU makes a fresh mapped staging buffer for every upload once its pool holds a buffer
   * of that size, and destroys it at the submit: a createBuffer per input of every forward.
   */
  upload(id: object, orBase = true) {
    const base = this.base;
    const data = base.tensorMap.get(id);
    if (data.resource != null) return;
    const values = data.values;
    const n = values != null ? sizeOf(data.shape!) : 0;
    if (n === 0 || !(data.dtype === 'float32' || data.dtype === 'int32' || data.dtype === 'bool')) {
      if (orBase) base.uploadToGPU(id);
      return;
    }
    const typed = data.dtype === 'float32' ? (values instanceof Float32Array ? values : Float32Array.from(values!)) :
                                             (values instanceof Int32Array ? values : Int32Array.from(values!));
    const buffer = base.bufferManager.acquireBuffer(4 * n, storageUsage());
    base.device.queue.writeBuffer(buffer, 0, typed.buffer, typed.byteOffset, 4 * n);
    data.resource = buffer;
    data.values = null;  // as the base does once a value is on the GPU
  }

  /**
   * Small int32 values on the CPU (shape vectors, sizes, indices: what tfjs-converter reads back
   * with dataSync for a Reshape's shape, a slice's begin, a Range's limit) stay there: a GPU program
   * reads a copy made for it (freed with its commands), so later kernels on them still run on the
   * CPU (the base forwards a kernel to the CPU only when no input has a GPU buffer) and their results
   * stay readable synchronously, which WebGPU in Node cannot do for a GPU buffer. Without it, GPT-2
   * at S >= 1000 (WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD) uploads its sequence length for the causal
   * mask, the Pack of a later Reshape's shape runs on the GPU, and the converter's dataSync fails.
   */
  hostIntCopy(id: object, copies: object[]): object {
    const data = this.base.tensorMap.get(id);
    if (data.resource != null || data.values == null || data.dtype !== 'int32' || sizeOf(data.shape!) >= HOST_INT_SIZE) return id;
    const copy = this.base.makeTensorInfo(data.shape!, 'int32', Int32Array.from(data.values)).dataId;
    copies.push(copy);
    return copy;
  }

  /**
   * A copy of a CPU-resident value in a GPU buffer (the original keeps its CPU values): given to a
   * base kernel whose inputs are small but whose output is large (GPT-2's causal mask [S, 1] >=
   * [1, S]), so that the base runs it on the GPU instead of forwarding it to its CPU kernels.
   */
  gpuCopy(id: object, copies: object[]): object {
    const data = this.base.tensorMap.get(id);
    const dtype = data?.dtype;
    if (data == null || data.resource != null || data.values == null || (dtype !== 'float32' && dtype !== 'int32' && dtype !== 'bool')) return id;
    const copy = this.base.makeTensorInfo(data.shape!, dtype, data.values as BackendValues).dataId;
    this.upload(copy);
    copies.push(copy);
    return copy;
  }

  private compile(k: Kernel): Compiled {
    let c = this.compiled.get(k);
    if (c != null) return c;
    const shader = shaderOf(k);
    c = {shader, ...this.pipeline(shader.code, k.template)};
    this.compiled.set(k, c);
    return c;
  }

  private pipeline(code: string, label: string): Omit<Compiled, 'shader'> {
    let p = this.pipelines.get(code);
    if (p == null) {
      const device = this.base.device;
      const module = device.createShaderModule({code, label: `stof-${label}`});
      const pipeline = device.createComputePipeline({layout: 'auto', compute: {module, entryPoint: 'main'}, label: `stof-${label}`});
      p = {pipeline, layout: pipeline.getBindGroupLayout(0), id: this.pipelines.size};
      this.pipelines.set(code, p);
    }
    return p;
  }

  // ---- bind groups, reused when a pipeline sees the same buffers again -----------------------------

  /**
   * Bind groups by (pipeline, buffers), oldest first. The base's pool hands the same buffers back
   * forward after forward, so a steady state makes none. Buffers are keyed by identity: a buffer
   * is never rebound to other memory (the pool destroys buffers only when the backend goes).
   */
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private static readonly MAX_BIND_GROUPS = 4096;

  /** A bind group of `c` with `buffers` at bindings 0, 1, ... (the last at `lastBinding` when given). */
  private bindGroup(c: Omit<Compiled, 'shader'>, buffers: GPUBuffer[], lastBinding?: number): GPUBindGroup {
    let key = `${c.id}`;
    for (const b of buffers) key += ',' + this.idNumber(b);
    if (lastBinding != null) key += '@' + lastBinding;
    let group = this.bindGroups.get(key);
    if (group == null) {
      const last = buffers.length - 1;
      const entries = buffers.map((buffer, i) => ({binding: i === last && lastBinding != null ? lastBinding : i, resource: {buffer}}));
      group = this.base.device.createBindGroup({layout: c.layout, entries});
      noteBindGroup(group, entries);  // a forward graph's recording pins the buffers of the groups it binds
      if (this.bindGroups.size >= WebGPUExecutor.MAX_BIND_GROUPS) this.bindGroups.delete(this.bindGroups.keys().next().value!);
      this.bindGroups.set(key, group);
    }
    return group;
  }

  /** The GPU buffers of tensors of the base (uploaded if on the CPU), owned by the open commands. */
  private buffersOf(ids: object[]): GPUBuffer[] {
    const base = this.base;
    return ids.map(id => {
      this.upload(id);
      base.commandQueueOwnedIds.add(id);
      return base.tensorMap.get(id).resource as GPUBuffer;
    });
  }

  /** WGSL of a kernel (for explain() and tests). */
  source(k: Kernel): string {
    return this.compile(k).shader.code;
  }

  /** Launches of the last run: one, on the GPU or (tiny, CPU-resident work) on the CPU. */
  readonly lastDispatches = 1;
  readonly sparse = true;

  /** Timestamp queries of the open profile: two per timed dispatch (begin, end of its own pass). */
  private timing: {querySet: GPUQuerySet, groups: GroupReport[]}|null = null;
  private static readonly MAX_TIMED = 512;

  /** Whether dispatches can be timed on the device (tfjs-backend-webgpu asks for the feature when the adapter has it). */
  get canTime(): boolean {
    return this.base.device.features.has('timestamp-query');
  }

  private timestampWrites(group: GroupReport): GPUComputePassTimestampWrites|undefined {
    if (!this.canTime) return undefined;
    if (this.timing == null) {
      this.timing = {querySet: this.base.device.createQuerySet({type: 'timestamp', count: 2 * WebGPUExecutor.MAX_TIMED}), groups: []};
    }
    const t = this.timing;
    if (t.groups.length >= WebGPUExecutor.MAX_TIMED) return undefined;
    const i = t.groups.push(group) - 1;
    return {querySet: t.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1};
  }

  /** Fills `ms` of the groups timed since the last call (reads the timestamps back). */
  async collectTimes(): Promise<void> {
    const t = this.timing;
    this.timing = null;
    if (t == null || t.groups.length === 0) { t?.querySet.destroy(); return; }
    const base = this.base, device = base.device, bytes = 16 * t.groups.length;
    const resolved = device.createBuffer({size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC});
    const read = device.createBuffer({size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
    base.ensureCommandEncoderReady();
    base.endComputePassEncoder();
    base.commandEncoder!.resolveQuerySet(t.querySet, 0, 2 * t.groups.length, resolved, 0);
    base.commandEncoder!.copyBufferToBuffer(resolved, 0, read, 0, bytes);
    base.submitQueue();
    await read.mapAsync(GPUMapMode.READ);
    const ns = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    t.groups.forEach((g, i) => { g.ms = Number(ns[2 * i + 1] - ns[2 * i]) / 1e6; });
    [resolved, read].forEach(b => b.destroy());
    t.querySet.destroy();
  }

  /** Runs `k`; with `timed` (a profile asked for device times), in its own timestamped pass. */
  run(k: Kernel, inputs: object[], timed?: GroupReport): object {
    const base = this.base;
    // Like the base (WEBGPU_CPU_FORWARD): tiny work on data still on the CPU stays there.
    if (env().getBool('WEBGPU_CPU_FORWARD') && sizeOf(storedShape(k)) < CPU_FORWARD_SIZE &&
        inputs.every((id, i) => base.tensorMap.get(id).values != null && sizeOf(k.inputs[i].shape) < CPU_FORWARD_SIZE)) {
      const values = evaluateKernel(k, inputs.map(id => base.tensorMap.get(id).values!));
      return base.write(values as BackendValues, storedShape(k), k.output.dtype);
    }
    const c = this.compile(k);
    const shader = c.shader;
    const tiles = k.template === 'attention' && k.mask ? this.tileFormat(k, inputs) : null;
    const shape = storedShape(k);
    const out = base.makeTensorInfo(shape, k.output.dtype);
    base.uploadToGPU(out.dataId);
    const copies: object[] = [];
    const ids = [out.dataId];
    for (const slot of shader.bindings) ids.push(this.hostIntCopy(inputs[slot], copies));
    const buffers = this.buffersOf(ids);
    if (tiles) buffers.push(tiles);
    this.dispatch(c.pipeline, this.bindGroup(c, buffers, tiles ? shader.tileBinding : undefined), shader.workgroups, timed);
    for (const id of copies) base.disposeData(id);  // after the commands that read them are submitted
    this.submitIfLarge(4 * sizeOf(shape));
    return out.dataId;
  }

  /** Output bytes allocated since the base's last submit, and the encoder they went into. */
  private pendingBytes = 0;
  private pendingEncoder: GPUCommandEncoder|null = null;

  /**
   * Buffers disposed while their commands are unsubmitted return to the base's pool only at the
   * next submit; one large launch per forward would otherwise allocate fresh buffers every call.
   */
  private submitIfLarge(bytes: number) {
    const base = this.base;
    if (base.commandEncoder !== this.pendingEncoder) { this.pendingEncoder = base.commandEncoder; this.pendingBytes = 0; }
    this.pendingBytes += bytes;
    if (this.pendingBytes >= SUBMIT_BYTES && base.commandEncoder != null) {
      base.endComputePassEncoder();
      base.submitQueue();
    }
  }

  /** Encodes one dispatch in the base's compute pass (or its own timestamped pass). */
  private dispatch(pipeline: GPUComputePipeline, bindGroup: GPUBindGroup, workgroups: [number, number, number], timed?: GroupReport) {
    const base = this.base;
    base.ensureCommandEncoderReady();
    this.buryDead();
    const timestampWrites = timed && this.timestampWrites(timed);
    let pass: GPUComputePassEncoder;
    if (timestampWrites) {
      base.endComputePassEncoder();
      pass = base.commandEncoder!.beginComputePass({timestampWrites});
    } else {
      if (base.computePassEncoder == null) base.computePassEncoder = base.commandEncoder!.beginComputePass({});
      pass = base.computePassEncoder;
    }
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1], workgroups[2]);
    if (timestampWrites) pass.end();
    base.dispatchCountInPass++;
    if (base.dispatchCountInPass >= (env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number)) {
      base.endComputePassEncoder();
      base.submitQueue();
    }
  }

  // ---- the mask's tile format, made once per mask ------------------------------------------------

  /** Tile formats by (analysis code, mask buffers), least recently used first. */
  private readonly tileFormats = new Map<string, {buffer: GPUBuffer, ids: object[]}>();
  /** Evicted formats: back to the base's pool once the commands that may use them are submitted. */
  private evicted: {buffer: GPUBuffer, encoder: GPUCommandEncoder|null}[] = [];
  private static readonly MAX_FORMATS = 32;

  private readonly idNumbers = new WeakMap<object, number>();
  private nextId = 0;

  /** A number per object (tensor data id, GPU buffer), for cache keys. */
  private idNumber(id: object): number {
    let n = this.idNumbers.get(id);
    if (n == null) this.idNumbers.set(id, n = this.nextId++);
    return n;
  }

  /** Returns evicted formats whose encoder has been submitted to the base's pool. */
  private buryDead() {
    if (this.evicted.length === 0) return;
    const current = this.base.commandEncoder;
    this.evicted = this.evicted.filter(e => {
      if (e.encoder === current) return true;
      this.base.bufferManager.releaseBuffer(e.buffer);
      return false;
    });
  }

  private evict(key: string) {
    const entry = this.tileFormats.get(key)!;
    this.tileFormats.delete(key);
    this.evicted.push({buffer: entry.buffer, encoder: this.base.commandEncoder});
  }

  /** The tile format of the attention kernel's mask on these inputs: cached, or made now (one dispatch). */
  private tileFormat(k: AttentionKernel, inputs: object[]): GPUBuffer {
    const base = this.base;
    const c = this.compileAnalysis(k);
    const ids = c.shader.bindings.map(slot => inputs[slot]);
    const key = `${c.index}|${ids.map(id => this.idNumber(id)).join(',')}`;
    const hit = this.tileFormats.get(key);
    if (hit != null) {  // most recently used last
      this.tileFormats.delete(key);
      this.tileFormats.set(key, hit);
      return hit.buffer;
    }
    // Formats of masks that no longer exist, and the oldest beyond the bound, go.
    for (const [kk, e] of this.tileFormats) {
      if (e.ids.some(id => !base.tensorMap.has(id))) this.evict(kk);
    }
    while (this.tileFormats.size >= WebGPUExecutor.MAX_FORMATS) this.evict(this.tileFormats.keys().next().value!);
    // From the base's pool: a forward's new mask gets the buffer of an earlier forward's format.
    const buffer = base.bufferManager.acquireBuffer(4 * formatWords(k.mask!), storageUsage());
    this.tileFormats.set(key, {buffer, ids});
    const group = this.profiler.maskAnalysis(formatWords(k.mask!));
    this.dispatch(c.pipeline, this.bindGroup(c, [buffer, ...this.buffersOf(ids)]), c.shader.workgroups, this.profiler.timing ? group : undefined);
    return buffer;
  }

  private readonly analyses = new WeakMap<Kernel, Compiled & {index: number}>();
  private readonly analysisIndex = new Map<string, number>();

  private compileAnalysis(k: AttentionKernel): Compiled & {index: number} {
    let c = this.analyses.get(k);
    if (c != null) return c;
    const shader = maskAnalysis(k);
    let index = this.analysisIndex.get(shader.code);
    if (index == null) this.analysisIndex.set(shader.code, index = this.analysisIndex.size);
    c = {shader, ...this.pipeline(shader.code, 'mask'), index};
    this.analyses.set(k, c);
    return c;
  }

  /**
   * Forgets the tile formats made from these tensors (a forward graph rewrites them: the formats
   * must be made inside its recording).
   */
  forgetDerived(ids: object[]) {
    for (const [key, e] of [...this.tileFormats]) if (e.ids.some(id => ids.includes(id))) this.evict(key);
  }

  /** Gives the tile formats back (the backend is being disposed). */
  dispose() {
    for (const key of [...this.tileFormats.keys()]) this.evict(key);
    const base = this.base;
    if (this.evicted.some(e => e.encoder != null && e.encoder === base.commandEncoder)) {
      base.endComputePassEncoder();
      base.submitQueue();
    }
    this.evicted.forEach(e => base.bufferManager.releaseBuffer(e.buffer));
    this.evicted = [];
  }
}
