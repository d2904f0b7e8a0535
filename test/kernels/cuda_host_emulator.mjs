// The stand-in driver (cuda_fake_driver.mjs) with kernels that compute: each module's CUDA C is
// compiled for the host with g++ (a loop over blocks and threads around the kernel), loaded with
// koffi, and run on the stand-in device memory. It serves kernels that are plain 1-D grids of
// independent threads (no shared memory, barriers or warp intrinsics): what movement_cuda.ts
// emits. So the values of the generated code are checked on machines without a GPU; the device's
// own compiler and arithmetic are checked by bench/cuda_movement_check.mjs on the GPU.
//
//   const emu = hostEmulatedCudaLibs(); emu.precompile(sources); new CudaExecutor(emu.libs, {cacheDir: null})
import {spawnSync} from 'node:child_process';
import {createHash} from 'node:crypto';
import fs from 'node:fs';
import {createRequire} from 'node:module';
import os from 'node:os';
import path from 'node:path';

import {fakeCudaLibs} from './cuda_fake_driver.mjs';

const koffi = createRequire(import.meta.url)('koffi');

const PRELUDE = `#include <math.h>
struct stof_uint3 { unsigned x, y, z; };
static stof_uint3 blockIdx, threadIdx;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
`;

/** The kernel's parameters: [{type: 'void *'|'int', name}] from `stof_main(...)`. */
function paramsOf(code) {
  const m = code.match(/void stof_main\(([^)]*)\)/);
  if (m == null) throw new Error('host emulator: no stof_main in the source');
  return m[1].split(',').map(p => p.trim()).map(p => ({type: p.includes('*') ? 'void *' : 'int', decl: p, name: p.split(/[\s*]+/).pop()}));
}

/** One kernel in its own namespace, with an extern "C" runner looping over the grid. */
function hostUnit(code, n) {
  const params = paramsOf(code);
  const body = code.replace('extern "C" __global__', '');
  return `namespace k${n} {\n${body}\n}\nextern "C" void stof_run_${n}(unsigned gx, unsigned bx${params.map(p => `, ${p.decl}`).join('')}) {
  for (unsigned b = 0; b < gx; b++) for (unsigned t = 0; t < bx; t++) {
    blockIdx.x = b; threadIdx.x = t;
    k${n}::stof_main(${params.map(p => p.name).join(', ')});
  }
}\n`;
}

export function hostEmulatedCudaLibs({dir = path.join(os.tmpdir(), 'stof-host-kernels')} = {}) {
  const fake = fakeCudaLibs();
  const {driver, nvrtc} = fake.libs;
  fs.mkdirSync(dir, {recursive: true});
  const programs = new Map();  // program handle -> source
  const modules = new Map();  // module handle -> source
  const functions = new Map();  // function handle -> source
  const images = [];  // image id -> source
  const compiled = new Map();  // source -> bound runner
  const counts = {hostLaunches: 0, hostCompiles: 0};

  /** Compiles sources into one shared library (one g++ run); their runners become callable. */
  function precompile(sources) {
    const todo = [...new Set(sources)].filter(s => !compiled.has(s));
    if (todo.length === 0) return;
    const unit = PRELUDE + todo.map((s, n) => hostUnit(s, n)).join('\n');
    const hash = createHash('sha256').update(unit).digest('hex').slice(0, 16);
    const so = path.join(dir, `k-${hash}.so`);
    if (!fs.existsSync(so)) {
      const cc = path.join(dir, `k-${hash}.cc`);
      fs.writeFileSync(cc, unit);
      const r = spawnSync('g++', ['-O1', '-shared', '-fPIC', '-w', '-o', `${so}.tmp`, cc], {encoding: 'utf8'});
      if (r.status !== 0) throw new Error(`host emulator: g++ failed on ${cc}: ${(r.stderr || r.error?.message || '').split('\n').slice(0, 5).join(' | ')}`);
      fs.renameSync(`${so}.tmp`, so);
      counts.hostCompiles++;
    }
    const lib = koffi.load(so);
    todo.forEach((s, n) => {
      const params = paramsOf(s);
      compiled.set(s, lib.func(`void stof_run_${n}(uint32_t gx, uint32_t bx${params.map(p => `, ${p.type} ${p.name}`).join('')})`));
    });
  }

  const bytesAt = ptr => {
    for (const [base, mem] of fake.log.memory) if (ptr >= base && ptr < base + BigInt(mem.length)) return mem.subarray(Number(ptr - base));
    throw new Error(`host emulator: 0x${ptr.toString(16)} is not allocated`);
  };

  const createProgram = nvrtc.nvrtcCreateProgram;
  nvrtc.nvrtcCreateProgram = (p, source, ...rest) => { const r = createProgram(p, source, ...rest); programs.set(p[0], source); return r; };
  nvrtc.nvrtcGetCUBIN = (prog, image) => {
    images.push(programs.get(prog));
    new DataView(image.buffer, image.byteOffset).setUint32(0, images.length - 1, true);
    return 0;
  };
  const loadModule = driver.cuModuleLoadData;
  driver.cuModuleLoadData = (m, image) => {
    const r = loadModule(m, image);
    modules.set(m[0], images[new DataView(image.buffer, image.byteOffset).getUint32(0, true)]);
    return r;
  };
  const getFunction = driver.cuModuleGetFunction;
  driver.cuModuleGetFunction = (f, module, name) => { const r = getFunction(f, module, name); functions.set(f[0], modules.get(module)); return r; };
  const launch = driver.cuLaunchKernel;
  driver.cuLaunchKernel = (fn, gx, gy, gz, bx, by, bz, smem, stream, params, extra) => {
    const r = launch(fn, gx, gy, gz, bx, by, bz, smem, stream, params, extra);  // checks the pointers
    if (gy !== 1 || gz !== 1 || by !== 1 || bz !== 1 || smem !== 0) throw new Error(`host emulator: only 1-D grids without shared memory (grid ${[gx, gy, gz]}, block ${[bx, by, bz]})`);
    const source = functions.get(fn);
    if (!compiled.has(source)) precompile([source]);
    compiled.get(source)(gx, bx, ...params.map(p => (p instanceof BigUint64Array ? bytesAt(p[0]) : p[0])));
    counts.hostLaunches++;
    return r;
  };
  return {libs: fake.libs, log: {...fake.log, host: counts}, precompile};
}
