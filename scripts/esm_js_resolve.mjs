// Node module hooks for scripts that import tsc's ESM output (build/tsc) directly: tsc keeps the
// extensionless relative imports of the sources ('../fusion/expr'), which Node's ESM loader does not
// complete. Register with  module.register('./esm_js_resolve.mjs', import.meta.url).
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (e) {
    const relative = specifier.startsWith('./') || specifier.startsWith('../');
    if (!relative || /\.[cm]?js$/.test(specifier) || !['ERR_MODULE_NOT_FOUND', 'ERR_UNSUPPORTED_DIR_IMPORT'].includes(e.code)) throw e;
    return next(`${specifier}.js`, context);
  }
}
