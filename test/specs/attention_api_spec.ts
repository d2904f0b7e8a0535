// The explicit attention op and the mask builders: equal to the plain chain on tfjs-backend-cpu,
// one fused attention launch on 'stof', clear errors for bad shapes.
import * as tf from '@tensorflow/tfjs-core';

import {attention, masks, profile} from '../../src/public_api';

import {expectClose, randomTensor} from './util';

function chain(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, keep: tf.Tensor|null) {
  return tf.tidy(() => {
    let s = tf.div(tf.matMul(q, k, false, true), Math.sqrt(q.shape[q.rank - 1]!));
    if (keep != null) s = tf.where(tf.broadcastTo(keep, s.shape), s, tf.fill(s.shape, -Infinity));
    return tf.matMul(tf.softmax(s), v);
  });
}

describe('attention() and masks', () => {
  const S = 24, D = 32;
  const builders: Array<[string, () => tf.Tensor]> = [
    ['none', () => tf.ones([S, S], 'bool')],
    ['causal', () => masks.causal(S)],
    ['slidingWindow', () => masks.slidingWindow(S, 3)],
    ['dilated', () => masks.dilated(S, 2, 3)],
    ['longformer', () => masks.longformer(S, 2, [0, 5])],
    ['bigBird', () => masks.bigBird(S, {block: 4, window: 3, global: 1, random: 1, seed: 7})],
    ['padding', () => masks.padding([S, 17], S)],
    ['fromBlocks', () => masks.fromBlocks([[1, 0, 0], [1, 1, 0], [0, 1, 1]], 8, S)],
  ];

  for (const [name, make] of builders) {
    it(`${name}: equals the chain on tfjs-backend-cpu and fuses to one attention launch`, async () => {
      const inputs = () => [randomTensor([2, 3, S, D], 1), randomTensor([2, 3, S, D], 2), randomTensor([2, 3, S, D], 3)];
      await tf.setBackend('cpu');
      const [q0, k0, v0] = inputs();
      const ref = chain(q0, k0, v0, make());
      const expected = await ref.data();
      await tf.setBackend('stof');
      const [q, k, v] = inputs();
      const mask = make();
      const report = await profile(() => attention(q, k, v, {mask}));
      expectClose(await report.result.data() as Float32Array, expected as Float32Array, 1e-4);
      expect(report.groups.filter(g => g.template === 'attention').length).toBe(1);
      tf.dispose([report.result, q, k, v, mask]);
    });
  }

  it('builders give the documented patterns', async () => {
    // (bool tensors read back as 1 / 0)
    expect(await masks.causal(3).array()).toEqual([[1, 0, 0], [1, 1, 0], [1, 1, 1]]);
    expect(await masks.slidingWindow(4, 1).array()).toEqual([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]]);
    expect(await masks.dilated(5, 1, 2).array()).toEqual([[1, 0, 1, 0, 0], [0, 1, 0, 1, 0], [1, 0, 1, 0, 1], [0, 1, 0, 1, 0], [0, 0, 1, 0, 1]]);
    expect(await masks.padding([2, 0], 3).array()).toEqual([[[[1, 1, 0]]], [[[0, 0, 0]]]]);
  });

  it('names the bad shapes and values', () => {
    const q = tf.zeros([2, 5, 8]), k = tf.zeros([2, 6, 8]), v = tf.zeros([2, 6, 4]);
    expect(() => attention(q, tf.zeros([2, 6, 7]), v)).toThrowError(/head dims differ .*q \[2,5,8\], k \[2,6,7\]/);
    expect(() => attention(q, k, tf.zeros([2, 7, 4]))).toThrowError(/k and v lengths differ/);
    expect(() => attention(q, k, v, {mask: tf.zeros([3, 5, 6])})).toThrowError(/mask \[3,5,6\] does not broadcast to the scores \[2,5,6\]/);
    expect(() => attention(tf.zeros([2, 5, 8], 'int32'), k, v)).toThrowError(/q must be float32, got int32/);
    expect(() => masks.padding([4], 3)).toThrowError(/length 4 is outside \[0, 3\]/);
    expect(() => masks.fromBlocks([[1]], 4, 8)).toThrowError(/expected 2 x 2 blocks/);
    tf.dispose([q, k, v]);
  });
});
