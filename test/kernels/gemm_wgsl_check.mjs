// Standalone correctness check of src/kernels/webgpu/gemm_wgsl.ts on a real
// WebGPU device (Dawn via the `webgpu` npm package).
//
//   cd /work/main && npx tsc src/kernels/webgpu/gemm_wgsl.ts --outDir /tmp/gemmcheck \
//     --target es2020 --module esnext --moduleResolution bundler --strict --skipLibCheck
//   echo '{"type":"module"}' > /tmp/gemmcheck/package.json
//   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json \
//     node test/kernels/gemm_wgsl_check.mjs [/tmp/gemmcheck/gemm_wgsl.js]
//
// SwiftShader is a CPU rasterizer: sizes stay small; this proves correctness only.
// GEMM_CHECK_GRID=1 adds cases over the 65535-workgroup limit (minutes on SwiftShader).
//
// On a real GPU (no VK_ICD_FILENAMES), a timing mode:
//   node test/kernels/gemm_wgsl_check.mjs [module] --bench [4096 ...] [--tile 8x8,4x4] [--iters 20]
// times square row-major fp32 matmuls (default tile choice unless --tile) and checks 256
// sampled outputs against a float64 reference.
import {create, globals} from 'webgpu';
import {pathToFileURL} from 'node:url';
import path from 'node:path';

Object.assign(globalThis, globals);
const gpu = create([]);
globalThis.__keep = gpu;  // keep a strong reference or Dawn segfaults
const adapter = await gpu.requestAdapter();
const device = await adapter.requestDevice();

const args = process.argv.slice(2);
const modArg = args[0] && !args[0].startsWith('--') ? args[0] : undefined;
const modPath = path.resolve(modArg ?? '/tmp/gemmcheck/gemm_wgsl.js');
const {gemmWgsl} = await import(pathToFileURL(modPath).href);

// Seeded mulberry32; values in [-1, -0.05] U [0.05, 1] (never zero).
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    const mag = 0.05 + 0.95 * u;
    return (((t >>> 3) & 1) ? 1 : -1) * mag;
  };
}
function randArray(n, rand) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rand();
  return a;
}

function storageBuffer(data) {
  const buf = device.createBuffer({
    size: Math.max(4, data.byteLength),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    mappedAtCreation: true,
  });
  new Float32Array(buf.getMappedRange()).set(data);
  buf.unmap();
  return buf;
}

async function runKernel(kernel, inputs, outLen) {
  device.pushErrorScope('validation');
  const module = device.createShaderModule({code: kernel.code});
  const pipeline = device.createComputePipeline(
      {layout: 'auto', compute: {module, entryPoint: 'main'}});
  const err = await device.popErrorScope();
  if (err) {
    const info = await module.getCompilationInfo();
    for (const m of info.messages) {
      console.error(`  ${m.type} ${m.lineNum}:${m.linePos} ${m.message}`);
    }
    throw new Error(`pipeline creation failed: ${err.message}`);
  }
  const out = device.createBuffer({
    size: outLen * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const bufs = {C: out};
  for (const [name, data] of Object.entries(inputs)) bufs[name] = storageBuffer(data);
  device.pushErrorScope('validation');
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: kernel.bindings.map((name, i) => ({binding: i, resource: {buffer: bufs[name]}})),
  });
  const staging = device.createBuffer(
      {size: outLen * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...kernel.workgroups);
  pass.end();
  enc.copyBufferToBuffer(out, 0, staging, 0, outLen * 4);
  device.queue.submit([enc.finish()]);
  const err2 = await device.popErrorScope();
  if (err2) throw new Error(`dispatch failed: ${err2.message}`);
  await staging.mapAsync(GPUMapMode.READ);
  const result = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  for (const b of [out, staging, ...Object.values(bufs)]) b.destroy();
  return result;
}

// Float64 reference, driven by JS mirrors of the WGSL index expressions.
function reference({batch, M, N, K}, A, B, extra, aIdx, bIdx, oIdx, epi, outLen) {
  const out = new Float64Array(outLen);
  for (let b = 0; b < batch; b++) {
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += A[aIdx(b, m, k)] * B[bIdx(b, k, n)];
        out[oIdx(b, m, n)] = epi(acc, b, m, n, extra);
      }
    }
  }
  return out;
}

let failures = 0;
let seed = 1;

async function check(label, dims, opts) {
  const {batch, M, N, K} = dims;
  const rand = rng(seed++);
  const A = randArray(opts.aLen, rand);
  const B = randArray(opts.bLen, rand);
  const extra = {};
  for (const [name, len] of Object.entries(opts.extraLens ?? {})) extra[name] = randArray(len, rand);
  const outLen = batch * M * N;
  const kernel = gemmWgsl({
    batch, M, N, K,
    aIndex: opts.aIndex, bIndex: opts.bIndex, outIndex: opts.outIndex,
    extraInputs: Object.keys(extra),
    epilogue: opts.epilogue ?? '  let out: f32 = acc;',
    helpers: opts.helpers,
    tile: opts.tile,
  });
  let maxErr = Infinity;
  let msg = '';
  try {
    const got = await runKernel(kernel, {A, B, ...extra}, outLen);
    const ref = reference(dims, A, B, extra, opts.aIdx, opts.bIdx, opts.oIdx,
                          opts.epi ?? ((acc) => acc), outLen);
    maxErr = 0;
    for (let i = 0; i < outLen; i++) {
      const e = Math.abs(got[i] - ref[i]) / Math.max(1, Math.abs(ref[i]));
      if (!(e <= maxErr)) maxErr = e;  // NaN-safe: NaN makes maxErr NaN
    }
  } catch (e) {
    msg = ` (${e.message})`;
  }
  const ok = maxErr <= 1e-4;
  if (!ok) failures++;
  const t = kernel.tile;
  console.log(`${ok ? 'PASS' : 'FAIL'} ${label} batch=${batch} M=${M} N=${N} K=${K} ` +
              `block=${t.tm}x${t.tn} grid=${kernel.workgroups.join('x')} maxRelErr=${maxErr.toExponential(2)}${msg}`);
}

// 1. Plain row-major A [b,M,K], B [b,K,N], C [b,M,N].
const plain = ({batch, M, N, K}) => ({
  aLen: batch * M * K, bLen: batch * K * N,
  aIndex: `b * ${M * K} + m * ${K} + k`, aIdx: (b, m, k) => b * M * K + m * K + k,
  bIndex: `b * ${K * N} + k * ${N} + n`, bIdx: (b, k, n) => b * K * N + k * N + n,
  outIndex: `b * ${M * N} + m * ${N} + n`, oIdx: (b, m, n) => b * M * N + m * N + n,
});

async function bench() {
  const opt = (name, def) => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] && !args[i + 1].startsWith('--') ? args[i + 1] : def;
  };
  const bi = args.indexOf('--bench');
  const sizes = [];
  for (let i = bi + 1; i < args.length && /^\d+$/.test(args[i]); i++) sizes.push(Number(args[i]));
  if (!sizes.length) sizes.push(1024, 2048, 4096);
  const iters = Number(opt('--iters', '20'));
  const tiles = opt('--tile', 'auto').split(',').map((t) => {
    if (t === 'auto') return undefined;
    const [tm, tn] = t.split('x').map(Number);
    return {tm, tn};
  });
  const info = adapter.info ?? {};
  console.log(`adapter: ${info.vendor ?? ''} ${info.architecture ?? ''} ${info.description ?? ''}`);
  for (const S of sizes) {
    const d = {batch: 1, M: S, N: S, K: S};
    const p = plain(d);
    const rand = rng(1234);
    const A = randArray(S * S, rand);
    const B = randArray(S * S, rand);
    const bufA = storageBuffer(A);
    const bufB = storageBuffer(B);
    const out = device.createBuffer(
        {size: S * S * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC});
    for (const tile of tiles) {
      const kernel = gemmWgsl({...d, aIndex: p.aIndex, bIndex: p.bIndex, outIndex: p.outIndex,
                               extraInputs: [], epilogue: '  let out: f32 = acc;', tile});
      const module = device.createShaderModule({code: kernel.code});
      const pipeline = device.createComputePipeline(
          {layout: 'auto', compute: {module, entryPoint: 'main'}});
      const bindGroup = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [out, bufA, bufB].map((buffer, i) => ({binding: i, resource: {buffer}})),
      });
      const runN = async (n) => {
        const enc = device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        for (let i = 0; i < n; i++) pass.dispatchWorkgroups(...kernel.workgroups);
        pass.end();
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
      };
      await runN(2);  // warm-up (pipeline compile, clocks)
      const t0 = performance.now();
      await runN(iters);
      const ms = (performance.now() - t0) / iters;
      const staging = device.createBuffer(
          {size: S * S * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(out, 0, staging, 0, S * S * 4);
      device.queue.submit([enc.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const got = new Float32Array(staging.getMappedRange().slice(0));
      staging.unmap();
      staging.destroy();
      const r2 = rng(99);
      let maxErr = 0;
      for (let s = 0; s < 256; s++) {
        const m = Math.floor(Math.abs(r2()) * S) % S;
        const n = Math.floor(Math.abs(r2()) * S) % S;
        let ref = 0;
        for (let k = 0; k < S; k++) ref += A[m * S + k] * B[k * S + n];
        const e = Math.abs(got[m * S + n] - ref) / Math.max(1, Math.abs(ref));
        if (!(e <= maxErr)) maxErr = e;
      }
      const t = kernel.tile;
      const tflops = (2 * S * S * S) / (ms * 1e-3) / 1e12;
      console.log(`${maxErr <= 1e-4 ? 'PASS' : 'FAIL'} bench ${S}^3 block=${t.tm}x${t.tn} ` +
                  `${ms.toFixed(3)} ms ${tflops.toFixed(2)} TFLOP/s maxRelErr=${maxErr.toExponential(2)}`);
      if (!(maxErr <= 1e-4)) failures++;
    }
    for (const b of [bufA, bufB, out]) b.destroy();
  }
}

if (args.includes('--bench')) {
  await bench();
  process.exit(failures ? 1 : 0);
}

const plainDims = [[1, 1, 1, 1], [1, 7, 5, 3], [2, 64, 64, 64], [3, 65, 33, 17],
                   [1, 128, 96, 200], [4, 1, 37, 64]];

for (const [batch, M, N, K] of plainDims) {
  const d = {batch, M, N, K};
  await check('plain', d, plain(d));
}
// Same, with every register block forced (default heuristics pick small
// blocks for these sizes; the big 8x8 path must be exercised too).
for (const tile of [{tm: 8, tn: 8}, {tm: 8, tn: 4}, {tm: 4, tn: 4}, {tm: 2, tn: 8}, {tm: 1, tn: 2},
                    {tm: 4, tn: 1}]) {
  for (const [batch, M, N, K] of [[3, 65, 33, 17], [1, 128, 128, 32], [2, 130, 129, 45]]) {
    const d = {batch, M, N, K};
    await check(`plain tile=${tile.tm}x${tile.tn}`, d, {...plain(d), tile});
  }
}

// 2. Transposed B ([b, N, K]) and A broadcast across batch ([M, K]).
for (const [batch, M, N, K] of [[1, 7, 5, 3], [3, 65, 33, 17], [2, 64, 64, 64], [4, 1, 37, 64]]) {
  await check('transB+bcastA', {batch, M, N, K}, {
    aLen: M * K, bLen: batch * N * K,
    aIndex: `m * ${K} + k`, aIdx: (b, m, k) => m * K + k,
    bIndex: `b * ${N * K} + n * ${K} + k`, bIdx: (b, k, n) => b * N * K + n * K + k,
    outIndex: `b * ${M * N} + m * ${N} + n`, oIdx: (b, m, n) => b * M * N + m * N + n,
  });
}

// 3. Epilogue with a bias buffer + helper function, output written transposed.
for (const [batch, M, N, K] of [[1, 7, 5, 3], [3, 65, 33, 17], [2, 70, 40, 33]]) {
  await check('bias-epilogue+transC', {batch, M, N, K}, {
    ...plain({batch, M, N, K}),
    extraLens: {bias: N},
    helpers: 'fn gate(x: f32) -> f32 { return 1.0 + tanh(x); }',
    epilogue: '  let t = acc + bias[n];\n  let out: f32 = 0.5 * t * gate(t);',
    epi: (acc, b, m, n, {bias}) => {
      const t = acc + bias[n];
      return 0.5 * t * (1 + Math.tanh(t));
    },
    outIndex: `b * ${M * N} + n * ${M} + m`, oIdx: (b, m, n) => b * M * N + n * M + m,
  });
}

// 4. Grids over the 65535 workgroups-per-dimension limit (grid-stride loops).
if (process.env.GEMM_CHECK_GRID) for (const [batch, M, N, K] of [[65540, 1, 1, 2], [1, 1, 16 * 65535 + 20, 2]]) {
  const d = {batch, M, N, K};
  await check('grid-limit', d, {...plain(d), tile: {tm: 1, tn: 1}});
}

process.exit(failures ? 1 : 0);
