// The search of issue #7, in Node and in Chromium: the cost model and stage 1 on synthetic device
// profiles (row-wise attention for short rows, block-wise for long sparse ones, fusion where it
// saves bytes, hand-computed cases), stage 2 with a fake clock (minimum, budget), the tuning cache
// (round trip, corrupt and stale text; the file store in Node), decide()/tune(), and the device
// microbenchmarks where a WebGPU device exists.
import * as tf from '@tensorflow/tfjs-core';

import {
  attentionCandidates, AttentionDesc, BLOCK_TILES, Candidate, CACHE_VERSION, createGpuTimer, decide, defaultStore, deviceKey, DeviceProfile,
  fileStore, gemmEpilogueCandidates, gemmKernel, layerNormCandidates, measureDeviceProfile, score, stage1, stage2, syntheticProfile,
  tileKey, timePerRepetition, tune, TuningCache, variants,
} from '../../src/search';
import {isNode} from '../../src/search/cache_stores';

const expectedBase = (globalThis as unknown as {__stofExpectedBase: 'webgpu'|'cpu'}).__stofExpectedBase;

/** What the mask analysis reports for a mask predicate: tile occupancy and full fraction per tile class, density. */
function analyze(Sq: number, Sk: number, keep: (i: number, j: number) => boolean) {
  const tileOccupancy: Record<string, number> = {}, fullFraction: Record<string, number> = {};
  let visible = 0;
  for (let i = 0; i < Sq; i++) for (let j = 0; j < Sk; j++) if (keep(i, j)) visible++;
  for (const {Br, Bc} of BLOCK_TILES) {
    let nonEmpty = 0, full = 0, tiles = 0;
    for (let bi = 0; bi < Sq; bi += Br) {
      for (let bj = 0; bj < Sk; bj += Bc) {
        tiles++;
        let any = false, all = true;
        for (let i = bi; i < Math.min(Sq, bi + Br); i++) for (let j = bj; j < Math.min(Sk, bj + Bc); j++) keep(i, j) ? any = true : all = false;
        if (any) { nonEmpty++; if (all) full++; }
      }
    }
    tileOccupancy[tileKey(Br, Bc)] = nonEmpty / tiles;
    fullFraction[tileKey(Br, Bc)] = nonEmpty > 0 ? full / nonEmpty : 1;
  }
  return {tileOccupancy, fullFraction, density: visible / (Sq * Sk)};
}

const slidingWindow = (w: number) => (i: number, j: number) => Math.abs(i - j) <= w;
const causal = (i: number, j: number) => j <= i;
/** BigBird-like: 64-blocks on the diagonal band, 2 global blocks, one pseudo-random block per row block. */
const bigBird = (i: number, j: number) => {
  const bi = i >> 6, bj = j >> 6;
  return Math.abs(bi - bj) <= 1 || bi < 2 || bj < 2 || bj === (bi * 7 + 3) % 64;
};

const best = (cands: Candidate[], p: DeviceProfile) => stage1(cands, p, 1)[0].candidate;
// syntheticProfile() has an H100's numbers as measureDeviceProfile reports them through Dawn.
const PROFILES: Array<[string, DeviceProfile]> = [
  ['H100-like', syntheticProfile()],
  ['H100-like, 4x the workgroups at once', syntheticProfile({parallelism: syntheticProfile().parallelism * 4})],
  ['integrated-GPU-like', syntheticProfile({bandwidthGBs: 100, cacheBandwidthGBs: 400, fp32Gflops: 2000, dispatchUs: 15, parallelism: 48,
                                           maxWorkgroupStorage: 32768, maxInvocations: 256})],
];

describe('search: cost model (stage 1)', () => {
  // Round numbers: 1e5 bytes/ms of memory, 4e5 of cache, 1e6 flops/ms, 10 µs per launch, 4 × 256 invocations at once.
  const p = syntheticProfile({bandwidthGBs: 0.1, cacheBandwidthGBs: 0.4, fp32Gflops: 1, dispatchUs: 10, parallelism: 4,
                              maxWorkgroupStorage: 16384, maxInvocations: 256});
  const one = (k: Partial<Candidate['kernels'][0]>): Candidate =>
      ({scheme: 'x', params: {}, kernels: [{workgroups: 8, invocations: 256, bytes: 0, flops: 0, ...k}]});

  it('scores hand-computed kernels: launches + max(memory, compute) / wave efficiency', () => {
    // 1e4 bytes: 0.1 ms; 2e4 cached bytes: 0.05 ms; memory 0.15 ms > compute 0.05 ms; 8 workgroups = 2 full waves.
    expect(score(one({bytes: 1e4, cachedBytes: 2e4, flops: 5e4}), p)).toBeCloseTo(0.01 + 0.15, 10);
    // Compute-bound: 2e5 flops = 0.2 ms.
    expect(score(one({bytes: 1e4, flops: 2e5}), p)).toBeCloseTo(0.01 + 0.2, 10);
    // 5 workgroups on 4 slots: 1.25 waves, the idle 3/4 of the last one divided by 2 waves: 1.625 waves.
    expect(score(one({workgroups: 5, bytes: 1e4}), p)).toBeCloseTo(0.01 + 0.1 * 1.625 / 1.25, 10);
    // 1 workgroup of 64 invocations: 1/16 of the device.
    expect(score(one({workgroups: 1, invocations: 64, flops: 1e4}), p)).toBeCloseTo(0.01 + 0.01 * 16, 10);
    // Barriers: 2 per workgroup × 16 flops × 256 invocations × 8 workgroups = 65536 flops.
    expect(score(one({barriers: 2}), p)).toBeCloseTo(0.01 + 0.065536, 10);
    // Storage over 3/4 of the limit lowers residency: 6 workgroups of 16 KiB run 3 at a time = 2 waves of 3/4 of the device.
    expect(score(one({workgroups: 6, bytes: 1e4, sharedBytes: 16384}), p)).toBeCloseTo(0.01 + 0.1 / 0.75, 10);
    // Two launches, inactive workgroups cost nothing, several kernels add up.
    expect(score(one({launches: 2, bytes: 1e4}), p)).toBeCloseTo(0.02 + 0.1, 10);
    expect(score(one({activeFraction: 0.5, bytes: 1e4}), p)).toBeCloseTo(0.01 + 0.1, 10);
    expect(score({scheme: 'x', params: {}, kernels: [one({bytes: 1e4}).kernels[0], one({flops: 1e5}).kernels[0]]}, p)).toBeCloseTo(0.02 + 0.2, 10);
  });

  it('scores what the device cannot run as Infinity, and stage1 drops it', () => {
    expect(score(one({sharedBytes: 16385}), p)).toBe(Infinity);
    expect(score(one({invocations: 512}), p)).toBe(Infinity);
    expect(score({...one({}), infeasible: 'too wide'}, p)).toBe(Infinity);
    const ok = one({bytes: 1e4});
    expect(stage1([one({invocations: 512}), ok], p, 3).map(s => s.candidate)).toEqual([ok]);
  });

  it('stage1 keeps the k best, fastest first, ties in input order', () => {
    const c = [3, 1, 2, 1, 5].map((f, i) => ({...one({flops: f * 1e5}), scheme: `s${i}`}));
    expect(stage1(c, p, 3).map(s => s.candidate.scheme)).toEqual(['s1', 's3', 's2']);
    expect(stage1(c, p, 0)).toEqual([]);
  });

  it('builds the attention numbers by hand: row-wise, block-wise and unfused for B=H=1, S=D=64', () => {
    const cands = attentionCandidates({B: 1, H: 1, Sq: 64, Sk: 64, D: 64});
    const row32 = cands.find(c => c.scheme === 'attention-rowwise' && c.params['rows'] === 32)!;
    // Q, K, V read and O written once: 4 × 64 × 64 × 4 bytes; two workgroups each read all of K and V: one re-read of 32 KiB.
    // 128 invocations (16 scores each); storage: Q rows 32 × 64, score rows 32 × 64, 128 reduction slots, 2 key blocks, 2 × 32 row stats.
    expect(row32.space!['threads'][0]).toBe(128);
    expect(row32.kernels[0]).toEqual(jasmine.objectContaining(
        {workgroups: 2, invocations: 128, bytes: 65536, cachedBytes: 32768, sharedBytes: 4 * (32 * 64 + 32 * 64 + 128 + 2 + 64)}));
    expect(row32.kernels[0].flops).toBe(64 * 64 * (128 + 128 + 8));
    const b32 = cands.find(c => c.scheme === 'attention-blockwise' && c.params['Br'] === 32 && c.params['Bc'] === 32)!.kernels[0];
    // 2 row blocks × 2 column tiles; each workgroup reads all of K and V once: one re-read of 32 KiB.
    expect(b32).toEqual(jasmine.objectContaining({workgroups: 2, bytes: 65536, cachedBytes: 32768, barriers: 3 * 2 + 2}));
    expect(b32.flops).toBe(4 * (32 * 32 * 264 + 32 * 132));
    const unfused = cands.find(c => c.scheme === 'attention-unfused')!;
    // The scores are written, read and written again (softmax), and read: 4 × 64 × 64 × 4 bytes on top of Q, K, V, O.
    const bytes = unfused.kernels.reduce((n, k) => n + k.bytes, 0);
    expect(bytes).toBe(65536 + 4 * 16384);
    expect(unfused.kernels.length).toBe(3);
  });

  // The planner chooses among the fused kernels (no S×S scores in memory).
  const fused = (d: AttentionDesc) => attentionCandidates(d).filter(c => c.scheme !== 'attention-unfused');

  for (const [name, p] of PROFILES) {
    it(`picks row-wise attention for short rows (${name})`, () => {
      // Few short rows: a block-wise workgroup of 64 query rows would be mostly idle, and its tile loop
      // pays the load latency per tile; row-wise workgroups of a few rows fill the device.
      for (const S of [8, 16]) {
        const dense: AttentionDesc = {B: 1, H: 12, Sq: S, Sk: S, D: 64};
        const masked: AttentionDesc = {...dense, ...analyze(S, S, causal), mask: {instances: 1, bytesPerElement: 1}};
        for (const [what, d] of [['dense', dense], ['causal', masked]] as const) {
          expect(stage1(fused(d), p, 1)[0].candidate.scheme).withContext(`${what} S=${S}`).toBe('attention-rowwise');
        }
      }
    });

    it(`picks block-wise attention for long sparse rows (${name})`, () => {
      for (const [B, S] of [[4, 2048], [1, 4096], [4, 4096]]) {
        for (const [mask, keep] of [['sliding window 128', slidingWindow(128)], ['bigbird', bigBird]] as const) {
          const d: AttentionDesc = {B, H: 12, Sq: S, Sk: S, D: 64, ...analyze(S, S, keep), mask: {instances: 1, bytesPerElement: 1}};
          const ranked = stage1(fused(d), p, 100);
          const where = `${mask} B=${B} S=${S}`;
          expect(ranked[0].candidate.scheme).withContext(where).toBe('attention-blockwise');
          // The best row-wise candidate (if any fits) is slower: each invocation waits on a V row per key.
          const row = ranked.find(s => s.candidate.scheme === 'attention-rowwise');
          if (row != null) expect(row.ms).withContext(where).toBeGreaterThan(1.2 * ranked[0].ms);
        }
      }
    });
  }

  it('rules out row-wise attention when a row does not fit in workgroup storage', () => {
    const p = syntheticProfile({maxWorkgroupStorage: 32768});
    const cands = attentionCandidates({B: 1, H: 1, Sq: 16384, Sk: 16384, D: 64});
    const rowwise = cands.filter(c => c.scheme === 'attention-rowwise');
    expect(rowwise.length).toBeGreaterThan(0);
    expect(rowwise.every(c => score(c, p) === Infinity)).toBe(true);
    expect(best(cands, p).scheme).not.toBe('attention-rowwise');
  });

  it('skips empty tiles: a sparser mask lowers the block-wise prediction', () => {
    const p = syntheticProfile();
    const blockwise = (keep: (i: number, j: number) => boolean) =>
        stage1(attentionCandidates({B: 1, H: 12, Sq: 2048, Sk: 2048, D: 64, ...analyze(2048, 2048, keep), mask: {instances: 1, bytesPerElement: 1}})
                   .filter(c => c.scheme === 'attention-blockwise'), p, 1)[0].ms;
    expect(blockwise(slidingWindow(64))).toBeLessThan(blockwise(slidingWindow(512)) / 3);
    expect(blockwise(slidingWindow(512))).toBeLessThan(blockwise(() => true) / 1.5);
  });

  it('fuses a GEMM epilogue (it saves writing and reading the output)', () => {
    const g = {M: 4096, N: 3072, K: 768, epilogue: {inputBytes: 3072 * 4, flopsPerElement: 20}};
    const cands = gemmEpilogueCandidates(g);
    for (const [name, p] of PROFILES) {
      expect(best(cands, p).scheme).withContext(name).toBe('gemm-epilogue-fused');
      // For every tile, fused is faster than separate and saves exactly one write and one read of M×N.
      for (let i = 0; i < cands.length; i += 2) {
        const [fused, separate] = [cands[i], cands[i + 1]];
        if (score(separate, p) === Infinity) continue;  // a tile this device cannot run
        expect(score(fused, p)).toBeLessThan(score(separate, p));
        const bytes = (c: Candidate) => c.kernels.reduce((n, k) => n + k.bytes, 0);
        expect(bytes(separate) - bytes(fused)).toBe(2 * 4096 * 3072 * 4);
      }
    }
  });

  it('puts residual + LayerNorm in the GEMM epilogue when rows are many, and in a row kernel when the epilogue would idle the GPU', () => {
    // Without the load-latency term: the whole-row tiles' narrow K panels wait on memory more often,
    // which on a real device's latency can outweigh the saved bytes (stage 2 decides that).
    const p = syntheticProfile({loadLatencyUs: 0});
    const ln = (M: number) => layerNormCandidates({M, N: 768, K: 768, residual: true, bias: true});
    expect(best(ln(16384), p).scheme).toBe('layernorm-gemm-epilogue');
    // 128 rows: whole-row tiles give at most 32 workgroups; the separate GEMM tiles the columns too.
    expect(best(ln(128), p).scheme).toBe('layernorm-row');
    // Tiles needing more accumulators than an invocation holds are infeasible.
    const wide = layerNormCandidates({M: 1024, N: 8192, K: 1024}).filter(c => c.scheme === 'layernorm-gemm-epilogue');
    expect(wide.every(c => c.infeasible != null && score(c, p) === Infinity)).toBe(true);
  });

  it('fuses mask creation into attention for a dense mask, and keeps it separate when skipping pays', () => {
    const p = syntheticProfile();
    const pending = (S: number) => ({instances: 1, bytesPerElement: 4, pending: {inputBytes: S * 4, flopsPerElement: 3}});
    // A padding mask with every position valid: nothing to skip, so materializing it only costs.
    const dense = {B: 8, H: 12, Sq: 512, Sk: 512, D: 64, ...analyze(512, 512, () => true), mask: pending(512)};
    expect(best(fused(dense), p).params['maskFused']).toBe(1);
    // A sliding window over 4096 keys: analyzing a separate mask lets the kernel skip ~90% of the tiles.
    const sparse = {B: 1, H: 12, Sq: 4096, Sk: 4096, D: 64, ...analyze(4096, 4096, slidingWindow(128)), mask: pending(4096)};
    expect(best(fused(sparse), p).params['maskFused']).toBe(0);
  });

  it('keeps the known-best scheme in the top k on hand-computed cases', () => {
    const p = syntheticProfile({bandwidthGBs: 0.1, cacheBandwidthGBs: 0.4, fp32Gflops: 1, dispatchUs: 10, parallelism: 4});
    const k = (bytes: number, flops: number, workgroups = 8) => ({workgroups, invocations: 256, bytes, flops});
    // By hand: A = 0.01 + 0.3 = 0.31 ms; B = 0.02 + max(0.2, 0.1) = 0.22 ms (two launches, less traffic);
    // C = 0.01 + 0.1 / (1/4) = 0.41 ms (1 workgroup fills a quarter of the device); D = 0.01 + 0.25 = 0.26 ms.
    const cands: Candidate[] = [
      {scheme: 'A', params: {}, kernels: [k(3e4, 1e4)]},
      {scheme: 'B', params: {}, kernels: [k(1e4, 5e4), k(1e4, 5e4)]},
      {scheme: 'C', params: {}, kernels: [k(1e4, 1e4, 1)]},
      {scheme: 'D', params: {}, kernels: [k(1e4, 2.5e5)]},
    ];
    expect(stage1(cands, p, 4).map(s => [s.candidate.scheme, Math.round(s.ms * 1000) / 1000]))
        .toEqual([['B', 0.22], ['D', 0.26], ['A', 0.31], ['C', 0.41]]);
    // And on real shapes: the scheme a hand argument says is best is within the top 3.
    const sp = syntheticProfile();
    const top3 = (c: Candidate[]) => stage1(c, sp, 3).map(s => s.candidate.scheme);
    // Measured on the H100 (bench/results/search.json): block-wise 64×32 is the fastest fused kernel for B=8, H=12 at S = 128 .. 4096.
    for (const S of [128, 1024, 4096]) expect(top3(fused({B: 8, H: 12, Sq: S, Sk: S, D: 64}))).toContain('attention-blockwise');
    expect(top3(fused({B: 1, H: 12, Sq: 8, Sk: 8, D: 64}))).toContain('attention-rowwise');
    expect(top3(gemmEpilogueCandidates({M: 1024, N: 768, K: 768, epilogue: {inputBytes: 1024 * 768 * 4, flopsPerElement: 1}})))
        .toContain('gemm-epilogue-fused');
  });

  it('gemmKernel counts operands once and their re-reads as cached', () => {
    const k = gemmKernel({M: 128, N: 256, K: 64}, {BM: 64, BN: 64});
    expect(k.workgroups).toBe(2 * 4);
    expect(k.bytes).toBe((128 * 64 + 64 * 256 + 128 * 256) * 4);
    expect(k.cachedBytes).toBe((128 * 64 * 3 + 64 * 256 * 1) * 4);
    expect(k.flops).toBe(2 * 128 * 256 * 64);
  });
});

describe('search: stage 2', () => {
  // A fake device: run() takes cost(c) ms of the fake clock (plus 1 ms of overhead) and reports cost(c).
  function fake(cost: (c: Candidate) => number) {
    let clock = 0;
    const runs: string[] = [];
    return {
      now: () => clock,
      runs,
      run: async (c: Candidate) => {
        runs.push(`${c.scheme}${JSON.stringify(c.params)}`);
        const ms = cost(c);
        clock += ms + 1;
        return ms;
      },
    };
  }
  const cand = (scheme: string, space: Record<string, number[]>): Candidate => ({scheme, params: {tile: 1}, kernels: [], space});
  // The model ranks A before B; on the device B with vec 4 and threads 64 is fastest.
  const A = cand('A', {vec: [4, 1], threads: [128, 64]}), B = cand('B', {vec: [4, 1], threads: [128, 64]});
  const cost = (c: Candidate) => (c.scheme === 'A' ? 10 : 8) + (c.params['vec'] === 4 ? 0 : 3) + (c.params['threads'] === 64 ? -2 : 0);

  it('expands the space into variants, defaults first', () => {
    expect(variants(A).map(v => v.params)).toEqual([
      {tile: 1, vec: 4, threads: 128}, {tile: 1, vec: 4, threads: 64}, {tile: 1, vec: 1, threads: 128}, {tile: 1, vec: 1, threads: 64}]);
    expect(variants({scheme: 'x', params: {a: 1}, kernels: []}).map(v => v.params)).toEqual([{a: 1}]);
  });

  it('with budget enough, measures every variant and picks the minimum', async () => {
    const f = fake(cost);
    const r = await stage2([A, B], f.run, {budgetMs: 1e6, repeats: 3, warmup: 1, now: f.now});
    expect(r.complete).toBe(true);
    expect(r.measured.length).toBe(8);
    expect(r.best!.scheme).toBe('B');
    expect(r.best!.params).toEqual({tile: 1, vec: 4, threads: 64});
    expect(r.bestMs).toBe(6);
    // Defaults first in stage 1's order, then the variants of the faster default (B) before A's.
    expect(r.measured.slice(0, 3).map(m => `${m.candidate.scheme}${m.candidate.params['vec']}${m.candidate.params['threads']}`))
        .toEqual(['A4128', 'B4128', 'B464']);
    expect(f.runs.length).toBe(8 * 4);  // one warm-up + three timed runs each
  });

  it('stops within one run of the budget and returns the best measured so far', async () => {
    for (const budgetMs of [0.5, 5, 20, 37, 60]) {
      const f = fake(cost);
      const r = await stage2([A, B], f.run, {budgetMs, repeats: 3, warmup: 1, now: f.now});
      const longestRun = 10 + 3 + 1;
      expect(r.spentMs).withContext(`budget ${budgetMs}`).toBeLessThanOrEqual(budgetMs + longestRun);
      expect(r.complete).toBe(false);
      if (r.measured.length > 0) {
        expect(r.bestMs).toBe(Math.min(...r.measured.map(m => m.ms)));
      } else {
        expect(r.best).toBeNull();
      }
    }
  });

  it('with no budget measures nothing (stage 1 decides)', async () => {
    const f = fake(cost);
    const r = await stage2([A, B], f.run, {budgetMs: 0, now: f.now});
    expect(r.best).toBeNull();
    expect(f.runs).toEqual([]);
  });

  it('skips a variant whose run throws', async () => {
    const f = fake(cost);
    const run = async (c: Candidate) => {
      if (c.scheme === 'B' && c.params['threads'] === 64) throw new Error('does not compile');
      return f.run(c);
    };
    const r = await stage2([A, B], run, {budgetMs: 1e6, repeats: 1, warmup: 0, now: f.now});
    expect(r.best!.params).toEqual({tile: 1, vec: 4, threads: 128});
    expect(r.best!.scheme).toBe('B');
    expect(r.measured.filter(m => m.error != null).length).toBe(2);
  });
});

describe('search: tuning cache', () => {
  const record = {scheme: 'attention-blockwise', params: {Br: 32, Bc: 64, threads: 128}, ms: 0.25, source: 'stage2' as const};
  let warn: jasmine.Spy;
  beforeEach(() => { warn = spyOn(console, 'warn'); });

  it('round-trips through export() and import()', () => {
    const a = new TuningCache({store: null});
    a.set('nvidia/hopper//', 'sig-1', record);
    a.setProfile(syntheticProfile({key: 'nvidia/hopper//'}));
    const b = new TuningCache({store: null});
    expect(b.import(a.export())).toBe(1);
    expect(b.get('nvidia/hopper//', 'sig-1')).toEqual(jasmine.objectContaining(record));
    expect(b.getProfile('nvidia/hopper//')).toEqual(syntheticProfile({key: 'nvidia/hopper//'}));
    expect(b.get('nvidia/hopper//', 'sig-2')).toBeUndefined();
    expect(b.get('other', 'sig-1')).toBeUndefined();
    expect(JSON.parse(a.export()).version).toBe(CACHE_VERSION);
    expect(warn).not.toHaveBeenCalled();
  });

  it('ignores corrupt text with one warning, never throwing', () => {
    const c = new TuningCache({store: null});
    c.set('d', 's', record);
    for (const text of ['{not json', '[]', '{"format": "something else"}', 'null']) {
      warn.calls.reset();
      expect(c.import(text)).toBe(0);
      expect(warn).toHaveBeenCalledTimes(1);
    }
    expect(c.get('d', 's')).toEqual(jasmine.objectContaining(record));  // what was there stays
  });

  it('drops invalid records and keeps the valid ones', () => {
    const text = JSON.parse(new TuningCache({store: null}).export());
    text.devices = {d: {entries: {good: record, bad: {scheme: 3}, worse: {...record, params: {x: 'y'}}}, profile: {key: 'd', bandwidthGBs: -1}}};
    const c = new TuningCache({store: null});
    expect(c.import(JSON.stringify(text))).toBe(1);
    expect(c.get('d', 'good')).toBeDefined();
    expect(c.getProfile('d')).toBeUndefined();
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.calls.argsFor(0)[0])).toMatch(/3 invalid record/);
  });

  it('ignores text of another version with one warning naming both versions', () => {
    const a = new TuningCache({store: null});
    a.set('d', 's', record);
    const text = JSON.parse(a.export());
    text.version = CACHE_VERSION + 1;
    const b = new TuningCache({store: null});
    expect(b.import(JSON.stringify(text))).toBe(0);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.calls.argsFor(0)[0])).toContain(`version ${CACHE_VERSION + 1}`);
    expect(b.size()).toBe(0);
  });

  it('counts changes in generation (plan caches key on it)', () => {
    const c = new TuningCache({store: null});
    const g0 = c.generation;
    c.set('d', 's', record);
    expect(c.generation).toBeGreaterThan(g0);
  });

  if (isNode()) {
    describe('in a JSON file (Node)', () => {
      const fs = process.getBuiltinModule('fs') as typeof import('fs');
      const os = process.getBuiltinModule('os') as typeof import('os');
      const path = process.getBuiltinModule('path') as typeof import('path');
      let dir: string;
      beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stof-tuning-')); });
      afterEach(() => {
        fs.rmSync(dir, {recursive: true, force: true});
        tf.env().set('STOF_TUNING_CACHE', '');
      });

      it('persists, loads lazily in another cache, and writes atomically (no temp files left)', async () => {
        const file = path.join(dir, 'sub', 'tuning.json');
        const a = new TuningCache({store: fileStore(file)});
        a.set('d', 's', record);
        await a.save();
        expect(fs.readdirSync(path.dirname(file))).toEqual(['tuning.json']);
        expect(JSON.parse(fs.readFileSync(file, 'utf8')).version).toBe(CACHE_VERSION);
        const b = new TuningCache({store: fileStore(file)});
        expect(b.get('d', 's')).toEqual(jasmine.objectContaining(record));  // no load() needed: read on first use
        // A second writer keeps what the first stored.
        b.set('d', 's2', {...record, ms: 1});
        const c = new TuningCache({store: fileStore(file)});
        c.set('e', 's3', record);
        await b.save();
        await c.save();
        const d = new TuningCache({store: fileStore(file)});
        expect([d.get('d', 's'), d.get('d', 's2'), d.get('e', 's3')].every(r => r != null)).toBe(true);
        expect(warn).not.toHaveBeenCalled();
      });

      it('ignores a corrupt file with one warning, then rewrites it', async () => {
        const file = path.join(dir, 'tuning.json');
        fs.writeFileSync(file, '{"format": "tfjs-backend-stof/tuning-cache", "version": 1, "devi');
        const a = new TuningCache({store: fileStore(file)});
        expect(a.get('d', 's')).toBeUndefined();
        expect(a.size()).toBe(0);
        expect(warn).toHaveBeenCalledTimes(1);
        expect(String(warn.calls.argsFor(0)[0])).toContain(file);
        a.set('d', 's', record);
        await a.save();
        expect(new TuningCache({store: fileStore(file)}).get('d', 's')).toBeDefined();
        expect(warn).toHaveBeenCalledTimes(1);
      });

      it('ignores a file of another version with one warning', async () => {
        const file = path.join(dir, 'tuning.json');
        const a = new TuningCache({store: fileStore(file)});
        a.set('d', 's', record);
        await a.save();
        fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace(`"version": ${CACHE_VERSION}`, `"version": ${CACHE_VERSION + 1}`));
        const b = new TuningCache({store: fileStore(file)});
        await b.load();
        expect(b.get('d', 's')).toBeUndefined();
        expect(warn).toHaveBeenCalledTimes(1);
      });

      it('a file that cannot be written is one warning, not an error', async () => {
        const blocker = path.join(dir, 'not-a-dir');
        fs.writeFileSync(blocker, 'x');
        const a = new TuningCache({store: fileStore(path.join(blocker, 'tuning.json'))});
        a.set('d', 's', record);
        await a.save();
        expect(warn).toHaveBeenCalledTimes(1);
        expect(a.get('d', 's')).toBeDefined();
      });

      it('takes its path from the STOF_TUNING_CACHE flag, and "off" keeps it in memory', () => {
        const file = path.join(dir, 'flagged.json');
        tf.env().set('STOF_TUNING_CACHE', file);
        expect(defaultStore()!.description).toBe(file);
        expect(new TuningCache().getStore()!.description).toBe(file);
        tf.env().set('STOF_TUNING_CACHE', 'off');
        expect(defaultStore()).toBeNull();
        tf.env().set('STOF_TUNING_CACHE', '');
        expect(defaultStore()!.description).toMatch(/tfjs-backend-stof[\\/]tuning\.json$/);
      });
    });
  }
});

describe('search: decide() and tune()', () => {
  beforeAll(async () => { await tf.ready(); });
  const profile = syntheticProfile({key: 'spec-device'});
  const cands: Candidate[] = [
    {scheme: 'slow', params: {t: 1}, space: {vec: [4, 1]}, kernels: [{workgroups: 4096, bytes: 1e9, flops: 0}]},
    {scheme: 'fast', params: {t: 2}, space: {vec: [4, 1]}, kernels: [{workgroups: 4096, bytes: 1e8, flops: 0}]},
  ];

  it('without tuning, stage 1 decides (default variant), nothing is timed', () => {
    const cache = new TuningCache({store: null});
    let timed = 0;
    const d = decide('sig', cands, {profile, cache, run: async () => { timed++; return 1; }})!;
    expect(d.source).toBe('stage1');
    expect(d.candidate.scheme).toBe('fast');
    expect(d.candidate.params).toEqual({t: 2, vec: 4});
    expect(timed).toBe(0);
    expect(decide('sig', [{...cands[0], infeasible: 'no'}], {profile, cache})).toBeNull();
  });

  it('tune() times the groups its run decided, caches the fastest, and decide() then uses it', async () => {
    const cache = new TuningCache({store: null});
    let clock = 0;
    // On the device, 'slow' with vec 1 is the fastest (the model cannot know).
    const run = async (c: Candidate) => {
      const ms = c.scheme === 'slow' && c.params['vec'] === 1 ? 1 : 5;
      clock += ms;
      return ms;
    };
    const model = (x: tf.Tensor) => {
      decide('sig-a', cands, {profile, cache, run});
      decide('sig-a', cands, {profile, cache, run});  // the same group twice is tuned once
      return tf.add(x, 1);
    };
    const x = tf.tensor1d([1, 2, 3]);
    const before = tf.memory().numTensors;
    const report = await tune(model as (x: never) => unknown, x, {budgetMs: 1000, repeats: 1, now: () => clock});
    expect(tf.memory().numTensors).toBe(before);  // outputs disposed, inputs kept
    expect(x.isDisposed).toBe(false);
    x.dispose();
    expect(report.groups.length).toBe(1);
    expect(report.groups[0].predicted.scheme).toBe('fast');
    expect(report.groups[0].best!.params).toEqual({t: 1, vec: 1});
    expect(report.groups[0].complete).toBe(true);
    const d = decide('sig-a', cands, {profile, cache, run})!;
    expect(d.source).toBe('cache');
    expect(d.candidate.scheme).toBe('slow');
    expect(d.candidate.params).toEqual({t: 1, vec: 1});
    expect(d.measuredMs).toBe(1);
    // A record naming a candidate that no longer exists is not used.
    expect(decide('sig-a', [cands[1]], {profile, cache})!.source).toBe('stage1');
  });

  it('tune() respects the budget per signature', async () => {
    const cache = new TuningCache({store: null});
    let clock = 0;
    const run = async () => { clock += 10; return 10; };
    const model = () => {
      decide('sig-1', cands, {profile, cache, run});
      decide('sig-2', cands, {profile, cache, run});
      return tf.scalar(0);
    };
    const report = await tune(model, null, {budgetMs: 25, repeats: 1, now: () => clock});
    expect(report.groups.map(g => g.signature)).toEqual(['sig-1', 'sig-2']);
    for (const g of report.groups) {
      expect(g.spentMs).toBeLessThanOrEqual(25 + 10);
      expect(g.complete).toBe(false);
    }
  });
});

describe('search: device profile', () => {
  it('syntheticProfile takes overrides; deviceKey names vendor/architecture/device/description', () => {
    expect(syntheticProfile({bandwidthGBs: 1}).bandwidthGBs).toBe(1);
    expect(syntheticProfile().source).toBe('synthetic');
    expect(deviceKey({vendor: 'NVIDIA', architecture: 'hopper', device: '', description: 'a/b'})).toBe('nvidia/hopper//a-b');
    expect(deviceKey(undefined)).toBe('///');
  });

  if (expectedBase === 'webgpu') {
    describe('measured on this WebGPU device', () => {
      let previous: string;
      let device: GPUDevice;
      let info: Record<string, string>|undefined;
      beforeAll(async () => {
        await tf.ready();
        previous = tf.getBackend();
        expect(await tf.setBackend('webgpu')).toBe(true);
        const backend = tf.backend() as unknown as {device: GPUDevice, adapterInfo?: Record<string, string>};
        device = backend.device;
        info = (device as unknown as {adapterInfo?: Record<string, string>}).adapterInfo ?? backend.adapterInfo;
      });
      afterAll(async () => { await tf.setBackend(previous); });

      it('measures bandwidth, flops, dispatch overhead and parallelism in well under a second', async () => {
        const t0 = performance.now();
        const lines: string[] = [];
        const p = await measureDeviceProfile(device, info, {cache: null, trace: l => lines.push(l)});
        const ms = performance.now() - t0;
        console.log(`    device profile (${ms.toFixed(0)} ms): ${JSON.stringify(p)}\n      ${lines.join('\n      ')}`);
        for (const f of ['bandwidthGBs', 'cacheBandwidthGBs', 'fp32Gflops', 'dispatchUs', 'parallelism'] as const) {
          expect(Number.isFinite(p[f]) && p[f] > 0).withContext(f).toBe(true);
        }
        expect(p.maxWorkgroupStorage).toBe(device.limits.maxComputeWorkgroupStorageSize);
        expect(p.maxInvocations).toBe(device.limits.maxComputeInvocationsPerWorkgroup);
        expect(p.source).toBe(device.features.has('timestamp-query') ? 'timestamp' : 'wall');
        expect(p.key).toBe(deviceKey(info));
        expect(ms).toBeLessThan(1500);  // ~300 ms by design; software drivers are slower
      });

      it('falls back to wall-clock timing without timestamp queries', async () => {
        const p = await measureDeviceProfile(device, info, {cache: null, wallOnly: true});
        expect(p.source).toBe('wall');
        expect(p.bandwidthGBs).toBeGreaterThan(0);
      });

      it('times short GPU work per repetition, growing the repetitions to a measurable pass', async () => {
        const module = device.createShaderModule({code: '@group(0) @binding(0) var<storage, read_write> x: array<f32>;\n' +
                                                        '@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { x[g.x] = x[g.x] * 0.5 + 1.0; }'});
        const pipeline = device.createComputePipeline({layout: 'auto', compute: {module, entryPoint: 'main'}});
        const buffer = device.createBuffer({size: 4 * 65536, usage: 0x80 /* STORAGE */});
        const group = device.createBindGroup({layout: pipeline.getBindGroupLayout(0), entries: [{binding: 0, resource: {buffer}}]});
        const timer = createGpuTimer(device);
        let passes = 0;
        const encode = (pass: GPUComputePassEncoder) => {
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, group);
          pass.dispatchWorkgroups(1);
          passes++;
        };
        await timePerRepetition(timer, encode, {minMs: 5});  // warm-up: the first pass may compile the pipeline
        passes = 0;
        const ms = await timePerRepetition(timer, encode, {minMs: 50});
        expect(Number.isFinite(ms) && ms > 0 && ms < 50).toBe(true);
        expect(passes).toBeGreaterThan(2);  // one dispatch lasts far less than 50 ms, even on a loaded software driver
        timer.dispose();
        buffer.destroy();
      });

      it('is measured once per device: the second call comes from the cache', async () => {
        const cache = new TuningCache({store: null});
        const first = await measureDeviceProfile(device, info, {cache});
        const t0 = performance.now();
        const second = await measureDeviceProfile(device, info, {cache});
        expect(performance.now() - t0).toBeLessThan(20);
        expect(second).toEqual(first);
        expect(cache.getProfile(first.key)).toEqual(first);
      });
    });
  }
});
