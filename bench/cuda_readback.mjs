// How long a device-to-host read of a model output takes on this machine, by way of copying:
//   fresh    a new Float32Array per read, cuMemcpyDtoH into it (pageable: the driver stages it)
//   reused   the same Float32Array every read (pages already touched)
//   pinned   cuMemcpyDtoH into page-locked memory (cuMemAllocHost) only
//   pinned+  the same, then a copy into a new Float32Array (what a read that hands out fresh arrays costs)
// Sizes are the last hidden states of the e2e cases: [8,512,768] and [1,1024,768] fp32.
//   node bench/cuda_readback.mjs [--runs 30]
import {createRequire} from 'node:module';

const require = createRequire(import.meta.url);
const koffi = require('koffi');
const argv = process.argv.slice(2);
const runs = Number(argv.includes('--runs') ? argv[argv.indexOf('--runs') + 1] : 30);
const lib = koffi.load('libcuda.so.1');
const f = s => lib.func(s);
const cu = {
  init: f('int cuInit(unsigned int flags)'),
  retain: f('int cuDevicePrimaryCtxRetain(_Out_ uint64_t *ctx, int device)'),
  setCurrent: f('int cuCtxSetCurrent(uint64_t ctx)'),
  alloc: f('int cuMemAlloc_v2(_Out_ uint64_t *dptr, size_t bytes)'),
  allocHost: f('int cuMemAllocHost_v2(_Out_ void **pp, size_t bytes)'),
  dtoh: f('int cuMemcpyDtoH_v2(void *dst, uint64_t src, size_t bytes)'),
};
const ok = (r, what) => { if (r !== 0) throw new Error(`${what}: CUDA error ${r}`); };
ok(cu.init(0), 'cuInit');
const ctx = new BigUint64Array(1);
ok(cu.retain(ctx, 0), 'cuDevicePrimaryCtxRetain');
ok(cu.setCurrent(ctx[0]), 'cuCtxSetCurrent');

const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
function time(fn) {
  const ts = [];
  for (let i = 0; i < runs + 3; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  return median(ts.slice(3));
}

const rows = [];
for (const shape of [[8, 512, 768], [1, 1024, 768]]) {
  const n = shape.reduce((a, b) => a * b), bytes = 4 * n;
  const d = new BigUint64Array(1);
  ok(cu.alloc(d, bytes), 'cuMemAlloc_v2');
  const hp = [null];
  ok(cu.allocHost(hp, bytes), 'cuMemAllocHost_v2');
  const pinned = new Float32Array(koffi.view(hp[0], bytes));
  const reused = new Float32Array(n);
  let sink = 0;
  const r = {
    shape: `[${shape}]`, MB: +(bytes / 1e6).toFixed(1),
    fresh: time(() => { const a = new Float32Array(n); ok(cu.dtoh(a, d[0], bytes), 'dtoh'); sink += a[n - 1]; }),
    reused: time(() => { ok(cu.dtoh(reused, d[0], bytes), 'dtoh'); sink += reused[0]; }),
    pinned: time(() => { ok(cu.dtoh(pinned, d[0], bytes), 'dtoh'); sink += pinned[0]; }),
    'pinned+': time(() => { ok(cu.dtoh(pinned, d[0], bytes), 'dtoh'); const a = new Float32Array(n); a.set(pinned); sink += a[n - 1]; }),
    'pinned+slice': time(() => { ok(cu.dtoh(pinned, d[0], bytes), 'dtoh'); const a = pinned.slice(); sink += a[n - 1]; }),
  };
  rows.push(r);
  if (Number.isNaN(sink)) console.log('nan');
}
console.log(`median ms of ${runs} reads`);
console.table(rows.map(r => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'number' && k !== 'MB' ? +v.toFixed(3) : v]))));
