// The search inside the backend (issues #5 and #7), in Node and in Chromium on a WebGPU base: the
// attention kernel and tiles that run are the ones the search decides for the shape on this device
// (row-wise and block-wise both reachable), withCandidate() forces a candidate (the plan follows,
// results do not change), and tune() times the attention group's candidates on the device and
// caches the fastest, which later plans use.
import * as tf from '@tensorflow/tfjs-core';

import {StofBackend} from '../../src/backend/stof_backend';
import {attention, profile} from '../../src/public_api';
import {
  attentionSignature, choiceOf, decideAttention, fusedAttentionCandidates, syntheticProfile, tune, tuningCache, variants, withCandidate,
} from '../../src/search';

import {seededValues} from './util';

const expectedBase = (globalThis as unknown as {__stofExpectedBase?: 'webgpu'|'cpu'}).__stofExpectedBase;

describe('search in the backend', () => {
  let backend: StofBackend;
  beforeAll(async () => {
    if (expectedBase != null) tf.env().set('STOF_BASE', expectedBase);
    expect(await tf.setBackend('stof')).toBe(true);
    backend = tf.backend() as StofBackend;
  });
  afterAll(() => tf.env().set('STOF_BASE', 'auto'));
  const gpu = () => backend.baseName === 'webgpu';

  const inputs = (B: number, H: number, S: number, D: number, seed: number) =>
      [0, 1, 2].map(i => tf.tensor(seededValues(B * H * S * D, seed + i), [B, H, S, D]));
  const shapeOf = (B: number, H: number, S: number, D: number, maskInstances: number) =>
      ({batch: B * H, Sq: S, Sk: S, D, Dv: D, masked: maskInstances > 0, maskInstances});

  it('has a measured device profile on WebGPU', () => {
    if (!gpu()) { expect(backend.deviceProfile).toBeNull(); return; }
    const p = backend.deviceProfile!;
    expect(p.bandwidthGBs).toBeGreaterThan(0);
    expect(p.fp32Gflops).toBeGreaterThan(0);
    expect(p.maxWorkgroupStorage).toBe((backend.base as unknown as {device: GPUDevice}).device.limits.maxComputeWorkgroupStorageSize);
  });

  for (const [S, masked] of [[5, false], [64, true], [300, true]] as const) {
    it(`runs the kernel the search decides (S=${S}${masked ? ', causal mask' : ''})`, async () => {
      const [q, k, v] = inputs(1, 2, S, 32, S);
      const mask = masked ? tf.greater(tf.linalg.bandPart(tf.ones([S, S]), -1, 0), 0) : undefined;
      const r = await profile(() => attention(q, k, v, {mask}));
      tf.dispose([r.result, q, k, v, mask!].filter(t => t != null));
      const g = r.groups.find(x => x.template === 'attention')!;
      const shape = shapeOf(1, 2, S, 32, masked ? 1 : 0);
      expect(g.search).toBe(attentionSignature(shape));
      const expected = decideAttention(shape, backend.deviceProfile ?? syntheticProfile({maxWorkgroupStorage: 48 * 1024}))!.choice;
      expect(g.tiles).toEqual({Br: expected.Br, Bc: expected.Bc, threads: expected.threads});
      expect(g.variant!.startsWith(expected.variant)).toBe(true);
    });
  }

  it('withCandidate() forces each kind of candidate; results do not change', async () => {
    const S = 70, D = 64;
    const [q, k, v] = inputs(2, 2, S, D, 11);
    const mask = tf.greater(tf.linalg.bandPart(tf.ones([S, S]), 16, 16), 0);
    const shape = shapeOf(2, 2, S, D, 1);
    const sig = attentionSignature(shape);
    const all = fusedAttentionCandidates(shape).flatMap(variants);
    const picks = [all.find(c => c.scheme === 'attention-rowwise' && c.params['rows'] === 4)!,
                   all.find(c => c.scheme === 'attention-rowwise' && c.params['rows'] === 1)!,
                   all.find(c => c.scheme === 'attention-blockwise' && c.params['Br'] === 32 && c.params['Bc'] === 32)!];
    let first: Float32Array|null = null;
    for (const c of picks) {
      const r = await withCandidate(sig, c, () => profile(() => attention(q, k, v, {mask})));
      const out = await (r.result as tf.Tensor).data() as Float32Array;
      (r.result as tf.Tensor).dispose();
      const g = r.groups.find(x => x.template === 'attention')!;
      const want = choiceOf(c);
      expect(g.tiles).withContext(c.scheme).toEqual({Br: want.Br, Bc: want.Bc, threads: want.threads});
      expect(g.variant!.startsWith(want.variant)).withContext(c.scheme).toBe(true);
      if (first == null) first = out;
      else for (let i = 0; i < out.length; i += 97) expect(Math.abs(out[i] - first[i])).withContext(`${c.scheme} [${i}]`).toBeLessThan(1e-5);
    }
    tf.dispose([q, k, v, mask]);
  });

  it('tune() times the attention candidates on the device and later plans use the fastest', async () => {
    if (!gpu()) { pending('stage 2 times on WebGPU'); return; }
    const S = 40, D = 32;
    const [q, k, v] = inputs(1, 2, S, D, 21);
    const shape = shapeOf(1, 2, S, D, 0);
    const sig = attentionSignature(shape);
    const fn = () => attention(q, k, v);
    try {
      const report = await tune(fn, [], {budgetMs: 4000, repeats: 1, retune: true, save: false});
      const g = report.groups.find(x => x.signature === sig)!;
      expect(g).withContext(JSON.stringify(report.groups.map(x => x.signature))).toBeDefined();
      expect(g.measured).toBeGreaterThan(1);
      expect(g.best).not.toBeNull();
      const record = tuningCache.get(backend.deviceProfile!.key, sig)!;
      expect(record.source).toBe('stage2');
      const r = await profile(fn);
      (r.result as tf.Tensor).dispose();
      const want = choiceOf(g.best!);
      expect(r.groups.find(x => x.template === 'attention')!.tiles).toEqual({Br: want.Br, Bc: want.Bc, threads: want.threads});
    } finally {
      tf.dispose([q, k, v]);
      tuningCache.clear();
    }
  }, 60000);
});
