// Capture and replay of one forward of a converted model. The capture watches the kernels 'stof'
// runs while the converter executes the graph once: a kernel with an input that depends on the
// model's inputs (or a random kernel) is a step; every other kernel computes a constant of this
// input signature (weights, their views, shape arithmetic), whose value the trace keeps. A replay
// runs only the steps, through the same runKernel, so recording, fusion and plans are unchanged:
// the converter, tfjs-core's engine and the constant kernels are what it leaves out.
// A forward whose host code reads a value that depends on the inputs (control flow, dynamic
// shapes) is not replayable; the capture says why.
import {DataId, DataType, engine, KernelConfig, NamedAttrMap, NamedTensorInfoMap, Tensor, TensorInfo, util} from '@tensorflow/tfjs-core';

import {CudaForwardGraph, graphsOff} from './cuda_graph';
import type {StofBackend} from './stof_backend';
import {webgpuGraphsOff, WebGPUForwardGraph} from './webgpu_graph';

/** What StofBackend reports while a capture is on (outermost kernels and the app's reads only). */
export interface KernelCapture {
  kernel(config: KernelConfig, inputs: NamedTensorInfoMap, attrs: NamedAttrMap, run: () => TensorInfo|TensorInfo[]): TensorInfo|TensorInfo[];
  read(dataId: DataId, how: string): void;
}

/** Kernels whose output is not a function of their inputs: always steps, never constants. */
const RANDOM = /^(Random|StatelessRandom|Multinomial)/;

/** One input of a step: a slot of the trace, seen with this shape and dtype (a tensor may view a value differently). */
interface Ref {slot: number; shape: number[]; dtype: DataType; tensor: boolean}
type Arg = Ref|null|Array<Ref|null>;

interface Step {
  config: KernelConfig;
  attrs: NamedAttrMap;
  /** Named inputs, or the array some kernels take (Concat, Pack, AddN). */
  inputs: Array<[string, Arg]>|Array<Ref|null>;
  named: boolean;
  outputs: Array<{shape: number[], dtype: DataType}>;
  single: boolean;
  /** Slot of the first output; the others follow. */
  first: number;
  /** Slots whose last use is this step (their reference is dropped after it). */
  release: number[];
  /** The kernel's inputs as one object made at capture, and its tensors with their slot: a replay sets their data ids. */
  args?: NamedTensorInfoMap;
  holders?: Array<[{dataId: DataId}, number]>;
}

/** The step's inputs as the kernel takes them, with tensors (or tensor infos, as captured) whose data id a replay sets. */
function argsOf(s: Step) {
  const holders: Array<[{dataId: DataId}, number]> = [];
  const hold = (r: Ref|null) => {
    if (r == null) return null;
    const t = r.tensor ? new Tensor(r.shape, r.dtype, {}, -1) : {dataId: {}, shape: r.shape, dtype: r.dtype};
    holders.push([t, r.slot]);
    return t;
  };
  s.args = s.named ? Object.fromEntries((s.inputs as Array<[string, Arg]>).map(([k, a]) => [k, Array.isArray(a) ? a.map(hold) : hold(a)])) as
                     NamedTensorInfoMap :
                     (s.inputs as Array<Ref|null>).map(hold) as unknown as NamedTensorInfoMap;
  s.holders = holders;
}

type SlotKind = 'input'|'constant'|'owned';

export class TraceMismatch extends Error {}

/**
 * Drops one reference to each constant, on the backend that holds it now (the engine moves data with
 * its reference count); the engine forgets data whose last reference this was.
 */
function dropConstants(backend: StofBackend, constants: Array<DataId|undefined>) {
  const tracked = engine().state.tensorInfo;
  for (const c of constants) {
    if (c == null) continue;
    const owner = tracked.get(c)?.backend ?? backend;
    if (owner === backend && !backend.holds(c)) continue;
    if (owner.disposeData(c)) engine().removeDataId(c, owner);
  }
  constants.fill(undefined);
}

/** A replayable forward for one input signature. */
export class GraphTrace {
  constructor(private readonly backend: StofBackend, private readonly steps: Step[],
              /** Slot -> retained data id of each constant (undefined elsewhere). */
              private readonly constants: Array<DataId|undefined>,
              private readonly outputs: Array<{slot: number, shape: number[], dtype: DataType}>) {}

  /**
   * The graph of this trace's forwards: a CUDA graph (CUDA base) or a recorded command list
   * (WebGPU base), captured at the second replay, launched from the third.
   */
  private graph: CudaForwardGraph|WebGPUForwardGraph|null = null;
  private graphDeclined: string|null = null;
  private replays = 0;

  get stepCount() { return this.steps.length; }
  get constantCount() { return this.constants.filter(c => c != null).length; }

  /** Whether every constant is still held by the backend (the engine may have moved one to another backend). */
  valid(): boolean {
    return this.constants.every(c => c == null || this.backend.holds(c));
  }

  /** Runs the steps on `inputs` (in the capture's order); the outputs are new tensors of the engine. */
  replay(inputs: Tensor[]): Tensor[] {
    this.replays++;
    const webgpu = this.backend.baseName === 'webgpu';
    const off = webgpu ? webgpuGraphsOff(this.backend) : graphsOff(this.backend);
    if (this.graph != null && off == null) {
      const out = this.graph.run(inputs);
      if (out != null) {
        this.backend.profiler.graphLaunched(this.graph.launches, webgpu ? 'WebGPU' : 'CUDA');
        return out;
      }
    }
    // Captured at the second replay (plans made and kernels compiled by then), once per trace.
    if (this.graph == null && this.graphDeclined == null && this.replays >= 2 && off == null) {
      const steps = (ids: DataId[]) => this.runSteps(ids);
      const r = webgpu ? WebGPUForwardGraph.capture(this.backend, inputs, steps, this.outputs) :
                         CudaForwardGraph.capture(this.backend, inputs, steps, this.outputs);
      this.graph = r.graph;
      if (r.declined != null) {
        this.graphDeclined = r.declined;
        this.backend.profiler.graphDeclined(r.declined);
      }
      if (r.out != null) return r.out;
    }
    return this.runSteps(inputs.map(t => t.dataId)).map((dataId, i) =>
        engine().makeTensorFromTensorInfo({dataId, shape: this.outputs[i].shape, dtype: this.outputs[i].dtype}, this.backend));
  }

  /** Runs the steps on these input ids; returns the output ids, with one reference each for the caller. */
  private runSteps(inputIds: DataId[]): DataId[] {
    const ids: Array<DataId|undefined> = this.constants.slice();
    inputIds.forEach((id, i) => ids[i] = id);
    const held = new Set<number>();
    try {
      for (const s of this.steps) {
        if (s.args == null) argsOf(s);
        for (const [t, slot] of s.holders!) t.dataId = ids[slot]!;
        const out = this.backend.runKernel(s.config, s.args!, s.attrs);
        const outs = Array.isArray(out) ? out : [out];
        let mismatch = outs.length !== s.outputs.length;
        for (let j = 0; j < outs.length; j++) {
          const o = outs[j];
          ids[s.first + j] = o.dataId;
          held.add(s.first + j);
          mismatch ||= o instanceof Tensor || o.dtype !== s.outputs[j].dtype || !util.arraysEqual(o.shape, s.outputs[j].shape);
        }
        if (mismatch) {
          throw new TraceMismatch(`${s.config.kernelName} gave ${outs.map(o => `[${o.shape}] ${o.dtype}`).join(', ')} on replay, ` +
                                  `${s.outputs.map(o => `[${o.shape}] ${o.dtype}`).join(', ')} when captured`);
        }
        for (const slot of s.release) {
          held.delete(slot);
          this.backend.disposeData(ids[slot]!);
        }
      }
    } catch (e) {
      for (const slot of held) this.backend.disposeData(ids[slot]!);
      throw e;
    }
    // Each owned slot gives its reference to its first output; any other use is a new reference.
    return this.outputs.map(o => {
      const dataId = ids[o.slot]!;
      if (held.has(o.slot)) held.delete(o.slot); else this.backend.incRef(dataId);
      return dataId;
    });
  }

  /** Drops the trace's references to its constants (and its CUDA graph). */
  dispose() {
    this.graph?.dispose();
    this.graph = null;
    dropConstants(this.backend, this.constants);
  }
}

/** Watches one forward; `finish` makes the trace, or says why the forward is not replayable. */
export class GraphCapture implements KernelCapture {
  private readonly slotOf = new Map<DataId, number>();
  private readonly constantSlot = new Map<DataId, number>();
  private readonly kinds: SlotKind[] = [];
  private readonly constants: Array<DataId|undefined> = [];
  private readonly steps: Step[] = [];
  /** Why the forward cannot be replayed (the first reason found). */
  reason: string|null = null;

  constructor(private readonly backend: StofBackend, inputs: Tensor[]) {
    inputs.forEach((t, i) => {
      this.slotOf.set(t.dataId, i);
      this.kinds.push('input');
      this.constants.push(undefined);
    });
  }

  private newSlot(kind: SlotKind): number {
    this.kinds.push(kind);
    this.constants.push(undefined);
    return this.kinds.length - 1;
  }

  private constant(dataId: DataId): number {
    let slot = this.constantSlot.get(dataId);
    if (slot == null) {
      slot = this.newSlot('constant');
      this.constantSlot.set(dataId, slot);
      this.backend.incRef(dataId);
      this.constants[slot] = dataId;
    }
    return slot;
  }

  private ref(info: TensorInfo|undefined|null): Ref|null {
    if (info == null) return null;
    const slot = this.slotOf.get(info.dataId) ?? this.constant(info.dataId);
    return {slot, shape: info.shape.slice(), dtype: info.dtype, tensor: info instanceof Tensor};
  }

  kernel(config: KernelConfig, inputs: NamedTensorInfoMap, attrs: NamedAttrMap, run: () => TensorInfo|TensorInfo[]): TensorInfo|TensorInfo[] {
    const all = (Array.isArray(inputs) ? inputs : Object.values(inputs)).flat() as Array<TensorInfo|undefined>;
    const dependent = RANDOM.test(config.kernelName) || all.some(t => t != null && this.slotOf.has(t.dataId));
    if (!dependent) return run();  // a constant of this signature: its outputs are not slots
    const named = !Array.isArray(inputs);
    const stepInputs = named ?
        Object.entries(inputs).map(([k, v]) => [k, Array.isArray(v) ? v.map(t => this.ref(t)) : this.ref(v)] as [string, Arg]) :
        (inputs as unknown as Array<TensorInfo|null>).map(t => this.ref(t));
    const out = run();
    const outs = Array.isArray(out) ? out : [out];
    // A kernel that returns a tensor the engine already tracks (tfjs-backend-cpu's makeOutput) cannot be replayed without the engine.
    if (outs.some(o => o instanceof Tensor)) this.decline(`${config.kernelName} returns a tensor of the engine`);
    const first = this.kinds.length;
    for (const o of outs) this.slotOf.set(o.dataId, this.newSlot('owned'));
    this.steps.push({config, attrs, inputs: stepInputs, named, single: !Array.isArray(out), first, release: [],
                     outputs: outs.map(o => ({shape: o.shape.slice(), dtype: o.dtype}))});
    return out;
  }

  read(dataId: DataId, how: string) {
    if (this.slotOf.has(dataId)) this.decline(`the forward reads a value that depends on its inputs (${how})`);
  }

  decline(reason: string) {
    this.reason ??= reason;
  }

  /** The trace for these outputs, or null (then `reason` says why and nothing is retained). */
  finish(outputs: Tensor[]): GraphTrace|null {
    if (this.reason == null && this.steps.length === 0) this.decline('no kernel depends on the inputs');
    const outs = this.reason != null ? [] : outputs.map(t => ({slot: this.slotOf.get(t.dataId) ?? this.constant(t.dataId),
                                                                shape: t.shape.slice(), dtype: t.dtype}));
    if (this.reason != null) {
      this.release();
      return null;
    }
    // Last use of each owned slot; returned slots are handed to the outputs instead.
    const last = new Map<number, number>();
    this.steps.forEach((s, k) => {
      for (let j = 0; j < s.outputs.length; j++) last.set(s.first + j, k);
      const visit = (r: Ref|null) => { if (r != null && this.kinds[r.slot] === 'owned') last.set(r.slot, k); };
      for (const a of s.named ? (s.inputs as Array<[string, Arg]>).map(e => e[1]) : s.inputs as Array<Ref|null>) {
        if (Array.isArray(a)) a.forEach(visit); else visit(a);
      }
    });
    const returned = new Set(outs.map(o => o.slot));
    for (const [slot, k] of last) if (!returned.has(slot)) this.steps[k].release.push(slot);
    this.slotOf.clear();
    this.constantSlot.clear();
    return new GraphTrace(this.backend, this.steps, this.constants, outs);
  }

  /** Drops what the capture retained (a forward that is not replayable, or one that failed). */
  release() {
    dropConstants(this.backend, this.constants);
    this.slotOf.clear();
    this.constantSlot.clear();
  }
}
