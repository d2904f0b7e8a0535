// For scripts that import tsc's output (build/tsc) directly: registers the resolver those imports
// need (esm_js_resolve.mjs) before any of them, and loads a module of the build by its source path.
import {register} from 'node:module';
import path from 'node:path';

register('./esm_js_resolve.mjs', import.meta.url);

/** The repository's root. */
export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

/** The build of `p` (e.g. 'src/kernels/cuda/executor.js'). */
export const loadTsc = p => import(path.join(root, 'build/tsc', p));
