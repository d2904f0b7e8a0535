// The 'stof' KernelBackend. It owns a base backend (tfjs-backend-webgpu or tfjs-backend-cpu) that
// stores the data and runs every kernel 'stof' does not fuse. Each tensor of 'stof' is a StofValue
// with its own data id; a stored value points at the base's data id. Intercepted kernels are
// recorded as lazy nodes (src/fusion) and run as fused kernels when a value is needed: on a read,
// when a non-intercepted kernel consumes it, or when too much is pending.
import {
  backend_util, BackendTimingInfo, BackendValues, DataId, DataToGPUOptions, DataType, env, GPUData, KernelBackend,
  KernelConfig, NamedAttrMap, NamedTensorInfoMap, Tensor, TensorInfo, util, WebGLData, WebGPUData,
} from '@tensorflow/tfjs-core';

import {collectSubgraph, LazyNode, signature, StofValue} from '../fusion/graph';
import {infer, InputInfo, OPS} from '../fusion/ops';
import {Kernel, PlanOptions, planSubgraph, ValueInfo} from '../fusion/planner';
import {CpuExecutor} from '../kernels/cpu/executor';
import {WebGPUBase, WebGPUExecutor} from '../kernels/webgpu/executor';
import {attentionSignature, decideAttention} from '../search/attention_choice';
import type {Candidate} from '../search/cost_model';
import {DeviceProfile, syntheticProfile} from '../search/device_profile';
import {rerunTuningTarget, searchGeneration, tuningActive, withCandidate} from '../search/tuner';
import {cudaAttentionChoice} from '../kernels/cuda/attention_cuda';
import type {CudaBase} from './cuda_base';
import type {CudaBuffer} from '../kernels/cuda/executor';
import {CUDA_KERNELS} from './cuda_kernels';
import {CudaPlanExecutor} from './cuda_plan_executor';
import type {KernelCapture} from './graph_trace';
import {GroupReport, Profiler, ProfileReport} from './profiler';
import {attentionChoice} from './flags';

/** 'cuda': tensors in CUDA memory, tfjs-backend-cpu's kernels for what has no CUDA kernel (Node). */
export type BaseName = 'webgpu' | 'cpu' | 'cuda';

/** Inputs (or a broadcast output) of at least this many elements make a kernel with a CUDA implementation run on the device. */
const DEVICE_MIN_ELEMENTS = 4096;

/** Elementwise integer kernels that broadcast (the WebGPU base runs them on its CPU for small inputs). */
const BROADCAST_INT_KERNELS = new Set(['Add', 'Sub', 'Multiply', 'Equal', 'NotEqual', 'Greater', 'GreaterEqual', 'Less', 'LessEqual',
                                       'LogicalAnd', 'LogicalOr', 'Maximum', 'Minimum']);

/**
 * Elements a kernel writes where small inputs make a large output: GPT-2's causal mask ([S, 1] >=
 * [1, S]), BERT's token-type embedding (a [2, H] table gathered B·S times). 0 where unknown or invalid
 * (the kernel then reports the error).
 */
function outputSizeHint(name: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap, infos: TensorInfo[]): number {
  try {
    if (name === 'GatherV2') {
      const x = inputs['x'] as TensorInfo, indices = inputs['indices'] as TensorInfo;
      const axis = util.parseAxisParam(attrs['axis'] as number, x.shape)[0];
      return util.sizeFromShape(indices.shape) * util.sizeFromShape(x.shape) / Math.max(1, x.shape[axis]);
    }
    return infos.length === 2 ? util.sizeFromShape(backend_util.assertAndGetBroadcastShape(infos[0].shape, infos[1].shape)) : 0;
  } catch {
    return 0;
  }
}

export interface StofBackendInfo {
  /** Name of the base backend that stores data and runs the kernels 'stof' does not fuse. */
  base: BaseName;
  /** Adapter description when the base is WebGPU (vendor, architecture, device, description); the GPU on CUDA. */
  adapter?: Record<string, string>;
}

/** Runs planned kernels on the base's storage; returns the base data id of the output. */
export interface Executor {
  /** `timed`: the profile group whose device time to measure, when a profile asks for times. */
  run(kernel: Kernel, inputs: object[], timed?: GroupReport): object;
  /** Fills `ms` of the timed groups (devices with timestamp queries). */
  collectTimes?(): Promise<void>;
  /** Runs a kernel of the base for 'stof' (the executor may adjust how the base stores its inputs). */
  runOnBase?<T>(f: () => T): T;
  /** Frees what the executor holds of its own (the mask tile formats). */
  dispose?(): void;
  /** Launches (dispatches, or CPU passes) the last run made. */
  readonly lastDispatches: number;
  /** Whether attention kernels skip the mask's empty tiles here (else they run dense). */
  readonly sparse: boolean;
}

/** Pending nodes above which every value the app still holds is computed. */
const PENDING_BOUND = 4096;
/**
 * Pending nodes above which a flush may start early, so that the device works while the app (a
 * converted model's executor) goes on recording: when a GEMM is recorded and at most two pending
 * values besides reshape views are held (e.g. a layer's hidden state and the mask bias). Those
 * are stored by any plan (GEMMs fuse no prologue), so starting early changes no fusion.
 */
const EARLY_FLUSH_NODES = 24;

/** A plan with its values replaced by their index in (external values, node outputs). */
interface CachedPlan {
  kernels: Array<{kernel: Kernel, inputs: number[], output: number, siblings: number[]}>;
}

export class StofBackend extends KernelBackend {
  private disposed = false;
  private readonly values = new Map<DataId, StofValue>();
  /** Values recorded and not yet computed or dropped (one per pending node). */
  private readonly pendingValues = new Set<StofValue>();
  private get pendingCount() { return this.pendingValues.size; }
  private readonly plans = new Map<string, CachedPlan>();
  readonly profiler = new Profiler();
  /** The last plan that ran (for explain()). */
  lastPlan: Kernel[] = [];

  /** Runs fused kernels on the base's storage. */
  readonly executor: Executor;

  /**
   * @param base the base backend instance (shared with the engine's registry when `ownsBase` is false)
   * @param ownsBase whether dispose() must dispose the base too
   */
  constructor(readonly base: KernelBackend, readonly baseName: BaseName, private readonly ownsBase: boolean,
              private readonly adapter?: Record<string, string>) {
    super();
    this.executor = baseName === 'webgpu' ? new WebGPUExecutor(base as WebGPUBase, this.profiler) :
        baseName === 'cuda' ? new CudaPlanExecutor(base as CudaBase) : new CpuExecutor(base);
    if (baseName === 'cuda') {
      (base as CudaBase).onHostRead = (kernel, bytes) =>
          this.profiler.notRecorded(kernel, `no CUDA kernel: ran on tfjs-backend-cpu, ${bytes} bytes copied from the device`);
    }
  }

  // ---- kernels -------------------------------------------------------------------------------

  /** Set while a converted model's forward is captured for replay (src/backend/graph_trace.ts). */
  capture: KernelCapture|null = null;
  /** Kernels in progress: only the outermost call of a capture is a step of the forward. */
  private depth = 0;

  /** Runs a kernel for 'stof': records it when it is intercepted, else runs the base's kernel. */
  runKernel(config: KernelConfig, inputs: NamedTensorInfoMap, attrs: NamedAttrMap = {}): TensorInfo|TensorInfo[] {
    if (this.capture != null && this.depth === 0) {
      return this.capture.kernel(config, inputs, attrs, () => this.runKernelNested(config, inputs, attrs));
    }
    return this.runKernelNested(config, inputs, attrs);
  }

  private runKernelNested(config: KernelConfig, inputs: NamedTensorInfoMap, attrs: NamedAttrMap): TensorInfo|TensorInfo[] {
    this.depth++;
    try {
      return this.runKernelNow(config, inputs, attrs);
    } finally {
      this.depth--;
    }
  }

  private runKernelNow(config: KernelConfig, inputs: NamedTensorInfoMap, attrs: NamedAttrMap): TensorInfo|TensorInfo[] {
    const name = config.kernelName;
    if (name === 'Identity' && env().getBool('STOF_FUSION')) {
      // As every tfjs backend does it: the output is the input's data id, one more reference. A
      // pending value stays pending (where() clones its operands: the chain must stay fusable).
      const x = inputs['x'] as TensorInfo;
      const v = this.values.get(x.dataId);
      if (v != null && v.pending) {
        v.refs++;
        return {dataId: x.dataId, shape: x.shape, dtype: x.dtype};
      }
    }
    if (OPS[name] != null && env().getBool('STOF_FUSION')) {
      const recorded = this.record(name, inputs, attrs);
      if (recorded != null) return recorded;
    }
    return this.runOnBase(config, inputs, attrs);
  }

  private runOnBase(config: KernelConfig, inputs: NamedTensorInfoMap, attrs: NamedAttrMap): TensorInfo|TensorInfo[] {
    // Our data ids become the base's; a Tensor input stays a Tensor for the kernel (some read .rank).
    const ownerOfBaseId = new Map<DataId, DataId>();
    const toBase = (info: TensorInfo|undefined): TensorInfo|undefined => {
      if (info == null) return info;
      const baseId = this.baseIdOf(info.dataId);
      if (baseId === info.dataId) return info;
      ownerOfBaseId.set(baseId, info.dataId);
      return Object.create(info, {dataId: {value: baseId, enumerable: true}}) as TensorInfo;
    };
    const convert = (x: unknown): unknown => (Array.isArray(x) ? x.map(convert) : toBase(x as TensorInfo|undefined));
    // Concat, AddN, Pack take an array of tensors; RaggedGather a named array among named tensors.
    const baseInputs = (Array.isArray(inputs) ? convert(inputs) :
        Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, convert(v)]))) as NamedTensorInfoMap;
    this.profiler.baseKernel(config.kernelName);
    // Integer arithmetic and comparisons of small host inputs with a large broadcast output (GPT-2's
    // causal mask [S, 1] >= [1, S]): on the GPU, where the WebGPU base would forward them to its CPU
    // kernels. The inputs get GPU copies; the originals stay readable on the host.
    const copies: object[] = [];
    if (this.baseName === 'webgpu' && BROADCAST_INT_KERNELS.has(config.kernelName) && !Array.isArray(baseInputs)) {
      const infos = Object.values(baseInputs).filter((t): t is TensorInfo => t != null && !Array.isArray(t));
      if (infos.every(t => (t.dtype === 'int32' || t.dtype === 'bool') && util.sizeFromShape(t.shape) < DEVICE_MIN_ELEMENTS) &&
          outputSizeHint(config.kernelName, baseInputs, attrs, infos) >= DEVICE_MIN_ELEMENTS) {
        const gpu = this.executor as WebGPUExecutor;
        for (const [k, t] of Object.entries(baseInputs)) {
          const info = t as TensorInfo;
          if (info == null || Array.isArray(info)) continue;
          const id = gpu.gpuCopy(info.dataId, copies);
          if (id !== info.dataId) baseInputs[k] = Object.create(info, {dataId: {value: id, enumerable: true}}) as TensorInfo;
        }
      }
    }
    const run = () => config.kernelFunc({inputs: baseInputs, attrs, backend: this.base});
    const out = this.baseName === 'cuda' ? this.runOnCuda(config.kernelName, baseInputs, attrs, run) :
        this.executor.runOnBase != null ? this.executor.runOnBase(run) : run();
    copies.forEach(id => this.base.disposeData(id));
    const adopt = (o: TensorInfo) => this.adopt(o, ownerOfBaseId);
    return Array.isArray(out) ? out.map(adopt) : adopt(out);
  }

  /**
   * A kernel that is not fused, on the CUDA base: its CUDA implementation where it has one and the
   * data is on the device or large; else tfjs-backend-cpu's kernel (small host values, such as
   * shape arithmetic, stay on the host; device values it reads are copied and reported).
   */
  private runOnCuda(name: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap,
                    onCpu: () => TensorInfo|TensorInfo[]): TensorInfo|TensorInfo[] {
    const cuda = this.base as CudaBase;
    const impl = CUDA_KERNELS[name];
    if (impl != null) {
      const infos = Object.values(inputs).flat().filter((t): t is TensorInfo => t != null) as TensorInfo[];
      const onDevice = infos.some(t => cuda.hostValues(t) == null) ||
          infos.reduce((n, t) => n + util.sizeFromShape(t.shape), 0) >= DEVICE_MIN_ELEMENTS ||
          outputSizeHint(name, inputs, attrs, infos) >= DEVICE_MIN_ELEMENTS;
      if (onDevice) {
        const out = impl({inputs, attrs, host: cuda});
        if (out != null) return out;
      }
    }
    cuda.kernelInProgress = name;
    try {
      return onCpu();
    } finally {
      cuda.kernelInProgress = null;
    }
  }

  /** Wraps a base output (one base reference) in a stored value of 'stof'. */
  private adopt(info: TensorInfo, ownerOfBaseId: Map<DataId, DataId>): TensorInfo {
    // A kernel that returns a Tensor (tfjs-backend-cpu's makeOutput) made the engine track it on the
    // base already: it stays the base's tensor, and 'stof' reads it there by its id.
    if (info instanceof Tensor) return info;
    // A kernel that returns its input's data (Identity, Reshape on the base) returns ours, as the
    // base would: one more reference to the same value, not a new value.
    // (Same shape and dtype only: those are part of a value here; tfjs lets them differ per tensor.)
    const owner = ownerOfBaseId.get(info.dataId);
    const ownerValue = owner != null ? this.values.get(owner)! : null;
    if (owner != null && util.arraysEqual(ownerValue!.shape, info.shape) && ownerValue!.dtype === info.dtype) {
      this.base.disposeData(info.dataId);  // the kernel's incRef on the base becomes our refs++
      ownerValue!.refs++;
      return {dataId: owner, shape: info.shape, dtype: info.dtype};
    }
    const v = new StofValue(info.shape, info.dtype);
    v.baseId = info.dataId;
    const storage = this.storageDtype(info.dataId);
    if (storage != null && storage !== info.dtype) v.storage = storage;
    const dataId = {};
    this.values.set(dataId, v);
    return {dataId, shape: info.shape, dtype: info.dtype};
  }

  /** The element type of a base buffer, where the base tracks it apart from the tensor's dtype. */
  private storageDtype(baseId: DataId): DataType|null {
    if (this.baseName === 'cuda') return (this.base as CudaBase).storedDtype(baseId);
    const map = (this.base as unknown as {tensorMap?: {has(id: DataId): boolean, get(id: DataId): {dtype: DataType}}}).tensorMap;
    return map != null && map.has(baseId) ? map.get(baseId).dtype : null;
  }

  /** The base's data id for a tensor of 'stof' (computing it if pending), or the id itself if foreign. */
  private baseIdOf(dataId: DataId): DataId {
    const v = this.values.get(dataId);
    if (v == null) return dataId;  // tracked on the base (e.g. createTensorFromGPUData) or moved by the engine
    if (v.pending) this.flush([v]);
    return v.baseId!;
  }

  private record(name: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap): TensorInfo|null {
    const def = OPS[name];
    if (def.kind === 'matmul' && this.pendingCount >= EARLY_FLUSH_NODES) this.flushEarly();
    const ins: Array<InputInfo|null> = def.inputs.map(n => inputs[n] ?? null);
    const values: StofValue[] = [];
    for (const info of ins) {
      if (info == null) continue;
      const v = this.values.get((info as TensorInfo).dataId);
      if (v == null) return this.decline(name, 'an input lives on another backend');
      if (!util.arraysEqual(v.shape, info.shape)) return this.decline(name, 'an input is a reshaped alias');
      // The GEMM template reads f32 buffers; an int32 buffer relabelled float32 goes to the base.
      if (def.kind === 'matmul' && v.storage != null && v.storage !== 'float32') return this.decline(name, `operand stored as ${v.storage}`);
      if (v.size === 0) return this.decline(name, 'empty tensor');
      values.push(v);
    }
    let inferred;
    try {
      inferred = infer(name, ins, attrs);
    } catch (e) {
      return this.decline(name, `shape inference: ${(e as Error).message}`);  // the base reports the error
    }
    if ('reason' in inferred) return this.decline(name, inferred.reason);
    if (inferred.shape.some(d => d === 0)) return this.decline(name, 'empty tensor');
    const out = new StofValue(inferred.shape, inferred.dtype);
    new LazyNode(name, values, {...attrs}, out, attrs);
    const dataId = {};
    this.values.set(dataId, out);
    this.pendingValues.add(out);
    this.profiler.recorded(name);
    if (this.pendingCount > PENDING_BOUND) this.flushAllPending();
    return {dataId, shape: inferred.shape, dtype: inferred.dtype};
  }

  private decline(name: string, reason: string): null {
    this.profiler.notRecorded(name, reason);
    return null;
  }

  // ---- flush -----------------------------------------------------------------------------------

  /** The device as the cost model sees it (measured once per device at set-up; synthetic where none was measured). */
  deviceProfile: DeviceProfile|null = null;

  private planOptions(): PlanOptions {
    const attention = attentionChoice();
    const storage = this.baseName === 'webgpu' ? (this.base as WebGPUBase).device.limits.maxComputeWorkgroupStorageSize : 48 * 1024;
    // On CUDA one kernel serves both variants; its tiles are fixed (the search is not wired there yet).
    if (this.baseName === 'cuda') return {attention, workgroupStorage: storage, chooseAttention: s => cudaAttentionChoice(s)};
    return {
      attention, workgroupStorage: storage,
      chooseAttention: s => {
        const profile = this.deviceProfile ?? syntheticProfile({maxWorkgroupStorage: storage});
        const sig = attentionSignature(s);
        // Inside tune(): stage 2 may time this group's candidates on the device.
        const run = tuningActive() && this.baseName === 'webgpu' ? (c: Candidate) => this.timeCandidate(sig, c) : undefined;
        return decideAttention(s, profile, run)?.choice ?? null;
      },
    };
  }

  /**
   * Stage 2's runner: the tuned target runs again with `c` forced for `signature`; its time is the
   * mean device time of the launches made under that signature (wall time of the whole run where
   * the device has no timestamp queries).
   */
  private async timeCandidate(signature: string, c: Candidate): Promise<number> {
    return withCandidate(signature, c, async () => {
      this.profiler.start(true);
      const start = performance.now();
      let report: ProfileReport;
      try {
        await rerunTuningTarget();
        await this.executor.collectTimes?.();
      } finally {
        report = this.profiler.stop();
      }
      const wall = performance.now() - start;
      const ms = report.groups.filter(g => g.search === signature && g.ms != null).map(g => g.ms!);
      return ms.length > 0 ? ms.reduce((a, b) => a + b, 0) / ms.length : wall;
    });
  }

  /** Computes and stores `targets` (pending values) with fused kernels. */
  flush(targets: StofValue[]) {
    targets = targets.filter(t => t.pending);
    if (targets.length === 0) return;
    const g = collectSubgraph(targets);
    // Liveness decides what may be inlined, so it is part of the key.
    const options = this.planOptions();
    // The search's choices are part of the plan: a new tuning result or device profile plans anew.
    const key = signature(g, true) + '|' +
        options.attention + '|' + searchGeneration() + '|' + (this.deviceProfile?.key ?? '') + (tuningActive() ? '|tuning' : '');
    const order = [...g.external, ...g.nodes.map(n => n.output)];
    let cached = this.plans.get(key);
    if (cached == null) {
      const plan = planSubgraph(g, options);
      const index = new Map(order.map((v, i) => [v, i]));
      const info = (v: ValueInfo): ValueInfo => ({shape: v.shape, dtype: v.dtype, storage: v.storage});  // not the values: no graph kept alive
      cached = {
        kernels: plan.kernels.map(kernel => ({
          kernel: {...kernel, inputs: kernel.inputs.map(info), output: info(kernel.output),
                   ...(kernel.template === 'gemm' && kernel.group ? {group: {...kernel.group, siblings: kernel.group.siblings.map(info)}} : {})} as Kernel,
          inputs: kernel.inputs.map(v => index.get(v as StofValue)!),
          output: index.get(kernel.output as StofValue)!,
          siblings: kernel.template === 'gemm' && kernel.group ? kernel.group.siblings.map(v => index.get(v as StofValue)!) : [],
        })),
      };
      this.plans.set(key, cached);
      this.profiler.planned();
    }
    // Kernels are the cached ones (their code is compiled once); the values come from this graph.
    this.lastPlan = cached.kernels.map(c => c.kernel);
    for (const c of cached.kernels) this.execute(c.kernel, c.inputs.map(i => order[i]), order[c.output], c.siblings.map(i => order[i]));
  }

  private execute(k: Kernel, inputs: StofValue[], out: StofValue, siblings: StofValue[]) {
    if (k.template === 'alias') {
      this.base.incRef(inputs[0].baseId!);
      out.baseId = inputs[0].baseId;
    } else {
      const group = this.profiler.kernel(k, 1, this.executor.sparse);
      out.baseId = this.executor.run(k, inputs.map(v => v.baseId!), this.profiler.timing ? group : undefined);
      this.profiler.moreDispatches(this.executor.lastDispatches - 1);  // a mask analysis, a split GEMM
    }
    // A grouped GEMM's other outputs are slices of the same buffer (read at their offsets): each holds a reference.
    for (const s of siblings) {
      this.base.incRef(out.baseId!);
      s.baseId = out.baseId;
    }
    this.completed(out);
    siblings.forEach(s => this.completed(s));
  }

  /** `v` is stored: its node is done; what only it needed can go. */
  private completed(v: StofValue) {
    const node = v.node;
    if (node == null) return;
    v.node = null;
    this.pendingValues.delete(v);
    for (const input of node.inputs) {
      input.uses--;
      this.release(input);
    }
    this.release(v);
  }

  /** Frees a value nobody needs any more: not the app, not a pending node. */
  private release(v: StofValue) {
    if (v.refs > 0 || v.uses > 0) return;
    if (v.baseId != null) {
      this.base.disposeData(v.baseId);
      v.baseId = null;
    }
    const node = v.node;
    if (node != null) {
      v.node = null;
      this.pendingValues.delete(v);
      for (const input of node.inputs) {
        input.uses--;
        this.release(input);
      }
    }
  }

  /** Computes every pending value the app still holds. */
  private flushAllPending() {
    this.flush([...this.values.values()].filter(v => v.pending));
  }

  /**
   * Starts the pending work now when what is held and pending comes from at most two computed
   * values (reshape and transpose views followed to their source), none a softmax (an attention
   * chain fuses into its GEMM) and none a GEMM that may get siblings. See EARLY_FLUSH_NODES.
   */
  private flushEarly() {
    const sources = new Set<StofValue>();
    for (const v of this.pendingValues) {
      if (v.refs <= 0) continue;
      let src = v;
      while (src.node != null && (src.node.kernel === 'Reshape' || src.node.kernel === 'Transpose')) src = src.node.inputs[0];
      if (!src.pending) continue;
      if (src.node!.kernel === 'Softmax') return;
      // A held GEMM output may have siblings still to come (Q, then K and V): they group only in one plan.
      // (An attention output, a GEMM of softmax weights, has none.)
      if (OPS[src.node!.kernel].kind === 'matmul' && src.node!.inputs[0].node?.kernel !== 'Softmax') return;
      sources.add(src);
      if (sources.size > 2) return;
    }
    // The sources, not their views: a view stays pending and becomes an alias of the stored source.
    this.flush([...sources]);
  }

  /** Computes the pending ones among these tensors (by data id) in one flush. */
  materialize(dataIds: DataId[]) {
    this.flush(dataIds.map(id => this.values.get(id)).filter((v): v is StofValue => v != null && v.pending));
  }

  /** Computes every pending value the app holds (before a CUDA graph capture: none of the app's work goes into it). */
  materializeAll() {
    this.flushAllPending();
  }

  /** The CUDA buffer of a tensor of 'stof' on the CUDA base (computing it if pending; host values are copied to the device). */
  cudaBuffer(info: TensorInfo): CudaBuffer {
    if (this.baseName !== 'cuda') throw new Error(`tfjs-backend-stof: cudaBuffer() on the ${this.baseName} base`);
    return (this.base as CudaBase).buffer({dataId: this.baseIdOf(info.dataId), shape: info.shape, dtype: info.dtype});
  }

  /** The base's data id of a tensor of 'stof' (computing it if pending), or the id itself if foreign. */
  baseData(dataId: DataId): DataId {
    return this.baseIdOf(dataId);
  }

  /** A new value of 'stof' for a base tensor (its one base reference passes to the value). */
  wrapBase(info: TensorInfo): DataId {
    return this.adopt(info, new Map()).dataId;
  }

  // ---- storage (KernelBackend) -----------------------------------------------------------------

  private stored(dataId: DataId): StofValue|undefined {
    const v = this.values.get(dataId);
    if (v != null && v.pending) this.flush([v]);
    return v;
  }

  override refCount(dataId: DataId): number {
    const v = this.values.get(dataId);
    return v != null ? v.refs : this.base.refCount(dataId);
  }
  override incRef(dataId: DataId): void {
    const v = this.values.get(dataId);
    if (v != null) v.refs++; else this.base.incRef(dataId);
  }
  override disposeData(dataId: DataId, force = false): boolean {
    const v = this.values.get(dataId);
    if (v == null) return this.base.disposeData(dataId, force);
    v.refs = force ? 0 : v.refs - 1;
    if (v.refs > 0) return false;
    this.values.delete(dataId);
    this.release(v);
    return true;
  }
  override write(values: BackendValues, shape: number[], dtype: DataType): DataId {
    const v = new StofValue(shape, dtype);
    v.baseId = this.base.write(values, shape, dtype);
    if (dtype === 'float32' && values != null && (values as Float32Array).length === 1 && shape.length <= 4 &&
        shape.every(d => d === 1)) {
      v.constant = (values as Float32Array)[0];
    }
    const dataId = {};
    this.values.set(dataId, v);
    return dataId;
  }
  override move(dataId: DataId, values: BackendValues, shape: number[], dtype: DataType, refCount: number): void {
    const v = new StofValue(shape, dtype);
    v.baseId = this.base.write(values, shape, dtype);
    v.refs = refCount;
    this.values.set(dataId, v);
  }
  /** Whether `dataId` is a value of 'stof' (not the base's, not disposed). */
  hasValue(dataId: DataId): boolean {
    return this.values.has(dataId);
  }
  /** Whether `dataId` is alive here: a value of 'stof', or data of the base that a kernel's output tensor holds. */
  holds(dataId: DataId): boolean {
    return this.values.has(dataId) || this.base.refCount(dataId) > 0;
  }
  /** A read by the app (not by a kernel) during a capture: the forward may depend on the value. */
  private noteRead(dataId: DataId, how: string) {
    if (this.capture != null && this.depth === 0) this.capture.read(dataId, how);
  }
  override read(dataId: object): Promise<BackendValues> {
    this.noteRead(dataId, 'read');
    const v = this.stored(dataId);
    return this.base.read(v != null ? v.baseId! : dataId);
  }
  override readSync(dataId: object): BackendValues {
    this.noteRead(dataId, 'readSync');
    const v = this.stored(dataId);
    return this.base.readSync(v != null ? v.baseId! : dataId);
  }
  override readToGPU(dataId: object, options?: DataToGPUOptions): GPUData {
    this.noteRead(dataId, 'readToGPU');
    const v = this.stored(dataId);
    return this.base.readToGPU(v != null ? v.baseId! : dataId, options);
  }
  override numDataIds(): number {
    return this.values.size;
  }
  override createTensorFromGPUData(values: WebGLData|WebGPUData, shape: number[], dtype: DataType): Tensor {
    // The tensor is tracked on the base, which holds its data; 'stof' kernels read it from there.
    return this.base.createTensorFromGPUData(values, shape, dtype);
  }
  override memory() {
    return {...this.base.memory(), numPendingValues: this.pendingCount} as ReturnType<KernelBackend['memory']>;
  }
  override timerAvailable(): boolean { return this.base.timerAvailable(); }
  override time(f: () => void): Promise<BackendTimingInfo> {
    // Work recorded inside f runs inside the base's timer: flush what f left pending.
    return this.base.time(() => {
      f();
      this.flushAllPending();
    });
  }
  override floatPrecision(): 16|32 { return this.base.floatPrecision(); }
  override epsilon(): number { return this.base.epsilon(); }

  /** Host <-> device copies so far (CUDA only; null elsewhere: WebGPU shares the base's buffers). */
  deviceCopies(): CudaBase['copies']|null {
    return this.baseName === 'cuda' ? {...(this.base as CudaBase).copies} : null;
  }

  info(): StofBackendInfo {
    const info: StofBackendInfo = {base: this.baseName};
    if (this.adapter != null) info.adapter = {...this.adapter};
    return info;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  override dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.values.clear();
    this.executor.dispose?.();
    if (this.ownsBase) this.base.dispose();
  }
}

