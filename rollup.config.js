// Bundles of the library, from the JavaScript that `tsc` emits into build/tsc/src:
//   dist/node/index.cjs, dist/node/index.mjs   Node (sets up Dawn), every dependency external
//   dist/tf-backend-stof.esm.js                 browser ESM, @tensorflow/* external
//   dist/tf-backend-stof.js / .min.js           browser UMD exposing `tf.stof`; tfjs is the global `tf`, as tfjs's own
//                                               backend bundles do (load tf-core, tf-backend-cpu and
//                                               tf-backend-webgpu first; tf-converter where graph models
//                                               are used)
import {nodeResolve} from '@rollup/plugin-node-resolve';
import terser from '@rollup/plugin-terser';

const SRC = 'build/tsc/src';
const external = id => !id.startsWith('.') && !id.startsWith('/') && !id.startsWith('\0');
const tfGlobals = {
  '@tensorflow/tfjs-core': 'tf',
  '@tensorflow/tfjs-backend-cpu': 'tf',
  '@tensorflow/tfjs-backend-webgpu': 'tf',
  // Optional: without tf-converter on the page, graph replay is simply not installed.
  '@tensorflow/tfjs-converter': 'tf',
};
const banner = '/** tfjs-backend-stof: Apache-2.0 */';
const plugins = [nodeResolve({extensions: ['.js']})];

export default [
  {
    input: `${SRC}/index_node.js`,
    external,
    plugins,
    output: [
      {file: 'dist/node/index.cjs', format: 'cjs', sourcemap: true, banner},
      {file: 'dist/node/index.mjs', format: 'es', sourcemap: true, banner},
    ],
  },
  {
    input: `${SRC}/index.js`,
    external,
    plugins,
    output: [
      {file: 'dist/tf-backend-stof.esm.js', format: 'es', sourcemap: true, banner},
      {file: 'dist/tf-backend-stof.js', format: 'umd', name: 'tf.stof', extend: true, globals: tfGlobals,
       sourcemap: true, banner},
      {file: 'dist/tf-backend-stof.min.js', format: 'umd', name: 'tf.stof', extend: true, globals: tfGlobals,
       sourcemap: true, banner, plugins: [terser({output: {preamble: banner, comments: false}})]},
    ],
  },
];
