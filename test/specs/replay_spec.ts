// Node only: graph replay of converted models on 'stof' (src/backend/model_replay.ts). The first
// forward of an input signature is captured, later ones replay the kernels that depend on the
// inputs. Replayed outputs must equal tfjs-backend-cpu's on new input values, a new signature must
// be captured anew, nothing may leak, and a forward whose host code reads input-dependent values
// (a shape fed as an input, a dynamic op) must run as usual, with the reason reported.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';

import {pinsOf} from '../../src/kernels/webgpu/command_recorder';
import {profile, ProfileReport, StofBackend} from '../../src/public_api';

import {fixtureModule, LoadFixtureModule, MakeFixturesModule, useStof} from './node_fixtures';

function worst(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let err = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.abs(actual[i] - expected[i]) / Math.max(1, Math.abs(expected[i]));
    if (!(e <= err)) err = e;
  }
  return err;
}

/** Inputs of a tiny fixture: random ids, right padding of random length, two segments. */
function feedsFor(make: MakeFixturesModule, model: string, vocab: number, B: number, S: number, seed: number) {
  const rng = make.makeRng(seed);
  const ids = new Int32Array(B * S), mask = new Int32Array(B * S), types = new Int32Array(B * S);
  for (let b = 0; b < B; b++) {
    const len = 1 + Math.floor(rng.uniform() * S);
    for (let s = 0; s < len; s++) {
      ids[b * S + s] = 1 + Math.floor(rng.uniform() * (vocab - 1));
      mask[b * S + s] = 1;
      types[b * S + s] = s > len / 2 ? 1 : 0;
    }
  }
  return () => {
    const feeds: tf.NamedTensorMap = {input_ids: tf.tensor2d(ids, [B, S], 'int32'), attention_mask: tf.tensor2d(mask, [B, S], 'int32')};
    if (model !== 'gpt2') feeds['token_type_ids'] = tf.tensor2d(types, [B, S], 'int32');
    return feeds;
  };
}

/** A model built from GraphDef nodes without weights (tf.io.fromMemory). */
function graphModel(nodes: object[]): Promise<tfconv.GraphModel> {
  return tfconv.loadGraphModel(tf.io.fromMemory({
    modelTopology: {node: nodes, library: {}, versions: {producer: 1645}}, weightSpecs: [], weightData: new ArrayBuffer(0),
    format: 'graph-model',
  }));
}
const T = (t: string) => ({type: t});
const placeholder = (name: string, type: string, dims: number[]) =>
    ({name, op: 'Placeholder', attr: {dtype: T(type), shape: {shape: {dim: dims.map(d => ({size: String(d)}))}}}});

describe('graph replay of converted models', () => {
  let make: MakeFixturesModule, load: LoadFixtureModule, root: string;
  let previousBackend: string|null = null;

  beforeAll(async () => {
    make = await fixtureModule<MakeFixturesModule>('make_fixtures.mjs');
    load = await fixtureModule<LoadFixtureModule>('load_fixture.mjs');
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'stof-replay-'));
    previousBackend = tf.getBackend() ?? null;
  });
  afterAll(async () => {
    if (root) fs.rmSync(root, {recursive: true, force: true});
    tf.env().set('STOF_REPLAY', true);
    if (previousBackend != null && tf.findBackendFactory(previousBackend) != null) await tf.setBackend(previousBackend);
  });

  /** One forward under profile(): the output's values and the replay report. */
  async function forward(model: tfconv.GraphModel, feeds: tf.NamedTensorMap, async = false): Promise<{y: Float32Array, r: ProfileReport}> {
    const r = await profile(() => async ? model.executeAsync(feeds) as Promise<tf.Tensor> : model.execute(feeds) as tf.Tensor);
    const y = await r.result.data() as Float32Array;
    r.result.dispose();
    tf.dispose(feeds);
    return {y, r};
  }

  for (const model of ['bert', 'gpt2', 'long']) {
    it(`${model}: replays equal tfjs-backend-cpu on new values and lengths, and capture again per signature`, async () => {
      const fixture = model === 'bert' ? make.makeBert() : model === 'gpt2' ? make.makeGpt2() : make.makeLongEncoder();
      const dir = make.writeFixture(path.join(root, model), fixture);
      // (B, S, seed): the signature changes at the third forward and returns at the fourth.
      const runs: Array<[number, number, number]> = [[2, 13, 1], [2, 13, 2], [1, 40, 3], [2, 13, 4], [2, 13, 5]];
      await tf.setBackend('cpu');
      const cpuModel = await load.loadFixture(dir, tfconv);
      const expected: Float32Array[] = [];
      for (const [B, S, seed] of runs) {
        const feeds = feedsFor(make, model, fixture.config.vocab, B, S, seed)();
        const y = cpuModel.execute(feeds) as tf.Tensor;
        expected.push(await y.data() as Float32Array);
        y.dispose();
        tf.dispose(feeds);
      }
      cpuModel.dispose();

      if (!await useStof()) return;
      const backend = tf.backend() as StofBackend;
      const idsBefore = backend.numDataIds();
      const m = await load.loadFixture(dir, tfconv);
      const kinds: string[] = [];
      for (let i = 0; i < runs.length; i++) {
        const [B, S, seed] = runs[i];
        const {y, r} = await forward(m, feedsFor(make, model, fixture.config.vocab, B, S, seed)(), i === 4);
        kinds.push(r.replay.replayed === 1 ? 'replayed' : r.replay.captured === 1 ? 'captured' : `not replayed: ${JSON.stringify(r.replay)}`);
        expect(worst(y, expected[i])).withContext(`forward ${i} (${kinds[i]})`).toBeLessThanOrEqual(1e-4);
      }
      expect(kinds).toEqual(['captured', 'replayed', 'captured', 'replayed', 'replayed']);

      // No leak: tensors and 'stof' values flat over replays; everything back after dispose.
      const feeds = feedsFor(make, model, fixture.config.vocab, 2, 13, 6);
      const once = async () => { const f = feeds(); const y = m.execute(f) as tf.Tensor; await y.data(); y.dispose(); tf.dispose(f); };
      await once();
      const [tensors, ids] = [tf.memory().numTensors, backend.numDataIds()];
      for (let i = 0; i < 10; i++) await once();
      expect([tf.memory().numTensors, backend.numDataIds()]).toEqual([tensors, ids]);
      m.dispose();
      expect(backend.numDataIds()).toBe(idsBefore);
    });
  }

  it('leaves out the converter: replayed forwards record only the kernels that depend on the inputs', async () => {
    if (!await useStof()) return;
    const dir = make.writeFixture(path.join(root, 'bert_count'), make.makeBert());
    const m = await load.loadFixture(dir, tfconv);
    const feeds = feedsFor(make, 'bert', 100, 2, 16, 7);
    const first = await forward(m, feeds());
    const second = await forward(m, feeds());
    tf.env().set('STOF_REPLAY', false);
    const off = await forward(m, feeds());
    tf.env().set('STOF_REPLAY', true);
    m.dispose();
    expect(off.r.replay).toEqual({captured: 0, replayed: 0, notReplayed: [], graphs: 0, graphDeclined: []});
    expect(second.y).toEqual(off.y);
    expect(second.y).toEqual(first.y);
    // Shape arithmetic of the converter (Cast, Pack, StridedSlice, Concat on int32 shape vectors) is constant per signature.
    const baseCalls = (r: ProfileReport) => Object.values(r.baseKernels).reduce((a, b) => a + b, 0);
    expect(baseCalls(second.r)).toBeLessThan(baseCalls(off.r) / 4);
    expect(second.r.groups.map(g => g.template)).toEqual(off.r.groups.map(g => g.template));
  });

  it('runs forwards under tf.profile() and a gradient tape through the engine, saying why', async () => {
    if (!await useStof()) return;
    const dir = make.writeFixture(path.join(root, 'bert_engine'), make.makeBert());
    const m = await load.loadFixture(dir, tfconv);
    const feeds = feedsFor(make, 'bert', 100, 2, 16, 8);
    const first = await forward(m, feeds());
    expect((await forward(m, feeds())).r.replay.replayed).toBe(1);
    let kernels = 0;
    const p = await profile(async () => {
      const f = feeds();
      const info = await tf.profile(() => m.execute(f) as tf.Tensor);
      kernels = info.kernels.length;
      tf.dispose(f);
      return info.result as tf.Tensor;
    });
    expect(kernels).toBeGreaterThan(50);  // tf.profile saw the converter's kernels
    expect(p.replay.notReplayed.map(e => e.reason)).toEqual(['under tf.profile()']);
    // Not bit-equal: the engine's profiler reads each output, so groups split where the replay fuses.
    expect(worst(await p.result.data(), first.y)).toBeLessThanOrEqual(1e-5);
    p.result.dispose();
    if (tf.getGradient('Multiply') == null) {  // tfjs-core alone registers no gradients
      tf.registerGradient({kernelName: 'Multiply', inputsToSave: ['a', 'b'],
                           gradFunc: (dy, saved) => ({a: () => tf.mul(dy as tf.Tensor, saved[1]), b: () => tf.mul(dy as tf.Tensor, saved[0])})});
    }
    const g = await profile(() => {
      const f = feeds();
      const dx = tf.grad((x: tf.Tensor) => tf.mul(x, tf.sum(m.execute(f) as tf.Tensor)))(tf.scalar(1));
      tf.dispose(f);
      return dx;
    });
    expect(g.replay.notReplayed.map(e => e.reason)).toEqual(['under a gradient tape']);
    expect((await g.result.data())[0]).toBeCloseTo(first.y.reduce((a, b) => a + b, 0), 1);
    g.result.dispose();
    m.dispose();
  });

  it('does not replay a forward whose host code reads an input (a shape fed as an input)', async () => {
    if (!await useStof()) return;
    const m = await graphModel([
      placeholder('x', 'DT_FLOAT', [-1]), placeholder('s', 'DT_INT32', [2]),
      {name: 'y', op: 'Reshape', input: ['x', 's'], attr: {T: T('DT_FLOAT'), Tshape: T('DT_INT32')}},
      {name: 'z', op: 'Mul', input: ['y', 'y'], attr: {T: T('DT_FLOAT')}},
    ]);
    const x = [1, 2, 3, 4, 5, 6];
    for (const shape of [[2, 3], [3, 2], [6, 1]]) {
      const feeds = {x: tf.tensor1d(x), s: tf.tensor1d(shape, 'int32')};
      const r = await profile(() => m.execute(feeds) as tf.Tensor);
      expect(r.result.shape).toEqual(shape);
      expect(Array.from(await r.result.data())).toEqual(x.map(v => v * v));
      expect(r.replay.replayed).toBe(0);
      expect(r.replay.notReplayed.map(e => e.reason)).toEqual(['the forward reads a value that depends on its inputs (readSync)']);
      r.result.dispose();
      tf.dispose(feeds);
    }
    m.dispose();
  });

  it('runs graphs with dynamic ops through executeAsync as usual, saying why', async () => {
    if (!await useStof()) return;
    const m = await graphModel([placeholder('c', 'DT_BOOL', [-1]), {name: 'w', op: 'Where', input: ['c'], attr: {T: T('DT_BOOL')}}]);
    for (const bits of [[true, false, true], [false, false, true]]) {
      const c = tf.tensor1d(bits, 'bool');
      const r = await profile(() => m.executeAsync({c}) as Promise<tf.Tensor>);
      expect(Array.from(await r.result.data())).toEqual(bits.flatMap((b, i) => b ? [i] : []));
      expect(r.replay.replayed).toBe(0);
      expect(r.replay.notReplayed.length).toBe(1);
      expect(r.replay.notReplayed[0].reason).toMatch(/control flow or dynamic shapes/);
      r.result.dispose();
      c.dispose();
    }
    m.dispose();
  });

  // WebGPU base: from the third forward of a signature a replay is one recorded command list
  // (src/backend/webgpu_graph.ts): the same passes and copies encoded again, no kernel recorded.
  describe('as recorded WebGPU command lists', () => {
    async function onWebGPU(): Promise<StofBackend|null> {
      if (!await useStof()) return null;
      const backend = tf.backend() as StofBackend;
      if (backend.baseName !== 'webgpu') {
        pending(`'stof' runs on ${backend.baseName}, not on the WebGPU base`);
        return null;
      }
      return backend;
    }
    const kindOf = (r: ProfileReport) => r.replay.graphs === 1 ? 'graph' : r.replay.replayed === 1 ? 'replayed' :
        r.replay.captured === 1 ? 'captured' : `neither: ${JSON.stringify(r.replay)}`;

    for (const model of ['bert', 'gpt2']) {
      it(`${model}: graph forwards equal tfjs-backend-cpu on new values, outputs held and read after all of them`, async () => {
        const fixture = model === 'bert' ? make.makeBert() : make.makeGpt2();
        const dir = make.writeFixture(path.join(root, `${model}_graph`), fixture);
        const seeds = [11, 12, 13, 14, 15, 16];
        await tf.setBackend('cpu');
        const cpuModel = await load.loadFixture(dir, tfconv);
        const expected: Float32Array[] = [];
        for (const seed of seeds) {
          const feeds = feedsFor(make, model, fixture.config.vocab, 2, 13, seed)();
          const y = cpuModel.execute(feeds) as tf.Tensor;
          expected.push(await y.data() as Float32Array);
          tf.dispose([y, ...Object.values(feeds)]);
        }
        cpuModel.dispose();

        const backend = await onWebGPU();
        if (backend == null) return;
        const pins = pinsOf((backend.base as unknown as {bufferManager: Parameters<typeof pinsOf>[0]}).bufferManager);
        const idsBefore = backend.numDataIds();
        const m = await load.loadFixture(dir, tfconv);
        const held: tf.Tensor[] = [], kinds: string[] = [];
        for (const seed of seeds) {
          const feeds = feedsFor(make, model, fixture.config.vocab, 2, 13, seed)();
          const r = await profile(() => m.execute(feeds) as tf.Tensor, {timing: false});
          tf.dispose(feeds);
          kinds.push(kindOf(r));
          if (r.replay.graphs === 1) {
            expect(r.groups.map(g => g.template)).toEqual(['graph']);
            expect(r.dispatches).toBeGreaterThan(5);
          }
          held.push(r.result);
        }
        expect(kinds).toEqual(['captured', 'replayed', 'replayed', 'graph', 'graph', 'graph']);
        // Every output read only now: a later forward must not have overwritten an earlier one's.
        for (let i = 0; i < held.length; i++) {
          expect(worst(await held[i].data() as Float32Array, expected[i])).withContext(`forward ${i} (${kinds[i]})`).toBeLessThanOrEqual(1e-4);
        }
        tf.dispose(held);
        expect(pins.stats().pinned).toBeGreaterThan(0);

        // No leak over graph forwards: tensors, values, the pool's bytes in use.
        const feeds = feedsFor(make, model, fixture.config.vocab, 2, 13, 17);
        const once = async () => { const f = feeds(); const y = m.execute(f) as tf.Tensor; await y.data(); tf.dispose([y, ...Object.values(f)]); };
        await once();
        const snapshot = () => [tf.memory().numTensors, backend.numDataIds(), (tf.memory() as {numBytesInGPU?: number}).numBytesInGPU, pins.stats()];
        const before = snapshot();
        for (let i = 0; i < 20; i++) await once();
        expect(snapshot()).toEqual(before);
        m.dispose();
        expect(pins.stats()).toEqual({pinned: 0, parked: 0, parkedBytes: 0});
        expect(backend.numDataIds()).toBe(idsBefore);
      });
    }

    it('STOF_WEBGPU_GRAPH=false replays kernel by kernel with the same outputs', async () => {
      const backend = await onWebGPU();
      if (backend == null) return;
      const dir = make.writeFixture(path.join(root, 'bert_graph_flag'), make.makeBert());
      const m = await load.loadFixture(dir, tfconv);
      const feeds = feedsFor(make, 'bert', 100, 2, 16, 21);
      const run = async () => {
        const f = feeds();
        const r = await profile(() => m.execute(f) as tf.Tensor, {timing: false});
        tf.dispose(f);
        const y = await r.result.data() as Float32Array;
        r.result.dispose();
        return {kind: kindOf(r), y};
      };
      const on = [];
      for (let i = 0; i < 4; i++) on.push(await run());
      tf.env().set('STOF_WEBGPU_GRAPH', false);
      let off;
      try { off = await run(); } finally { tf.env().set('STOF_WEBGPU_GRAPH', true); }
      const again = await run();
      m.dispose();
      expect([...on.map(o => o.kind), off.kind, again.kind]).toEqual(['captured', 'replayed', 'replayed', 'graph', 'replayed', 'graph']);
      expect(worst(on[3].y, off.y)).toBeLessThanOrEqual(1e-6);
      expect(worst(again.y, off.y)).toBeLessThanOrEqual(1e-6);
    });

    it('analyses a mask fed as an input inside the graph: a new mask per forward', async () => {
      const {makeMaskedAttention} = make as unknown as {makeMaskedAttention(c?: object): Parameters<MakeFixturesModule['writeFixture']>[1]};
      const dir = make.writeFixture(path.join(root, 'masked_graph'), makeMaskedAttention());
      const rng = make.makeRng(31);
      const S = 16, shape = [1, 2, S, 8];
      const inputs = [0, 1, 2, 3, 4, 5].map(f => {
        const rand = () => Float32Array.from({length: 2 * S * 8}, () => rng.uniform() * 2 - 1);
        // Causal, then a band, then rows masked out entirely: each forward changes which blocks are empty.
        const mask = new Float32Array(S * S);
        for (let i = 0; i < S; i++) for (let j = 0; j < S; j++) {
          const keep = f % 3 === 0 ? j <= i : f % 3 === 1 ? Math.abs(i - j) <= 2 + f : i < S - f;
          mask[i * S + j] = keep ? 0 : -1e9;
        }
        return {q: rand(), k: rand(), v: rand(), mask};
      });
      const feedsOf = (x: typeof inputs[0]) => ({q: tf.tensor(x.q, shape), k: tf.tensor(x.k, shape), v: tf.tensor(x.v, shape),
                                                 mask: tf.tensor(x.mask, [1, 1, S, S])});
      await tf.setBackend('cpu');
      const cpuModel = await load.loadFixture(dir, tfconv);
      const expected: Float32Array[] = [];
      for (const x of inputs) {
        const f = feedsOf(x);
        const y = cpuModel.execute(f) as tf.Tensor;
        expected.push(await y.data() as Float32Array);
        tf.dispose([y, ...Object.values(f)]);
      }
      cpuModel.dispose();
      if (await onWebGPU() == null) return;
      const m = await load.loadFixture(dir, tfconv);
      const held: tf.Tensor[] = [], kinds: string[] = [];
      for (const x of inputs) {
        const f = feedsOf(x);
        const r = await profile(() => m.execute(f) as tf.Tensor, {timing: false});
        tf.dispose(f);
        kinds.push(kindOf(r));
        held.push(r.result);
      }
      expect(kinds).toEqual(['captured', 'replayed', 'replayed', 'graph', 'graph', 'graph']);
      for (let i = 0; i < held.length; i++) {
        const y = await held[i].data() as Float32Array;
        expect(y.some(Number.isNaN)).toBe(false);
        expect(worst(y, expected[i])).withContext(`forward ${i} (${kinds[i]})`).toBeLessThanOrEqual(1e-4);
      }
      tf.dispose(held);
      m.dispose();
    });
  });
});
