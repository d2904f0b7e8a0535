// One forward of a converted model on the CUDA base between cuProfilerStart and cuProfilerStop, for
// Nsight Compute's per-kernel device times (the CUDA-graph forward's nodes, each timed alone):
//
//   ncu --clock-control none --profile-from-start off --metrics gpu__time_duration.sum --csv \
//     node bench/cuda_ncu_forward.mjs [--model bert|gpt2|long] [--batch 8] [--seq 512] [--precision fp16] > ncu.csv
//   node bench/ncu_summary.mjs ncu.csv
import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';
import 'tfjs-backend-stof';

import {createRequire} from 'node:module';
import fs from 'node:fs';
import {loadFixture} from '../test/fixtures/load_fixture.mjs';
import {writeNamed} from '../test/fixtures/make_fixtures.mjs';

const argv = process.argv.slice(2);
const arg = (k, d) => (argv.includes(`--${k}`) ? argv[argv.indexOf(`--${k}`) + 1] : d);
const [model, B, S] = [arg('model', 'bert'), Number(arg('batch', 8)), Number(arg('seq', 512))];
tf.env().set('STOF_DEVICE', 'cuda');
tf.env().set('STOF_PRECISION', arg('precision', 'fp16'));
if (!await tf.setBackend('stof')) throw new Error('stof did not initialize');
const dir = `tmp/profile_fixtures/${model}_base`;
if (!fs.existsSync(`${dir}/model.json`)) writeNamed('tmp/profile_fixtures', model, 'base');
const g = await loadFixture(dir, tfconv);
const feeds = {input_ids: tf.tensor2d(Int32Array.from({length: B * S}, (_, i) => (i * 7919 + 13) % 1000), [B, S], 'int32'),
               attention_mask: tf.ones([B, S], 'int32')};
if (model !== 'gpt2') feeds.token_type_ids = tf.zeros([B, S], 'int32');
const koffi = createRequire(import.meta.url)('koffi');
const cuda = koffi.load('libcuda.so.1');
const [start, stop] = [cuda.func('int cuProfilerStart()'), cuda.func('int cuProfilerStop()')];
for (let i = 0; i < 5; i++) { const y = g.execute(feeds); await y.data(); y.dispose(); }  // past the graph's capture
const exec = tf.backend().base.exec;
exec.synchronize();
start();
const y = g.execute(feeds);
tf.backend().materialize([y.dataId]);
exec.synchronize();
stop();
y.dispose();
console.error(`profiled one ${model} B=${B} S=${S} forward`);
