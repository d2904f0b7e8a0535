// Makes every kernel of the base backend a kernel of 'stof', including kernels registered later
// (custom ops, other packages): registration is mirrored at the one registry both share.
import {getKernelsForBackend, KernelConfig, registerKernel, unregisterKernel} from '@tensorflow/tfjs-core';

import {StofBackend} from './stof_backend';

export const STOF = 'stof';

type Registry = Map<string, KernelConfig>;
let mirroredBase: string|null = null;
let hooked = false;

function wrap(config: KernelConfig): KernelConfig {
  const wrapped: KernelConfig = {
    kernelName: config.kernelName,
    backendName: STOF,
    kernelFunc: ({inputs, attrs, backend}) =>
        (backend as StofBackend).runKernel(config, inputs, attrs),
  };
  const {setupFunc, disposeFunc} = config;
  if (setupFunc != null) wrapped.setupFunc = backend => setupFunc((backend as StofBackend).base);
  if (disposeFunc != null) wrapped.disposeFunc = backend => disposeFunc((backend as StofBackend).base);
  return wrapped;
}

function kernelRegistry(): Registry {
  // tfjs-core keeps its kernel registry in a global map (getGlobal('kernelRegistry')).
  const globals = (globalThis as unknown as {_tfGlobals?: Map<string, unknown>})._tfGlobals;
  const registry = globals?.get('kernelRegistry') as Registry | undefined;
  if (registry == null) {
    throw new Error('tfjs-backend-stof: the tfjs-core kernel registry was not found; is @tensorflow/tfjs-core loaded?');
  }
  return registry;
}

function hookRegistry() {
  if (hooked) return;
  hooked = true;
  const registry = kernelRegistry();
  const set = registry.set.bind(registry);
  const del = registry.delete.bind(registry);
  registry.set = (key: string, config: KernelConfig) => {
    set(key, config);
    if (config.backendName === mirroredBase) set(`${STOF}_${config.kernelName}`, wrap(config));
    return registry;
  };
  registry.delete = (key: string) => {
    const config = registry.get(key);
    const deleted = del(key);
    if (config != null && config.backendName === mirroredBase) del(`${STOF}_${config.kernelName}`);
    return deleted;
  };
}

/** Registers for 'stof' exactly the kernels of `baseName`, now and as the base gains kernels. */
export function mirrorKernelsOf(baseName: string) {
  hookRegistry();
  if (mirroredBase === baseName) return;
  for (const k of getKernelsForBackend(STOF)) unregisterKernel(k.kernelName, STOF);
  mirroredBase = baseName;
  for (const k of getKernelsForBackend(baseName)) registerKernel(wrap(k));
}
