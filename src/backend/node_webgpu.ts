// Node only: gives tfjs-backend-webgpu a navigator.gpu from Dawn (the `webgpu` package), then loads
// it: it registers 'webgpu' only if navigator.gpu exists at import time. A plain import would be
// hoisted above this setup by the bundler, hence require().
import {createRequire} from 'node:module';

import {explainMissingWebGPU} from './register';

const nodeRequire = createRequire(import.meta.url);

type Dawn = {create(options: string[]): GPU; globals: Record<string, unknown>};

function setUpDawn() {
  const g = globalThis as unknown as {navigator?: {gpu?: GPU}, __stofDawnGpu?: GPU};
  if (g.navigator?.gpu != null) return;
  let dawn: Dawn;
  try {
    dawn = nodeRequire('webgpu') as Dawn;
  } catch (e) {
    explainMissingWebGPU(`the 'webgpu' package (Dawn) did not load: ${(e as Error).message.split('\n')[0]}`);
    return;
  }
  Object.assign(globalThis, dawn.globals);  // GPUBufferUsage, GPUMapMode, GPUShaderStage, ...
  // Exact device timestamps for profile(): Dawn rounds them to ~65 µs by default (a browser's
  // timing-attack guard, which a Node process does not need).
  const gpu = dawn.create(['disable-dawn-features=timestamp_quantization']);
  // Keep a strong reference: if this object is collected while a device lives, Dawn crashes.
  g.__stofDawnGpu = gpu;
  if (g.navigator == null) {
    Object.defineProperty(globalThis, 'navigator', {value: {gpu}, configurable: true, writable: true});
  } else {
    Object.defineProperty(g.navigator, 'gpu', {value: gpu, configurable: true, writable: true});
  }
}

setUpDawn();
nodeRequire('@tensorflow/tfjs-backend-webgpu');
