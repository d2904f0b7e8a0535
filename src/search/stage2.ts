// Stage 2: times the parameter variants of stage 1's best candidates on the device, best-first,
// within a time budget, and keeps the fastest. The clock (now) and the runner are injected, so the
// search itself runs anywhere; GPU runners time with gpu_timer.ts.
import type {Candidate} from './cost_model';
import {DEFAULT_BUDGET_MS} from './flags';

/** Runs one variant and returns its time in ms (device time where it can be had). May throw: the variant is then skipped. */
export type Runner = (c: Candidate) => Promise<number>;

export interface Stage2Options {
  /** Wall time allowed, ms (default 2000). Checked before every run: it is exceeded by at most one run. */
  budgetMs?: number;
  /** Timed runs per variant; its time is their median (default 3). */
  repeats?: number;
  /** Untimed runs before the timed ones (shader compilation, caches; default 1). They count against the budget. */
  warmup?: number;
  /** The clock for the budget, ms (default performance.now). */
  now?: () => number;
}

export interface Measurement {
  candidate: Candidate;
  /** Median of the timed runs (Infinity when the variant failed). */
  ms: number;
  /** Timed runs that completed (fewer than repeats where the budget ran out). */
  runs: number;
  error?: string;
}

export interface Stage2Result {
  /** The fastest measured variant; null when nothing could be measured (keep stage 1's choice). */
  best: Candidate|null;
  bestMs: number;
  /** Every variant measured, in the order timed. */
  measured: Measurement[];
  /** Wall time spent, by `now`. */
  spentMs: number;
  /** Every variant of every candidate was measured within the budget. */
  complete: boolean;
}

/**
 * The variants of a candidate: every combination of its `space` values, merged into its params.
 * The first one takes the first value of each dimension (the untuned default).
 */
export function variants(c: Candidate): Candidate[] {
  let combos: Array<Record<string, number>> = [{}];
  for (const [name, values] of Object.entries(c.space ?? {})) {
    if (values.length === 0) continue;
    combos = combos.flatMap(combo => values.map(v => ({...combo, [name]: v})));
  }
  return combos.map(extra => ({...c, params: {...c.params, ...extra}}));
}

const defaultNow = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/**
 * Times `candidates` (best-first, as stage 1 ranked them): first each one's default variant, then
 * the remaining variants of the candidates in the order of their measured defaults, until the
 * budget is spent. Returns the fastest measured and everything measured.
 */
export async function stage2(candidates: Candidate[], run: Runner, opts: Stage2Options = {}): Promise<Stage2Result> {
  const now = opts.now ?? defaultNow;
  const budget = opts.budgetMs ?? DEFAULT_BUDGET_MS;
  const repeats = Math.max(1, opts.repeats ?? 3);
  const warmup = Math.max(0, opts.warmup ?? 1);
  const start = now();
  const inBudget = () => now() - start < budget;
  const measured: Measurement[] = [];
  let complete = true;

  const measure = async (c: Candidate): Promise<Measurement|null> => {
    const times: number[] = [];
    try {
      for (let i = 0; i < warmup; i++) {
        if (!inBudget()) return null;
        await run(c);
      }
      for (let i = 0; i < repeats; i++) {
        if (!inBudget()) break;
        const ms = await run(c);
        if (!(ms >= 0)) throw new Error(`the runner returned ${ms}`);
        times.push(ms);
      }
    } catch (e) {
      const m = {candidate: c, ms: Infinity, runs: times.length, error: (e as Error)?.message ?? String(e)};
      measured.push(m);
      return m;
    }
    if (times.length === 0) return null;
    if (times.length < repeats) complete = false;
    times.sort((a, b) => a - b);
    const m = {candidate: c, ms: times[(times.length - 1) >> 1], runs: times.length};
    measured.push(m);
    return m;
  };

  const all = candidates.map(variants);
  // Phase 1: the default variant of each candidate, in stage 1's order (checks the model's ranking).
  const firstMs: number[] = [];
  for (const vs of all) {
    if (!inBudget()) { complete = false; break; }
    const m = await measure(vs[0]);
    if (m == null) { complete = false; break; }
    firstMs.push(m.ms);
  }
  // Phase 2: the other variants, the candidates whose default measured fastest first.
  const order = firstMs.map((ms, i) => ({ms, i})).sort((a, b) => a.ms - b.ms || a.i - b.i);
  outer: for (const {i} of order) {
    for (const v of all[i].slice(1)) {
      if (!inBudget() || (await measure(v)) == null) { complete = false; break outer; }
    }
  }
  if (firstMs.length < all.length) complete = false;

  let best: Measurement|null = null;
  for (const m of measured) if (Number.isFinite(m.ms) && (best == null || m.ms < best.ms)) best = m;
  return {best: best?.candidate ?? null, bestMs: best?.ms ?? Infinity, measured, spentMs: now() - start, complete};
}
