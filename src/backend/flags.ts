// Flags of the 'stof' backend, read through tf.env() like every tfjs flag.
import {env} from '@tensorflow/tfjs-core';

export const BASE_CHOICES = ['auto', 'webgpu', 'cpu'] as const;
export type BaseChoice = typeof BASE_CHOICES[number];

const ENV = env();

function registerChoiceFlag(name: string, choices: readonly string[], dflt: string) {
  // A module can be evaluated twice (two bundles on one page); the flag stays registered once.
  if ((ENV as unknown as {flagRegistry: Record<string, unknown>}).flagRegistry[name] != null) {
    return;
  }
  ENV.registerFlag(name, () => dflt, value => {
    if (!choices.includes(value as string)) {
      throw new Error(
          `tfjs-backend-stof: flag ${name} must be one of ${choices.map(c => `'${c}'`).join(', ')}, ` +
          `got ${JSON.stringify(value)}`);
    }
  });
}

/** Which backend 'stof' delegates to: 'auto' (WebGPU when an adapter exists, else CPU), 'webgpu' or 'cpu'. */
registerChoiceFlag('STOF_BASE', BASE_CHOICES, 'auto');

export const DEVICE_CHOICES = ['auto', 'cuda', 'webgpu', 'cpu'] as const;
export type DeviceChoice = typeof DEVICE_CHOICES[number];

/**
 * Where 'stof' runs, read when the backend is set up: 'cuda' (Node with an NVIDIA driver: generated
 * CUDA C, cuBLASLt), 'webgpu' (tfjs-backend-webgpu's device), 'cpu', or 'auto' (CUDA, then WebGPU,
 * then CPU). STOF_BASE is the older spelling without CUDA; it decides while STOF_DEVICE is 'auto'
 * (its 'auto' still tries CUDA first).
 */
registerChoiceFlag('STOF_DEVICE', DEVICE_CHOICES, 'auto');

export function deviceChoice(): DeviceChoice {
  const device = ENV.get('STOF_DEVICE') as DeviceChoice;
  return device !== 'auto' ? device : baseChoice();
}

export const PRECISION_CHOICES = ['fp32', 'tf32', 'fp16'] as const;
export type PrecisionChoice = typeof PRECISION_CHOICES[number];

/**
 * Arithmetic of the CUDA executor, read when the backend is set up: 'fp32' (default; equals the
 * base within 1e-4), 'tf32' (GEMMs on tensor cores, ~1e-3), 'fp16' (tf32 GEMMs and attention in
 * fp16 on tensor cores with fp32 accumulation, ~1e-2). WebGPU and CPU always compute in fp32.
 */
registerChoiceFlag('STOF_PRECISION', PRECISION_CHOICES, 'fp32');

export function precisionChoice(): PrecisionChoice {
  return ENV.get('STOF_PRECISION') as PrecisionChoice;
}

/** Whether intercepted kernels are recorded and fused (false: every kernel runs on the base, for A/B runs). */
if ((ENV as unknown as {flagRegistry: Record<string, unknown>}).flagRegistry['STOF_FUSION'] == null) {
  ENV.registerFlag('STOF_FUSION', () => true);
}

export function baseChoice(): BaseChoice {
  return ENV.get('STOF_BASE') as BaseChoice;
}

export const ATTENTION_CHOICES = ['auto', 'dense', 'blockwise', 'rowwise'] as const;
export type AttentionChoice = typeof ATTENTION_CHOICES[number];

/**
 * The fused attention kernel: 'auto' lets the search pick kernel and tiles (tuning cache, else the
 * cost model); 'blockwise' / 'rowwise' force that kernel (default tiles), skipping the mask's empty
 * tiles; 'dense': block-wise over every key tile.
 */
registerChoiceFlag('STOF_ATTENTION', ATTENTION_CHOICES, 'auto');

export function attentionChoice(): AttentionChoice {
  return ENV.get('STOF_ATTENTION') as AttentionChoice;
}
