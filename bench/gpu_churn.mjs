// GPU object churn of a steady-state forward: createBuffer, createBindGroup, queue.submit,
// writeBuffer and buffer.destroy calls on the shared Dawn GPUDevice per forward of the converted
// BERT fixture (test/fixtures), on 'stof' and on 'webgpu'. A forward is what an app does: int32
// inputs written from the CPU, execute(), the last hidden state read back, everything disposed.
// Counts, not times: runs on SwiftShader too.
// Usage: node scripts/with_vulkan.mjs bench/gpu_churn.mjs [--model tiny|base] [--layers 2] [--batch 2]
//          [--seq 16] [--forwards 5] [--backends stof,webgpu] [--json]
import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';
import 'tfjs-backend-stof';

import {loadFixture} from '../test/fixtures/load_fixture.mjs';
import {CONFIGS, makeBert, writeFixture} from '../test/fixtures/make_fixtures.mjs';

const argv = process.argv.slice(2);
const arg = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : dflt; };
const size = arg('model', 'tiny');
const cfg = {...CONFIGS.bert[size], layers: Number(arg('layers', CONFIGS.bert[size].layers))};
const B = Number(arg('batch', 2)), S = Number(arg('seq', 16)), forwards = Number(arg('forwards', 5));
const backends = arg('backends', 'stof,webgpu').split(',');

await tf.setBackend('stof');
const device = tf.findBackend('webgpu')?.device;
if (device == null) throw new Error("no WebGPU base: run with scripts/with_vulkan.mjs");

const counts = {createBuffer: 0, createBindGroup: 0, submit: 0, writeBuffer: 0, destroy: 0, createCommandEncoder: 0};
const bufferBytes = {created: 0};
const wrap = (obj, name, count) => {
  const f = obj[name].bind(obj);
  obj[name] = (...args) => { count(args); return f(...args); };
};
wrap(device, 'createBuffer', ([d]) => { counts.createBuffer++; bufferBytes.created += d.size; });
wrap(device, 'createBindGroup', () => counts.createBindGroup++);
wrap(device, 'createCommandEncoder', () => counts.createCommandEncoder++);
wrap(device.queue, 'submit', () => counts.submit++);
wrap(device.queue, 'writeBuffer', () => counts.writeBuffer++);
const destroy = GPUBuffer.prototype.destroy;
GPUBuffer.prototype.destroy = function () { counts.destroy++; return destroy.call(this); };

const dir = `tmp/gpu_churn/bert-${size}-${cfg.layers}`;
writeFixture(dir, makeBert(cfg));
const n = B * S;
const ids = Int32Array.from({length: n}, (_, i) => (i * 7919 + 13) % cfg.vocab);
const attention = Int32Array.from({length: n}, (_, i) => (Math.floor(i / S) % 2 === 1 && i % S >= S / 2 ? 0 : 1));
const segments = Int32Array.from({length: n}, (_, i) => (i % S >= S / 2 ? 1 : 0));

const rows = {};
for (const name of backends) {
  if (!await tf.setBackend(name)) throw new Error(`setBackend('${name}') failed`);
  const model = await loadFixture(dir, tfconv);
  const forward = async () => {
    const shape = [B, S];
    const feeds = {input_ids: tf.tensor2d(ids, shape, 'int32'), attention_mask: tf.tensor2d(attention, shape, 'int32'),
                   token_type_ids: tf.tensor2d(segments, shape, 'int32')};
    const out = model.execute(feeds);
    await out.data();
    out.dispose();
    tf.dispose(Object.values(feeds));
  };
  for (let i = 0; i < 3; i++) await forward();  // compiles, plans, pools filled
  await device.queue.onSubmittedWorkDone();
  const before = {...counts}, bytesBefore = bufferBytes.created;
  const mem0 = tf.memory();
  for (let i = 0; i < forwards; i++) await forward();
  await device.queue.onSubmittedWorkDone();
  const mem1 = tf.memory();
  const per = Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, (v - before[k]) / forwards]));
  per.createdBytes = (bufferBytes.created - bytesBefore) / forwards;
  per.tensorsDelta = mem1.numTensors - mem0.numTensors;
  per.gpuBytesDelta = mem1.numBytesInGPU - mem0.numBytesInGPU;
  rows[name] = per;
  console.log(`${name.padEnd(7)} per forward: ${Object.entries(per).map(([k, v]) => `${k} ${+v.toFixed(1)}`).join(', ')}`);
  model.dispose();
}
if (argv.includes('--json')) console.log(JSON.stringify({model: `bert ${size} layers=${cfg.layers}`, batch: B, seq: S, forwards, rows}));
