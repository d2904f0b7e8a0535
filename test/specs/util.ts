// Helpers shared by the specs: seeded inputs and closeness against a reference.
import * as tf from '@tensorflow/tfjs-core';

/** Deterministic values in [-1, 1) from a small LCG, so runs on different backends see the same data. */
export function seededValues(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let s = (seed * 2654435761) >>> 0;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

export function randomTensor(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(seededValues(shape.reduce((a, b) => a * b, 1), seed), shape);
}

/** Every element within `rtol` relative (or `rtol` absolute near zero) of the reference. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number) {
  expect(actual.length).toBe(expected.length);
  let worst = 0, worstAt = -1;
  for (let i = 0; i < expected.length; i++) {
    if (Number.isNaN(expected[i]) && Number.isNaN(actual[i])) continue;  // NaN where the reference has NaN
    const err = Math.abs(actual[i] - expected[i]) / Math.max(1, Math.abs(expected[i]));
    if (!(err <= worst)) { worst = err; worstAt = i; }
  }
  expect(worst).withContext(`worst at ${worstAt}: ${actual[worstAt]} vs ${expected[worstAt]}`).toBeLessThanOrEqual(rtol);
}
