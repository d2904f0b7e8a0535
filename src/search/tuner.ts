// The search as the planner uses it: decide() picks a candidate for a graph signature from the
// tuning cache, else by stage 1 alone (synchronous, no timing on the hot path); tune() runs a model
// once, collecting the groups that decide() saw, then times their top candidates (stage 2) within a
// budget per signature and stores the winners in the cache.
import {Candidate, score, stage1} from './cost_model';
import type {DeviceProfile} from './device_profile';
import {tuningBudgetMs} from './flags';
import {Runner, stage2, variants} from './stage2';
import {tuningCache, TuningCache, TuningRecord} from './tuning_cache';

export interface Decision {
  /** The candidate to run; its params include the stage-2 parameters (defaults when untuned). */
  candidate: Candidate;
  /** 'cache': stage 2 measured it on this device; 'stage1': the model picked it; 'forced': withCandidate() set it. */
  source: 'cache'|'stage1'|'forced';
  /** The model's prediction for it, ms. */
  predictedMs: number;
  /** Stage 2's measurement, where the cache has one. */
  measuredMs?: number;
}

export interface DecideOptions {
  profile: DeviceProfile;
  /** Default: the process-wide tuningCache. */
  cache?: TuningCache;
  /**
   * Times one variant on the device with inputs of its own (stage 2 runs after the forward pass,
   * when the group's tensors may be gone). Given, a running tune() times this group.
   */
  run?: Runner;
  /** How many of stage 1's best candidates stage 2 may time (default 3). */
  k?: number;
}

/** The candidate of `candidates` that a record names (its params may add values from the candidate's space). */
export function matchRecord(record: TuningRecord, candidates: Candidate[]): Candidate|null {
  for (const c of candidates) {
    if (c.scheme !== record.scheme || c.infeasible != null) continue;
    const same = Object.entries(c.params).every(([k, v]) => record.params[k] === v) &&
        Object.entries(record.params).every(([k, v]) => k in c.params || (c.space?.[k] ?? []).includes(v));
    if (same) return {...c, params: {...c.params, ...record.params}};
  }
  return null;
}

interface TuningRequest {
  signature: string;
  profile: DeviceProfile;
  cache: TuningCache;
  candidates: Candidate[];
  run: Runner;
}

let session: {requests: Map<string, TuningRequest>, retune: boolean}|null = null;

/** Candidates forced per signature (stage-2 runners and benchmarks), and a counter that changes with them. */
const forced = new Map<string, Candidate>();
let forcedGeneration = 0;

/**
 * Runs `fn` with `candidate` decided for `signature` (whatever the cache or the model say): how a
 * runner times one variant through the real path, and how a benchmark measures every candidate.
 */
export async function withCandidate<T>(signature: string, candidate: Candidate, fn: () => T|Promise<T>): Promise<T> {
  const before = forced.get(signature);
  forced.set(signature, candidate);
  forcedGeneration++;
  try {
    return await fn();
  } finally {
    if (before == null) forced.delete(signature); else forced.set(signature, before);
    forcedGeneration++;
  }
}

/** Changes whenever a decision may change (tuning results, forced candidates): plans cached under an older value are stale. */
export function searchGeneration(cache: TuningCache = tuningCache): string {
  return `${cache.generation}.${forcedGeneration}`;
}

let rerun: (() => Promise<void>)|null = null;

/**
 * During tune()'s stage 2: runs the tuned target again on its inputs (outputs read and disposed).
 * A runner calls it inside withCandidate() and reports the device time of its group.
 */
export function rerunTuningTarget(): Promise<void> {
  if (rerun == null) throw new Error('tfjs-backend-stof: rerunTuningTarget() runs only inside tune()');
  return rerun();
}

/** Whether a tune() forward pass is running (the planner may bypass its plan cache then, so decide() sees every group). */
export function tuningActive(): boolean {
  return session != null;
}

/**
 * Picks a candidate for the group `signature` on `opts.profile.key`. The signature must determine
 * the candidates' numbers (shapes, and a digest of the mask analysis where a mask is involved).
 * Returns null when no candidate is feasible.
 */
export function decide(signature: string, candidates: Candidate[], opts: DecideOptions): Decision|null {
  const cache = opts.cache ?? tuningCache;
  const {profile} = opts;
  const f = forced.get(signature);
  if (f != null) return {candidate: f, source: 'forced', predictedMs: score(f, profile)};
  const record = cache.get(profile.key, signature);
  const cached = record?.source === 'stage2' ? matchRecord(record, candidates) : null;
  const wantsTiming = session != null && opts.run != null && (cached == null || session.retune);
  if (cached != null && !wantsTiming) {
    return {candidate: cached, source: 'cache', predictedMs: score(cached, profile), measuredMs: record!.ms};
  }
  const top = stage1(candidates, profile, Math.max(1, opts.k ?? 3));
  const key = `${profile.key}|${signature}`;
  if (wantsTiming && top.length > 0 && !session!.requests.has(key)) {
    session!.requests.set(key, {signature, profile, cache, candidates: top.map(s => s.candidate), run: opts.run!});
  }
  if (cached != null) return {candidate: cached, source: 'cache', predictedMs: score(cached, profile), measuredMs: record!.ms};
  if (top.length === 0) return null;
  return {candidate: variants(top[0].candidate)[0], source: 'stage1', predictedMs: top[0].ms};
}

// ---- tune() ------------------------------------------------------------------------------------

/** A function of the inputs, or a model (tfjs GraphModel: executeAsync; LayersModel: predict). */
export type TuneTarget = ((inputs: never) => unknown)|{executeAsync(inputs: never): Promise<unknown>}|{predict(inputs: never): unknown};

export interface TuneOptions {
  /** Stage-2 time per graph signature, ms (default: the STOF_TUNING_BUDGET_MS flag, 2000). */
  budgetMs?: number;
  /** Timed runs per variant (default 3). */
  repeats?: number;
  /** Time signatures the cache already has too. */
  retune?: boolean;
  /** Clock for the budget (tests). */
  now?: () => number;
  /** Persist the results (default true; false keeps them in memory only). */
  save?: boolean;
}

export interface TunedGroup {
  signature: string;
  deviceKey: string;
  /** Stage 1's pick (default variant). */
  predicted: Candidate;
  /** The fastest measured; null when nothing could be measured (stage 1's pick stays). */
  best: Candidate|null;
  bestMs: number;
  /** Variants timed. */
  measured: number;
  spentMs: number;
  /** Every variant of the top candidates was timed within the budget. */
  complete: boolean;
}

export interface TuneReport {
  groups: TunedGroup[];
}

type TensorLike = {dataId: object, data(): Promise<unknown>, dispose(): void};
const isTensor = (x: unknown): x is TensorLike =>
    x != null && typeof x === 'object' && 'dataId' in x && typeof (x as TensorLike).data === 'function';

function tensorsIn(x: unknown, out: TensorLike[] = []): TensorLike[] {
  if (isTensor(x)) out.push(x);
  else if (Array.isArray(x)) x.forEach(y => tensorsIn(y, out));
  else if (x != null && typeof x === 'object') Object.values(x).forEach(y => tensorsIn(y, out));
  return out;
}

async function callTarget(target: TuneTarget, inputs: unknown): Promise<unknown> {
  if (typeof target === 'function') return await (target as (i: unknown) => unknown)(inputs);
  if ('executeAsync' in target) return await (target.executeAsync as (i: unknown) => Promise<unknown>)(inputs);
  return (target.predict as (i: unknown) => unknown)(inputs);
}

/**
 * Tunes `target` for `inputs` on the current device: runs it once (collecting the fused groups
 * whose decide() got a runner), then for each new graph signature times the top candidates'
 * variants within `budgetMs` and stores the fastest in the tuning cache, which is then saved.
 * The outputs of the run are disposed (the inputs are not).
 */
export async function tune(target: TuneTarget, inputs: unknown, opts: TuneOptions = {}): Promise<TuneReport> {
  if (session != null) throw new Error('tfjs-backend-stof: tune() is already running');
  const requests = new Map<string, TuningRequest>();
  session = {requests, retune: opts.retune ?? false};
  const keep = new Set(tensorsIn(inputs));
  const runOnce = async () => {
    const outputs = tensorsIn(await callTarget(target, inputs));
    await Promise.all(outputs.map(t => t.data()));
    outputs.filter(t => !keep.has(t)).forEach(t => t.dispose());
  };
  try {
    await runOnce();
  } finally {
    session = null;
  }
  const budgetMs = opts.budgetMs ?? tuningBudgetMs();
  const groups: TunedGroup[] = [];
  const caches = new Set<TuningCache>();
  rerun = runOnce;
  try {
    for (const r of requests.values()) {
      const res = await stage2(r.candidates, r.run, {budgetMs, repeats: opts.repeats, now: opts.now});
      if (res.best != null) {
        r.cache.set(r.profile.key, r.signature, {scheme: res.best.scheme, params: res.best.params, ms: res.bestMs, source: 'stage2'});
        caches.add(r.cache);
      }
      groups.push({
        signature: r.signature, deviceKey: r.profile.key, predicted: variants(r.candidates[0])[0], best: res.best,
        bestMs: res.bestMs, measured: res.measured.length, spentMs: res.spentMs, complete: res.complete,
      });
    }
  } finally {
    rerun = null;
  }
  if (opts.save ?? true) for (const c of caches) await c.save();
  return {groups};
}
