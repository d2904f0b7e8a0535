// A BERT-style Transformer encoder layer written in plain tf.* ops, in the spellings tfjs code and
// converted TF graphs use: matMul + bias, head split by reshape/transpose, scaled scores plus the
// (1 - mask) * -10000 padding bias, softmax, LayerNorm from moments, GELU in erf form.
import * as tf from '@tensorflow/tfjs-core';

/** Deterministic values in [-scale, scale) (LCG), identical on every backend. */
export function seeded(size, seed, scale = 1) {
  const out = new Float32Array(size);
  let s = (seed * 2654435761) >>> 0;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 31 - 1) * scale;
  }
  return out;
}

/** Weights as plain arrays, so the same values can be uploaded to any backend. */
export function makeWeights({hidden, ffn}, seed = 1) {
  const w = (shape, scale) => ({shape, values: seeded(shape.reduce((a, b) => a * b), seed++, scale)});
  const ones = n => ({shape: [n], values: new Float32Array(n).fill(1)});
  const s = 1 / Math.sqrt(hidden);
  return {
    wq: w([hidden, hidden], s), bq: w([hidden], 0.1), wk: w([hidden, hidden], s), bk: w([hidden], 0.1),
    wv: w([hidden, hidden], s), bv: w([hidden], 0.1), wo: w([hidden, hidden], s), bo: w([hidden], 0.1),
    ln1g: ones(hidden), ln1b: w([hidden], 0.1), w1: w([hidden, ffn], s), b1: w([ffn], 0.1),
    w2: w([ffn, hidden], 1 / Math.sqrt(ffn)), b2: w([hidden], 0.1), ln2g: ones(hidden), ln2b: w([hidden], 0.1),
  };
}

/** Uploads weights to the current backend. */
export function toTensors(weights) {
  return Object.fromEntries(Object.entries(weights).map(([k, {shape, values}]) => [k, tf.tensor(values, shape)]));
}

/** Inputs: activations [B, S, hidden] and a padding mask [B, S] (1 = token, 0 = padding). */
export function makeInputs({batch, seq, hidden}, seed = 1000) {
  const mask = new Float32Array(batch * seq);
  for (let b = 0; b < batch; b++) {
    const len = Math.max(1, seq - Math.floor((b * seq) / (2 * batch)));  // later rows padded more
    for (let s = 0; s < len; s++) mask[b * seq + s] = 1;
  }
  return {x: {shape: [batch, seq, hidden], values: seeded(batch * seq * hidden, seed)}, mask: {shape: [batch, seq], values: mask}};
}

function layerNorm(x, gamma, beta) {
  const {mean, variance} = tf.moments(x, -1, true);
  const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-12)));
  return tf.add(tf.mul(normed, gamma), beta);
}

function dense(x, w, b) {
  const [batch, seq, inner] = x.shape;
  const y = tf.add(tf.matMul(tf.reshape(x, [batch * seq, inner]), w), b);
  return tf.reshape(y, [batch, seq, w.shape[1]]);
}

function gelu(x) {
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
}

/** One encoder layer forward: x [B, S, hidden], mask [B, S] → [B, S, hidden]. */
export function encoderLayer(t, x, mask, {heads}) {
  return tf.tidy(() => {
    const [batch, seq, hidden] = x.shape;
    const dh = hidden / heads;
    const split = y => tf.transpose(tf.reshape(y, [batch, seq, heads, dh]), [0, 2, 1, 3]);
    const q = split(dense(x, t.wq, t.bq)), k = split(dense(x, t.wk, t.bk)), v = split(dense(x, t.wv, t.bv));
    const bias = tf.reshape(tf.mul(tf.sub(1, mask), -10000), [batch, 1, 1, seq]);
    const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(dh)), bias);
    const ctx = tf.matMul(tf.softmax(scores), v);
    const merged = tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [batch, seq, hidden]);
    const h1 = layerNorm(tf.add(x, dense(merged, t.wo, t.bo)), t.ln1g, t.ln1b);
    const ffn = dense(gelu(dense(h1, t.w1, t.b1)), t.w2, t.b2);
    return layerNorm(tf.add(h1, ffn), t.ln2g, t.ln2b);
  });
}
