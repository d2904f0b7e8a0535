// Runs planned kernels on a CUDA device: the generated CUDA C (templates_cuda.ts) compiled with
// NVRTC (cached per source and architecture, in memory and on disk), or cuBLASLt for GEMMs that it
// computes as planned; buffers from a pooling allocator; every launch and copy on one stream, so
// they run in order without host synchronization; CUDA events time kernels when asked.
//
// The interface follows the WebGPU executor where it can: run(kernel, inputs by slot) returns the
// output buffer; alias kernels share storage and a grouped GEMM's siblings share its buffer
// (runPlan binds both). Importable anywhere: CudaExecutor.create() reports why not where CUDA is absent.
import {sizeOf} from '../../fusion/access';
import {AttentionKernel, GemmKernel, Kernel, Plan, storedShape, ValueInfo} from '../../fusion/planner';

import {DeviceAllocator} from './allocator';
import {ENTRY, intBuffer} from './cuda_common';
import {CudaDevice, DevicePtr} from './cuda_device';
import {cudaLibs, CudaLibs} from './cuda_libs';
import {LtGemm} from './cublaslt';
import {SplitStep, splitGemm} from './gemm_split';
import {CubinCache, defaultCacheDir} from './nvrtc';
import {PinnedReads} from './pinned_reads';
import {analysisScratch, AttentionPrecision, cudaFormatWords, CudaSource, cudaSourceOf, CudaTemplateOptions, GemmPrecision, maskAnalysisCuda} from './templates_cuda';

/** A device buffer; shared (alias, grouped GEMM siblings, the app) by reference count. */
export interface CudaBuffer {
  readonly ptr: DevicePtr;
  readonly shape: number[];
  readonly dtype: string;
  /** Bytes of the stored elements (4 per element: bool and int32 are stored as int32, as on WebGPU). */
  readonly bytes: number;
  refs: number;
}

export interface CudaExecutorOptions {
  /** Device ordinal (default 0). */
  device?: number;
  /** Where compiled kernels are kept between processes; null: memory only. Default: defaultCacheDir(). */
  cacheDir?: string|null;
  /** GEMM arithmetic: 'fp32' (default, exact) or 'tf32' (tensor cores, ~1e-3 relative). */
  gemm?: GemmPrecision;
  /**
   * Attention arithmetic: 'fp32' (default, exact) or 'fp16' (tensor cores: fp16 inputs, fp32
   * accumulation and softmax, ~1e-3 relative; shapes the tensor-core kernel does not take run fp32).
   */
  attention?: AttentionPrecision;
  /** Keys per K/V chunk of the fp16 attention kernel (16, 32, 64; default: by its registers). For tuning. */
  attentionKeys?: number;
  /** Query rows per CTA of the dense fp16 attention kernel (16, 32, 64, 128; default 128 for head dims up to 64, else 64). For tuning. */
  attentionRows?: number;
  /** fp16 attention: pack Q/K/V to fp16 first and stream K/V with cp.async (true), or convert per CTA (false); default by shape. */
  attentionStaged?: boolean;
  /** 16-row tiles per warp of the fp16 attention kernel (1 or 2: each K/V fragment feeds two MMAs; default 2 for the staged dense kernel, else 1). For tuning. */
  attentionMtiles?: number;
  /** CTAs per SM the fp16 attention kernel is compiled to fit (__launch_bounds__; 0: none; default by shape). For tuning. */
  attentionMinBlocks?: number;
  /** Run GEMMs that cuBLASLt computes as planned (plain, + bias, + ReLU) through cuBLASLt (default true where it loads). */
  cublasLt?: boolean;
  /** Most bytes of page-locked host memory that reads land in (pinned_reads.ts; 0: reads into pageable memory). Default 512 MiB. */
  pinnedReadBytes?: number;
}

/** Per-kernel time of a profiled run, filled by collectTimes(). */
export interface Timed {
  ms?: number;
}

interface Loaded {
  source: CudaSource;
  fn: bigint;
}

const isIntType = (dtype: string) => dtype === 'bool' || dtype === 'int32';

export class CudaExecutor {
  readonly device: CudaDevice;
  private readonly pool: DeviceAllocator;
  private readonly pinned: PinnedReads|null;
  private readonly cubins: CubinCache;
  private readonly modules = new Map<string, Loaded>();
  private readonly byKernel = new WeakMap<Kernel, Loaded>();
  private readonly modulesLoaded: bigint[] = [];
  private lt: LtGemm|null;
  private readonly gemm: GemmPrecision;
  private readonly templateOptions: CudaTemplateOptions;
  private timings: Array<{start: bigint, end: bigint, timed: Timed}> = [];
  private readonly spareEvents: bigint[] = [];
  /** Launches of the last run() (an attention kernel with an uncached mask: two). */
  lastDispatches = 1;
  readonly sparse = true;

  /** The executor, or why there is none on this machine (one sentence). */
  static create(options: CudaExecutorOptions = {}): CudaExecutor|{available: false, reason: string} {
    const libs = cudaLibs();
    if (!libs.available) return {available: false, reason: libs.reason!};
    try {
      return new CudaExecutor(libs, options);
    } catch (e) {
      return {available: false, reason: `CUDA device initialisation failed: ${(e as Error).message}`};
    }
  }

  constructor(libs: CudaLibs, options: CudaExecutorOptions = {}) {
    if (!libs.available) throw new Error(`CudaExecutor: ${libs.reason}`);
    this.device = new CudaDevice(libs.driver!, options.device ?? 0);
    this.pool = new DeviceAllocator(this.device);
    this.pinned = PinnedReads.create(this.device, options.pinnedReadBytes ?? 512 << 20);
    const version = [0], minor = [0];
    libs.nvrtc!['nvrtcVersion'](version, minor);
    const cacheDir = options.cacheDir === undefined ? defaultCacheDir() : options.cacheDir;
    this.cubins = new CubinCache(libs.nvrtc!, cacheDir, `nvrtc${version[0]}.${minor[0]}`);
    this.gemm = options.gemm ?? 'fp32';
    this.templateOptions = {gemm: this.gemm, attention: options.attention ?? 'fp32', attentionKeys: options.attentionKeys,
                            attentionRows: options.attentionRows, attentionMinBlocks: options.attentionMinBlocks,
                            attentionStaged: options.attentionStaged, attentionMtiles: options.attentionMtiles};
    this.lt = null;
    if ((options.cublasLt ?? true) && libs.cublasLt) {
      try {
        this.lt = new LtGemm(libs.cublasLt, this.device);
      } catch (e) {  // the generated GEMM serves every case: say why cuBLASLt is not used, go on
        console.warn(`tfjs-backend-stof: cuBLASLt not used: ${(e as Error).message}`);
      }
    }
  }

  // ---- buffers ----------------------------------------------------------------------------------

  alloc(shape: number[], dtype: string): CudaBuffer {
    const bytes = 4 * sizeOf(shape);
    return {ptr: this.pool.alloc(bytes).ptr, shape, dtype, bytes, refs: 1};
  }

  upload(values: ArrayLike<number>, shape: number[], dtype: string): CudaBuffer {
    if (values.length !== sizeOf(shape)) throw new Error(`CudaExecutor.upload: ${values.length} values for shape [${shape}]`);
    const buf = this.alloc(shape, dtype);
    const host = isIntType(dtype) ? (values instanceof Int32Array ? values : Int32Array.from(values)) :
                                    (values instanceof Float32Array ? values : Float32Array.from(values));
    this.device.upload(buf.ptr, host);
    return buf;
  }

  /** The buffer's values (waits for the queued work); bool and int32 come back as Int32Array. */
  read(buf: CudaBuffer, elements = sizeOf(buf.shape)): Float32Array|Int32Array {
    const int = isIntType(buf.dtype);
    const out = this.pinned?.take(int, elements) ?? (int ? new Int32Array(elements) : new Float32Array(elements));
    this.device.download(out, buf.ptr);
    return out;
  }

  /**
   * Resolves once the work queued so far has finished, without blocking the thread: an event is
   * recorded and polled between turns of the event loop (so `await tensor.data()` lets the app run
   * while the GPU computes; the copy after it does not wait).
   */
  async idle(): Promise<void> {
    this.device.makeCurrent();
    const e = this.event();
    this.device.record(e);
    for (let polls = 0; !this.device.done(e); polls++) {
      await new Promise(resolve => (polls < 64 ? setImmediate(resolve) : setTimeout(resolve, 1)));
    }
    this.spareEvents.push(e);
  }

  retain(buf: CudaBuffer): CudaBuffer {
    buf.refs++;
    return buf;
  }

  release(buf: CudaBuffer) {
    if (buf.refs <= 0) throw new Error(`CudaExecutor.release: buffer [${buf.shape}] released more often than retained`);
    if (--buf.refs > 0) return;
    this.pool.release(buf.ptr);
    // The formats made from a released mask go with it (its memory may hold another tensor next).
    if (this.formatInputs.delete(buf)) {
      for (const [key, e] of this.tileFormats) if (e.inputs.includes(buf)) this.dropFormat(key);
    }
  }

  // ---- compilation ------------------------------------------------------------------------------

  private load(source: CudaSource): Loaded {
    const hit = this.modules.get(source.code);
    if (hit) return hit;
    const arch = this.device.arch;
    let module: bigint;
    try {
      module = this.device.loadModule(this.cubins.get(source.code, arch));
    } catch {
      this.cubins.forget(source.code, arch);  // a stale or corrupt cache file: compile again
      module = this.device.loadModule(this.cubins.get(source.code, arch));
    }
    this.modulesLoaded.push(module);
    const loaded = {source, fn: this.device.getFunction(module, ENTRY)};
    this.modules.set(source.code, loaded);
    return loaded;
  }

  private compiled(k: Kernel): Loaded {
    let c = this.byKernel.get(k);
    if (c == null) this.byKernel.set(k, c = this.load(cudaSourceOf(k, this.templateOptions)));
    return c;
  }

  /**
   * Compiles and loads what run(k) launches (its kernel, and a block-sparse attention kernel's mask
   * analysis) without running it: warms the caches before timing, or fills the disk cache from
   * several processes at once. A GEMM on cuBLASLt needs only its copy and epilogue kernels.
   */
  prepare(k: Kernel) {
    if (k.template === 'alias') return;
    this.device.makeCurrent();
    const steps = this.lt && k.template === 'gemm' ? this.splitSteps(k) : null;
    if (steps != null) {
      for (const s of steps) [...s.packs.map(p => p.kernel), ...(s.epilogue ? [s.epilogue] : [])].forEach(x => this.compiled(x));
      return;
    }
    this.compiled(k).source.staged?.forEach(p => this.load(p.source));
    if (k.template === 'attention' && k.mask) this.load(maskAnalysisCuda(k));
  }

  /** CUDA C of a kernel (explain() and tests). */
  source(k: Kernel): string {
    return cudaSourceOf(k, this.templateOptions).code;
  }

  // ---- launches ---------------------------------------------------------------------------------

  private event(): bigint {
    return this.spareEvents.pop() ?? this.device.createEvent();
  }

  private launch(loaded: Loaded, params: Array<bigint|number>, timed?: Timed) {
    const {grid, block} = loaded.source;
    this.timedLaunch(() => this.device.launch(loaded.fn, grid, block, params), timed);
  }

  private timedLaunch(f: () => void, timed?: Timed) {
    if (timed == null) { f(); return; }
    const start = this.event(), end = this.event();
    this.device.record(start);
    f();
    this.device.record(end);
    this.timings.push({start, end, timed});
  }

  /** Runs `k` on the buffers of its input slots; returns its output buffer (refs = 1). */
  run(k: Kernel, inputs: CudaBuffer[], timed?: Timed): CudaBuffer {
    if (k.template === 'alias') return this.retain(inputs[0]);
    if (inputs.length !== k.inputs.length) throw new Error(`CudaExecutor.run: ${k.template} kernel reads ${k.inputs.length} inputs, got ${inputs.length}`);
    k.inputs.forEach((v, i) => {
      if (inputs[i].bytes < 4 * sizeOf(v.shape)) throw new Error(`CudaExecutor.run: input ${i} holds [${inputs[i].shape}], the kernel reads [${v.shape}]`);
      if (intBuffer(v) !== isIntType(inputs[i].dtype)) throw new Error(`CudaExecutor.run: input ${i} is ${inputs[i].dtype}, the kernel reads ${v.storage ?? v.dtype}`);
    });
    this.device.makeCurrent();
    this.lastDispatches = 1;
    const out = this.alloc(storedShape(k), k.output.dtype);
    // A GEMM cuBLASLt takes (whole, or around it: gemm_split.ts), in steps made once per kernel.
    const steps = this.lt && k.template === 'gemm' ? this.splitSteps(k) : null;
    if (steps != null) {
      this.timedLaunch(() => this.runSplit(steps, inputs, out), timed);
      this.lastDispatches = steps.reduce((n, s) => n + 1 + s.packs.length + (s.epilogue ? 1 : 0), 0);
      return out;
    }
    const loaded = this.compiled(k);
    const {staged = [], bindings, grid, block} = loaded.source;
    const tiles = k.template === 'attention' && k.mask ? [this.tileFormat(k, inputs).ptr] : [];
    // Staged kernels (the fp16 attention's packed Q/K/V) run first, into scratch the main kernel
    // reads; the scratch goes back to the pool once its reader is queued (one stream). Timed together.
    this.timedLaunch(() => {
      const scratch = staged.map(p => {
        const b = this.alloc([p.words], 'float32');
        this.device.launch(this.load(p.source).fn, p.source.grid, p.source.block, [b.ptr, ...p.source.bindings.map(slot => inputs[slot].ptr)]);
        return b;
      });
      this.device.launch(loaded.fn, grid, block, [out.ptr, ...scratch.map(b => b.ptr), ...bindings.map(slot => inputs[slot].ptr), ...tiles]);
      scratch.forEach(b => this.release(b));
    }, timed);
    this.lastDispatches += staged.length;
    return out;
  }

  private readonly splits = new WeakMap<Kernel, SplitStep[]|null>();

  /** How cuBLASLt computes a planned GEMM that it cannot take whole (gemm_split.ts); null: the generated GEMM. */
  private splitSteps(k: GemmKernel): SplitStep[]|null {
    if (!this.splits.has(k)) this.splits.set(k, splitGemm(k));
    return this.splits.get(k)!;
  }

  private runSplit(steps: SplitStep[], inputs: CudaBuffer[], out: CudaBuffer) {
    // Scratch goes back to the pool as soon as its last reader is queued: the one stream runs that
    // reader before any later user of the memory.
    const launchInto = (kernel: Kernel, dst: bigint, bufs: CudaBuffer[]) => {
      const loaded = this.compiled(kernel);
      this.device.launch(loaded.fn, loaded.source.grid, loaded.source.block, [dst, ...loaded.source.bindings.map(slot => bufs[slot].ptr)]);
    };
    for (const s of steps) {
      const bufs = [...inputs];
      const scratch: CudaBuffer[] = [];
      for (const p of s.packs) {
        const b = this.alloc(p.kernel.output.shape, 'float32');
        launchInto(p.kernel, b.ptr, bufs);
        bufs[p.slot] = b;
        scratch.push(b);
      }
      const dst = out.ptr + BigInt(4 * s.outOffset);
      const bias = s.lt.biasSlot != null ? bufs[s.lt.biasSlot].ptr : null;
      if (s.epilogue == null) {
        this.lt!.run(s.lt, bufs[s.aSlot].ptr, bufs[s.bSlot].ptr, dst, bias, this.gemm === 'tf32');
      } else {
        const product = this.alloc(s.epilogue.inputs[s.scratchSlot].shape, 'float32');
        this.lt!.run(s.lt, bufs[s.aSlot].ptr, bufs[s.bSlot].ptr, product.ptr, bias, this.gemm === 'tf32');
        bufs[s.scratchSlot] = product;
        scratch.push(product);
        launchInto(s.epilogue, dst, bufs);
      }
      scratch.forEach(b => this.release(b));
    }
  }

  /**
   * Launches a generated source that is no planned kernel (movement_cuda.ts) on explicit buffers:
   * parameters are `out`, the inputs in the source's binding order, then 32-bit int scalars.
   * Compiled once per source, as run() does.
   */
  launchSource(source: CudaSource, out: CudaBuffer, inputs: CudaBuffer[], scalars: number[] = [], timed?: Timed) {
    this.device.makeCurrent();
    const loaded = this.load(source);
    const params: Array<bigint|number> = [out.ptr, ...source.bindings.map(slot => inputs[slot].ptr), ...scalars];
    this.timedLaunch(() => this.device.launch(loaded.fn, source.grid, source.block, params), timed);
  }

  /**
   * Runs a plan: `values` holds a buffer for every stored value the plan reads; each kernel's output
   * (and a grouped GEMM's siblings, an alias's output) is added to it. The caller releases them.
   */
  runPlan(plan: Plan, values: Map<ValueInfo, CudaBuffer>, timed?: (k: Kernel) => Timed|undefined): Map<ValueInfo, CudaBuffer> {
    for (const k of plan.kernels) {
      const inputs = k.inputs.map(v => {
        const b = values.get(v);
        if (b == null) throw new Error(`CudaExecutor.runPlan: no buffer for an input [${v.shape}] ${v.dtype} of a ${k.template} kernel`);
        return b;
      });
      const out = this.run(k, inputs, timed?.(k));
      values.set(k.output, out);
      if (k.template === 'gemm' && k.group) for (const s of k.group.siblings) values.set(s, this.retain(out));
    }
    return values;
  }

  /** Fills the `ms` of the kernels timed since the last call (waits for them). */
  collectTimes() {
    for (const t of this.timings) {
      t.timed.ms = (t.timed.ms ?? 0) + this.device.elapsed(t.start, t.end);
      this.spareEvents.push(t.start, t.end);
    }
    this.timings = [];
  }

  synchronize() {
    this.device.synchronize();
  }

  // ---- the mask's tile format, made once per mask ------------------------------------------------

  private readonly tileFormats = new Map<string, {buffer: CudaBuffer, inputs: CudaBuffer[]}>();
  /** Buffers some format was made from. */
  private readonly formatInputs = new Set<CudaBuffer>();
  private readonly analysisIndex = new Map<string, number>();
  private readonly bufferIds = new WeakMap<CudaBuffer, number>();
  private nextId = 0;
  private static readonly MAX_FORMATS = 32;

  private idOf(b: CudaBuffer): number {
    let n = this.bufferIds.get(b);
    if (n == null) this.bufferIds.set(b, n = this.nextId++);
    return n;
  }

  private tileFormat(k: AttentionKernel, inputs: CudaBuffer[]): CudaBuffer {
    const source = maskAnalysisCuda(k);
    const loaded = this.load(source);
    const used = source.bindings.map(slot => inputs[slot]);
    let index = this.analysisIndex.get(source.code);
    if (index == null) this.analysisIndex.set(source.code, index = this.analysisIndex.size);
    const key = `${index}|${used.map(b => this.idOf(b)).join(',')}`;
    const hit = this.tileFormats.get(key);
    if (hit) {  // most recently used last
      this.tileFormats.delete(key);
      this.tileFormats.set(key, hit);
      return hit.buffer;
    }
    while (this.tileFormats.size >= CudaExecutor.MAX_FORMATS) this.dropFormat(this.tileFormats.keys().next().value!);
    const buffer = this.alloc([cudaFormatWords(k.mask!)], 'int32');
    const scratch = analysisScratch(k.mask!);
    if (scratch != null) this.device.memset(buffer.ptr + BigInt(4 * scratch.offset), 0, 4 * scratch.words);
    this.launch(loaded, [buffer.ptr, ...used.map(b => b.ptr)]);
    this.lastDispatches = 2;
    this.tileFormats.set(key, {buffer, inputs: used});
    used.forEach(b => this.formatInputs.add(b));
    return buffer;
  }

  private dropFormat(key: string) {
    const e = this.tileFormats.get(key)!;
    this.tileFormats.delete(key);
    this.release(e.buffer);
  }

  /** Drops every cached tile format (after a failed graph capture: formats it made were never computed). */
  dropDerived() {
    for (const key of [...this.tileFormats.keys()]) this.dropFormat(key);
  }

  /**
   * Forgets what was made from these buffers and cached (their tile formats): a CUDA graph rewrites
   * its input buffers each launch, so a capture must record that work, not reuse a stale result.
   */
  forgetDerived(bufs: CudaBuffer[]) {
    for (const [key, e] of this.tileFormats) if (e.inputs.some(b => bufs.includes(b))) this.dropFormat(key);
  }

  /** Keeps the blocks holding these addresses out of the pool while a CUDA graph uses them (DeviceAllocator.pin). */
  pin(addresses: Iterable<DevicePtr>): DevicePtr[] {
    return this.pool.pin(addresses);
  }

  unpin(blocks: DevicePtr[]) {
    this.pool.unpin(blocks);
  }

  /** Statistics for profile(): compiles, disk-cache hits, memory held (parked: released, kept for CUDA graphs). */
  stats() {
    return {compiles: this.cubins.compiles, diskHits: this.cubins.diskHits, modules: this.modules.size, heldBytes: this.pool.held,
            inUseBytes: this.pool.inUse, parkedBytes: this.pool.parkedBytes, pinned: this.pinned?.stats() ?? null};
  }

  /**
   * After a kernel fault (the context refuses all work, see CudaDevice.healthy): resets the device's
   * primary context, which frees what this executor and every other one on the device held. They
   * are all unusable after; create new ones.
   */
  abandon() {
    this.timings = [];
    this.spareEvents.length = 0;
    this.modules.clear();
    this.device.resetContext();
    // Host memory handed out stays valid (it is libc's); the reset context forgot its registrations.
    this.pinned?.contextLost();
    this.pinned?.contextReleased();
    this.pinned?.dispose();
  }

  dispose() {
    this.device.makeCurrent();
    this.device.synchronize();
    this.dropDerived();
    this.lt?.dispose();
    for (const e of this.spareEvents) this.device.destroyEvent(e);
    for (const t of this.timings) { this.device.destroyEvent(t.start); this.device.destroyEvent(t.end); }
    this.pool.dispose();
    for (const m of this.modulesLoaded) this.device.unloadModule(m);
    this.modules.clear();
    this.pinned?.dispose();
    this.device.dispose();
    this.pinned?.contextReleased();
  }
}
