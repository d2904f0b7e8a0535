// Run-time compilation of the generated CUDA C with NVRTC, cached per (source, architecture,
// options) in memory and on disk: a model's kernels compile once per machine, later processes load
// the CUBIN. A cache file that does not load is recompiled and replaced.
import {createHash} from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import type {Api} from './cuda_libs';

const NVRTC_SUCCESS = 0;

/**
 * NVRTC options. No fast-math: IEEE division and square root and no flush to zero, because the
 * templates reproduce the CPU executor's float semantics (log(0) = -Infinity, NaN propagation).
 */
export const NVRTC_OPTIONS = ['--std=c++17', '-default-device'];

export interface Compiled {
  /** CUBIN for a real architecture (sm_XX). */
  image: Uint8Array;
  log: string;
}

function check(api: Api, r: number, what: string, log = '') {
  if (r !== NVRTC_SUCCESS) throw new Error(`NVRTC ${what} failed: ${api['nvrtcGetErrorString'](r)} (${r})${log ? `\n${log}` : ''}`);
}

/** Compiles `source` for `arch` ('sm_90'); throws with the compiler log on an error. */
export function compileNvrtc(api: Api, source: string, arch: string, options: string[] = []): Compiled {
  if (!/^sm_\d+[a-z]?$/.test(arch)) throw new Error(`compileNvrtc: architecture '${arch}' is not of the form sm_90`);
  const prog = new BigUint64Array(1);
  check(api, api['nvrtcCreateProgram'](prog, source, 'stof.cu', 0, null, null), 'nvrtcCreateProgram');
  try {
    const r = api['nvrtcCompileProgram'](prog[0], NVRTC_OPTIONS.length + options.length + 1,
                                         [`--gpu-architecture=${arch}`, ...NVRTC_OPTIONS, ...options]);
    const size = [0];
    check(api, api['nvrtcGetProgramLogSize'](prog[0], size), 'nvrtcGetProgramLogSize');
    const logBuf = Buffer.alloc(Math.max(1, Number(size[0])));
    check(api, api['nvrtcGetProgramLog'](prog[0], logBuf), 'nvrtcGetProgramLog');
    const log = logBuf.toString('utf8').replace(/\0[\s\S]*$/, '').trim();
    check(api, r, `compile for ${arch}`, log);
    check(api, api['nvrtcGetCUBINSize'](prog[0], size), 'nvrtcGetCUBINSize');
    const image = new Uint8Array(Number(size[0]));
    check(api, api['nvrtcGetCUBIN'](prog[0], image), 'nvrtcGetCUBIN');
    return {image, log};
  } finally {
    api['nvrtcDestroyProgram'](prog);
  }
}

/** The default on-disk cache: $STOF_CUDA_CACHE, else ~/.cache/tfjs-backend-stof/cuda. */
export function defaultCacheDir(): string {
  return process.env['STOF_CUDA_CACHE'] || path.join(os.homedir(), '.cache', 'tfjs-backend-stof', 'cuda');
}

/** CUBINs by (source, arch, options): memory first, then `dir` (null: memory only), then NVRTC. */
export class CubinCache {
  private readonly memory = new Map<string, Uint8Array>();
  compiles = 0;
  diskHits = 0;

  constructor(private readonly api: Api, private readonly dir: string|null, private readonly version: string) {}

  key(source: string, arch: string, options: string[]): string {
    return createHash('sha256').update(`${this.version}\0${arch}\0${[...NVRTC_OPTIONS, ...options].join(' ')}\0${source}`).digest('hex');
  }

  get(source: string, arch: string, options: string[] = []): Uint8Array {
    const key = this.key(source, arch, options);
    const hit = this.memory.get(key);
    if (hit) return hit;
    const file = this.dir && path.join(this.dir, `${key}.cubin`);
    if (file) {
      try {
        const image = new Uint8Array(fs.readFileSync(file));
        this.diskHits++;
        this.memory.set(key, image);
        return image;
      } catch { /* not cached yet */ }
    }
    const {image} = compileNvrtc(this.api, source, arch, options);
    this.compiles++;
    this.memory.set(key, image);
    if (file) {
      try {  // write-then-rename: a concurrent reader never sees half a file
        fs.mkdirSync(this.dir!, {recursive: true});
        const tmp = `${file}.${process.pid}.tmp`;
        fs.writeFileSync(tmp, image);
        fs.renameSync(tmp, file);
      } catch (e) {
        console.warn(`tfjs-backend-stof: cannot write the CUDA kernel cache in ${this.dir}: ${(e as Error).message}`);
      }
    }
    return image;
  }

  /** Drops a cached image that the driver refused (a corrupt or stale file); the next get() recompiles. */
  forget(source: string, arch: string, options: string[] = []) {
    const key = this.key(source, arch, options);
    this.memory.delete(key);
    if (this.dir) fs.rmSync(path.join(this.dir, `${key}.cubin`), {force: true});
  }
}
