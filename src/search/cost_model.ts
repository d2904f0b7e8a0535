// Stage 1: the analytical cost model. A candidate is one way to run a group of pending ops (a fusion
// scheme plus its model-visible parameters), described by the kernels it launches; the planner (or
// the helpers in candidates.ts) fills in the numbers. score() predicts its time on a DeviceProfile;
// stage1() keeps the k best.
import type {DeviceProfile} from './device_profile';

/**
 * One kernel of a candidate, or `launches` identical dispatches of it. bytes, cachedBytes and flops
 * are totals over all its launches; workgroups, invocations, barriers and sharedBytes are per dispatch.
 */
export interface KernelEstimate {
  /** For explain() and test messages. */
  name?: string;
  /** Dispatches of this kernel (default 1; fractional for work amortized over several calls). */
  launches?: number;
  /** Workgroups per dispatch. */
  workgroups: number;
  /** Invocations per workgroup (default 256). */
  invocations?: number;
  /** Compulsory device-memory traffic: each tensor read or written once, bytes. */
  bytes: number;
  /** Re-reads of data that other workgroups already fetched (K/V tiles, GEMM panels), served by the cache, bytes. */
  cachedBytes?: number;
  /** Arithmetic, flops (FMA = 2). */
  flops: number;
  /** Workgroup barriers each workgroup executes (tile loops, reductions): serial latency the model charges. */
  barriers?: number;
  /** Workgroup storage per workgroup, bytes (over the device's limit: the candidate is infeasible). */
  sharedBytes?: number;
  /** Fraction of the workgroups that have work (the rest exit at once; e.g. fully masked row blocks). */
  activeFraction?: number;
  /**
   * Memory round trips one invocation waits for one after another (loads whose address or use
   * depends on the previous: a loop over keys reading K/V rows, a tile loop's load phases). Each
   * wave of workgroups pays them at the device's load latency, whatever the bandwidth.
   */
  serialLoads?: number;
}

/** One way to run a group: a scheme and the parameters the model sees. */
export interface Candidate {
  /** The fusion scheme, e.g. 'attention-blockwise', 'layernorm-gemm-epilogue'. */
  scheme: string;
  /** Parameters the model distinguishes (tile class, rows per workgroup); passed to the kernel generator. */
  params: Record<string, number>;
  /** The kernels the scheme launches, in order. */
  kernels: KernelEstimate[];
  /**
   * Parameters the model cannot tell apart (workgroup shape, vector width, ...): stage 2 times their
   * combinations. The first value of each is the default that runs without tuning.
   */
  space?: Record<string, number[]>;
  /** Why the candidate cannot run at all (score: Infinity). */
  infeasible?: string;
}

export interface Scored {
  candidate: Candidate;
  /** Predicted ms. */
  ms: number;
}

/**
 * Issue time of one workgroup barrier, in flops per invocation: a barrier stalls the workgroup for
 * tens of cycles, about the time of 8 FMAs per invocation. Small, but it ranks a loop over many
 * small tiles below one pass over a whole row.
 */
export const BARRIER_FLOPS = 16;

/** Load latency for profiles measured before it was (µs; the H100 through Dawn measures ~0.25 at L2). */
export const DEFAULT_LOAD_LATENCY_US = 0.5;

/** Invocations per workgroup that DeviceProfile.parallelism counts in. */
const PARALLELISM_UNIT = 256;

function kernelMs(k: KernelEstimate, p: DeviceProfile): number {
  const inv = k.invocations ?? PARALLELISM_UNIT;
  const shared = k.sharedBytes ?? 0;
  if (inv > p.maxInvocations || shared > p.maxWorkgroupStorage || !(k.workgroups >= 0)) return Infinity;
  const launches = k.launches ?? 1;
  const launchMs = launches * p.dispatchUs / 1000;
  const active = k.workgroups * Math.min(1, Math.max(0, k.activeFraction ?? 1));
  if (active === 0) return launchMs;
  // GB/s = 1e6 bytes/ms; GFLOP/s = 1e6 flops/ms.
  const memMs = k.bytes / (p.bandwidthGBs * 1e6) + (k.cachedBytes ?? 0) / (p.cacheBandwidthGBs * 1e6);
  const computeMs = (k.flops + (k.barriers ?? 0) * BARRIER_FLOPS * inv * active * launches) / (p.fp32Gflops * 1e6);
  // Occupancy: the device runs parallelism × 256 invocations at full rate. Smaller workgroups pack
  // more per wave; storage above 3/4 of the per-workgroup limit is assumed to leave room for fewer
  // at once (a heuristic: per-unit storage is not queryable), which only adds waves.
  const capacity = p.parallelism * PARALLELISM_UNIT;
  const storageFactor = shared > 0 ? Math.min(1, 0.75 * p.maxWorkgroupStorage / shared) : 1;
  const resident = Math.max(1, Math.floor(capacity / inv * storageFactor));
  // Wave quantization: a partial last wave leaves slots idle, and fewer invocations than the capacity
  // leave the device idle. The idle part of the last wave is divided by the number of waves: with
  // many waves, workgroups' varying durations (and the measurement error of parallelism) blur a hard ceiling.
  const x = active / resident;
  const full = Math.ceil(x - 1e-9);
  const waves = x + (full - x) / full;
  const efficiency = Math.min(1, active * inv / (waves * capacity));
  const latencyMs = full * (k.serialLoads ?? 0) * (p.loadLatencyUs ?? DEFAULT_LOAD_LATENCY_US) / 1000;
  return launchMs + Math.max(memMs, computeMs) / efficiency + latencyMs;
}

/** Predicted ms of a candidate on a device: Σ over its kernels of launches · dispatch + max(memory, compute) / occupancy. */
export function score(c: Candidate, profile: DeviceProfile): number {
  if (c.infeasible != null) return Infinity;
  let ms = 0;
  for (const k of c.kernels) ms += kernelMs(k, profile);
  return ms;
}

/** Per-kernel predictions (same order as c.kernels), for explain() and tests. */
export function scoreKernels(c: Candidate, profile: DeviceProfile): number[] {
  return c.kernels.map(k => kernelMs(k, profile));
}

/** The k best feasible candidates, fastest first (ties keep the input order). */
export function stage1(candidates: Candidate[], profile: DeviceProfile, k = 3): Scored[] {
  return candidates.map((candidate, i) => ({candidate, ms: score(candidate, profile), i}))
      .filter(s => Number.isFinite(s.ms))
      .sort((a, b) => a.ms - b.ms || a.i - b.i)
      .slice(0, Math.max(0, k))
      .map(({candidate, ms}) => ({candidate, ms}));
}
