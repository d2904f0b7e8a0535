// Test bundles. tfjs-core's suite imports tfjs-core's internal ESM modules, so every @tensorflow
// package is bundled from its ESM build: one copy of tfjs-core, shared by the suite and the backend.
import commonjs from '@rollup/plugin-commonjs';
import {nodeResolve} from '@rollup/plugin-node-resolve';

const T = 'build/tsc/test';
// tfjs-core's package.json lists its side-effect modules and its test files are not among them;
// node-resolve would pass that on and the suite would be tree-shaken away.
const treeshake = {moduleSideEffects: true};
const keepSideEffects = {
  name: 'keep-side-effects',
  async resolveId(source, importer, options) {
    const resolved = await this.resolve(source, importer, {...options, skipSelf: true});
    return resolved && {...resolved, moduleSideEffects: true};
  },
};
const quiet = (warning, warn) => {
  if (['CIRCULAR_DEPENDENCY', 'THIS_IS_UNDEFINED', 'EVAL', 'SOURCEMAP_ERROR'].includes(warning.code)) return;
  warn(warning);
};

// Node: tfjs bundled, node built-ins, jasmine and Dawn left to require().
const nodeExternal = id => /^(node:|jasmine|webgpu$|koffi)/.test(id) ||
    ['fs', 'path', 'os', 'util', 'crypto', 'url', 'module', 'worker_threads', 'node-fetch', 'string_decoder'].includes(id);
const node = input => ({
  input: `${T}/${input}.js`,
  external: nodeExternal,
  onwarn: quiet,
  treeshake,
  plugins: [keepSideEffects, nodeResolve({mainFields: ['module', 'main'], preferBuiltins: true}), commonjs()],
  output: {file: `build/test/${input.replace(/\//g, '_')}.cjs`, format: 'cjs', sourcemap: true},
});

// Node specs of the package itself: every dependency external, so the specs, the source and a
// user's script all load tfjs-core's one Node build.
const nodeSpecs = input => ({
  input: `${T}/${input}.js`,
  external: id => !id.startsWith('.') && !id.startsWith('/') && !id.startsWith('\0'),
  onwarn: quiet,
  plugins: [nodeResolve({extensions: ['.js']})],
  output: {file: `build/test/${input.replace(/\//g, '_')}.cjs`, format: 'cjs', sourcemap: true},
});

// tfjs-core's jasmine_util require()s a second jasmine-core only to set a timeout; in the browser,
// karma's jasmine is the one that runs, so the require becomes a stub.
const stubJasmineRequire = {
  name: 'stub-jasmine-require',
  transform(code, id) {
    if (!id.endsWith('jasmine_util.js')) return null;
    return code.replace(/require\(['"]jasmine-core\/lib\/jasmine-core\/jasmine\.js['"]\)/, '({core: () => ({})})');
  },
};

// Browser (karma): everything bundled into one IIFE.
const browser = input => ({
  input: `${T}/${input}.js`,
  onwarn: quiet,
  treeshake,
  plugins: [keepSideEffects, stubJasmineRequire, nodeResolve({browser: true, mainFields: ['module', 'browser', 'main'], preferBuiltins: false}),
            commonjs()],
  output: {file: `build/test/${input.replace(/\//g, '_')}.js`, format: 'iife', sourcemap: true},
});

// ONLY=specs builds just the bundles whose input contains 'specs' (quicker iterations).
const only = process.env.ONLY;
export default [
  node('core/node_core_suite'),
  browser('core/browser_core_suite'),
  nodeSpecs('specs/node_specs'),
  browser('specs/browser_specs'),
].filter(c => only == null || c.input.includes(only));
