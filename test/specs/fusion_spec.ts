// The fusion engine against tfjs-backend-cpu: each template on random shapes (broadcasting of every
// rank pair, size-1 dims, odd sizes, views through transposes), the spellings of softmax and
// LayerNorm, GEMM epilogues, a BERT encoder layer (dispatch count, equality), and no leaks.
import * as tf from '@tensorflow/tfjs-core';

import {StofBackend} from '../../src/backend/stof_backend';
import {backendInfo, profile} from '../../src/public_api';

import {expectClose, randomTensor, seededValues} from './util';

const expectedBase = (globalThis as unknown as {__stofExpectedBase: 'webgpu'|'cpu'}).__stofExpectedBase;

/** Runs `f` on 'stof' and on tfjs-backend-cpu with the same inputs; returns both outputs' values. */
async function both(f: () => tf.Tensor, rtol = 1e-5) {
  await tf.setBackend('stof');
  const report = await profile(f);
  const onStof = await report.result.data();
  report.result.dispose();
  await tf.setBackend('cpu');
  const ref = f();
  const onCpu = await ref.data();
  ref.dispose();
  expectClose(onStof as Float32Array, onCpu as Float32Array, rtol);
  return report;
}

function shapeFor(rank: number, seed: number): number[] {
  const dims = [1, 3, 5, 7, 2];
  return Array.from({length: rank}, (_, i) => dims[(seed + 2 * i) % dims.length]);
}

describe('fusion engine', () => {
  beforeAll(async () => {
    tf.engine().reset();
    tf.env().set('STOF_BASE', expectedBase);
    expect(await tf.setBackend('stof')).toBe(true);
  });
  afterAll(() => {
    tf.env().set('STOF_BASE', 'auto');
    tf.engine().reset();
  });

  it('elementwise: broadcasting of every rank pair, size-1 dims, one dispatch', async () => {
    for (let ra = 0; ra <= 4; ra++) {
      for (let rb = 0; rb <= 4; rb++) {
        const sa = shapeFor(ra, ra + 1), sb = shapeFor(rb, rb + 3);
        // Make b broadcast-compatible with a: right-align and use 1 where they differ.
        const out = ra >= rb ? sa : sb;
        const fixA = sa.map((d, i) => (d === out[i + out.length - sa.length] ? d : 1));
        const fixB = sb.map((d, i) => (d === out[i + out.length - sb.length] ? d : 1));
        const report = await both(() => tf.tidy(() => {
          const a = randomTensor(fixA, ra * 10 + rb), b = randomTensor(fixB, rb * 10 + ra + 100);
          const c = tf.add(tf.mul(tf.exp(tf.neg(a)), b), tf.sqrt(tf.abs(b)));
          return tf.sub(tf.maximum(c, tf.minimum(a, 0.25)), tf.div(tf.square(b), tf.add(tf.abs(a), 1)));
        }));
        expect(report.groups.map(g => g.template)).withContext(`[${fixA}] x [${fixB}]`).toEqual(['elementwise']);
      }
    }
  });

  it('elementwise: views through transposes and reshapes fold into indexing', async () => {
    const report = await both(() => tf.tidy(() => {
      const a = randomTensor([3, 5, 7], 1), b = randomTensor([7, 5, 3], 2);
      const t = tf.transpose(b, [2, 1, 0]);                     // non-contiguous view of b
      const x = tf.reshape(tf.transpose(tf.add(a, t), [1, 0, 2]), [5, 21]);
      return tf.mul(tf.tanh(x), tf.sigmoid(tf.reshape(tf.transpose(a, [1, 0, 2]), [5, 21])));
    }));
    expect(report.groups.length).toBe(1);
  });

  it('elementwise: comparisons, select and casts', async () => {
    await both(() => tf.tidy(() => {
      const a = randomTensor([4, 9], 3), b = randomTensor([9], 4);
      const m = tf.greater(a, b);
      return tf.add(tf.where(m, a, tf.mul(b, 2)), tf.cast(tf.lessEqual(a, 0), 'float32'));
    }));
  });

  it('row: softmax with the scale and an additive padding mask is one dispatch', async () => {
    for (const [B, H, S] of [[1, 1, 1], [2, 3, 7], [1, 2, 33], [2, 2, 130]]) {
      const report = await both(() => tf.tidy(() => {
        const scores = randomTensor([B, H, S, S], S);
        const mask = tf.tensor(seededValues(B * S, 9).map(v => (v > -0.5 ? 1 : 0)), [B, S]);
        const bias = tf.reshape(tf.mul(tf.sub(1, mask), -10000), [B, 1, 1, S]);
        return tf.softmax(tf.add(tf.mul(scores, 0.125), bias));
      }));
      expect(report.groups.map(g => g.template)).withContext(`S=${S}`).toEqual(['row']);
    }
  });

  it('row: LayerNorm as moments, and as converted TF graphs spell it, is one dispatch each', async () => {
    const x = () => randomTensor([3, 5, 40], 11);
    const gamma = () => randomTensor([40], 12), beta = () => randomTensor([40], 13);
    const viaMoments = () => tf.tidy(() => {
      const v = x();
      const {mean, variance} = tf.moments(v, -1, true);
      return tf.add(tf.mul(tf.mul(tf.sub(v, mean), tf.rsqrt(tf.add(variance, 1e-5))), gamma()), beta());
    });
    const tfGraph = () => tf.tidy(() => {  // Mean -> SquaredDifference -> Mean -> Add eps -> Rsqrt -> Mul -> Mul -> Sub -> Add
      const v = tf.reshape(x(), [15, 40]);
      const mean = tf.mean(v, [-1], true);
      const variance = tf.mean(tf.squaredDifference(v, mean), [-1], true);
      const scale = tf.mul(tf.rsqrt(tf.add(variance, 1e-12)), gamma());
      const shift = tf.sub(beta(), tf.mul(mean, scale));
      return tf.reshape(tf.add(tf.mul(v, scale), shift), [3, 5, 40]);
    });
    for (const f of [viaMoments, tfGraph]) {
      const report = await both(f, 1e-4);
      expect(report.groups.map(g => g.template)).toEqual(['row']);
      expect(report.dispatches).toBe(1);
    }
  });

  it('row: rows kept in registers (whole, or padded to the workgroup) and rows too long for them', async () => {
    // LayerNorm then softmax over the row: 512 and 768 fill the invocations, 1000 leaves some idle,
    // 4097 is past the cache (strided loops).
    for (const L of [512, 768, 1000, 4097]) {
      const report = await both(() => tf.tidy(() => {
        const h = tf.add(randomTensor([3, L], L), randomTensor([3, L], 2));
        const {mean, variance} = tf.moments(h, -1, true);
        return tf.softmax(tf.mul(tf.sub(h, mean), tf.rsqrt(tf.add(variance, 1e-5))));
      }), 1e-4);
      expect(report.groups.map(g => g.template)).withContext(`L=${L}`).toEqual(['row']);  // four stages in one kernel
    }
  });

  it('row: a residual add before LayerNorm joins it', async () => {
    const report = await both(() => tf.tidy(() => {
      const h = tf.add(randomTensor([6, 33], 1), randomTensor([6, 33], 2));
      const {mean, variance} = tf.moments(h, -1, true);
      return tf.mul(tf.sub(h, mean), tf.rsqrt(tf.add(variance, 1e-5)));
    }), 1e-4);
    expect(report.dispatches).toBe(1);
  });

  it('gemm: transposes, batch broadcast, odd sizes', async () => {
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
      const report = await both(() => tf.tidy(() => {
        const a = randomTensor(ta ? [2, 3, 17, 7] : [2, 3, 7, 17], 5);
        const b = randomTensor(tb ? [1, 9, 17] : [1, 17, 9], 6);  // tfjs broadcasts a batch of 1
        return tf.matMul(a, b, ta, tb);
      }), 1e-4);
      expect(report.groups.map(g => g.template)).toEqual(['gemm']);
    }
  });

  it('gemm: bias + GELU (erf and tanh forms) and a residual are in the epilogue', async () => {
    const gelus = [
      (x: tf.Tensor) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))),
      (x: tf.Tensor) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI))))),
    ];
    for (const gelu of gelus) {
      const report = await both(() => tf.tidy(() => {
        const x = randomTensor([2, 13, 24], 7), w = randomTensor([24, 40], 8), bias = randomTensor([40], 9);
        const h = tf.reshape(tf.add(tf.matMul(tf.reshape(x, [26, 24]), w), bias), [2, 13, 40]);
        return gelu(h);
      }), 1e-4);
      expect(report.groups.map(g => g.template)).toEqual(['gemm']);
      expect(report.dispatches).toBe(1);
    }
    const report = await both(() => tf.tidy(() => {
      const x = randomTensor([10, 24], 1), w = randomTensor([24, 24], 2);
      return tf.add(x, tf.mul(tf.fused.matMul({a: x, b: w, bias: randomTensor([24], 3), activation: 'relu'}), 0.5));
    }), 1e-4);
    expect(report.dispatches).toBe(1);
  });

  it('attention: the matmul-softmax-matmul chain is one kernel for every head dim, odd lengths, masks', async () => {
    const cases: Array<[number, number, number, number, number]> = [  // B, H, Sq, Sk, D
      [1, 1, 1, 1, 32], [2, 3, 7, 7, 64], [1, 2, 33, 70, 80], [2, 2, 65, 65, 128], [1, 1, 1, 40, 64]];
    for (const [B, H, Sq, Sk, D] of cases) {
      const report = await both(() => tf.tidy(() => {
        const q = randomTensor([B, H, Sq, D], 1), k = randomTensor([B, H, Sk, D], 2), v = randomTensor([B, H, Sk, D], 3);
        const mask = tf.tensor(seededValues(B * Sk, 4).map(x => (x > -0.6 ? 1 : 0)), [B, Sk]);
        const bias = tf.reshape(tf.mul(tf.sub(1, mask), -10000), [B, 1, 1, Sk]);
        return tf.matMul(tf.softmax(tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(D)), bias)), v);
      }), 1e-4);
      // One attention launch, plus at most one that makes the (new) mask's tile format.
      const templates = report.groups.map(g => g.template);
      expect(templates.filter(t => t !== 'mask')).withContext(`${B},${H},${Sq},${Sk},${D}`).toEqual(['attention']);
      expect(templates.filter(t => t === 'mask').length).toBeLessThanOrEqual(1);
    }
  });

  it('attention: a causal mask by select with -Infinity, and fully masked rows give NaN as the chain does', async () => {
    const [S, D] = [9, 32];
    const causal = () => tf.greaterEqual(tf.reshape(tf.range(0, S), [S, 1]), tf.reshape(tf.range(0, S), [1, S]));
    const chain = (maskRow: boolean) => () => tf.tidy(() => {
      const q = randomTensor([2, S, D], 5), k = randomTensor([2, S, D], 6), v = randomTensor([2, S, D], 7);
      let keep = tf.broadcastTo(causal(), [2, S, S]);
      if (maskRow) keep = tf.logicalAnd(keep, tf.reshape(tf.tensor1d([1, 1, 1, 0, 1, 1, 1, 1, 1], 'bool'), [1, S, 1]));
      const scores = tf.matMul(q, k, false, true);
      return tf.matMul(tf.softmax(tf.where(keep, scores, tf.fill([2, S, S], -Infinity))), v);
    });
    await both(chain(false), 1e-4);
    await both(chain(true), 1e-4);  // row 3 has no key: NaN, like tfjs-backend-cpu
  });

  it('a BERT encoder layer: 7 launches (Q/K/V as one grouped GEMM, 3 more GEMMs, 1 attention, 2 LayerNorm rows), equal to tfjs-backend-cpu', async () => {
    const cfg = {batch: 2, seq: 13, hidden: 32, heads: 4, ffn: 64};
    const w = (shape: number[], seed: number) => randomTensor(shape, seed);
    const [B, S, Hd, nh] = [cfg.batch, cfg.seq, cfg.hidden, cfg.heads];
    const masks: Record<string, tf.Tensor> = {};  // one mask tensor per backend, as a model's input
    const layer = () => tf.tidy(() => {
      const x = randomTensor([B, S, Hd], 50);
      const mask = masks[tf.getBackend()] ??= tf.keep(tf.tensor(seededValues(B * S, 51).map(v => (v > -0.5 ? 1 : 0)), [B, S]));
      const dense = (t: tf.Tensor, i: number, n: number) =>
          tf.reshape(tf.add(tf.matMul(tf.reshape(t, [B * S, t.shape[2]!]), w([t.shape[2]!, n], i)), w([n], i + 100)), [B, S, n]);
      const split = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [B, S, nh, Hd / nh]), [0, 2, 1, 3]);
      const ln = (t: tf.Tensor, i: number) => {
        const {mean, variance} = tf.moments(t, -1, true);
        return tf.add(tf.mul(tf.mul(tf.sub(t, mean), tf.rsqrt(tf.add(variance, 1e-12))), w([Hd], i)), w([Hd], i + 1));
      };
      const bias = tf.reshape(tf.mul(tf.sub(1, mask), -10000), [B, 1, 1, S]);
      const probs = tf.softmax(tf.add(tf.mul(tf.matMul(split(dense(x, 1, Hd)), split(dense(x, 2, Hd)), false, true), 1 / Math.sqrt(Hd / nh)), bias));
      const ctx = tf.reshape(tf.transpose(tf.matMul(probs, split(dense(x, 3, Hd))), [0, 2, 1, 3]), [B, S, Hd]);
      const h1 = ln(tf.add(x, dense(ctx, 4, Hd)), 20);
      const f = dense(h1, 5, cfg.ffn);
      const g = tf.mul(tf.mul(f, 0.5), tf.add(1, tf.erf(tf.mul(f, Math.SQRT1_2))));
      return ln(tf.add(h1, dense(g, 6, Hd)), 30);
    });
    const first = await both(layer, 1e-4);
    const report = await both(layer, 1e-4);  // the mask's tile format is made once per mask tensor
    tf.dispose(Object.values(masks));
    const count = (t: string) => report.groups.filter(g => g.template === t).length;
    const gpu = backendInfo().base === 'webgpu';  // the CPU executor has no tile format to make
    expect(first.dispatches).toBe(gpu ? 8 : 7);
    expect(first.groups.filter(g => g.template === 'mask').length).toBe(gpu ? 1 : 0);
    expect(report.dispatches).toBe(7);
    expect([count('gemm'), count('attention'), count('row'), count('mask')]).toEqual([4, 1, 2, 0]);
    expect(report.groups[0].ops.filter(op => op === 'BatchMatMul').length).toBe(3);  // Q, K, V in one launch
    expect(report.fallbacks).toEqual([]);
    expect(Object.keys(report.baseKernels)).toEqual([]);
  });

  it('profile() gives each fused group its device time (timestamp queries), unless timing is off', async () => {
    await tf.setBackend('stof');
    const f = () => tf.tidy(() => tf.softmax(tf.add(tf.matMul(randomTensor([64, 32], 1), randomTensor([32, 48], 2)), 1)));
    const canTime = (tf.backend() as unknown as {executor: {canTime?: boolean}}).executor.canTime ?? true;  // CPU: the pass itself
    const timed = await profile(f);
    timed.result.dispose();
    expect(timed.groups.length).toBeGreaterThan(0);
    for (const g of timed.groups) {
      if (canTime) expect(Number.isFinite(g.ms) && g.ms! >= 0).withContext(`group ${g.template} ms ${g.ms}`).toBe(true);
      else expect(g.ms).toBeUndefined();
    }
    const untimed = await profile(f, {timing: false});
    untimed.result.dispose();
    expect(untimed.groups.every(g => g.ms === undefined)).toBe(true);
  });

  it('a second forward of the same graph makes no new plan', async () => {
    const f = () => tf.tidy(() => tf.softmax(tf.mul(randomTensor([4, 9], 1), 3)));
    await tf.setBackend('stof');
    (await profile(f)).result.dispose();
    const again = await profile(f);
    again.result.dispose();
    expect(again.plansMade).toBe(0);
  });

  it('values the app still holds stay readable (recomputed or stored); disposed ones are never computed', async () => {
    await tf.setBackend('stof');
    const a = randomTensor([5, 6], 1);
    const mid = tf.exp(a);                      // the app keeps it
    const dead = tf.mul(mid, 2);
    const out = tf.add(dead, 1);
    dead.dispose();
    expectClose(await out.data() as Float32Array, (await a.data() as Float32Array).map(v => 2 * Math.exp(v) + 1), 1e-5);
    expectClose(await mid.data() as Float32Array, (await a.data() as Float32Array).map(v => Math.exp(v)), 1e-5);
    tf.dispose([a, mid, out]);
  });

  it('reports intercepted kernels it could not fuse as fallbacks', async () => {
    await tf.setBackend('stof');
    const report = await profile(() => tf.sum(tf.tensor2d([[1, 2], [3, 4]], [2, 2], 'int32'), 0));
    report.result.dispose();
    expect(report.fallbacks.length).toBeGreaterThan(0);
    expect(report.fallbacks[0].kernel).toBe('Sum');
  });

  it('STOF_FUSION=false runs every kernel on the base', async () => {
    await tf.setBackend('stof');
    tf.env().set('STOF_FUSION', false);
    try {
      const report = await profile(() => tf.softmax(tf.mul(randomTensor([4, 9], 1), 3)));
      report.result.dispose();
      expect(report.groups.length).toBe(0);
      expect(report.recorded).toBe(0);
    } finally {
      tf.env().set('STOF_FUSION', true);
    }
  });

  it('1000 forwards keep tensors and GPU bytes flat', async () => {
    await tf.setBackend('stof');
    const w = randomTensor([16, 16], 1), b = randomTensor([16], 2);
    const forward = () => tf.tidy(() => {
      const x = randomTensor([4, 16], 3);
      const h = tf.add(tf.matMul(x, w), b);
      const {mean, variance} = tf.moments(h, -1, true);
      return tf.softmax(tf.mul(tf.sub(h, mean), tf.rsqrt(tf.add(variance, 1e-5))));
    });
    const measure = () => ({tensors: tf.memory().numTensors, bytes: (tf.memory() as {numBytesInGPU?: number}).numBytesInGPU ?? 0,
                            pending: ((tf.backend() as StofBackend).memory() as unknown as {numPendingValues: number}).numPendingValues});
    for (let i = 0; i < 10; i++) { const t = forward(); await t.data(); t.dispose(); }
    let out = forward();
    await out.data();
    out.dispose();
    const before = measure();
    for (let i = 0; i < 1000; i++) {
      out = forward();
      if (i % 100 === 99) await out.data(); else (tf.backend() as StofBackend).materialize([out.dataId]);
      out.dispose();
    }
    const after = measure();
    expect(after.tensors).toBe(before.tensors);
    expect(after.bytes).toBe(before.bytes);
    expect(after.pending).toBe(0);
    tf.dispose([w, b]);
  });
});
