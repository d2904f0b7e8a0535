// ONNX Runtime Web's WebGPU execution providers in Node on Dawn (the `webgpu` package), on the same
// GPUDevice as tfjs-backend-webgpu / 'stof'. What this needs (found on SwiftShader, ORT Web 1.30.0,
// webgpu 0.6.2):
// - navigator.gpu and the GPU* globals: set up by importing tfjs-backend-stof (src/backend/node_webgpu.ts).
// - `import 'onnxruntime-web'` in Node resolves to the wasm-only build (its "node" condition): the
//   WebGPU builds are imported by file: 'webgpu' = onnxruntime-web/webgpu (dist/ort.webgpu.bundle.min.mjs,
//   the C++ WebGPU EP, asyncify wasm); 'jsep' = dist/ort.bundle.min.mjs (the JS-kernel WebGPU EP, JSEP wasm).
// - ORT's wasm heap is a SharedArrayBuffer (threaded build, also with numThreads = 1) and it passes
//   views of it to GPUQueue.writeBuffer (both EPs) and to setBindGroup's dynamic offsets (C++ EP).
//   Dawn's Node binding rejects a SharedArrayBuffer there ("no overload matched" / "Invalid
//   argument") and aborts the process on a typed array over one (FATAL ERROR: Error::New
//   napi_get_last_error_info). patchDawnForSharedMemory() copies such arguments into an
//   ArrayBuffer first; other callers (tfjs) are passed through untouched.
// - Same device: the C++ EP takes it as an EP option ({name: 'webgpu', device}); ort.env.webgpu.device
//   set beforehand is ignored by both builds. JSEP always calls adapter.requestDevice(); it gets the
//   shared device through env.webgpu.adapter set to an adapter-like object whose requestDevice()
//   returns it (a workaround, not an ORT API).
import {createRequire} from 'node:module';
import path from 'node:path';
import {pathToFileURL} from 'node:url';

const require = createRequire(import.meta.url);
export const ORT_KINDS = {
  'ort-webgpu': {file: 'ort.webgpu.bundle.min.mjs', ep: 'WebGPU EP (C++, onnxruntime-web/webgpu)'},
  'ort-jsep': {file: 'ort.bundle.min.mjs', ep: 'JSEP WebGPU EP (JS kernels, onnxruntime-web default browser build)'},
};

const isShared = d => d instanceof SharedArrayBuffer || (ArrayBuffer.isView(d) && d.buffer instanceof SharedArrayBuffer);

let patched = false;
export function patchDawnForSharedMemory() {
  if (patched) return;
  if (typeof GPUQueue === 'undefined') throw new Error('no GPUQueue global: import tfjs-backend-stof (Dawn setup) first');
  patched = true;
  const writeBuffer = GPUQueue.prototype.writeBuffer;
  GPUQueue.prototype.writeBuffer = function (buffer, offset, data, dataOffset, size) {
    if (!isShared(data)) return writeBuffer.apply(this, arguments);
    // dataOffset / size count elements for a typed array, bytes for an ArrayBuffer (WebGPU spec)
    const el = ArrayBuffer.isView(data) ? (data.BYTES_PER_ELEMENT ?? 1) : 1;
    const base = ArrayBuffer.isView(data) ? data.byteOffset : 0;
    const start = base + (dataOffset ?? 0) * el;
    const bytes = size != null ? size * el : data.byteLength - (dataOffset ?? 0) * el;
    const buf = ArrayBuffer.isView(data) ? data.buffer : data;
    return writeBuffer.call(this, buffer, offset, new Uint8Array(buf, start, bytes).slice(), 0, bytes);
  };
  for (const cls of [globalThis.GPUComputePassEncoder, globalThis.GPURenderPassEncoder, globalThis.GPURenderBundleEncoder]) {
    if (cls == null) continue;
    const setBindGroup = cls.prototype.setBindGroup;
    cls.prototype.setBindGroup = function (index, group, offsets, start, length) {
      if (!isShared(offsets)) return setBindGroup.apply(this, arguments);
      const copy = new Uint32Array(offsets.buffer, offsets.byteOffset + (start ?? 0) * 4, length ?? offsets.length - (start ?? 0)).slice();
      return setBindGroup.call(this, index, group, copy, 0, copy.length);
    };
  }
}

const loaded = new Map();
/** The ORT module of kind 'ort-webgpu' or 'ort-jsep' (each kind is its own module with its own wasm instance). */
export async function loadOrt(kind) {
  if (!ORT_KINDS[kind]) throw new Error(`unknown ORT kind ${kind}`);
  if (!loaded.has(kind)) {
    patchDawnForSharedMemory();
    const dist = path.dirname(require.resolve('onnxruntime-web'));
    const ort = await import(pathToFileURL(path.join(dist, ORT_KINDS[kind].file)).href);
    ort.env.wasm.numThreads = 1;   // the work is on the GPU; no worker threads
    ort.env.logLevel = 'error';
    loaded.set(kind, ort);
  }
  return loaded.get(kind);
}

/** An InferenceSession on `device` (the tfjs GPUDevice). */
export async function createSession(kind, modelBytes, device, options = {}) {
  const ort = await loadOrt(kind);
  let executionProviders;
  if (kind === 'ort-webgpu') {
    executionProviders = [{name: 'webgpu', device}];
  } else {
    const adapter = await navigator.gpu.requestAdapter();
    const prev = ort.env.webgpu.adapter;
    if (prev == null) {
      ort.env.webgpu.adapter = {limits: adapter.limits, features: device.features, info: adapter.info, requestDevice: async () => device};
    }
    executionProviders = ['webgpu'];
  }
  const session = await ort.InferenceSession.create(modelBytes, {executionProviders, graphOptimizationLevel: 'all', logSeverityLevel: 3, ...options});
  if (kind === 'ort-jsep' && (await ort.env.webgpu.device) !== device) {
    await session.release();
    throw new Error('JSEP did not take the shared device');
  }
  return {ort, session};
}

/** Feeds for `session` from int32 arrays [B, S] (as int64, the ONNX exports' input type). */
export function makeFeeds(ort, session, inputs, shape, dtype = 'int64') {
  const feeds = {};
  for (const name of session.inputNames) {
    const v = inputs[name];
    if (v == null) throw new Error(`ONNX input ${name} has no data (have ${Object.keys(inputs)})`);
    feeds[name] = dtype === 'int64' ? new ort.Tensor('int64', BigInt64Array.from(v, BigInt), shape) : new ort.Tensor('int32', Int32Array.from(v), shape);
  }
  return feeds;
}

/** One forward: the first output's data (Float32Array, read back to the CPU). */
export async function runSession({ort, session}, inputs, shape, dtype) {
  const feeds = makeFeeds(ort, session, inputs, shape, dtype);
  const out = await session.run(feeds);
  const name = session.outputNames.includes('last_hidden_state') ? 'last_hidden_state' : session.outputNames[0];
  const data = out[name].data;
  for (const t of Object.values(out)) t.dispose?.();
  return data;
}
