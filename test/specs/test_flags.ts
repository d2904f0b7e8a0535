// Flags the runner asks for (test/run_node.mjs --flags), set after the package registered them and
// before any spec starts a backend: e.g. STOF_DEVICE='webgpu' on a machine that also has CUDA.
import * as tf from '@tensorflow/tfjs-core';

const flags = (globalThis as unknown as {__stofTestFlags?: Record<string, string|number|boolean>}).__stofTestFlags ?? {};
for (const [name, value] of Object.entries(flags)) tf.env().set(name, value);
