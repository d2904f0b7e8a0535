// Flags of the search (read through tf.env() like every tfjs flag), registered with the same
// guard as src/backend/flags.ts: a module evaluated twice (two bundles on one page) registers once.
import {env} from '@tensorflow/tfjs-core';

const ENV = env();
const registered = (name: string) =>
    (ENV as unknown as {flagRegistry: Record<string, unknown>}).flagRegistry[name] != null;

/** Default stage-2 budget per graph signature (the "≤ 2 s"). */
export const DEFAULT_BUDGET_MS = 2000;

/**
 * Where tuning results persist. '' (default): Node writes `$XDG_CACHE_HOME/tfjs-backend-stof/tuning.json`
 * (`~/.cache/...` without XDG_CACHE_HOME), browsers use the IndexedDB database 'tfjs-backend-stof';
 * 'off': memory only; any other value: the JSON file's path (Node) or the IndexedDB database name.
 */
if (!registered('STOF_TUNING_CACHE')) {
  ENV.registerFlag('STOF_TUNING_CACHE', () => '', value => {
    if (typeof value !== 'string') {
      throw new Error(`tfjs-backend-stof: flag STOF_TUNING_CACHE must be a string (a path, a database name or 'off'), got ${JSON.stringify(value)}`);
    }
  });
}

/** Stage-2 time per graph signature in ms when tune() is given none. */
if (!registered('STOF_TUNING_BUDGET_MS')) {
  ENV.registerFlag('STOF_TUNING_BUDGET_MS', () => DEFAULT_BUDGET_MS, value => {
    if (typeof value !== 'number' || !(value >= 0)) {
      throw new Error(`tfjs-backend-stof: flag STOF_TUNING_BUDGET_MS must be a number >= 0, got ${JSON.stringify(value)}`);
    }
  });
}

export function tuningCacheLocation(): string {
  return ENV.get('STOF_TUNING_CACHE') as string;
}

export function tuningBudgetMs(): number {
  return ENV.getNumber('STOF_TUNING_BUDGET_MS');
}
