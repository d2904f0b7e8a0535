// How the benches time a call: back-to-back calls, then the submitted work is drained
// (queue.onSubmittedWorkDone, no readback: copying a large output to the host is not the op's
// cost); median ms per call over trials. On 'stof' each call's result is computed (materialize),
// as a read would make it.
import * as tf from '@tensorflow/tfjs-core';
import * as stof from 'tfjs-backend-stof';

export const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Submits what the backend encoded and waits for the GPU to finish it. */
export async function drain() {
  const b = tf.backend();
  const base = b instanceof stof.StofBackend ? b.base : b;
  if (base.commandEncoder != null) { base.endComputePassEncoder(); base.submitQueue(); }
  await base.device.queue.onSubmittedWorkDone();
}

/**
 * Median ms per call of `f` (returns a tensor). iters: calls per trial, or 'auto' (about 150 ms per
 * trial, at most 20 calls).
 */
export async function timeCalls(f, {iters = 'auto', trials = 7} = {}) {
  for (let i = 0; i < 2; i++) { const t = f(); await t.data(); t.dispose(); }  // compile, warm up
  const backend = tf.backend();
  const compute = t => { if (backend instanceof stof.StofBackend) backend.materialize([t.dataId]); return t; };
  const trial = async n => {
    const start = performance.now();
    let t = null;
    for (let i = 0; i < n; i++) { t?.dispose(); t = compute(f()); }
    await drain();
    t.dispose();
    return (performance.now() - start) / n;
  };
  const n = iters === 'auto' ? Math.max(1, Math.min(20, Math.round(150 / await trial(1)))) : iters;
  const samples = [];
  for (let i = 0; i < trials; i++) samples.push(await trial(n));
  return median(samples);
}

/** max |a - b| / max(1, |b|); NaN anywhere counts as Infinity. */
export function maxRelDiff(a, b) {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i]));
    if (!(d <= worst)) worst = Number.isNaN(d) ? Infinity : d;
  }
  return worst;
}
