// The 'stof' backend's own behaviour, in Node and in Chromium: registration, base choice, the
// STOF_BASE flag, kernel mirroring, and delegation of storage, reads, memory and timing.
// The expected base comes from globalThis.__stofExpectedBase ('webgpu' or 'cpu'), set by the runner.
import * as tf from '@tensorflow/tfjs-core';

import {BaseName, StofBackend} from '../../src/backend/stof_backend';
import {backendInfo, STOF_PRIORITY} from '../../src/public_api';

import {expectClose, randomTensor} from './util';

const expectedBase = (globalThis as unknown as {__stofExpectedBase: BaseName}).__stofExpectedBase;
type EngineInternals = {
  registryFactory: Record<string, {priority: number}>, registry: Record<string, tf.KernelBackend>,
  getSortedBackends(): string[],
};
const engine = () => tf.engine() as unknown as EngineInternals;

async function useStof(base: 'auto'|BaseName = 'auto'): Promise<StofBackend> {
  tf.engine().reset();
  tf.env().set('STOF_BASE', base);
  expect(await tf.setBackend('stof')).toBe(true);
  return tf.backend() as StofBackend;
}

describe('stof backend', () => {
  afterEach(() => {
    tf.env().set('STOF_BASE', 'auto');
    tf.engine().reset();
  });

  it('is registered above every other backend, so importing the package makes it the default', () => {
    const factories = engine().registryFactory;
    expect(factories['stof'].priority).toBe(STOF_PRIORITY);
    for (const name of Object.keys(factories).filter(n => n !== 'stof')) {
      expect(factories[name].priority).toBeLessThan(STOF_PRIORITY, name);
    }
    expect(engine().getSortedBackends()[0]).toBe('stof');
  });

  it(`picks the ${expectedBase} base when STOF_BASE is 'auto'`, async () => {
    const backend = await useStof();
    expect(tf.getBackend()).toBe('stof');
    expect(backendInfo().base).toBe(expectedBase);
    expect(backend.baseName).toBe(expectedBase);
    if (expectedBase === 'webgpu') expect(backendInfo().adapter?.vendor).toBeTruthy();
  });

  it('shares the engine\'s instance of its base (one device, one set of buffers)', async () => {
    const backend = await useStof();
    expect(engine().registry[backend.baseName]).toBe(backend.base);
  });

  it('takes the CPU base when STOF_BASE is cpu', async () => {
    await useStof('cpu');
    expect(backendInfo().base).toBe('cpu');
  });

  it('rejects an unknown STOF_BASE naming the bad value', () => {
    expect(() => tf.env().set('STOF_BASE', 'webgl')).toThrowError(/STOF_BASE must be one of 'auto', 'webgpu', 'cpu', got "webgl"/);
  });

  it('registers for stof exactly the kernels of its base', async () => {
    const backend = await useStof();
    const names = (b: string) => tf.getKernelsForBackend(b).map(k => k.kernelName).sort();
    expect(names('stof')).toEqual(names(backend.baseName));
  });

  it('mirrors kernels registered for the base after it started, and their removal', async () => {
    const backend = await useStof();
    const kernelName = 'StofSpecTimesTwo';
    tf.registerKernel({
      kernelName, backendName: backend.baseName,
      kernelFunc: ({inputs, backend: b}) => {
        expect(b).toBe(backend.base);  // the base kernel runs with the base backend
        const x = inputs['x'] as tf.TensorInfo;
        const values = (b as tf.KernelBackend).readSync(x.dataId) as Float32Array;
        return {dataId: (b as tf.KernelBackend).write(values.map(v => 2 * v), x.shape, x.dtype), shape: x.shape, dtype: x.dtype};
      },
    });
    try {
      const y = tf.engine().runKernel(kernelName, {x: tf.tensor1d([1, 2, 3])}) as tf.Tensor;
      expect(Array.from(await y.data())).toEqual([2, 4, 6]);
    } finally {
      tf.unregisterKernel(kernelName, backend.baseName);
    }
    expect(tf.getKernel(kernelName, 'stof')).toBeUndefined();
  });

  it('gives results equal to tfjs-backend-cpu on a transformer-shaped chain', async () => {
    const run = () => tf.tidy(() => {
      const x = randomTensor([2, 16, 32], 1);
      const w = randomTensor([32, 32], 2);
      const h = tf.reshape(tf.matMul(tf.reshape(x, [32, 32]), w), [2, 16, 32]);
      const {mean, variance} = tf.moments(h, -1, true);
      const ln = tf.mul(tf.sub(h, mean), tf.rsqrt(tf.add(variance, 1e-5)));
      const scores = tf.div(tf.matMul(ln, ln, false, true), Math.sqrt(32));
      return tf.matMul(tf.softmax(scores), ln);
    });
    await useStof();
    const onStof = run();
    const stofValues = await onStof.data();
    await tf.setBackend('cpu');
    const onCpu = run();
    expectClose(stofValues, await onCpu.data(), 1e-4);
  });

  it('delegates reads: data(), dataSync(), array() and bytes of every dtype', async () => {
    await useStof();
    const f = tf.tensor2d([[1.5, -2], [3, 4]]);
    const i = tf.tensor1d([1, 2, 3], 'int32');
    const b = tf.tensor1d([true, false], 'bool');
    const s = tf.tensor1d(['a', 'bc'], 'string');
    expect(Array.from(f.dataSync())).toEqual([1.5, -2, 3, 4]);
    expect(await f.array()).toEqual([[1.5, -2], [3, 4]]);
    expect(Array.from(await tf.add(i, i).data())).toEqual([2, 4, 6]);
    expect(Array.from(await tf.logicalNot(b).data())).toEqual([0, 1]);
    expect(await s.array() as unknown as string[]).toEqual(['a', 'bc']);
  });

  it('delegates memory accounting and frees what is disposed', async () => {
    const backend = await useStof();
    const before = tf.memory();
    const idsBefore = backend.numDataIds();
    expect(idsBefore).toBe(backend.base.numDataIds());
    const a = tf.ones([64, 64]);
    const c = tf.matMul(a, a);
    await c.data();
    expect(tf.memory().numTensors).toBe(before.numTensors + 2);
    expect(tf.memory().numBytes).toBe(before.numBytes + 2 * 64 * 64 * 4);
    expect(backend.numDataIds()).toBe(idsBefore + 2);
    if (backend.baseName === 'webgpu') {
      expect((tf.memory() as unknown as {numBytesInGPU: number}).numBytesInGPU).toBeGreaterThanOrEqual(2 * 64 * 64 * 4);
    }
    tf.dispose([a, c]);
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(backend.numDataIds()).toBe(idsBefore);
  });

  it('moves tensors between stof and another backend in both directions', async () => {
    await useStof();
    const onStof = tf.tensor1d([1, 2, 3]);
    await tf.setBackend('cpu');
    const onCpu = tf.tensor1d([10, 20, 30]);
    expect(Array.from(await tf.add(onStof, onCpu).data())).toEqual([11, 22, 33]);
    await tf.setBackend('stof');
    expect(Array.from(await tf.mul(onStof, onCpu).data())).toEqual([10, 40, 90]);
  });

  it('delegates tf.time()', async () => {
    await useStof();
    const a = tf.randomNormal([128, 128]);
    const info = await tf.time(() => tf.matMul(a, a).dispose());
    expect(info.wallMs).toBeGreaterThanOrEqual(0);
    expect(typeof info.kernelMs === 'number' || typeof (info.kernelMs as {error: string}).error === 'string').toBe(true);
  });

  it('reports float precision and epsilon of its base', async () => {
    const backend = await useStof();
    expect(backend.floatPrecision()).toBe(backend.base.floatPrecision());
    expect(backend.epsilon()).toBe(backend.base.epsilon());
  });

  it('survives engine resets: a fresh backend is created each time', async () => {
    const first = await useStof();
    const second = await useStof();
    expect(second).not.toBe(first);
    expect(Array.from(await tf.square(tf.tensor1d([3])).data())).toEqual([9]);
  });
});
