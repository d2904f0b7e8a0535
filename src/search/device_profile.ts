// What the cost model knows of a device, measured once per device by short WGSL microbenchmarks
// (a streaming copy, cache-resident reads, an FMA chain on 1 and on many workgroups, many small
// dispatches) and cached per device key in the tuning cache, so later runs skip the measurement.
import {createGpuTimer, GpuTimer, TimingMethod, USAGE} from './gpu_timer';
import {tuningCache, TuningCache} from './tuning_cache';

export interface DeviceProfile {
  /** 'vendor/architecture/device/description' of the adapter (the cache key). */
  key: string;
  /** Sustained device-memory bandwidth, GB/s (bytes read + written by a streaming copy). */
  bandwidthGBs: number;
  /** Read bandwidth of data that stays in cache (re-reads of tiles other workgroups fetched), GB/s. */
  cacheBandwidthGBs: number;
  /** Sustained fp32 rate, GFLOP/s (an FMA counts 2). */
  fp32Gflops: number;
  /** Cost of one more dispatch in a flush (CPU encode + GPU gap), µs. */
  dispatchUs: number;
  /** Workgroups of 256 invocations that run at once at full speed (the wave size of the occupancy model). */
  parallelism: number;
  /** device.limits.maxComputeWorkgroupStorageSize, bytes. */
  maxWorkgroupStorage: number;
  /** device.limits.maxComputeInvocationsPerWorkgroup. */
  maxInvocations: number;
  /** Round trip of one dependent load from cache-resident memory, µs (serial-latency term of the model); absent in older caches. */
  loadLatencyUs?: number;
  /** Subgroup size where the adapter reports one fixed size. */
  subgroupSize?: number;
  /** How the numbers were obtained. */
  source: TimingMethod|'synthetic';
}

/**
 * A profile with the numbers measureDeviceProfile gives for an NVIDIA H100 through Dawn/Vulkan
 * (rounded; measured 2026-11: 2850-2980 GB/s, 12-13 TB/s cached, 45-46 TFLOP/s, 3.0-3.2 µs per
 * dispatch, 167-176 workgroups at once). Tests override what they need.
 */
export function syntheticProfile(overrides: Partial<DeviceProfile> = {}): DeviceProfile {
  return {
    key: 'synthetic', bandwidthGBs: 2900, cacheBandwidthGBs: 12000, fp32Gflops: 45000, dispatchUs: 3.2, parallelism: 170,
    maxWorkgroupStorage: 48 * 1024, maxInvocations: 1024, subgroupSize: 32, loadLatencyUs: 0.25, source: 'synthetic', ...overrides,
  };
}

/** Fields of GPUAdapterInfo used here (older implementations lack some). */
export interface AdapterInfoLike {
  vendor?: string; architecture?: string; device?: string; description?: string;
  subgroupMinSize?: number; subgroupMaxSize?: number;
}

export function deviceKey(info: AdapterInfoLike|undefined): string {
  const part = (s: string|undefined) => (s ?? '').trim().toLowerCase().replace(/\//g, '-');
  return [info?.vendor, info?.architecture, info?.device, info?.description].map(part).join('/');
}

export interface MeasureOptions {
  /** Cache to read and fill (default: the process-wide tuningCache); null: always measure, store nothing. */
  cache?: TuningCache|null;
  /** Measure even when the cache has a profile for this device. */
  remeasure?: boolean;
  /** Rough bound on the measurement's wall time, ms (default 300). */
  maxMs?: number;
  /** Ignore timestamp queries (tests of the fallback). */
  wallOnly?: boolean;
  /** Receives one line per microbenchmark (configuration, ms, elapsed) for diagnostics. */
  trace?: (line: string) => void;
}

const nowMs = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/** Used for a number a benchmark could not produce (too slow a device, an error): modest, so models stay cautious. */
const FALLBACK = {bandwidthGBs: 50, cacheBandwidthGBs: 150, fp32Gflops: 500, dispatchUs: 20, parallelism: 64};

const COPY_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let n = arrayLength(&src);
  let stride = nwg.x * 256u;
  for (var i = gid.x; i < n; i = i + stride) { dst[i] = src[i]; }
}`;

// Every invocation reads `iters` vec4s of a 4 MiB buffer (cache-resident after the first touch), moving
// 8192 vec4s on per iteration so that a workgroup's reads sweep the buffer (beyond one unit's L1).
const CACHED_READ_WGSL = /* wgsl */ `
struct P { iters: u32, mask: u32 }
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  var acc = vec4<f32>(0.0);
  var i = gid.x;
  for (var k = 0u; k < p.iters; k = k + 1u) { acc = acc + src[i & p.mask]; i = i + 8192u; }
  dst[gid.x & 1023u] = acc;
}`;

// Eight independent FMA chains of vec4 per invocation: 64 flops per iteration, no memory traffic.
const FMA_WGSL = /* wgsl */ `
struct P { iters: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let x = f32(gid.x) * 1e-7;
  var a0 = vec4<f32>(x); var a1 = a0 + 0.1; var a2 = a0 + 0.2; var a3 = a0 + 0.3;
  var a4 = a0 + 0.4; var a5 = a0 + 0.5; var a6 = a0 + 0.6; var a7 = a0 + 0.7;
  let m = vec4<f32>(0.9999999); let c = vec4<f32>(1e-7);
  for (var k = 0u; k < p.iters; k = k + 1u) {
    a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
    a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
  }
  dst[gid.x & 1023u] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}`;
const FMA_FLOPS_PER_ITER = 8 * 4 * 2;

// One invocation chasing indices through a 4 MiB buffer (cache-resident): each load waits for the last.
const CHASE_WGSL = /* wgsl */ `
struct P { iters: u32 }
@group(0) @binding(0) var<storage, read> next: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(1)
fn main() {
  var i = 0u;
  for (var k = 0u; k < p.iters; k = k + 1u) { i = next[i]; }
  dst[0] = i;
}`;

// Dependent tiny dispatches (each reads what the previous wrote), so they cannot overlap.
const TINY_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@compute @workgroup_size(1)
fn main() { dst[0] = dst[0] + 1.0; }`;

async function minTime(timer: GpuTimer, encode: (pass: GPUComputePassEncoder) => void, repeats: number): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < Math.max(1, repeats); i++) best = Math.min(best, await timer.time(encode));
  return best;
}

class Bench {
  private readonly buffers: GPUBuffer[] = [];
  constructor(readonly device: GPUDevice, readonly timer: GpuTimer) {}

  pipeline(code: string): GPUComputePipeline {
    const module = this.device.createShaderModule({code, label: 'stof-profile'});
    return this.device.createComputePipeline({layout: 'auto', compute: {module, entryPoint: 'main'}, label: 'stof-profile'});
  }
  buffer(size: number, usage: number): GPUBuffer {
    const b = this.device.createBuffer({size, usage, label: 'stof-profile'});
    this.buffers.push(b);
    return b;
  }
  uniform(values: number[]): GPUBuffer {
    const b = this.buffer(16, USAGE.UNIFORM | USAGE.COPY_DST);
    this.device.queue.writeBuffer(b, 0, new Uint32Array([...values, 0, 0, 0, 0].slice(0, 4)));
    return b;
  }
  bind(pipeline: GPUComputePipeline, buffers: GPUBuffer[]): GPUBindGroup {
    return this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({binding, resource: {buffer}})),
    });
  }
  /** Fastest of `repeats` timings of `dispatches` dispatches of `workgroups` workgroups each, in one pass. */
  async time(pipeline: GPUComputePipeline, group: GPUBindGroup, workgroups: number, dispatches = 1, repeats = 3): Promise<number> {
    return minTime(this.timer, pass => {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      for (let i = 0; i < dispatches; i++) pass.dispatchWorkgroups(workgroups);
    }, repeats);
  }
  dispose() {
    this.buffers.forEach(b => b.destroy());
    this.timer.dispose();
  }
}

/**
 * Measures a device (100-300 ms; an H100 through Dawn takes ~150 ms) once: the profile is cached per device key.
 * `adapterInfo` names the device (default: device.adapterInfo where the implementation has it).
 * Never throws for a benchmark that fails: that number falls back to a modest default.
 */
export async function measureDeviceProfile(device: GPUDevice, adapterInfo?: AdapterInfoLike, opts: MeasureOptions = {}): Promise<DeviceProfile> {
  const info = adapterInfo ?? (device as unknown as {adapterInfo?: AdapterInfoLike}).adapterInfo;
  const key = deviceKey(info);
  const cache = opts.cache === undefined ? tuningCache : opts.cache;
  if (cache != null && !opts.remeasure) {
    await cache.load();
    const cached = cache.getProfile(key);
    // The same adapter can give devices with other limits: those come from this device, always.
    if (cached != null) {
      return {...cached, maxWorkgroupStorage: device.limits.maxComputeWorkgroupStorageSize,
              maxInvocations: device.limits.maxComputeInvocationsPerWorkgroup};
    }
  }
  const started = nowMs();
  const budget = opts.maxMs ?? 300;
  const timer = createGpuTimer(device, {wallOnly: opts.wallOnly});
  const wallTimer = createGpuTimer(device, {wallOnly: true});
  const bench = new Bench(device, timer);
  // Wall times include the submission latency: subtract it, and aim for longer runs than with timestamps.
  const wall = timer.method === 'wall';
  const target = wall ? 4 : 1;  // ms a measured run should last to be meaningful
  const measured: Partial<DeviceProfile> = {};
  const trace = opts.trace ?? (() => {});
  device.pushErrorScope('validation');
  device.pushErrorScope('out-of-memory');
  try {
    const tiny = bench.pipeline(TINY_WGSL), copy = bench.pipeline(COPY_WGSL);
    const cached = bench.pipeline(CACHED_READ_WGSL), fma = bench.pipeline(FMA_WGSL);
    const tinyGroup = bench.bind(tiny, [bench.buffer(16, USAGE.STORAGE)]);
    const latency = wall ? await bench.time(tiny, tinyGroup, 1, 1, 5) : 0;
    const net = (ms: number) => Math.max(ms - latency, 1e-4);

    // Each benchmark gets a share of what is left after compiling the pipelines (never less than half the budget).
    const measureStart = nowMs(), measureBudget = Math.max(budget - (measureStart - started), budget / 2);
    let deadline = 0;  // fraction of measureBudget by which the current benchmark should end
    const remaining = () => measureStart + measureBudget * deadline - nowMs();
    /**
     * Times configurations of growing size (each ~4x the last) until one lasts long enough (`done`),
     * the list ends, or the next would overrun the deadline. Each configuration is timed twice and
     * the chosen one a third time: interference only slows runs down, so the fastest is the estimate.
     */
    const grow = async <T>(configs: T[], time: (x: T) => Promise<number>, done: (ms: number) => boolean) => {
      let x = configs[0], ms = 0;
      await time(x);  // warm-up: drivers may finish compiling a pipeline, or clear new buffers, at first use
      for (x of configs) {
        ms = Math.min(await time(x), await time(x));
        if (done(ms) || 4 * ms > remaining()) break;
      }
      if (ms < remaining()) ms = Math.min(ms, await time(x));
      return {x, ms};
    };
    const geometric = (from: number, factor: number, to: number) => {
      const out: number[] = [];
      for (let v = from; v <= to; v *= factor) out.push(v);
      return out;
    };
    let t = nowMs();
    const phase = (name: string, result: unknown) => {
      trace(`${name}: ${JSON.stringify(result)} (${(nowMs() - t).toFixed(1)} ms)`);
      t = nowMs();
    };

    // Dispatch overhead: N dependent dispatches against 1, wall time (it is CPU encode plus GPU gaps).
    const dispatches = (n: number) => wallTimer.time(pass => {
      pass.setPipeline(tiny);
      pass.setBindGroup(0, tinyGroup);
      for (let i = 0; i < n; i++) pass.dispatchWorkgroups(1);
    });
    deadline = 0.15;
    const one = (await grow([1], dispatches, () => true)).ms;
    const many = await grow(geometric(16, 4, 1024), dispatches, ms => ms - one >= 2 * target);
    measured.dispatchUs = Math.max(0.1, (many.ms - one) / (many.x - 1) * 1000);
    phase('dispatch', {one, many});

    // Bandwidth: a streaming copy, growing the buffers (past the caches), then the repetitions, to the target time.
    const limit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize, 128 * 2 ** 20);
    let allocated = 0, copyGroup: GPUBindGroup|null = null, free = () => {};
    const copyTime = async ([size, reps]: number[]) => {
      const workgroups = Math.min(65535, Math.ceil(size / 16 / 256 / 4));
      if (allocated !== size) {
        free();
        const src = bench.buffer(size, USAGE.STORAGE), dst = bench.buffer(size, USAGE.STORAGE);
        copyGroup = bench.bind(copy, [src, dst]);
        free = () => { src.destroy(); dst.destroy(); };
        allocated = size;
        await bench.time(copy, copyGroup, workgroups, 1, 1);  // new buffers are cleared lazily, at first use
      }
      return net(await bench.time(copy, copyGroup!, workgroups, reps, 1));
    };
    const sizes = geometric(2 ** 20, 4, limit);
    if (sizes[sizes.length - 1] < limit) sizes.push(limit);
    deadline = 0.45;
    const bw = await grow([...sizes.map(sz => [sz, 1]), ...geometric(4, 4, 64).map(r => [limit, r])], copyTime, ms => ms >= target);
    measured.bandwidthGBs = 2 * bw.x[0] * bw.x[1] / bw.ms / 1e6;
    free();
    phase('bandwidth', bw);

    // Cache bandwidth: workgroups first (to fill the device), then iterations: [workgroups, iterations].
    const small = bench.buffer(4 * 2 ** 20, USAGE.STORAGE), sink = bench.buffer(1024 * 16, USAGE.STORAGE);
    deadline = 0.65;
    const readGroups = new Map<number, GPUBindGroup>();
    const readGroup = (iters: number) =>
        readGroups.get(iters) ?? readGroups.set(iters, bench.bind(cached, [small, sink, bench.uniform([iters, 2 ** 18 - 1])])).get(iters)!;
    const reads = await grow([...geometric(16, 4, 4096).map(w => [w, 64]), ...geometric(256, 4, 4096).map(i => [4096, i])],
                             async ([w, iters]) => net(await bench.time(cached, readGroup(iters), w, 1, 1)), ms => ms >= target);
    measured.cacheBandwidthGBs = reads.x[0] * 256 * reads.x[1] * 16 / reads.ms / 1e6;
    phase('cache', reads);

    // FMA chains: iterations for one workgroup to last half the target time, then more workgroups until
    // the time grows 4-fold. Workgroups running at once = W · t1 / tW; the rate = flops(W) / tW.
    const out = bench.buffer(1024 * 16, USAGE.STORAGE);
    const groups = new Map<number, GPUBindGroup>();
    const fmaGroup = (iters: number) => groups.get(iters) ?? groups.set(iters, bench.bind(fma, [out, bench.uniform([iters])])).get(iters)!;
    deadline = 0.75;
    const single = await grow(geometric(64, 4, 2 ** 22), async iters => net(await bench.time(fma, fmaGroup(iters), 1, 1, 1)), ms => ms >= target / 2);
    deadline = 1;
    const wide = await grow(geometric(4, 4, 16384), async w => net(await bench.time(fma, fmaGroup(single.x), w, 1, 1)), ms => ms >= 4 * single.ms);
    measured.fp32Gflops = wide.x * 256 * single.x * FMA_FLOPS_PER_ITER / wide.ms / 1e6;
    measured.parallelism = Math.max(1, Math.min(wide.x, wide.x * single.ms / wide.ms));
    phase('fma', {single, wide});

    // Load latency: a chain of dependent loads, 4099 words (16 KiB) apart, so each touches a new line.
    const words = 2 ** 20;
    const nextBuf = bench.buffer(4 * words, USAGE.STORAGE | USAGE.COPY_DST);
    device.queue.writeBuffer(nextBuf, 0, Uint32Array.from({length: words}, (_, i) => (i + 4099) % words));
    const chase = bench.pipeline(CHASE_WGSL);
    const chaseGroups = new Map<number, GPUBindGroup>();
    const chaseGroup = (iters: number) =>
        chaseGroups.get(iters) ?? chaseGroups.set(iters, bench.bind(chase, [nextBuf, sink, bench.uniform([iters])])).get(iters)!;
    deadline = 1.1;
    const chain = await grow(geometric(256, 4, 2 ** 20), async iters => net(await bench.time(chase, chaseGroup(iters), 1, 1, 1)), ms => ms >= target / 2);
    measured.loadLatencyUs = chain.ms * 1000 / chain.x;
    phase('latency', chain);
  } catch (e) {
    console.warn(`tfjs-backend-stof: device microbenchmarks failed (${(e as Error).message}); using defaults for what is missing.`);
  } finally {
    try {
      const errors = [await device.popErrorScope(), await device.popErrorScope()].filter(e => e != null);
      if (errors.length > 0) console.warn(`tfjs-backend-stof: device microbenchmarks reported: ${errors.map(e => e!.message).join('; ')}`);
      await device.queue.onSubmittedWorkDone();
    } catch {
      // a lost device: the numbers measured so far (or the defaults) still make a profile
    }
    bench.dispose();
    wallTimer.dispose();
  }
  const pick = (name: keyof typeof FALLBACK) => {
    const v = measured[name] as number|undefined;
    return v != null && Number.isFinite(v) && v > 0 ? v : FALLBACK[name];
  };
  const sub = info?.subgroupMinSize != null && info.subgroupMinSize === info.subgroupMaxSize ? info.subgroupMinSize : undefined;
  const profile: DeviceProfile = {
    key,
    bandwidthGBs: pick('bandwidthGBs'),
    cacheBandwidthGBs: Math.max(pick('cacheBandwidthGBs'), pick('bandwidthGBs')),
    fp32Gflops: pick('fp32Gflops'),
    dispatchUs: pick('dispatchUs'),
    parallelism: pick('parallelism'),
    maxWorkgroupStorage: device.limits.maxComputeWorkgroupStorageSize,
    maxInvocations: device.limits.maxComputeInvocationsPerWorkgroup,
    ...(measured.loadLatencyUs != null && Number.isFinite(measured.loadLatencyUs) && measured.loadLatencyUs > 0 ? {loadLatencyUs: measured.loadLatencyUs} : {}),
    source: timer.method,
    ...(sub != null ? {subgroupSize: sub} : {}),
  };
  if (cache != null) {
    cache.setProfile(profile);
    await cache.save();
  }
  return profile;
}
