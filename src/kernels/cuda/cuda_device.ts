// One CUDA device through the driver API: the primary context, one stream that every launch and
// copy goes to (so they run in order), memory, modules and launches, and events for timing.
// Every call is checked; a failure throws with the driver's name and text for the error.
import type {Api} from './cuda_libs';

export type DevicePtr = bigint;

// CUdevice_attribute values (cuda.h).
const ATTR_MULTIPROCESSOR_COUNT = 16;
const ATTR_COMPUTE_CAPABILITY_MAJOR = 75;
const ATTR_COMPUTE_CAPABILITY_MINOR = 76;
const ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
/** CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES */
const FUNC_MAX_DYNAMIC_SHARED = 8;
/** CU_EVENT_DEFAULT (timing enabled). */
const EVENT_DEFAULT = 0;
const CUDA_ERROR_NOT_READY = 600;
/** CU_STREAM_CAPTURE_MODE_RELAXED: the capturing thread may still allocate (the pool grows during a captured forward). */
const CAPTURE_RELAXED = 2;
const GRAPH_API = ['cuStreamBeginCapture_v2', 'cuStreamEndCapture', 'cuGraphInstantiateWithFlags', 'cuGraphLaunch', 'cuGraphExecDestroy', 'cuGraphDestroy'];

export class CudaError extends Error {
  constructor(readonly code: number, what: string, name: string, text: string) {
    super(`CUDA ${what} failed: ${name} (${code}): ${text}`);
  }
}

/** Work that a stream capture cannot record (it would wait for, or read, results that do not exist yet). */
export class CaptureRefused extends Error {}

export class CudaDevice {
  readonly ordinal: number;
  readonly name: string;
  /** 'sm_90' for an H100. */
  readonly arch: string;
  readonly multiprocessors: number;
  readonly maxSharedOptin: number;
  readonly stream: bigint;
  private readonly ctx: bigint;
  private readonly dev: number;
  private disposed = false;
  /** While the stream is captured into a graph: every device pointer the captured work uses. */
  private captured: Set<DevicePtr>|null = null;
  /** Kernels launched into the capture (a cuBLASLt matmul counts one, through libraryLaunch()). */
  private capturedLaunches = 0;

  constructor(readonly api: Api, ordinal = 0) {
    this.ordinal = ordinal;
    this.check(api['cuInit'](0), 'cuInit');
    const count = [0];
    this.check(api['cuDeviceGetCount'](count), 'cuDeviceGetCount');
    if (ordinal >= count[0]) throw new Error(`CUDA device ${ordinal} requested but the driver reports ${count[0]} device(s)`);
    const dev = [0];
    this.check(api['cuDeviceGet'](dev, ordinal), 'cuDeviceGet');
    this.dev = dev[0];
    const nameBuf = Buffer.alloc(256);
    this.check(api['cuDeviceGetName'](nameBuf, 256, dev[0]), 'cuDeviceGetName');
    this.name = nameBuf.toString('utf8').replace(/\0[\s\S]*$/, '');
    const attr = (a: number) => { const v = [0]; this.check(api['cuDeviceGetAttribute'](v, a, dev[0]), 'cuDeviceGetAttribute'); return v[0]; };
    this.arch = `sm_${attr(ATTR_COMPUTE_CAPABILITY_MAJOR)}${attr(ATTR_COMPUTE_CAPABILITY_MINOR)}`;
    this.multiprocessors = attr(ATTR_MULTIPROCESSOR_COUNT);
    this.maxSharedOptin = attr(ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
    // The primary context: shared with any other CUDA user in the process (PyTorch, cuBLAS).
    const ctx = new BigUint64Array(1);
    this.check(api['cuDevicePrimaryCtxRetain'](ctx, dev[0]), 'cuDevicePrimaryCtxRetain');
    this.ctx = ctx[0];
    this.makeCurrent();
    const stream = new BigUint64Array(1);
    this.check(api['cuStreamCreate'](stream, 0), 'cuStreamCreate');
    this.stream = stream[0];
  }

  check(r: number, what: string) {
    if (r === 0) return;
    const name = [null as string|null], text = [null as string|null];
    this.api['cuGetErrorName'](r, name);
    this.api['cuGetErrorString'](r, text);
    throw new CudaError(r, what, name[0] ?? 'unknown', text[0] ?? 'unknown error');
  }

  /** Node may call in from any thread state: the context is made current before work. */
  makeCurrent() {
    this.check(this.api['cuCtxSetCurrent'](this.ctx), 'cuCtxSetCurrent');
  }

  alloc(bytes: number): DevicePtr {
    const p = new BigUint64Array(1);
    this.check(this.api['cuMemAlloc_v2'](p, Math.max(bytes, 4)), `cuMemAlloc_v2 of ${bytes} bytes`);
    return p[0];
  }

  free(ptr: DevicePtr) {
    this.check(this.api['cuMemFree_v2'](ptr), 'cuMemFree_v2');
  }

  memInfo(): {free: number, total: number} {
    const f = [0], t = [0];
    this.check(this.api['cuMemGetInfo_v2'](f, t), 'cuMemGetInfo_v2');
    return {free: Number(f[0]), total: Number(t[0])};
  }

  /** Host to device, ordered after the stream's work (pageable memory: staged before it returns). */
  upload(dst: DevicePtr, src: ArrayBufferView) {
    if (src.byteLength === 0) return;
    this.refuseInCapture('a copy from host memory');
    this.check(this.api['cuMemcpyHtoDAsync_v2'](dst, src, src.byteLength, this.stream), 'cuMemcpyHtoDAsync_v2');
  }

  /** Device to host: waits for the stream first. */
  download(dst: ArrayBufferView, src: DevicePtr) {
    this.synchronize();
    if (dst.byteLength === 0) return;
    this.check(this.api['cuMemcpyDtoH_v2'](dst, src, dst.byteLength), 'cuMemcpyDtoH_v2');
  }

  copy(dst: DevicePtr, src: DevicePtr, bytes: number) {
    this.uses(dst, src);
    this.check(this.api['cuMemcpyDtoDAsync_v2'](dst, src, bytes, this.stream), 'cuMemcpyDtoDAsync_v2');
  }

  memset(dst: DevicePtr, byte: number, bytes: number) {
    this.uses(dst);
    this.check(this.api['cuMemsetD8Async'](dst, byte, bytes, this.stream), 'cuMemsetD8Async');
  }

  loadModule(image: Uint8Array): bigint {
    const m = new BigUint64Array(1);
    this.check(this.api['cuModuleLoadData'](m, image), 'cuModuleLoadData');
    return m[0];
  }

  unloadModule(m: bigint) {
    this.check(this.api['cuModuleUnload'](m), 'cuModuleUnload');
  }

  getFunction(module: bigint, name: string, dynamicShared = 0): bigint {
    const f = new BigUint64Array(1);
    this.check(this.api['cuModuleGetFunction'](f, module, name), `cuModuleGetFunction(${name})`);
    if (dynamicShared > 48 * 1024) this.check(this.api['cuFuncSetAttribute'](f[0], FUNC_MAX_DYNAMIC_SHARED, dynamicShared), 'cuFuncSetAttribute');
    return f[0];
  }

  /**
   * Launches `fn` on the stream. `params` are the kernel's arguments in order: device pointers
   * (bigint) and 32-bit ints (number); each is passed by address as cuLaunchKernel expects.
   */
  launch(fn: bigint, grid: [number, number, number], block: [number, number, number], params: Array<bigint|number>, sharedBytes = 0) {
    if (this.captured != null) {
      this.capturedLaunches++;
      for (const p of params) if (typeof p === 'bigint') this.captured.add(p);
    }
    const boxes = params.map(p => (typeof p === 'bigint' ? new BigUint64Array([p]) : new Int32Array([p])));
    this.check(this.api['cuLaunchKernel'](fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], sharedBytes, this.stream, boxes, null),
               `cuLaunchKernel(grid ${grid}, block ${block})`);
  }

  synchronize() {
    this.refuseInCapture('a wait for the stream (a read of device values, or a free)');
    this.check(this.api['cuStreamSynchronize'](this.stream), 'cuStreamSynchronize');
  }

  /**
   * Whether the context still takes work. A fault in a kernel (illegal address, trap, misaligned
   * access) is sticky: every later call in the context fails until the context is reset.
   */
  healthy(): boolean {
    if (this.disposed) return false;
    return this.api['cuCtxSetCurrent'](this.ctx) === 0 && this.api['cuCtxSynchronize']() === 0;
  }

  /**
   * After a fault: destroys the primary context and everything in it — the memory, modules, streams
   * and events of every CudaDevice (and executor) on this ordinal, which are all unusable after.
   * A CudaDevice created afterwards starts with a fresh context.
   */
  resetContext() {
    this.disposed = true;
    const reset = this.api['cuDevicePrimaryCtxReset_v2'];
    if (reset == null) throw new Error('the CUDA driver has no cuDevicePrimaryCtxReset: a faulted context cannot be recovered');
    this.check(reset(this.dev), 'cuDevicePrimaryCtxReset_v2');
  }

  createEvent(): bigint {
    const e = new BigUint64Array(1);
    this.check(this.api['cuEventCreate'](e, EVENT_DEFAULT), 'cuEventCreate');
    return e[0];
  }

  record(event: bigint) {
    this.refuseInCapture('an event (timing)');
    this.check(this.api['cuEventRecord'](event, this.stream), 'cuEventRecord');
  }

  /** Whether the work recorded before `event` has finished (without waiting). */
  done(event: bigint): boolean {
    const r = this.api['cuEventQuery'](event);
    if (r === CUDA_ERROR_NOT_READY) return false;
    this.check(r, 'cuEventQuery');
    return true;
  }

  /** Milliseconds between two recorded events (waits for the second). */
  elapsed(start: bigint, end: bigint): number {
    this.check(this.api['cuEventSynchronize'](end), 'cuEventSynchronize');
    const ms = new Float32Array(1);
    this.check(this.api['cuEventElapsedTime_v2'](ms, start, end), 'cuEventElapsedTime');
    return ms[0];
  }

  // ---- CUDA graphs: a captured forward launched whole ----------------------------------------------

  /** Whether the driver has the graph API (CUDA 11.4 and later). */
  get graphs(): boolean {
    return GRAPH_API.every(f => typeof this.api[f] === 'function');
  }

  /** False once disposed or reset (then graphs and buffers of this device are gone with its context). */
  get alive(): boolean {
    return !this.disposed;
  }

  /** Notes device pointers that captured work reads or writes (launches and copies note theirs here). */
  uses(...ptrs: DevicePtr[]) {
    if (this.captured != null) for (const p of ptrs) this.captured.add(p);
  }

  /** A library (cuBLASLt) launches one kernel on the stream with these pointers. */
  libraryLaunch(...ptrs: DevicePtr[]) {
    if (this.captured != null) this.capturedLaunches++;
    this.uses(...ptrs);
  }

  private refuseInCapture(what: string) {
    if (this.captured != null) throw new CaptureRefused(`${what} cannot be captured into a CUDA graph`);
  }

  /** From now until endCapture(), work on the stream is recorded into a graph, not run. */
  beginCapture() {
    if (!this.graphs) throw new Error('this CUDA driver has no graph API (cuStreamBeginCapture_v2, cuGraphLaunch)');
    this.check(this.api['cuStreamBeginCapture_v2'](this.stream, CAPTURE_RELAXED), 'cuStreamBeginCapture_v2');
    this.captured = new Set();
    this.capturedLaunches = 0;
  }

  /** Ends the capture: the graph of the recorded work (instantiated) and the device pointers it uses. */
  endCapture(): {exec: bigint, pointers: Set<DevicePtr>, launches: number} {
    const pointers = this.captured!, launches = this.capturedLaunches;
    this.captured = null;
    const g = new BigUint64Array(1);
    this.check(this.api['cuStreamEndCapture'](this.stream, g), 'cuStreamEndCapture');
    const exec = new BigUint64Array(1);
    try {
      this.check(this.api['cuGraphInstantiateWithFlags'](exec, g[0], 0n), 'cuGraphInstantiateWithFlags');
    } finally {
      this.check(this.api['cuGraphDestroy'](g[0]), 'cuGraphDestroy');
    }
    return {exec: exec[0], pointers, launches};
  }

  /** Ends a capture that failed, dropping what it recorded (never throws: the failure is the caller's to report). */
  abortCapture() {
    if (this.captured == null) return;
    this.captured = null;
    const g = new BigUint64Array(1);
    if (this.api['cuStreamEndCapture'](this.stream, g) === 0 && g[0] !== 0n) this.api['cuGraphDestroy'](g[0]);
  }

  launchGraph(exec: bigint) {
    this.refuseInCapture('a graph launch');
    this.check(this.api['cuGraphLaunch'](exec, this.stream), 'cuGraphLaunch');
  }

  destroyGraph(exec: bigint) {
    this.check(this.api['cuGraphExecDestroy'](exec), 'cuGraphExecDestroy');
  }

  destroyEvent(e: bigint) {
    this.check(this.api['cuEventDestroy_v2'](e), 'cuEventDestroy_v2');
  }

  dispose() {
    if (this.disposed) return;
    this.disposed = true;
    this.synchronize();
    this.check(this.api['cuStreamDestroy_v2'](this.stream), 'cuStreamDestroy_v2');
    this.check(this.api['cuDevicePrimaryCtxRelease_v2'](this.dev), 'cuDevicePrimaryCtxRelease_v2');
  }
}
