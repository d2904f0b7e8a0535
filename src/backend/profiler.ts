// Counts what 'stof' did while a profile() is open: fused kernels by template, base kernels that
// ran unfused, and intercepted kernels that could not be recorded (with why). Never silent: a
// kernel that falls back to the base is listed in `fallbacks`.
import {Kernel, storedShape} from '../fusion/planner';
import {attentionSignature} from '../search/attention_choice';

export interface GroupReport {
  template: string;
  ops: string[];
  /** Device time of the dispatch, where the device has timestamp queries and profiling asked for it. */
  ms?: number;
  /** The buffer the launch stores (a grouped GEMM stores its groups one after the other). */
  output?: {shape: number[], dtype: string};
  /** Attention: the kernel ('blockwise' or 'rowwise') and whether it visits only the mask's non-empty tiles. */
  variant?: 'dense'|'blockwise'|'rowwise'|'rowwise-dense';
  /** Attention: rows per workgroup, keys per tile, invocations per workgroup. */
  tiles?: {Br: number, Bc: number, threads: number};
  /** Attention: the search signature its choice was made under. */
  search?: string;
}

export interface ProfileReport {
  /** Launches: one per fused kernel (a GPU dispatch, or a CPU pass for tiny CPU-resident data) plus the programs of base kernels. */
  dispatches: number;
  groups: GroupReport[];
  /** Intercepted kernels that ran unfused on the base, with the reason. */
  fallbacks: Array<{kernel: string, reason: string}>;
  /** Kernels of the base that ran (not intercepted ones), by name. */
  baseKernels: Record<string, number>;
  /** Kernels recorded lazily. */
  recorded: number;
  /** Plans made (a cache miss); 0 when every flush reused a cached plan. */
  plansMade: number;
  /**
   * Forwards of converted models (GraphModel.execute/executeAsync): captured for replay, replayed
   * (the converter and constant kernels skipped), and run as usual with the reason.
   */
  replay: {captured: number, replayed: number, notReplayed: Array<{reason: string}>,
           /** Replayed forwards launched as one CUDA graph; and why a trace's forwards cannot be one (once per trace). */
           graphs: number, graphDeclined: Array<{reason: string}>};
  /** CUDA only: copies between host and device memory (uploads of host tensors, downloads for reads and CPU kernels). */
  copies?: {toDevice: number, toDeviceBytes: number, toHost: number, toHostBytes: number};
}

export class Profiler {
  private report: ProfileReport|null = null;
  /** Dispatches of base programs, counted by the executor's hook on the base. */
  baseDispatch = () => { if (this.report) this.report.dispatches++; };

  /** Whether fused dispatches are timed on the device (profile's `timing` option). */
  timing = false;

  start(timing = false) {
    this.timing = timing;
    this.report = {dispatches: 0, groups: [], fallbacks: [], baseKernels: {}, recorded: 0, plansMade: 0,
                   replay: {captured: 0, replayed: 0, notReplayed: [], graphs: 0, graphDeclined: []}};
  }
  stop(): ProfileReport {
    const r = this.report!;
    this.report = null;
    this.timing = false;
    return r;
  }
  get active() { return this.report != null; }

  recorded(_name: string) { if (this.report) this.report.recorded++; }
  planned() { if (this.report) this.report.plansMade++; }
  captured() { if (this.report) this.report.replay.captured++; }
  replayed() { if (this.report) this.report.replay.replayed++; }
  notReplayed(reason: string) { this.report?.replay.notReplayed.push({reason}); }
  /** A forward ran as one CUDA graph of `launches` kernels, or as a recorded WebGPU command list of `launches` dispatches. */
  graphLaunched(launches: number, kind: 'CUDA'|'WebGPU' = 'CUDA') {
    if (!this.report) return;
    this.report.replay.graphs++;
    const what = kind === 'CUDA' ? `CUDA graph of a replayed forward (${launches} kernels)` :
                                   `recorded WebGPU commands of a replayed forward (${launches} dispatches)`;
    this.group({template: 'graph', ops: [what]}, launches);
  }
  graphDeclined(reason: string) { this.report?.replay.graphDeclined.push({reason}); }
  notRecorded(name: string, reason: string) { this.report?.fallbacks.push({kernel: name, reason}); }
  baseKernel(name: string) {
    if (this.report) this.report.baseKernels[name] = (this.report.baseKernels[name] ?? 0) + 1;
  }
  /** Launches a fused kernel made beyond its one (counted after it ran). */
  moreDispatches(n: number) {
    if (this.report && n > 0) this.report.dispatches += n;
  }
  /** The launch that makes a mask's tile format (once per mask tensor). */
  maskAnalysis(words: number): GroupReport|undefined {
    return this.group({template: 'mask', ops: ['mask tile format'], output: {shape: [words], dtype: 'uint32'}}, 1);
  }

  kernel(k: Kernel, dispatches = 1, sparse = true): GroupReport|undefined {
    if (!this.report) return undefined;
    const g: GroupReport = {template: k.template, ops: k.ops, output: {shape: storedShape(k), dtype: k.output.dtype}};
    if (k.template === 'attention') {
      const skips = k.mask != null && sparse;
      g.variant = k.variant === 'rowwise' ? (skips ? 'rowwise' : 'rowwise-dense') : skips ? 'blockwise' : 'dense';
      g.tiles = {Br: k.Br, Bc: k.Bc, threads: k.threads};
      g.search = attentionSignature(k.shape);
    }
    return this.group(g, dispatches);
  }

  private group(g: GroupReport, dispatches: number): GroupReport|undefined {
    if (!this.report) return undefined;
    this.report.groups.push(g);
    this.report.dispatches += dispatches;
    return g;
  }
}
