// Node only: converted graph models, in the format tensorflowjs_converter writes for Hugging Face's TF
// BERT and GPT-2, and a BERT-like long encoder whose padding mask is combined in-graph with a
// sliding-window + global-token mask (test/fixtures/make_fixtures.mjs, seeded weights), loaded with tf.loadGraphModel as
// a user's model is. On 'cpu' the last hidden state must match a float64 reference of the model
// (test/fixtures/reference.mjs); on 'stof', when registered, it must match 'cpu'.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';

import {Fixture, FixtureConfig, fixtureModule, LoadFixtureModule, MakeFixturesModule, ModelName} from './node_fixtures';

interface Inputs {inputIds: Int32Array, attentionMask: Int32Array, tokenTypeIds?: Int32Array}
interface ReferenceModule {
  bertReference(fixture: Fixture, inputs: Inputs, batch: number, seq: number): Float64Array;
  gpt2Reference(fixture: Fixture, inputs: Inputs, batch: number, seq: number): Float64Array;
  longEncoderReference(fixture: Fixture, inputs: Inputs, batch: number, seq: number): Float64Array;
}

const RTOL = 1e-4;

/** Largest |actual - expected| / max(1, |expected|), and where. */
function worstError(actual: ArrayLike<number>, expected: ArrayLike<number>): {err: number, at: number} {
  expect(actual.length).toBe(expected.length);
  let err = 0, at = -1;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.abs(actual[i] - expected[i]) / Math.max(1, Math.abs(expected[i]));
    if (!(e <= err)) { err = e; at = i; }
  }
  return {err, at};
}

/** Right-padded batch: random token ids and a random valid length per row (at least one row padded). */
function makeInputs(make: MakeFixturesModule, config: FixtureConfig, batch: number, seq: number, seed: number): Inputs {
  const rng = make.makeRng(seed);
  const lengths = Array.from({length: batch}, () => 1 + Math.floor(rng.uniform() * seq));
  if (lengths.every(n => n === seq)) lengths[batch - 1] = Math.ceil(seq / 2);
  const inputIds = new Int32Array(batch * seq), attentionMask = new Int32Array(batch * seq);
  const tokenTypeIds = new Int32Array(batch * seq);
  lengths.forEach((len, b) => {
    const secondSegment = 1 + Math.floor(rng.uniform() * len);  // a sentence pair: types 0 then 1
    for (let s = 0; s < len; s++) {
      inputIds[b * seq + s] = 1 + Math.floor(rng.uniform() * (config.vocab - 1));
      attentionMask[b * seq + s] = 1;
      tokenTypeIds[b * seq + s] = s >= secondSegment ? 1 : 0;
    }
  });
  return config.model === 'gpt2' ? {inputIds, attentionMask} : {inputIds, attentionMask, tokenTypeIds};
}

describe('converted graph models (tf.loadGraphModel)', () => {
  let make: MakeFixturesModule, load: LoadFixtureModule, ref: ReferenceModule;
  let root: string;
  let previousBackend: string|null = null;

  beforeAll(async () => {
    make = await fixtureModule<MakeFixturesModule>('make_fixtures.mjs');
    load = await fixtureModule<LoadFixtureModule>('load_fixture.mjs');
    ref = await fixtureModule<ReferenceModule>('reference.mjs');
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'stof-models-'));
    previousBackend = tf.getBackend() ?? null;
  });

  afterAll(async () => {
    if (root) fs.rmSync(root, {recursive: true, force: true});
    if (previousBackend != null && tf.findBackendFactory(previousBackend) != null) await tf.setBackend(previousBackend);
  });

  const cases: Array<{title: string, model: ModelName, batch: number, seq: number, seed: number}> = [
    {title: 'BERT (tiny, padding mask)', model: 'bert', batch: 2, seq: 13, seed: 11},
    {title: 'GPT-2 (tiny, causal + padding mask)', model: 'gpt2', batch: 2, seq: 11, seed: 12},
    // window 4 each side, 2 global tokens: most of the 40x40 scores are masked
    {title: 'long encoder (tiny, sliding window + global tokens + padding mask)', model: 'long', batch: 2, seq: 40, seed: 13},
  ];

  for (const c of cases) {
    describe(c.title, () => {
      let fixture: Fixture, dir: string, inputs: Inputs;
      let onCpu: Float32Array|null = null;

      beforeAll(() => {
        fixture = c.model === 'bert' ? make.makeBert() : c.model === 'gpt2' ? make.makeGpt2() : make.makeLongEncoder();
        dir = make.writeFixture(path.join(root, c.model), fixture);
        inputs = makeInputs(make, fixture.config, c.batch, c.seq, c.seed);
      });

      /** Loads the fixture on `backend` (its weights created there, as for a user) and runs it. */
      async function run(backend: string): Promise<Float32Array> {
        expect(await tf.setBackend(backend)).withContext(`setBackend('${backend}')`).toBe(true);
        const model = await load.loadFixture(dir, tfconv);
        const shape: [number, number] = [c.batch, c.seq];
        const feeds: tf.NamedTensorMap = {
          input_ids: tf.tensor2d(inputs.inputIds, shape, 'int32'),
          attention_mask: tf.tensor2d(inputs.attentionMask, shape, 'int32'),
        };
        if (inputs.tokenTypeIds) feeds['token_type_ids'] = tf.tensor2d(inputs.tokenTypeIds, shape, 'int32');
        try {
          const out = model.execute(feeds) as tf.Tensor;
          expect(out.shape).toEqual([c.batch, c.seq, fixture.config.hidden]);
          const data = (await out.data()) as Float32Array;
          out.dispose();
          return data;
        } finally {
          tf.dispose(feeds);
          model.dispose();
        }
      }

      it("on 'cpu' matches the float64 reference", async () => {
        const expected = c.model === 'bert' ? ref.bertReference(fixture, inputs, c.batch, c.seq) :
                         c.model === 'gpt2' ? ref.gpt2Reference(fixture, inputs, c.batch, c.seq) :
                                              ref.longEncoderReference(fixture, inputs, c.batch, c.seq);
        onCpu = await run('cpu');
        const {err, at} = worstError(onCpu, expected);
        expect(err).withContext(`worst at ${at}: ${onCpu[at]} vs ${expected[at]}`).toBeLessThanOrEqual(RTOL);
      });

      it("on 'stof' matches 'cpu'", async () => {
        if (tf.findBackendFactory('stof') == null) {
          pending("no backend named 'stof' is registered");
          return;
        }
        const expected = onCpu ?? await run('cpu');
        const actual = await run('stof');
        const {err, at} = worstError(actual, expected);
        expect(err).withContext(`worst at ${at}: ${actual[at]} vs ${expected[at]}`).toBeLessThanOrEqual(RTOL);
      });
    });
  }
});
