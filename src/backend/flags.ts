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
