// Host (JavaScript) time of one replayed forward of a converted model on 'stof' over the WebGPU
// base, with recorded command lists (STOF_WEBGPU_GRAPH, the default) and without (each kernel
// recorded, planned, bound and dispatched from JavaScript). Host time = the wall time of
// model.execute(): it returns once the forward's commands are submitted; the GPU's time and the
// read back are measured apart (`forward`, ending with the output read). On a software driver only
// the host column means anything; on a GPU both do. Each forward's output is checked against the
// first forward's (same inputs) to 1e-5.
//
//   npm run build   (or: npx tsc -p tsconfig.json && node scripts/mark_esm.mjs)
//   node scripts/with_vulkan.mjs bench/webgpu_host.mjs [--model bert|gpt2|long] [--size tiny|base] [--batch 2] [--seq 13] [--runs 30]
import fs from 'node:fs';
import {loadTsc as load} from '../scripts/load_tsc.mjs';

const argv = process.argv.slice(2);
const arg = (k, d) => (argv.includes(`--${k}`) ? argv[argv.indexOf(`--${k}`) + 1] : d);
const [model, size, B, S, runs] = [arg('model', 'bert'), arg('size', 'tiny'), Number(arg('batch', 2)), Number(arg('seq', 13)), Number(arg('runs', 30))];

const tf = await import('@tensorflow/tfjs-core');
const tfconv = await import('@tensorflow/tfjs-converter');
await load('src/index_node.js');  // Dawn set up, 'stof' registered
const stof = await load('src/public_api.js');
const {writeNamed} = await import('../test/fixtures/make_fixtures.mjs');
const {loadFixture} = await import('../test/fixtures/load_fixture.mjs');

tf.env().set('STOF_DEVICE', 'webgpu');  // a machine with CUDA would otherwise pick it
if (!await tf.setBackend('stof')) throw new Error('stof did not initialize');
if (tf.backend().baseName !== 'webgpu') throw new Error(`'stof' runs on ${tf.backend().baseName}: this measures the WebGPU base (a Vulkan driver is needed)`);

const dir = `tmp/webgpu_host/${model}_${size}`;
if (!fs.existsSync(`${dir}/model.json`)) writeNamed('tmp/webgpu_host', model, size);
const g = await loadFixture(dir, tfconv);
const vocab = JSON.parse(fs.readFileSync(`${dir}/model.json`, 'utf8')).userDefinedMetadata?.config?.vocab ?? 100;
const feeds = {input_ids: tf.tensor2d(Int32Array.from({length: B * S}, (_, i) => 1 + (i * 7919 + 13) % (vocab - 1)), [B, S], 'int32'),
               attention_mask: tf.ones([B, S], 'int32')};
if (model !== 'gpt2') feeds.token_type_ids = tf.zeros([B, S], 'int32');

const median = xs => [...xs].sort((a, b) => a - b)[xs.length >> 1];
let reference = null;
async function measure(graph) {
  tf.env().set('STOF_WEBGPU_GRAPH', graph);
  const host = [], forward = [];
  for (let i = 0; i < runs + 4; i++) {  // 4 warm-up: capture, replays, the graph's capture
    const t0 = performance.now();
    const y = g.execute(feeds);
    const t1 = performance.now();
    const v = await y.data();
    const t2 = performance.now();
    y.dispose();
    reference ??= v;
    let err = 0;
    for (let j = 0; j < v.length; j++) err = Math.max(err, Math.abs(v[j] - reference[j]) / Math.max(1, Math.abs(reference[j])));
    if (!(err <= 1e-5)) throw new Error(`forward ${i} (graph ${graph}) differs from the first by ${err}`);
    if (i >= 4) { host.push(t1 - t0); forward.push(t2 - t0); }
  }
  const r = await stof.profile(() => g.execute(feeds), {timing: false});
  r.result.dispose();
  return {host: median(host), forward: median(forward), graphs: r.replay.graphs, dispatches: r.dispatches, declined: r.replay.graphDeclined};
}
const off = await measure(false), on = await measure(true);
// One forward profiled with device timestamps (kernel by kernel), where the device has them: where
// the GPU's time goes, by template, and the longest launches.
const timed = await stof.profile(() => g.execute(feeds));
timed.result.dispose();
const gpu = timed.groups.filter(x => x.ms != null);
g.dispose();
const adapter = tf.backend().base.adapterInfo ?? {};
console.log(`${model}_${size} B=${B} S=${S}, ${runs} forwards each, WebGPU adapter ${JSON.stringify(adapter.vendor ?? adapter)}:`);
console.log('| STOF_WEBGPU_GRAPH | host ms per forward (median) | forward incl. read ms (median) | dispatches | graph forwards in profile |');
console.log('|---|---|---|---|---|');
for (const [name, x] of [['false', off], ['true', on]]) {
  console.log(`| ${name} | ${x.host.toFixed(2)} | ${x.forward.toFixed(2)} | ${x.dispatches} | ${x.graphs}${x.declined.length ? ` (declined: ${x.declined.map(d => d.reason).join('; ')})` : ''} |`);
}
console.log(`host ratio (false / true): ${(off.host / on.host).toFixed(1)}x`);
if (gpu.length) {
  const by = {};
  for (const x of gpu) { by[x.template] ??= {n: 0, ms: 0}; by[x.template].n++; by[x.template].ms += x.ms; }
  const total = gpu.reduce((a, x) => a + x.ms, 0);
  console.log(`GPU ms of one forward (timestamps, ${gpu.length} of ${timed.groups.length} launches timed): ${total.toFixed(3)}; by template: ` +
      Object.entries(by).sort((a, b) => b[1].ms - a[1].ms).map(([t, v]) => `${t} ${v.ms.toFixed(3)} (${v.n})`).join(', '));
  for (const x of [...gpu].sort((a, b) => b.ms - a.ms).slice(0, 6)) {
    console.log(`  ${x.ms.toFixed(3)} ms ${x.template} ${JSON.stringify(x.output?.shape ?? [])} ${x.ops.slice(0, 4).join(',')}${x.tiles ? ` tiles ${JSON.stringify(x.tiles)}` : ''}`);
  }
} else console.log('no device timestamps: GPU time per launch not measured');
