// CI check of the CUDA templates without a GPU: the real planner plans representative graphs
// (test/kernels/cuda_plans.ts: elementwise, row softmax/LayerNorm/scalar, GEMM ± group ± epilogue,
// attention dense/block-sparse × D 32/64/80/128 × mask forms, mask analysis), every kernel's CUDA C
// is generated, and each class is compiled with nvcc for sm_90 with warnings as errors. Kernels of
// one class go into one .cu (each in its own namespace) and two nvcc processes run at once, so the
// check takes seconds per class rather than per kernel (large classes in parts of 12). Where libnvrtc loads, every kernel is also
// compiled through NVRTC (the run-time path). One PASS/FAIL line per case; exit 1 on a failure.
//
//   npx tsc -p tsconfig.json && node scripts/mark_esm.mjs && node test/kernels/cuda_codegen_check.mjs
// Options: --keep DIR (leave the .cu files there), --variants (also the fp16 attention kernel's tuning
// variants), NVCC=/path/to/nvcc, CUDA_ARCH=sm_90.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {batchUnit, findNvcc, NVCC_SEARCHED, runNvcc} from './nvcc.mjs';
import {root} from '../../scripts/load_tsc.mjs';

const {codegenCases} = await import(path.join(root, 'build/tsc/test/kernels/cuda_plans.js'));
const {attentionMmaQualifies, cudaSourceOf, maskAnalysisCuda} = await import(path.join(root, 'build/tsc/src/kernels/cuda/templates_cuda.js'));
const {cudaLibs} = await import(path.join(root, 'build/tsc/src/kernels/cuda/cuda_libs.js'));
const {compileNvrtc} = await import(path.join(root, 'build/tsc/src/kernels/cuda/nvrtc.js'));

const args = process.argv.slice(2);
const keep = args.includes('--keep') ? args[args.indexOf('--keep') + 1] : null;
const variants = args.includes('--variants');
const arch = process.env.CUDA_ARCH ?? 'sm_90';
const nvcc = findNvcc();

// ---- generate: every kernel of every case, deduplicated by source, grouped by class ------------
const cases = codegenCases();
/** class -> [{code, cases: Set<name>}] */
const classes = new Map();
const byCode = new Map();
const caseErrors = new Map();
const add = (cls, code, name) => {
  let entry = byCode.get(code);
  if (entry == null) {
    entry = {code, cases: new Set()};
    byCode.set(code, entry);
    if (!classes.has(cls)) classes.set(cls, []);
    classes.get(cls).push(entry);
  }
  entry.cases.add(name);
};
for (const c of cases) {
  try {
    for (const k of c.plan.kernels) {
      if (k.template === 'alias') continue;
      if (k.template === 'gemm') {
        for (const precision of ['fp32', 'tf32']) add(`gemm-${precision}`, cudaSourceOf(k, {gemm: precision}).code, c.name);
      } else if (k.template === 'attention') {
        add(`attention-${k.mask ? 'blockwise' : 'dense'}`, cudaSourceOf(k).code, c.name);
        // The tensor-core kernel (precision fp16) where it takes the shape; with --variants also its
        // tuning variants (32-key chunks, 64-row CTAs, no launch bounds: executor options only).
        if (attentionMmaQualifies(k)) {
          add(`attention-mma-${k.mask ? 'blockwise' : 'dense'}`, cudaSourceOf(k, {attention: 'fp16'}).code, c.name);
          // Both forms of the Q/K/V loads (converted per CTA; packed to fp16 first by staged kernels).
          // Two 16-row tiles per warp with the staged loads (the registers cp.async frees).
          for (const [staged, mtiles] of [[true, 1], [false, 1], [true, 2]]) {
            if (!attentionMmaQualifies(k, {staged, mtiles})) continue;
            const src = cudaSourceOf(k, {attention: 'fp16', attentionStaged: staged, attentionMtiles: mtiles});
            add(`attention-mma-${k.mask ? 'blockwise' : 'dense'}`, src.code, c.name);
            for (const p of src.staged ?? []) add('pack-fp16', p.source.code, c.name);
          }
          if (variants) {
            if (attentionMmaQualifies(k, {keys: 32})) add(`attention-mma-${k.mask ? 'blockwise' : 'dense'}`, cudaSourceOf(k, {attention: 'fp16', attentionKeys: 32}).code, c.name);
            if (!k.mask && attentionMmaQualifies(k, {rows: 64})) add('attention-mma-dense', cudaSourceOf(k, {attention: 'fp16', attentionRows: 64}).code, c.name);
            add(`attention-mma-${k.mask ? 'blockwise' : 'dense'}`, cudaSourceOf(k, {attention: 'fp16', attentionMinBlocks: 0}).code, c.name);
          }
        }
        if (k.mask) add('mask-analysis', maskAnalysisCuda(k).code, c.name);
      } else {
        add(k.template, cudaSourceOf(k).code, c.name);
      }
    }
  } catch (e) {
    caseErrors.set(c.name, `generation: ${e.message}`);
  }
}

// ---- compile ------------------------------------------------------------------------------------
/** One translation unit of several kernels: each in a namespace (the helpers repeat), no C linkage. */


const runNvccHere = file => runNvcc(nvcc, arch, file);

/** Runs jobs two at a time (nvcc is single-threaded and memory-hungry). */
async function pool(jobs, width = 2) {
  const results = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({length: width}, async () => {
    while (next < jobs.length) { const i = next++; results[i] = await jobs[i](); }
  }));
  return results;
}

const dir = keep ?? fs.mkdtempSync(path.join(os.tmpdir(), 'stof-cuda-'));
fs.mkdirSync(dir, {recursive: true});
const failedEntries = new Map();  // entry -> message
const start = Date.now();
if (nvcc == null) {
  console.log(`SKIP nvcc not found (looked for ${NVCC_SEARCHED}): CUDA codegen not compiled`);
} else {
  // Large classes in parts of at most 12 kernels: the two nvcc processes stay busy to the end.
  const parts = [...classes].flatMap(([cls, entries]) => Array.from({length: Math.ceil(entries.length / 12)},
                                                                     (_, p) => [`${cls}-part${p}`, entries.slice(12 * p, 12 * p + 12)]));
  const jobs = parts.map(([cls, entries]) => async () => {
    const file = path.join(dir, `${cls}.cu`);
    fs.writeFileSync(file, batchUnit(entries.map(e => e.code)));
    const r = await runNvccHere(file);
    if (r.ok) return;
    // Find the culprits one by one (only on failure).
    for (const [i, e] of entries.entries()) {
      const one = path.join(dir, `${cls}-${i}.cu`);
      fs.writeFileSync(one, e.code);
      const r1 = await runNvccHere(one);
      if (!r1.ok) failedEntries.set(e, `nvcc ${one}: ${r1.out.split('\n').filter(l => /error|warning/.test(l)).slice(0, 3).join(' | ')}`);
    }
    if (![...entries].some(e => failedEntries.has(e))) entries.forEach(e => failedEntries.set(e, `nvcc ${file}: ${r.out.split('\n').slice(0, 3).join(' | ')}`));
  });
  await pool(jobs);
}

// NVRTC (the executor's compiler), where the library is here.
const libs = cudaLibs();
let nvrtcNote;
if (libs.nvrtc == null) {
  nvrtcNote = `NVRTC not checked: ${libs.nvrtcReason}`;
} else {
  let n = 0;
  for (const e of byCode.values()) {
    try { compileNvrtc(libs.nvrtc, e.code, arch); n++; } catch (err) { failedEntries.set(e, `nvrtc: ${err.message.split('\n').slice(0, 3).join(' | ')}`); }
  }
  nvrtcNote = `NVRTC compiled ${n} kernels for ${arch}`;
}

// The executor's bookkeeping (allocator, plans, cuBLASLt routing, tile-format cache, events,
// disposal) against a stand-in driver: every allocation freed, every launch on live pointers.
const {CudaExecutor} = await import(path.join(root, 'build/tsc/src/kernels/cuda/executor.js'));
const {fakeCudaLibs} = await import('./cuda_fake_driver.mjs');
const executorLines = [];
const executorRuns = cases.filter(c => /^(gemm|qkv|attention-cuda-causal-S70-D64|row-layernorm-L768|elementwise-bool)/.test(c.name)).map(c => [c, {}]);
for (const c of cases.filter(c => /^attention-cuda-(causal|none)-S70-D64/.test(c.name))) {
  executorRuns.push([c, {attention: 'fp16'}], [c, {attention: 'fp16', attentionStaged: true}]);
}
for (const [c, options] of executorRuns) {
  try {
    const {libs, log} = fakeCudaLibs();
    const ex = new CudaExecutor(libs, {cacheDir: null, ...options});
    const inputs = new Map([...c.data].map(([v, d]) => [v, ex.upload(d, v.shape, v.dtype)]));
    c.plan.kernels.forEach(k => ex.prepare(k));  // compiles everything that the runs launch
    const prepared = log.counts.compiles;
    for (let rep = 0; rep < 2; rep++) {
      const values = ex.runPlan(c.plan, new Map(inputs), () => ({}));
      ex.collectTimes();
      c.targets.forEach(t => ex.read(values.get(t)));
      for (const [v, b] of values) if (!inputs.has(v)) ex.release(b);
    }
    inputs.forEach(b => ex.release(b));
    ex.dispose();
    const {allocs, frees, launches, matmuls} = log.counts;
    if (allocs !== frees || log.memory.size !== 0) throw new Error(`${allocs} allocations, ${frees} frees`);
    if (log.counts.compiles !== prepared) throw new Error(`${log.counts.compiles - prepared} compiles after prepare()`);
    executorLines.push(`PASS executor on a stand-in driver: ${c.name}${options.attention ? ` [${options.attention}${options.attentionStaged ? ', staged' : ''}]` : ''} (${launches} launches, ${matmuls} cuBLASLt)`);
  } catch (e) {
    executorLines.push(`FAIL executor on a stand-in driver: ${c.name}${options.attention ? ` [${options.attention}]` : ''}: ${e.message}`);
  }
}

// ---- report -------------------------------------------------------------------------------------
let failed = 0;
for (const c of cases) {
  const errors = [caseErrors.get(c.name), ...[...byCode.values()].filter(e => e.cases.has(c.name) && failedEntries.has(e)).map(e => failedEntries.get(e))]
      .filter(x => x != null);
  const n = [...byCode.values()].filter(e => e.cases.has(c.name)).length;
  if (errors.length) { failed++; console.log(`FAIL ${c.name}: ${errors[0]}`); } else if (nvcc != null) console.log(`PASS ${c.name} (${n} kernels)`);
}
for (const l of executorLines) { console.log(l); if (l.startsWith('FAIL')) failed++; }
const counts = [...classes].map(([cls, es]) => `${cls} ${es.length}`).join(', ');
console.log(`# ${byCode.size} distinct kernels (${counts}), nvcc -arch=${arch} -cubin -Werror all-warnings, ${((Date.now() - start) / 1000).toFixed(1)} s; ${nvrtcNote}; files in ${dir}`);
if (!keep && failed === 0) fs.rmSync(dir, {recursive: true, force: true});
process.exit(failed ? 1 : 0);
