// CI check of the CUDA kernels for tfjs's non-fused kernels (src/backend/cuda_kernels.ts over
// src/kernels/cuda/movement_cuda.ts) without a GPU. Every case of test/kernels/cuda_movement_cases.ts
// runs through CUDA_KERNELS on a real CudaExecutor over the stand-in driver (cuda_fake_driver.mjs:
// launches check their pointers and do nothing) and through tfjs-backend-cpu's kernel: the outputs'
// count, shapes and dtypes must agree, bad inputs must throw naming the values, unsupported ones
// must decline (null), every buffer must be freed. Then every distinct source those runs launched is
// compiled with nvcc for sm_90, warnings as errors, per template (and with NVRTC where libnvrtc
// loads). Last, the values: the cases run again with the kernels compiled for the host by g++
// (cuda_host_emulator.mjs) and must equal tfjs-backend-cpu's exactly (the device's own arithmetic:
// bench/cuda_movement_check.mjs on the GPU). One PASS/FAIL line each; exit 1 on a failure.
//
//   npx tsc -p tsconfig.json && node scripts/mark_esm.mjs && node test/kernels/cuda_movement_check.mjs
// Options: --keep DIR (leave the .cu files there), NVCC=/path/to/nvcc, CUDA_ARCH=sm_90.
import {spawnSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {batchUnit, findNvcc, NVCC_SEARCHED, runNvcc} from './nvcc.mjs';
import {loadTsc as load} from '../../scripts/load_tsc.mjs';

const tf = await import('@tensorflow/tfjs-core');
await import('@tensorflow/tfjs-backend-cpu');
const C = await load('test/kernels/cuda_movement_cases.js');
const {CudaExecutor} = await load('src/kernels/cuda/executor.js');
const {cudaLibs} = await load('src/kernels/cuda/cuda_libs.js');
const {compileNvrtc} = await load('src/kernels/cuda/nvrtc.js');
const {fakeCudaLibs} = await import('./cuda_fake_driver.mjs');
const {hostEmulatedCudaLibs} = await import('./cuda_host_emulator.mjs');

const args = process.argv.slice(2);
const keep = args.includes('--keep') ? args[args.indexOf('--keep') + 1] : null;
const arch = process.env.CUDA_ARCH ?? 'sm_90';
const nvcc = findNvcc();

tf.env().set('IS_TEST', true);  // no tfjs-node advice on the console
await tf.setBackend('cpu');
const backend = tf.backend();

// ---- the kernels on the stand-in driver ----------------------------------------------------------
const {libs, log} = fakeCudaLibs();
const exec = new CudaExecutor(libs, {cacheDir: null});
const sources = new Map();  // code -> {label, cases: Set}
let current = null;
const launchSource = exec.launchSource.bind(exec);
exec.launchSource = (source, out, inputs, scalars = [], timed) => {
  if (!sources.has(source.code)) sources.set(source.code, {label: source.label, cases: new Set()});
  sources.get(source.code).cases.add(current);
  const params = source.code.match(/void stof_main\(([^)]*)\)/)[1].split(',').length;
  if (params !== 1 + source.bindings.length + scalars.length) throw new Error(`${source.label}: ${params} kernel parameters, launched with ${1 + source.bindings.length + scalars.length}`);
  return launchSource(source, out, inputs, scalars, timed);
};

const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const storage = d => (d === 'float32' ? 'float' : 'int');
let failed = 0, passed = 0;
const report = (ok, line) => { console.log(`${ok ? 'PASS' : 'FAIL'} ${line}`); if (ok) passed++; else failed++; };

for (const c of [...C.movementCases(), ...C.largeMovementCases()]) {
  current = c.name;
  const prepared = C.prepare(c, backend);
  const host = new C.TestHost(exec, backend, !c.deviceOnly);
  try {
    let got;
    try {
      got = C.runCuda(c, prepared, host);
    } catch (e) {
      if (c.throws) { report(c.throws.test(e.message), `${c.name}: throws "${e.message.split('\n')[0]}"${c.throws.test(e.message) ? '' : ` (expected ${c.throws})`}`); continue; }
      throw e;
    }
    if (c.throws) { report(false, `${c.name}: did not throw (expected ${c.throws})`); continue; }
    if (c.declines) { report(got == null, `${c.name}: ${got == null ? 'declined (the cpu kernel runs it)' : 'ran, expected to decline'}`); continue; }
    if (got == null) { report(false, `${c.name}: declined`); continue; }
    const expected = c.reference ? c.reference(prepared.byName) : C.runCpu(c, prepared, backend);
    const problems = [];
    if (got.length !== expected.length) problems.push(`${got.length} outputs, cpu ${expected.length}`);
    got.forEach((t, i) => {
      const e = expected[i];
      if (e && !same(t.shape, e.shape)) problems.push(`output ${i} shape [${t.shape}], ${c.reference ? 'reference' : 'cpu'} [${e.shape}]`);
      if (e && t.dtype !== e.dtype) problems.push(`output ${i} dtype ${t.dtype}, cpu ${e.dtype}`);
      const n = tf.util.sizeFromShape(t.shape);
      if (t.buf.bytes !== 4 * n || t.buf.refs !== 1 || storage(t.buf.dtype) !== storage(t.dtype)) {
        problems.push(`output ${i} buffer of ${t.buf.bytes} bytes, refs ${t.buf.refs}, ${t.buf.dtype} for [${t.shape}] ${t.dtype}`);
      }
    });
    const shapes = got.map(t => `[${t.shape}]`).join(' ');
    report(problems.length === 0, `${c.name}: ${problems.length ? problems.join('; ') : `${shapes} ${got[0]?.dtype ?? ''}${c.cpuDiffers ? ' (reference: cpu differs)' : ''}`}`);
  } catch (e) {
    report(false, `${c.name}: ${e.stack.split('\n').slice(0, 3).join(' | ')}`);
  } finally {
    host.dispose();
  }
}
current = null;

// Size-based dispatch on the same module: equal sources compile once (module cache), pieces share a module.
const compilesBefore = log.counts.compiles;
{
  const c = C.movementCases().find(x => x.name.startsWith('SplitV/QKV'));
  const p = C.prepare(c, backend), host = new C.TestHost(exec, backend);
  C.runCuda(c, p, host);
  host.dispose();
  report(log.counts.compiles === compilesBefore, `module cache: a repeated SplitV compiles nothing (${log.counts.compiles - compilesBefore} compiles)`);
}
exec.dispose();
report(log.counts.allocs === log.counts.frees && log.memory.size === 0,
       `stand-in driver: ${log.counts.allocs} allocations, ${log.counts.frees} frees, ${log.counts.launches} launches`);

// ---- compile every distinct source --------------------------------------------------------------
// One nvcc process per template (copy, gather, cast, fill, binary and unary ops) in parts of at most
// 24 kernels, two at a time; on a failure each kernel of the part is compiled alone to name it.
const classes = new Map();  // label -> [code]
for (const [code, s] of sources) {
  if (!classes.has(s.label)) classes.set(s.label, []);
  classes.get(s.label).push(code);
}
const templates = new Map();  // template -> [code]
for (const [label, codes] of classes) {
  const t = label.replace(/\(.*$/, '');
  const key = ['copy', 'gather', 'fill'].includes(t) || t.startsWith('cast') ? t.replace(/\(.*$|-.*$/, '') : 'elementwise';
  templates.set(key, [...(templates.get(key) ?? []), ...codes]);
}
const dir = keep ?? fs.mkdtempSync(path.join(os.tmpdir(), 'stof-cuda-movement-'));
fs.mkdirSync(dir, {recursive: true});
const runNvccHere = file => runNvcc(nvcc, arch, file);
const start = Date.now();
if (nvcc == null) {
  console.log(`SKIP nvcc not found (looked for ${NVCC_SEARCHED}): movement kernels not compiled`);
} else {
  const jobs = [...templates].flatMap(([t, codes]) => Array.from({length: Math.ceil(codes.length / 24)}, (_, part) => ({t, part, codes: codes.slice(24 * part, 24 * part + 24)})));
  let next = 0;
  await Promise.all([0, 1].map(async () => {
    while (next < jobs.length) {
      const job = jobs[next++];
      const file = path.join(dir, `${job.t}-${job.part}.cu`);
      fs.writeFileSync(file, batchUnit(job.codes));
      const r = await runNvccHere(file);
      const labels = [...new Set(job.codes.map(code => sources.get(code).label))];
      if (r.ok) { report(true, `nvcc ${job.t} part ${job.part}: ${job.codes.length} kernels: ${labels.join(', ')}`); continue; }
      for (const [i, code] of job.codes.entries()) {
        const one = path.join(dir, `${job.t}-${job.part}-${i}.cu`);
        fs.writeFileSync(one, code);
        const r1 = await runNvccHere(one);
        const s = sources.get(code);
        if (!r1.ok) report(false, `nvcc ${s.label} (${[...s.cases].slice(0, 3).join(', ')}): ${one}: ${r1.out.split('\n').filter(l => /error|warning/.test(l)).slice(0, 3).join(' | ')}`);
      }
    }
  }));
}
// ---- values, with the kernels compiled for the host ------------------------------------------------
/** The first index where the values differ (NaN equals NaN), or -1. */
function firstDifference(got, want) {
  if (got.length !== want.length) return Math.min(got.length, want.length);
  for (let i = 0; i < want.length; i++) {
    const a = got[i], b = want[i];
    if (a !== b && !(Number.isNaN(a) && Number.isNaN(b))) return i;
  }
  return -1;
}
if (spawnSync('g++', ['--version']).status !== 0) {
  console.log('SKIP g++ not found: the values of the generated kernels are not checked here');
} else {
  const t = Date.now();
  const emu = hostEmulatedCudaLibs();
  emu.precompile([...sources.keys()]);  // one g++ run for all
  const hostExec = new CudaExecutor(emu.libs, {cacheDir: null});
  let n = 0;
  for (const c of [...C.movementCases(), ...C.largeMovementCases()]) {
    if (c.throws || c.declines) continue;
    const prepared = C.prepare(c, backend, 2);
    const host = new C.TestHost(hostExec, backend, !c.deviceOnly);
    try {
      const got = C.runCuda(c, prepared, host);
      const expected = c.reference ? c.reference(prepared.byName) : C.runCpu(c, prepared, backend);
      const bad = got.map((g, i) => {
        const at = firstDifference(hostExec.read(g.buf, tf.util.sizeFromShape(g.shape)), expected[i].values);
        return at < 0 ? null : `output ${i} @${at}: ${hostExec.read(g.buf)[at]} vs ${expected[i].values[at]}`;
      }).filter(x => x != null);
      if (bad.length) report(false, `values of ${c.name} (host-compiled kernels): ${bad.join('; ')}`);
      n++;
    } catch (e) {
      report(false, `values of ${c.name} (host-compiled kernels): ${e.stack.split('\n').slice(0, 3).join(' | ')}`);
    } finally {
      host.dispose();
    }
  }
  hostExec.dispose();
  report(emu.log.counts.allocs === emu.log.counts.frees, `values of ${n} cases equal tfjs-backend-cpu's (or the reference) with the kernels compiled for the host: ${emu.log.host.hostLaunches} launches, ${((Date.now() - t) / 1000).toFixed(1)} s`);
}

const real = cudaLibs();
let nvrtcNote;
if (real.nvrtc == null) {
  nvrtcNote = `NVRTC not checked: ${real.nvrtcReason}`;
} else {
  let n = 0;
  for (const [code, s] of sources) {
    try { compileNvrtc(real.nvrtc, code, arch); n++; } catch (e) { report(false, `nvrtc ${s.label}: ${e.message.split('\n').slice(0, 3).join(' | ')}`); }
  }
  nvrtcNote = `NVRTC compiled ${n} kernels for ${arch}`;
}
console.log(`# ${passed} passed, ${failed} failed; ${sources.size} distinct kernels in ${classes.size} classes (${[...classes].map(([l, c]) => `${l} ${c.length}`).join(', ')}), nvcc -arch=${arch} -Werror all-warnings ${((Date.now() - start) / 1000).toFixed(1)} s; ${nvrtcNote}; files in ${dir}`);
if (!keep && failed === 0) fs.rmSync(dir, {recursive: true, force: true});
process.exit(failed ? 1 : 0);
