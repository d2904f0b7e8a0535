// What ONNX Runtime Web's WebGPU EPs can do in Node on Dawn, checked on a tiny ONNX model written
// here (Y = Softmax(X W + B), opset 17): each EP on tfjs's GPUDevice (output vs the CPU 'wasm' EP,
// tfjs still correct afterwards), and for the C++ EP zero-copy hand-over both ways (a tfjs GPU
// buffer as ORT input via dataToGPU, ORT's output left on the GPU). Prints one line per check.
// Usage: node scripts/with_vulkan.mjs bench/hf/ort_probe.mjs
import {createRequire} from 'node:module';
import path from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import 'tfjs-backend-stof';

import {createSession, loadOrt} from './ort_node.mjs';

const require = createRequire(import.meta.url);
const {onnx} = require(path.join(path.dirname(require.resolve('onnxruntime-web')), '../lib/onnxjs/ort-schema/protobuf/onnx.js'));

const K = 8, N = 4;
const W = Float32Array.from({length: K * N}, (_, i) => Math.sin(i)), B = Float32Array.from({length: N}, (_, i) => i / 10);
const raw = a => new Uint8Array(a.buffer);
const vi = (name, dims) => ({name, type: {tensorType: {elemType: 1, shape: {dim: dims.map(d => (typeof d === 'string' ? {dimParam: d} : {dimValue: d}))}}}});
const bytes = onnx.ModelProto.encode(onnx.ModelProto.create({
  irVersion: 8, opsetImport: [{domain: '', version: 17}],
  graph: {name: 'g', node: [{opType: 'MatMul', input: ['X', 'W'], output: ['XW']}, {opType: 'Add', input: ['XW', 'B'], output: ['Z']},
                            {opType: 'Softmax', input: ['Z'], output: ['Y'], attribute: [{name: 'axis', type: 2, i: -1}]}],
          initializer: [{name: 'W', dims: [K, N], dataType: 1, rawData: raw(W)}, {name: 'B', dims: [N], dataType: 1, rawData: raw(B)}],
          input: [vi('X', ['batch', K])], output: [vi('Y', ['batch', N])]},
})).finish();
const X = Float32Array.from({length: 2 * K}, (_, i) => i / 7);
const maxDiff = (a, b) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
const report = (what, ok, detail = '') => console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? `: ${detail}` : ''}`);

if (!await tf.setBackend('webgpu')) throw new Error('no WebGPU adapter');
tf.env().set('WEBGPU_CPU_FORWARD', false);
const device = tf.backend().device;
const x0 = tf.tensor([[1, 2], [3, 4]]);
const tfCheck = async () => JSON.stringify(Array.from(await tf.matMul(x0, x0).data())) === '[7,10,15,22]';

const wasmOrt = await loadOrt('ort-webgpu');
const wasmSess = await wasmOrt.InferenceSession.create(bytes, {executionProviders: ['wasm']});
const want = (await wasmSess.run({X: new wasmOrt.Tensor('float32', X, [2, K])})).Y.data;

for (const kind of ['ort-webgpu', 'ort-jsep']) {
  try {
    const {ort, session} = await createSession(kind, bytes, device);
    const got = (await session.run({X: new ort.Tensor('float32', X, [2, K])})).Y.data;
    report(`${kind}: runs on tfjs's GPUDevice`, maxDiff(got, want) < 1e-6, `max |diff| vs wasm EP ${maxDiff(got, want).toExponential(1)}`);
    if (kind === 'ort-webgpu') {
      const tx = tf.add(tf.tensor(X, [2, K]), 0);
      const gpu = tx.dataToGPU();
      const viaTf = (await session.run({X: ort.Tensor.fromGpuBuffer(gpu.buffer, {dataType: 'float32', dims: [2, K]})})).Y.data;
      report(`${kind}: tfjs GPU buffer (dataToGPU) as input, no copy`, maxDiff(viaTf, want) < 1e-6);
      gpu.tensorRef.dispose(); tx.dispose();
      const s2 = await createSession(kind, bytes, device, {preferredOutputLocation: 'gpu-buffer'});
      const y = (await s2.session.run({X: new ort.Tensor('float32', X, [2, K])})).Y;
      report(`${kind}: output left on the GPU (gpu-buffer)`, y.location === 'gpu-buffer' && maxDiff(await y.getData(), want) < 1e-6, `${y.gpuBuffer?.constructor?.name}`);
      await s2.session.release();
    }
    await session.release();
    report(`${kind}: tfjs still correct after release, device not lost`, await tfCheck());
  } catch (e) {
    report(`${kind}`, false, e.message.split('\n')[0]);
  }
}
