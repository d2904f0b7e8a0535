// Where the time of a converted model's forward goes on 'stof' (any device; made for CUDA): device
// time per fused group from profile() (CUDA events / timestamp queries), summed by template, the
// slowest groups, and the wall time of a forward with and without the readback.
//
//   npm run build && node bench/cuda_profile.mjs [--model bert|gpt2|long] [--size base|tiny] [--batch 8] [--seq 512]
//                                               [--device cuda|webgpu] [--precision fp32|tf32|fp16] [--runs 10] [--all]
import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';
import * as stof from 'tfjs-backend-stof';

import {loadFixture} from '../test/fixtures/load_fixture.mjs';
import fs from 'node:fs';

import {writeNamed} from '../test/fixtures/make_fixtures.mjs';

const argv = process.argv.slice(2);
const arg = (k, d) => (argv.includes(`--${k}`) ? argv[argv.indexOf(`--${k}`) + 1] : d);
const [model, size, B, S, runs] = [arg('model', 'bert'), arg('size', 'base'), Number(arg('batch', 8)), Number(arg('seq', 512)), Number(arg('runs', 10))];
tf.env().set('STOF_DEVICE', arg('device', 'cuda'));
tf.env().set('STOF_PRECISION', arg('precision', 'fp32'));
if (!await tf.setBackend('stof')) throw new Error('stof did not initialize');
const dir = `tmp/profile_fixtures/${model}_${size}`;
if (!fs.existsSync(`${dir}/model.json`)) writeNamed('tmp/profile_fixtures', model, size);
const g = await loadFixture(dir, tfconv);
const feeds = {input_ids: tf.tensor2d(Int32Array.from({length: B * S}, (_, i) => (i * 7919 + 13) % 1000), [B, S], 'int32'),
               attention_mask: tf.ones([B, S], 'int32')};
if (model !== 'gpt2') feeds.token_type_ids = tf.zeros([B, S], 'int32');
const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
// With readback, the forward's parts too (CUDA): execute() returning, the wait for the GPU, the copy.
async function wall(read) {
  const ts = [], parts = [];
  const exec = tf.backend().base.exec;
  for (let i = 0; i < runs + 2; i++) {
    const t0 = performance.now();
    const y = g.execute(feeds);
    if (read) {
      const t1 = performance.now();
      if (exec) { tf.backend().materialize([y.dataId]); await exec.idle(); }
      const t2 = performance.now();
      await y.data();
      const t3 = performance.now();
      parts.push([t1 - t0, t2 - t1, t3 - t2]);
    } else {
      tf.backend().materialize([y.dataId]);
      exec?.synchronize();
    }
    ts.push(performance.now() - t0);
    y.dispose();
  }
  const xs = ts.slice(2);
  console.log(`  ${read ? 'with' : 'without'} readback: ${xs.map(x => x.toFixed(1)).join(' ')}`);
  if (read && exec) {
    const p = parts.slice(2), m = j => median(p.map(x => x[j])).toFixed(2);
    console.log(`  median parts: execute ${m(0)} ms, GPU wait ${m(1)} ms, copy to host ${m(2)} ms`);
  }
  return median(xs);
}
const withRead = await wall(true), noRead = await wall(false);
const r = await stof.profile(() => g.execute(feeds));
r.result.dispose();
const by = {};
for (const gr of r.groups) {
  const k = gr.template + (gr.variant ? `/${gr.variant}` : '');
  by[k] = by[k] ?? {n: 0, ms: 0};
  by[k].n++;
  by[k].ms += gr.ms ?? 0;
}
const total = Object.values(by).reduce((a, b) => a + b.ms, 0);
console.log(`${model}-${size} B=${B} S=${S} on ${JSON.stringify(stof.backendInfo().adapter)} precision ${arg('precision', 'fp32')}`);
console.log(`wall per forward: ${withRead.toFixed(2)} ms with readback, ${noRead.toFixed(2)} ms without; fused device time ${total.toFixed(2)} ms in ${r.groups.length} groups; ${r.dispatches} launches`);
for (const [k, v] of Object.entries(by).sort((a, b) => b[1].ms - a[1].ms)) console.log(`  ${k.padEnd(24)} ${String(v.n).padStart(4)} x  ${v.ms.toFixed(2).padStart(8)} ms`);
if (argv.includes('--all')) {  // every group in launch order
  console.log('groups in order:');
  for (const gr of r.groups) console.log(`  ${(gr.ms ?? 0).toFixed(3).padStart(7)} ms  ${gr.template}${gr.variant ? `/${gr.variant}` : ''} [${gr.output?.shape}] ${gr.ops.join(' ')}`);
}
console.log('slowest groups:');
for (const gr of [...r.groups].sort((a, b) => (b.ms ?? 0) - (a.ms ?? 0)).slice(0, 8)) {
  console.log(`  ${(gr.ms ?? 0).toFixed(3).padStart(7)} ms  ${gr.template} [${gr.output?.shape}] ${gr.ops.slice(0, 8).join(' ')}`);
}
console.log(`base kernels ${JSON.stringify(r.baseKernels)}; copies ${JSON.stringify(r.copies ?? null)}`);
const reasons = {};
for (const f of r.fallbacks) reasons[`${f.kernel}: ${f.reason}`] = (reasons[`${f.kernel}: ${f.reason}`] ?? 0) + 1;
console.log(`fallbacks: ${JSON.stringify(reasons)}`);
