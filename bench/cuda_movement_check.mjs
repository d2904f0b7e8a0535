// Numerics of the CUDA kernels for tfjs's non-fused kernels (src/backend/cuda_kernels.ts) on the GPU
// machine: every case of test/kernels/cuda_movement_cases.ts (and the model-sized ones) runs through
// CUDA_KERNELS on a real CudaExecutor and through tfjs-backend-cpu's kernel on the same seeded
// inputs; the values must be equal exactly (these are copies and integer arithmetic; NaN where the
// reference has NaN). Where tfjs-backend-cpu is known to differ (the case says why) the reference
// is an element-by-element implementation in the cases file. Cases that must throw or decline are
// checked too. Prints a table, the failed cases at the end, and exits 1 on any failure. A kernel
// fault fails its own case: the context is reset and the run goes on.
//
//   npm run build && node bench/cuda_movement_check.mjs [--only SUBSTRING[,SUBSTRING...]] [--seed N] [--no-large]
// --emulate: no GPU; the kernels compiled for the host (test/kernels/cuda_host_emulator.mjs), to check this script.
import path from 'node:path';
import {loadTsc as load, root} from '../scripts/load_tsc.mjs';

const tf = await import('@tensorflow/tfjs-core');
await import('@tensorflow/tfjs-backend-cpu');
const C = await load('test/kernels/cuda_movement_cases.js');
const {CudaExecutor} = await load('src/kernels/cuda/executor.js');

const argv = process.argv.slice(2);
const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1].split(',') : null;
const seed = argv.includes('--seed') ? Number(argv[argv.indexOf('--seed') + 1]) : 1;
const large = !argv.includes('--no-large');
const emulate = argv.includes('--emulate') ? (await import(path.join(root, 'test/kernels/cuda_host_emulator.mjs'))).hostEmulatedCudaLibs : null;

tf.env().set('IS_TEST', true);
await tf.setBackend('cpu');
const backend = tf.backend();

let exec = null;
function executor() {
  if (exec == null) {
    const e = emulate ? new CudaExecutor(emulate().libs, {cacheDir: null}) : CudaExecutor.create();
    if (!('run' in e)) { console.log(`FAIL CUDA executor unavailable: ${e.reason}`); process.exit(1); }
    exec = e;
  }
  return exec;
}

/** The first index where the values differ (NaN equals NaN), or -1. */
function firstDifference(got, want) {
  if (got.length !== want.length) return Math.min(got.length, want.length);
  for (let i = 0; i < want.length; i++) {
    const a = got[i], b = want[i];
    if (a !== b && !(Number.isNaN(a) && Number.isNaN(b))) return i;
  }
  return -1;
}

const cases = [...C.movementCases(), ...(large ? C.largeMovementCases() : [])].filter(c => !only || only.some(o => c.name.includes(o)));
const first = executor();
console.log(`# ${first.device.name} (${first.device.arch}), ${cases.length} cases, seed ${seed}`);
console.log(`${'case'.padEnd(58)} ${'outputs'.padEnd(28)} ${'dtype'.padEnd(8)} ${'ms'.padStart(8)}  result`);
const failures = [];
let passed = 0;
const row = (c, outs, dtype, ms, ok, note) => {
  console.log(`${c.name.slice(0, 58).padEnd(58)} ${outs.slice(0, 28).padEnd(28)} ${dtype.padEnd(8)} ${ms.padStart(8)}  ${ok ? 'PASS' : 'FAIL'}${note ? ` ${note}` : ''}`);
  if (ok) passed++; else failures.push(c.name);
};

for (const c of cases) {
  const ex = executor();
  const prepared = C.prepare(c, backend, seed);
  const host = new C.TestHost(ex, backend, !c.deviceOnly);
  try {
    let got;
    try {
      got = C.runCuda(c, prepared, host);
    } catch (e) {
      if (!c.throws) throw e;
      row(c, '-', '-', '-', c.throws.test(e.message), `throws: ${e.message.split('\n')[0].slice(0, 90)}`);
      continue;
    }
    if (c.throws) { row(c, '-', '-', '-', false, `did not throw (expected ${c.throws})`); continue; }
    if (c.declines || got == null) { row(c, '-', '-', '-', c.declines && got == null, got == null ? 'declined' : 'ran, expected to decline'); continue; }
    ex.synchronize();  // a fault shows here, in its own case
    // Time of a second run (compiled and cached now): launches until the stream is idle.
    const t0 = performance.now();
    const again = C.runCuda(c, prepared, host);
    ex.synchronize();
    const ms = performance.now() - t0;
    const expected = c.reference ? c.reference(prepared.byName) : C.runCpu(c, prepared, backend);
    const problems = [];
    if (got.length !== expected.length) problems.push(`${got.length} outputs, expected ${expected.length}`);
    for (const [results, which] of [[got, 'first'], [again, 'second']]) {
      results.forEach((t, i) => {
        const e = expected[i];
        if (e == null) return;
        if (t.shape.join() !== e.shape.join() || t.dtype !== e.dtype) { problems.push(`output ${i}: [${t.shape}] ${t.dtype}, expected [${e.shape}] ${e.dtype}`); return; }
        const values = ex.read(t.buf, tf.util.sizeFromShape(t.shape));
        const at = firstDifference(values, e.values);
        if (at >= 0) problems.push(`${which} run, output ${i} @${at}: ${values[at]} vs ${e.values[at]}`);
      });
    }
    const note = problems.length ? problems.slice(0, 2).join('; ') : (c.cpuDiffers ? `(reference, not cpu: ${c.cpuDiffers})` : '');
    row(c, got.map(t => `[${t.shape}]`).join(' '), got[0]?.dtype ?? '-', ms.toFixed(3), problems.length === 0, note);
  } catch (e) {
    row(c, '-', '-', '-', false, e.stack.split('\n').slice(0, 3).join(' | '));
    if (!ex.device.healthy()) {
      console.log(`  (the CUDA context faulted in ${c.name}: resetting it and making the executor again)`);
      try { ex.abandon(); } catch (err) { console.log(`FAIL cannot reset the CUDA context: ${err.message}`); process.exit(1); }
      exec = null;
      continue;
    }
  } finally {
    if (exec === ex) host.dispose();
  }
}
const stats = exec?.stats();
console.log(`\n${passed} passed, ${failures.length} failed${stats ? `; NVRTC compiles ${stats.compiles}, disk-cache hits ${stats.diskHits}, ${stats.inUseBytes} bytes in use at the end` : ''}`);
if (failures.length) console.log(`failed: ${failures.join(', ')}`);
exec?.dispose();
process.exit(failures.length ? 1 : 0);
