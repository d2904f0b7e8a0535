// nvcc for the CUDA code-generation checks: where it is, one .cu of many kernels (each in its own
// namespace, so equal entry names do not clash), and a compile to a cubin with warnings as errors.
import {spawn, spawnSync} from 'node:child_process';
import fs from 'node:fs';

/** $NVCC, /usr/local/bin/nvcc, /usr/local/cuda/bin/nvcc or the PATH's; null when there is none. */
export function findNvcc() {
  return [process.env.NVCC, '/usr/local/bin/nvcc', '/usr/local/cuda/bin/nvcc'].find(p => p && fs.existsSync(p)) ??
      (spawnSync('sh', ['-c', 'command -v nvcc'], {encoding: 'utf8'}).stdout.trim() || null);
}

export const NVCC_SEARCHED = '$NVCC, /usr/local/bin/nvcc, /usr/local/cuda/bin/nvcc, PATH';

/** Several generated units as one translation unit. */
export const batchUnit = codes => codes.map((code, i) => `namespace k${i} {\n${code.replace('extern "C" __global__', '__global__')}\n}\n`).join('\n');

/** Compiles `file` (.cu) to a cubin for `arch`: {ok, out} with nvcc's output. */
export function runNvcc(nvcc, arch, file) {
  return new Promise(resolve => {
    const p = spawn(nvcc, [`-arch=${arch}`, '-cubin', '-Werror', 'all-warnings', '-o', file.replace(/\.cu$/, '.cubin'), file]);
    let out = '';
    p.stdout.on('data', d => { out += d; });
    p.stderr.on('data', d => { out += d; });
    p.on('close', code => resolve({ok: code === 0, out}));
    p.on('error', e => resolve({ok: false, out: String(e)}));
  });
}
