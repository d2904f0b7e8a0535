// attention(q, k, v, {mask, scale}): the explicit op for code not written as the chain. It records
// the same chain that tf.* code does (scores, scale, mask, softmax, times V), so on 'stof' it runs
// as the same fused attention kernel, and on any other backend it is the plain chain.
import * as tf from '@tensorflow/tfjs-core';

export interface AttentionOptions {
  /** Boolean (true = visible) or additive float mask, broadcastable to [..., Sq, Sk]. */
  mask?: tf.Tensor;
  /** Multiplies the scores; default 1/sqrt(head dim). */
  scale?: number;
}

function broadcastable(a: number[], b: number[]): boolean {
  for (let i = 1; i <= Math.min(a.length, b.length); i++) {
    const x = a[a.length - i], y = b[b.length - i];
    if (x !== y && x !== 1 && y !== 1) return false;
  }
  return true;
}

/**
 * softmax(scale · q kᵀ + mask) v over the last axis. q: [..., Sq, D], k: [..., Sk, D],
 * v: [..., Sk, Dv] (float32; batch dims broadcast). A query row whose keys are all masked by a
 * boolean mask gives NaN, as the chain with -Infinity does.
 */
export function attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: AttentionOptions = {}): tf.Tensor {
  const shapes = `q [${q.shape}], k [${k.shape}], v [${v.shape}]`;
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (t.rank < 2) throw new Error(`attention: ${name} must have rank >= 2 (${shapes})`);
    if (t.dtype !== 'float32') throw new Error(`attention: ${name} must be float32, got ${t.dtype} (${shapes})`);
  }
  const [sq, d] = q.shape.slice(-2), [sk, dk] = k.shape.slice(-2), [sv] = v.shape.slice(-2);
  if (d !== dk) throw new Error(`attention: q and k head dims differ (${shapes})`);
  if (sk !== sv) throw new Error(`attention: k and v lengths differ (${shapes})`);
  const batch = [q.shape.slice(0, -2), k.shape.slice(0, -2), v.shape.slice(0, -2)];
  if (!broadcastable(batch[0], batch[1]) || !broadcastable(batch[0], batch[2]) || !broadcastable(batch[1], batch[2])) {
    throw new Error(`attention: batch dims do not broadcast (${shapes})`);
  }
  const {mask} = options;
  if (mask != null) {
    if (mask.dtype !== 'bool' && mask.dtype !== 'float32') throw new Error(`attention: mask must be bool or float32, got ${mask.dtype} (mask [${mask.shape}], ${shapes})`);
    const scoreShape = [...(batch[0].length >= batch[1].length ? batch[0] : batch[1]), sq, sk];
    if (mask.rank > scoreShape.length || !broadcastable(mask.shape, scoreShape) ||
        mask.shape[mask.rank - 1] !== sk && mask.shape[mask.rank - 1] !== 1) {
      throw new Error(`attention: mask [${mask.shape}] does not broadcast to the scores [${scoreShape}]`);
    }
  }
  const scale = options.scale ?? 1 / Math.sqrt(d);
  return tf.tidy(() => {
    let scores = tf.mul(tf.matMul(q, k, false, true), scale);
    if (mask != null) {
      // A boolean mask becomes a bias of its own shape, 0 where visible and -Infinity elsewhere:
      // log(1) = 0 and log(0) = -Infinity exactly, with ops that are recorded (no constants uploaded).
      const bias = mask.dtype === 'bool' ? tf.log(tf.cast(mask, 'float32')) : mask;
      scores = tf.add(scores, bias);
    }
    return tf.matMul(tf.softmax(scores), v);
  });
}
