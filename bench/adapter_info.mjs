// Prints what Dawn (the `webgpu` package) exposes on this machine: adapter info, features and the
// limits that matter for the kernels, with Dawn's default toggles and with allow_unsafe_apis
// (which some experimental features, such as subgroup matrices, sit behind). JSON on stdout.
import {createRequire} from 'node:module';

const {create} = createRequire(import.meta.url)('webgpu');
const LIMITS = ['maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX',
                'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupsPerDimension', 'minSubgroupSize', 'maxSubgroupSize'];
const report = {};
for (const [label, options] of [['default', []], ['allow_unsafe_apis', ['enable-dawn-features=allow_unsafe_apis']]]) {
  const gpu = create(options);
  const adapter = await gpu.requestAdapter({powerPreference: 'high-performance'});
  if (adapter == null) { report[label] = null; continue; }
  const info = {};
  for (const k of ['vendor', 'architecture', 'device', 'description', 'subgroupMinSize', 'subgroupMaxSize']) {
    if (adapter.info?.[k] !== undefined) info[k] = adapter.info[k];
  }
  report[label] = {
    info, isFallbackAdapter: adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter,
    features: [...adapter.features].sort(),
    limits: Object.fromEntries(LIMITS.filter(k => adapter.limits[k] !== undefined).map(k => [k, adapter.limits[k]])),
  };
}
console.log(JSON.stringify(report, null, 1));
