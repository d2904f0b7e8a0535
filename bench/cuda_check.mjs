// Numerics and timing of the CUDA executor on the GPU machine: each plan (made by the real planner,
// test/kernels/cuda_plans.ts) runs on CUDA and on the CPU executor (the reference) with the same
// seeded inputs; prints the worst relative difference (|a - b| / max(1, |b|); equal values, equal
// infinities included, differ by 0; NaN and infinities only where the reference has them) and the
// CUDA event time per launch, a list of the failed cases at the end, and exits 1 on any failure. A
// kernel fault fails its own case only: the context is reset and the run goes on.
//
//   npm run build && node bench/cuda_check.mjs [--quick] [--iters N] [--only SUBSTRING[,SUBSTRING...]]
//
// Bounds: fp32 paths 1e-4. tf32 GEMMs (tensor cores, inputs rounded to 10-bit mantissas) 5e-3: for
// K = 768 and these magnitudes the expected error is ~5e-4. fp16 attention (tensor cores, executor
// option attention: 'fp16') 1e-2: q, k, v and the softmax weights rounded to 11-bit mantissas.
// Every GEMM case runs four ways: the generated template in fp32 and tf32, and with cuBLASLt taking
// the GEMMs it can (bias / plain).
import {spawn} from 'node:child_process';
import os from 'node:os';
import {loadTsc as load} from '../scripts/load_tsc.mjs';

const P = await load('test/kernels/cuda_plans.js');
const {CudaExecutor} = await load('src/kernels/cuda/executor.js');
const {evaluateKernel} = await load('src/kernels/cpu/executor.js');
const {cudaSourceOf} = await load('src/kernels/cuda/templates_cuda.js');

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const iters = argv.includes('--iters') ? Number(argv[argv.indexOf('--iters') + 1]) : 10;
/** --only A,B: the cases whose names contain A or B. */
const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1].split(',') : null;
/** --precompile K/N: only compile part K of N of the kernels into the disk cache (what --jobs runs). */
const precompile = argv.includes('--precompile') ? argv[argv.indexOf('--precompile') + 1].split('/').map(Number) : null;
/** --jobs N: processes that fill the NVRTC disk cache in parallel first (default 8; 1: none). */
const jobs = argv.includes('--jobs') ? Number(argv[argv.indexOf('--jobs') + 1]) : Math.min(8, os.availableParallelism());
const FP32_BOUND = 1e-4, TF32_BOUND = 5e-3, FP16_BOUND = 1e-2;

// ---- cases ---------------------------------------------------------------------------------------
const cases = [];  // {case, modes: [{name, options, bound}]}
const fp32 = [{name: 'fp32', options: {gemm: 'fp32', cublasLt: false}, bound: FP32_BOUND}];
const gemmModes = [...fp32, {name: 'fp32+cublasLt', options: {gemm: 'fp32', cublasLt: true}, bound: FP32_BOUND},
                   {name: 'tf32', options: {gemm: 'tf32', cublasLt: false}, bound: TF32_BOUND},
                   {name: 'tf32+cublasLt', options: {gemm: 'tf32', cublasLt: true}, bound: TF32_BOUND}];
for (const c of P.elementwiseCases()) cases.push({c, modes: fp32});
for (const c of P.rowCases()) cases.push({c, modes: fp32});
for (const c of P.gemmCases()) cases.push({c, modes: gemmModes});
// Attention in fp16 (tensor cores, attention_mma_cuda.ts; shapes it does not take run fp32): fp16
// inputs and weights, fp32 accumulation, bound 1e-2.
const fp16 = {name: 'fp16', options: {gemm: 'fp32', cublasLt: false, attention: 'fp16'}, bound: FP16_BOUND};
// The staged form (Q/K/V packed to fp16 first, K/V streamed by cp.async): the dense kernel's default from S = 2048, forced here.
const fp16Staged = {...fp16, name: 'fp16-staged', options: {...fp16.options, attentionStaged: true}};
// Two 16-row tiles per warp (staged loads).
const fp16Mt2 = {...fp16, name: 'fp16-staged-mt2', options: {...fp16.options, attentionStaged: true, attentionMtiles: 2}};
for (const S of quick ? [128] : [128, 1000]) {
  for (const D of [64, 80]) {
    // The rarer forms at the short length only: the float64 reference is O(S²·D) in JavaScript
    // (about 7 s per head at S = 1000); dense and block-sparse plans share one reference.
    for (const form of S > 500 ? ['none', 'causal', 'sliding', 'padding'] : P.MASK_FORMS) {
      for (const attention of form === 'none' ? ['dense'] : ['dense', 'blockwise']) {
        cases.push({c: P.attentionCase(S > 500 ? 1 : 2, S > 500 ? 1 : 4, S, D, form, attention), modes: [...fp32, fp16, fp16Staged, fp16Mt2],
                    refKey: `${S}/${D}/${form}`});
      }
      // CUDA's tiles (cudaAttentionChoice, what the executor's plans use: Bc = 32, Br = 64 below S = 512, else 128), fp32 and fp16.
      cases.push({c: P.attentionCase(S > 500 ? 1 : 2, S > 500 ? 1 : 4, S, D, form, 'cuda'), modes: [...fp32, fp16, fp16Staged, fp16Mt2], refKey: `${S}/${D}/${form}`});
    }
  }
}
// fp16 attention at lengths that are not multiples of the tiles (1, 127, 200), every head dim the
// tensor-core kernel takes, every mask form (allmasked: fully masked rows), CUDA's tiles and the
// planner's dense default (Br = 16: one warp per CTA).
for (const S of quick ? [127] : [1, 127, 200]) {
  for (const D of [32, 64, 80, 128]) {
    for (const form of P.MASK_FORMS) {
      // cuda128: the 128-row query blocks CUDA's tiles use from S = 512 (8-warp CTAs where D <= 64).
      const modes = form === 'none' ? ['cuda'] : S === 200 ? ['cuda', 'cuda128'] : ['cuda', 'dense', 'cuda128'];
      // Mask none: also the dense kernel's other CTA (64 rows) and chunk (64 keys) sizes; masked: also
      // without __launch_bounds__ (no spills).
      const fp16Modes = form === 'none' ? [fp16, fp16Staged, fp16Mt2, {...fp16, name: 'fp16-rows64', options: {...fp16.options, attentionRows: 64}},
                                           {...fp16, name: 'fp16-keys64', options: {...fp16.options, attentionKeys: 64}}] :
                        [fp16, fp16Staged, fp16Mt2, {...fp16, name: 'fp16-minblocks0', options: {...fp16.options, attentionMinBlocks: 0}}];
      for (const attention of modes) cases.push({c: P.attentionCase(2, 3, S, D, form, attention), modes: fp16Modes, refKey: `${S}/${D}/${form}/2x3`});
    }
  }
}
cases.push({c: P.qkvAttentionCase(128, 12, 64, 'padding'), modes: gemmModes});

// ---- reference and comparison -------------------------------------------------------------------
/** Every target's values, computed kernel by kernel on the CPU executor. */
function reference(c) {
  const values = new Map(c.data);
  for (const k of c.plan.kernels) {
    const out = k.template === 'alias' ? values.get(k.inputs[0]) : evaluateKernel(k, k.inputs.map(v => values.get(v)));
    values.set(k.output, out);
    if (k.template === 'gemm' && k.group) for (const s of k.group.siblings) values.set(s, out);
  }
  return c.targets.map(t => values.get(t));
}

/**
 * The worst |a - b| / max(1, |b|). Equal values count 0 (equal infinities too: inf - inf would be
 * NaN); NaN must sit exactly where the reference has NaN, and an infinity only where it has the same
 * one — a mismatch of either kind is an infinite difference.
 */
function worst(actual, expected) {
  let w = 0, at = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], b = expected[i];
    if (a === b || (Number.isNaN(a) && Number.isNaN(b))) continue;
    const err = Number.isFinite(a) && Number.isFinite(b) ? Math.abs(a - b) / Math.max(1, Math.abs(b)) : Infinity;
    if (err > w) { w = err; at = i; }
  }
  return {w, at};
}

const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// ---- run ----------------------------------------------------------------------------------------
// A fault in a kernel (illegal address, ...) poisons the CUDA context: every later call fails. Such a
// case is reported, the device's primary context reset and the executors made again, so one faulty
// kernel fails one case. Attention cases run last anyway (the newest kernels).
const order = ({c}) => (c.name.includes('attention') ? 1 : 0);
cases.sort((a, b) => order(a) - order(b));  // stable: the listed order within each group
const executors = new Map();
const retired = [];  // stats of executors dropped by a context reset
function executor(options) {
  const key = JSON.stringify(options);
  if (!executors.has(key)) {
    const e = CudaExecutor.create(options);
    if (!('run' in e)) { console.log(`FAIL CUDA executor unavailable: ${e.reason}`); process.exit(1); }
    executors.set(key, e);
  }
  return executors.get(key);
}

function recoverIfFaulted(ex, name) {
  if (ex.device.healthy()) return false;
  console.log(`  (the CUDA context faulted in ${name}: resetting it and making the executors again)`);
  retired.push(...[...executors.values()].map(e => e.stats()));
  executors.clear();
  try {
    ex.abandon();
  } catch (e) {
    console.log(`FAIL cannot reset the CUDA context: ${e.message}; the remaining cases do not run`);
    return null;
  }
  return true;
}

const selected = cases.filter(({c}) => !only || only.some(o => c.name.includes(o)));
if (precompile) {
  // One part of the kernels, every mode's source: compiled and written to the disk cache.
  const [part, parts] = precompile;
  let n = 0;
  selected.forEach(({c, modes}, i) => {
    if (i % parts !== part) return;
    for (const mode of modes) for (const k of c.plan.kernels) { executor(mode.options).prepare(k); n++; }
  });
  for (const e of executors.values()) e.dispose();
  process.exit(0);
}
const t0 = Date.now();
if (jobs > 1) {
  // NVRTC takes seconds for an unrolled attention kernel: compile in parallel, then run from the cache.
  const t = Date.now();
  const pass = argv.filter((a, i) => a !== '--jobs' && argv[i - 1] !== '--jobs');
  const codes = await Promise.all(Array.from({length: jobs}, (_, part) => new Promise(resolve => {
    const p = spawn(process.execPath, [new URL(import.meta.url).pathname, ...pass, '--precompile', `${part}/${jobs}`], {stdio: ['ignore', 'inherit', 'inherit']});
    p.on('close', resolve);
  })));
  // A part that failed compiles again below, in the case that needs it (and fails there, named).
  console.log(`# precompiled in ${jobs} processes: ${((Date.now() - t) / 1000).toFixed(1)} s${codes.some(c => c !== 0) ? ` (exit codes ${codes})` : ''}`);
}

let failed = 0, passed = 0;
const failures = [];
const first = executor(fp32[0].options);
console.log(`# ${first.device.name} (${first.device.arch}, ${first.device.multiprocessors} SMs), ${selected.length} cases, ${iters} timed runs each`);
const references = new Map();
for (const {c, modes, refKey} of selected) {
  let expected = refKey && references.get(refKey);
  try { expected ??= reference(c); } catch (e) { console.log(`FAIL ${c.name}: CPU reference: ${e.message}`); failed++; continue; }
  if (refKey) references.set(refKey, expected);
  for (const mode of modes) {
    const name = `${c.name} [${mode.name}]`;
    const ex = executor(mode.options);
    const inputs = new Map();
    let faulted = false;
    try {
      for (const [v, data] of c.data) inputs.set(v, ex.upload(data, v.shape, v.dtype));
      const runOnce = timed => {
        const values = ex.runPlan(c.plan, new Map(inputs), timed);
        const outs = c.targets.map(t => ex.retain(values.get(t)));
        for (const [v, b] of values) if (!inputs.has(v)) ex.release(b);
        return outs;
      };
      const outs = runOnce();
      ex.synchronize();  // a fault shows here, in its own case
      const got = outs.map(b => ex.read(b));
      outs.forEach(b => ex.release(b));
      // Time: each kernel's CUDA events, summed per run; the median over runs.
      const runs = [];
      for (let i = 0; i < iters; i++) {
        const timers = [];
        runOnce(() => { const t = {}; timers.push(t); return t; }).forEach(b => ex.release(b));
        ex.collectTimes();
        runs.push(timers.reduce((s, t) => s + (t.ms ?? 0), 0));
      }
      ex.synchronize();
      const launches = c.plan.kernels.filter(k => k.template !== 'alias').length;
      const errs = got.map((g, i) => worst(g, expected[i]));
      const w = Math.max(...errs.map(e => e.w));
      const ok = w <= mode.bound;
      const detail = errs.map((e, i) => (e.at >= 0 ? `t${i}@${e.at}: ${got[i][e.at]} vs ${expected[i][e.at]}` : '')).filter(x => x).join(', ');
      // Which attention kernel ran (the fp16 option falls back to fp32 on shapes the tensor-core kernel does not take).
      const att = c.plan.kernels.filter(k => k.template === 'attention').map(k => cudaSourceOf(k, mode.options).label.replace(/\(.*/, '')).join(',');
      console.log(`${ok ? 'PASS' : 'FAIL'} ${name}: max rel diff ${w.toExponential(2)} (bound ${mode.bound}), ${median(runs).toFixed(4)} ms over ${launches} launch(es)${att ? ` [${att}]` : ''}${ok ? '' : ` ${detail}`}`);
      if (ok) passed++; else { failed++; failures.push(name); }
    } catch (e) {
      console.log(`FAIL ${name}: ${e.stack.split('\n').slice(0, 3).join(' | ')}`);
      failed++;
      failures.push(name);
      const r = recoverIfFaulted(ex, name);
      if (r === null) { console.log(`\n${passed} passed, ${failed} failed, the rest not run: ${failures.join(', ')}`); process.exit(1); }
      faulted = r;
    } finally {
      if (!faulted) for (const b of inputs.values()) ex.release(b);
    }
  }
}
const stats = [...retired, ...[...executors.values()].map(e => e.stats())];
console.log(`\n${passed} passed, ${failed} failed; NVRTC compiles ${stats.reduce((s, x) => s + x.compiles, 0)}, disk-cache hits ${stats.reduce((s, x) => s + x.diskHits, 0)}; ${((Date.now() - t0) / 1000).toFixed(0)} s`);
if (failures.length) console.log(`failed: ${failures.join(', ')}`);
for (const e of executors.values()) e.dispose();
process.exit(failed ? 1 : 0);
