// JavaScript cost per call of a fused LayerNorm: 400 calls enqueued back to back (each computed),
// one readback. Used with node --cpu-prof by bench/device/profile_js.sh.
import * as tf from '@tensorflow/tfjs-core';
import * as stof from 'tfjs-backend-stof';

import {seeded} from './encoder_layer.mjs';

const backendName = process.argv[2] || 'stof';
await tf.setBackend(backendName);
const rows = 1024, H = 768;
const x = tf.tensor(seeded(rows * H, 1), [rows, H]), g = tf.tensor(seeded(H, 2), [H]), b = tf.tensor(seeded(H, 3), [H]);
const f = () => tf.tidy(() => {
  const {mean, variance} = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-12))), g), b);
});
const backend = tf.backend();
const compute = t => { if (backend instanceof stof.StofBackend) backend.materialize([t.dataId]); return t; };
for (let i = 0; i < 5; i++) { const t = f(); await t.data(); t.dispose(); }
const t0 = performance.now();
let t = null;
for (let i = 0; i < 400; i++) { t?.dispose(); t = compute(f()); }
const t1 = performance.now();
await t.data();
const t2 = performance.now();
console.log(`${backendName}: JS ${((t1 - t0) / 400).toFixed(3)} ms per call, then ${(t2 - t1).toFixed(1)} ms to drain`);
