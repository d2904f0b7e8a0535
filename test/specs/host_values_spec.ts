// Node only: small int32 values that tfjs code reads back synchronously (shape vectors, sizes) stay
// readable on 'stof' after GPU programs read them. WebGPU in Node cannot read a GPU buffer
// synchronously; tfjs-backend-webgpu keeps tiny work on the CPU only while no input has a GPU
// buffer. GPT-2 converted from TF builds its causal mask from range(S) - S: at S >= 1000 (the base's
// CPU handoff size) that Sub runs on the GPU, and the scalar S used to lose its CPU copy, so the
// Pack of a later Reshape's shape ran on the GPU and the converter's dataSync threw.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';

import {fixtureModule, LoadFixtureModule, MakeFixturesModule, useStof} from './node_fixtures';


describe('small int32 values on the host', () => {
  let previousBackend: string|null = null;
  beforeAll(() => { previousBackend = tf.getBackend() ?? null; });
  afterAll(async () => {
    if (previousBackend != null && tf.findBackendFactory(previousBackend) != null) await tf.setBackend(previousBackend);
  });

  it('stay readable synchronously after a GPU program read them', async () => {
    if (!await useStof()) return;
    const before = tf.memory().numTensors;
    const n = tf.scalar(1024, 'int32');
    const positions = tf.range(0, 1024, 1, 'int32');
    const shifted = tf.sub(positions, n);  // 1024 elements: on the GPU where the base is WebGPU
    const data = await shifted.data();
    expect(data[0]).toBe(-1024);
    expect(data[1023]).toBe(-1);
    // What tfjs-converter does for Reshape(x, Pack(n, n)): the packed shape read with dataSync.
    const one = tf.scalar(1, 'int32');
    const shape = tf.stack([n, one, n]);
    expect(Array.from(shape.dataSync())).toEqual([1024, 1, 1024]);
    expect(Array.from(n.dataSync())).toEqual([1024]);
    tf.dispose([n, one, positions, shifted, shape]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('let a converted GPT-2 run at S = 1024 (equal to cpu)', async () => {
    if (tf.findBackendFactory('stof') == null) { pending("no backend named 'stof' is registered"); return; }
    const make = await fixtureModule<MakeFixturesModule>('make_fixtures.mjs');
    const load = await fixtureModule<LoadFixtureModule>('load_fixture.mjs');
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stof-host-ints-'));
    try {
      const S = 1024;
      const fixture = make.makeGpt2({layers: 1, hidden: 16, heads: 2, vocab: 50, maxPositions: S});
      const dir = make.writeFixture(path.join(root, 'gpt2'), fixture);
      const ids = Int32Array.from({length: S}, (_, i) => 1 + (i * 7) % 49);
      const run = async (backend: string) => {
        expect(await tf.setBackend(backend)).toBe(true);
        const model = await load.loadFixture(dir, tfconv);
        const feeds = {input_ids: tf.tensor2d(ids, [1, S], 'int32'), attention_mask: tf.ones([1, S], 'int32')};
        try {
          const out = model.execute(feeds) as tf.Tensor;
          expect(out.shape).toEqual([1, S, 16]);
          const data = await out.data();
          out.dispose();
          return data;
        } finally {
          tf.dispose(Object.values(feeds));
          model.dispose();
        }
      };
      const expected = await run('cpu');
      const actual = await run('stof');
      let worst = 0;
      for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]) / Math.max(1, Math.abs(expected[i])));
      expect(worst).toBeLessThanOrEqual(1e-4);
    } finally {
      fs.rmSync(root, {recursive: true, force: true});
    }
  });
});
