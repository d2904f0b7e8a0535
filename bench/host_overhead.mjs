// The host (JavaScript) cost of one forward of a converted model on 'stof', with the GPU's work
// taken away: the CUDA base runs over the stand-in driver (test/kernels/cuda_fake_driver.mjs), whose
// launches, copies and GEMMs cost nothing, so the wall time is the converter, tfjs-core's engine,
// recording, planning, the host shape arithmetic and the launches' marshalling. Runs anywhere (no
// GPU); the same code runs on the H100 where bench/cuda_profile.mjs measures the device side.
//
//   npx tsc -p tsconfig.json && node scripts/mark_esm.mjs
//   node [--cpu-prof --cpu-prof-dir=tmp/prof] bench/host_overhead.mjs [--model bert|gpt2|long] [--batch 1] [--seq 128] [--runs 20] [--graph false]
//   node bench/device/cpu_prof_summary.js tmp/prof/*.cpuprofile
import fs from 'node:fs';
import {loadTsc as load} from '../scripts/load_tsc.mjs';

const argv = process.argv.slice(2);
const arg = (k, d) => (argv.includes(`--${k}`) ? argv[argv.indexOf(`--${k}`) + 1] : d);
const [model, B, S, runs] = [arg('model', 'bert'), Number(arg('batch', 1)), Number(arg('seq', 128)), Number(arg('runs', 20))];

const tf = await import('@tensorflow/tfjs-core');
const tfconv = await import('@tensorflow/tfjs-converter');
await import('@tensorflow/tfjs-backend-cpu');
const stof = await load('src/public_api.js');
const {provideStandInCuda} = await import('../test/kernels/stand_in_cuda.mjs');
const {writeNamed} = await import('../test/fixtures/make_fixtures.mjs');
const {loadFixture} = await import('../test/fixtures/load_fixture.mjs');

const standIn = provideStandInCuda({launchChecks: false});
tf.env().set('STOF_DEVICE', 'cuda');
tf.env().set('STOF_CUDA_GRAPH', arg('graph', 'true') !== 'false');  // false: replays launch kernel by kernel
if (!await tf.setBackend('stof')) throw new Error('stof did not initialize');

const dir = `tmp/profile_fixtures/${model}_base`;
if (!fs.existsSync(`${dir}/model.json`)) writeNamed('tmp/profile_fixtures', model, 'base');
const g = await loadFixture(dir, tfconv);
const feeds = {input_ids: tf.tensor2d(Int32Array.from({length: B * S}, (_, i) => (i * 7919 + 13) % 1000), [B, S], 'int32'),
               attention_mask: tf.ones([B, S], 'int32')};
if (model !== 'gpt2') feeds.token_type_ids = tf.zeros([B, S], 'int32');

const ts = [];
let launches = 0;
for (let i = 0; i < runs + 3; i++) {
  const l0 = standIn.fake.log.counts.launches;
  const t0 = performance.now();
  const y = g.execute(feeds);
  await y.data();
  ts.push(performance.now() - t0);
  launches = standIn.fake.log.counts.launches - l0;
  y.dispose();
}
const xs = ts.slice(3).sort((a, b) => a - b);
const r = await stof.profile(() => g.execute(feeds), {timing: false});
r.result.dispose();
const baseCalls = Object.values(r.baseKernels ?? {}).reduce((a, b) => a + (typeof b === 'number' ? b : b.calls ?? 0), 0);
console.log(`${model}-base B=${B} S=${S}, stand-in CUDA driver: host time per forward median ${xs[xs.length >> 1].toFixed(2)} ms ` +
            `(min ${xs[0].toFixed(2)}), ${launches} launches, ${r.groups.length} fused groups, ${baseCalls} base-kernel calls, ` +
            `${r.replay.graphs} CUDA graph launches in the profiled forward`);
console.log(`base kernels ${JSON.stringify(r.baseKernels)}; copies ${JSON.stringify(r.copies ?? null)}`);
