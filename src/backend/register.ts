// Registers the 'stof' backend. Its factory picks the base backend (flag STOF_BASE) and shares the
// engine's instance of it, so 'stof' and 'webgpu' use one GPUDevice and one set of buffers.
import {engine, env, findBackendFactory, KernelBackend, registerBackend} from '@tensorflow/tfjs-core';

import {WebGPUBase} from '../kernels/webgpu/executor';
import {measureDeviceProfile} from '../search/device_profile';

import type {CudaBase} from './cuda_base';
import {deviceChoice, precisionChoice, PrecisionChoice} from './flags';
import {mirrorKernelsOf, STOF} from './kernel_mirror';
import {installModelReplay} from './model_replay';
import {BaseName, StofBackend} from './stof_backend';

/** Above tfjs-backend-webgpu (3), webgl (2) and cpu (1): importing the package makes 'stof' the default. */
export const STOF_PRIORITY = 4;

/**
 * The engine's initialized backends. Read directly: tf.findBackend() would start initializing an
 * async backend, and a second async init marks the one in flight (ours) stale.
 */
export function initializedBackend(name: string): KernelBackend|undefined {
  return (engine() as unknown as {registry: Record<string, KernelBackend>}).registry[name];
}

const noticesShown = new Set<string>();
function noticeOnce(message: string) {
  if (noticesShown.has(message)) return;
  noticesShown.add(message);
  console.warn(message);
}

/** Makes the CUDA base, or says why there is none (set by the Node entry; browsers have none). */
export type CudaProvider = (precision: PrecisionChoice) => CudaBase|{reason: string};
let cudaProvider: CudaProvider|null = null;
export function setCudaProvider(provider: CudaProvider|null) {
  cudaProvider = provider;
}

/** Returns the engine's instance of `name`, creating it through its registered factory if needed. */
async function sharedBackend(name: BaseName): Promise<KernelBackend> {
  const existing = initializedBackend(name);
  if (existing != null) return existing;
  const factory = findBackendFactory(name);
  if (factory == null) {
    throw new Error(`tfjs-backend-stof: backend '${name}' is not registered (load @tensorflow/tfjs-backend-${name})`);
  }
  const backend = await factory();
  // tfjs-backend-cpu's first write in Node advises installing tfjs-node; 'stof' already said which
  // base it runs on, and tfjs-node is no base of 'stof'.
  if (name === 'cpu') (backend as unknown as {firstUse: boolean}).firstUse = false;
  // Shared through the engine's registry, not engine.initializeBackend() (see initializedBackend).
  (engine() as unknown as {registry: Record<string, KernelBackend>}).registry[name] = backend;
  return backend;
}

let missingWebGPU: string|null = null;
/** Records why the platform has no navigator.gpu (Node: Dawn did not load), for the notice. */
export function explainMissingWebGPU(reason: string) {
  missingWebGPU = reason;
}

/** The adapter tfjs-backend-webgpu will get, or why there is none. */
async function probeWebGPU(): Promise<{adapter: GPUAdapter|null, reason: string|null}> {
  if (typeof navigator === 'undefined' || navigator.gpu == null) {
    return {adapter: null, reason: missingWebGPU ?? 'navigator.gpu is absent'};
  }
  if (findBackendFactory('webgpu') == null && initializedBackend('webgpu') == null) {
    return {adapter: null, reason: 'tfjs-backend-webgpu is not loaded'};
  }
  const adapter = await navigator.gpu.requestAdapter(
      {powerPreference: env().getBool('WEBGPU_USE_LOW_POWER_GPU') ? 'low-power' : 'high-performance'});
  return {adapter, reason: adapter == null ? 'navigator.gpu.requestAdapter() found no adapter' : null};
}

function describeAdapter(adapter: GPUAdapter|null): Record<string, string>|undefined {
  const info = adapter?.info as unknown as Record<string, unknown>|undefined;
  if (info == null) return undefined;
  const out: Record<string, string> = {};
  for (const key of ['vendor', 'architecture', 'device', 'description']) {
    if (typeof info[key] === 'string' && info[key] !== '') out[key] = info[key] as string;
  }
  return out;
}

async function createStofBackend(): Promise<StofBackend> {
  installModelReplay();  // again: a page may load tf-converter after this package
  const choice = deviceChoice();
  let noCuda: string|null = null;  // why 'auto' found no CUDA: part of the one notice
  if (choice === 'cuda' || (choice === 'auto' && cudaProvider != null)) {
    const made = cudaProvider == null ? {reason: 'CUDA runs only in Node (this is the browser build)'} : cudaProvider(precisionChoice());
    if (!('reason' in made)) {
      mirrorKernelsOf('cpu');  // tfjs-backend-cpu's kernels run what has no CUDA kernel, through host memory
      const d = made.exec.device;
      return new StofBackend(made, 'cuda', true, {vendor: 'nvidia', device: d.name, architecture: d.arch});
    }
    if (choice === 'cuda') throw new Error(`tfjs-backend-stof: STOF_DEVICE is 'cuda' but ${made.reason}`);
    noCuda = `no CUDA (${made.reason})`;
  }
  let base: BaseName = 'cpu';
  let adapter: Record<string, string>|undefined;
  if (choice !== 'cpu') {
    const probe = await probeWebGPU();
    const reason = probe.reason;
    adapter = describeAdapter(probe.adapter);
    if (reason == null) {
      base = 'webgpu';
      if (noCuda != null) noticeOnce(`tfjs-backend-stof: ${noCuda}; 'stof' runs on WebGPU.`);
    } else if (choice === 'webgpu') {
      throw new Error(`tfjs-backend-stof: STOF_DEVICE (or STOF_BASE) is 'webgpu' but ${reason}`);
    } else {
      noticeOnce(`tfjs-backend-stof: ${noCuda != null ? `${noCuda} and ` : ''}no WebGPU (${reason}); 'stof' runs on the CPU base (tfjs-backend-cpu).`);
    }
  }
  const instance = await sharedBackend(base);
  mirrorKernelsOf(base);
  const backend = new StofBackend(instance, base, false, base === 'webgpu' ? adapter : undefined);
  // The cost model's view of this device: measured once per device (cached with the tuning results).
  if (base === 'webgpu') backend.deviceProfile = await measureDeviceProfile((instance as WebGPUBase).device, adapter);
  return backend;
}

export function registerStofBackend(): boolean {
  if (findBackendFactory(STOF) != null) return false;
  return registerBackend(STOF, createStofBackend, STOF_PRIORITY);
}
