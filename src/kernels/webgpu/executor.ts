// Runs planned kernels on tfjs-backend-webgpu's device: its buffers (no copies), its command
// encoder and compute pass (so fused and unfused work interleave in order), its submit batching.
import {BackendValues, env, KernelBackend} from '@tensorflow/tfjs-core';

import {sizeOf} from '../../fusion/access';
import {AttentionKernel, Kernel, storedShape} from '../../fusion/planner';
import {formatWords} from '../sparse/mask_format';
import {evaluateKernel} from '../cpu/executor';
import type {GroupReport, Profiler} from '../../backend/profiler';
import {maskAnalysis, Shader, shaderOf} from './templates';

/** The parts of tfjs-backend-webgpu's WebGPUBackend (4.x) that the executor uses. */
export interface WebGPUBase extends KernelBackend {
  device: GPUDevice;
  tensorMap: {has(dataId: object): boolean, get(dataId: object): {resource?: GPUBuffer|GPUTexture|GPUExternalTexture|null, values?: ArrayLike<number>|null}};
  commandEncoder: GPUCommandEncoder|null;
  computePassEncoder: GPUComputePassEncoder|null;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
  makeTensorInfo(shape: number[], dtype: string): {dataId: object};
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

interface Compiled {
  shader: Shader;
  pipeline: GPUComputePipeline;
}

export class WebGPUExecutor {
  private readonly compiled = new WeakMap<Kernel, Compiled>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();

  constructor(private readonly base: WebGPUBase, private profiler: Profiler) {
    // Count the base's own programs too, so profile() reports every dispatch of a forward. The base
    // instance can outlive a 'stof' backend: hook it once, point the hook at the current profiler.
    const hooked = base as WebGPUBase & {[HOOK]?: {profiler: Profiler}};
    if (hooked[HOOK] == null) {
      const hook = {profiler};
      hooked[HOOK] = hook;
      const run = base.runWebGPUProgram.bind(base);
      base.runWebGPUProgram = (...args: unknown[]) => {
        hook.profiler.baseDispatch();
        return run(...args);
      };
    }
    hooked[HOOK]!.profiler = profiler;
  }

  private compile(k: Kernel): Compiled {
    let c = this.compiled.get(k);
    if (c != null) return c;
    const shader = shaderOf(k);
    c = {shader, pipeline: this.pipeline(shader.code, k.template)};
    this.compiled.set(k, c);
    return c;
  }

  private pipeline(code: string, label: string): GPUComputePipeline {
    let pipeline = this.pipelines.get(code);
    if (pipeline == null) {
      const device = this.base.device;
      const module = device.createShaderModule({code, label: `stof-${label}`});
      pipeline = device.createComputePipeline({layout: 'auto', compute: {module, entryPoint: 'main'}, label: `stof-${label}`});
      this.pipelines.set(code, pipeline);
    }
    return pipeline;
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
    const {shader, pipeline} = this.compile(k);
    const tiles = k.template === 'attention' && k.mask ? this.tileFormat(k, inputs) : null;
    const out = base.makeTensorInfo(storedShape(k), k.output.dtype);
    base.uploadToGPU(out.dataId);
    const entries = this.bufferEntries([out.dataId, ...shader.bindings.map(slot => inputs[slot])]);
    if (tiles) entries.push({binding: shader.tileBinding!, resource: {buffer: tiles}});
    this.dispatch(pipeline, entries, shader.workgroups, timed);
    this.submitIfLarge(4 * sizeOf(storedShape(k)));
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

  private bufferEntries(ids: object[]): GPUBindGroupEntry[] {
    const base = this.base;
    return ids.map((id, binding) => {
      base.uploadToGPU(id);
      base.commandQueueOwnedIds.add(id);
      return {binding, resource: {buffer: base.tensorMap.get(id).resource as GPUBuffer}};
    });
  }

  /** Encodes one dispatch in the base's compute pass (or its own timestamped pass). */
  private dispatch(pipeline: GPUComputePipeline, entries: GPUBindGroupEntry[], workgroups: [number, number, number], timed?: GroupReport) {
    const base = this.base;
    const bindGroup = base.device.createBindGroup({layout: pipeline.getBindGroupLayout(0), entries});
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
    pass.dispatchWorkgroups(...workgroups);
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
  /** Evicted formats: destroyed once the commands that may use them are submitted. */
  private evicted: {buffer: GPUBuffer, encoder: GPUCommandEncoder|null}[] = [];
  private readonly idNumbers = new WeakMap<object, number>();
  private nextId = 0;
  private static readonly MAX_FORMATS = 32;

  private idNumber(id: object): number {
    let n = this.idNumbers.get(id);
    if (n == null) this.idNumbers.set(id, n = this.nextId++);
    return n;
  }

  /** Destroys evicted formats whose encoder has been submitted. */
  private buryDead() {
    const current = this.base.commandEncoder;
    this.evicted = this.evicted.filter(e => {
      if (e.encoder === current) return true;
      e.buffer.destroy();
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
    const {shader, pipeline, index} = this.compileAnalysis(k);
    const ids = shader.bindings.map(slot => inputs[slot]);
    const key = `${index}|${ids.map(id => this.idNumber(id)).join(',')}`;
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
    const buffer = base.device.createBuffer({size: 4 * formatWords(k.mask!), usage: GPUBufferUsage.STORAGE, label: 'stof-mask-tiles'});
    this.tileFormats.set(key, {buffer, ids});
    const entries = [{binding: 0, resource: {buffer}}, ...this.bufferEntries(ids).map(e => ({...e, binding: e.binding + 1}))];
    const group = this.profiler.maskAnalysis(formatWords(k.mask!));
    this.dispatch(pipeline, entries, shader.workgroups, this.profiler.timing ? group : undefined);
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
    c = {shader, pipeline: this.pipeline(shader.code, 'mask'), index};
    this.analyses.set(k, c);
    return c;
  }

  /** Destroys the tile formats (the backend is being disposed). */
  dispose() {
    for (const key of [...this.tileFormats.keys()]) this.evict(key);
    this.evicted.forEach(e => e.buffer.destroy());
    this.evicted = [];
  }
}
