// The CUDA libraries, found at run time and bound through koffi (FFI): the driver API (libcuda.so.1),
// NVRTC (libnvrtc.so.*) and cuBLASLt (libcublasLt.so.*). Nothing is loaded at import: cudaLibs()
// looks once and reports `available: false` with one reason (which file was looked for where)
// instead of throwing, so the module is importable on machines without CUDA (or without koffi).
//
// Handles and device pointers are 64-bit integers on the JS side (declared uint64_t: the same
// ABI as a pointer on x86-64 Linux); out-parameters are one-element typed arrays.
import fs from 'node:fs';
import {createRequire} from 'node:module';
import path from 'node:path';

/** The functions of one library, by name. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Api = Record<string, (...args: any[]) => any>;

export interface CudaLibs {
  /** The driver and NVRTC both load: the CUDA executor can run (cuBLASLt is optional). */
  available: boolean;
  /** Why not, in one sentence (null when available). */
  reason: string|null;
  driver: Api|null;
  nvrtc: Api|null;
  cublasLt: Api|null;
  nvrtcReason: string|null;
  cublasLtReason: string|null;
  /** Which files were loaded. */
  paths: {driver?: string, nvrtc?: string, cublasLt?: string};
}

/** Where the libraries are looked for, in order (the loader's own search comes last, for libcuda). */
export function searchDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs: string[] = [];
  for (const root of [env['CUDA_PATH'], env['CUDA_HOME']]) {
    if (root) dirs.push(path.join(root, 'lib64'), path.join(root, 'targets/x86_64-linux/lib'), path.join(root, 'lib'));
  }
  for (const d of (env['LD_LIBRARY_PATH'] ?? '').split(':')) if (d) dirs.push(d);
  dirs.push('/usr/local/cuda/lib64', '/usr/local/cuda/targets/x86_64-linux/lib', '/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib/wsl/lib');
  return dirs.filter((d, i) => dirs.indexOf(d) === i);
}

/** The newest file in `dirs` whose name matches (libnvrtc.so.13 before libnvrtc.so.12), or null. */
export function findLibrary(dirs: string[], name: RegExp): string|null {
  const version = (f: string) => (f.match(/\.so((?:\.\d+)*)$/)?.[1] ?? '').split('.').filter(x => x).map(Number);
  for (const dir of dirs) {
    let files: string[];
    try { files = fs.readdirSync(dir); } catch { continue; }
    const hits = files.filter(f => name.test(f)).sort((a, b) => {
      const va = version(a), vb = version(b);
      for (let i = 0; i < Math.max(va.length, vb.length); i++) if ((va[i] ?? -1) !== (vb[i] ?? -1)) return (vb[i] ?? -1) - (va[i] ?? -1);
      return 0;
    });
    if (hits.length) return path.join(dir, hits[0]);
  }
  return null;
}

// CUresult / nvrtcResult / cublasStatus_t are ints; handles uint64_t.
const DRIVER = [
  'int cuInit(unsigned int flags)',
  'int cuDriverGetVersion(_Out_ int *version)',
  'int cuDeviceGetCount(_Out_ int *count)',
  'int cuDeviceGet(_Out_ int *device, int ordinal)',
  'int cuDeviceGetName(_Out_ uint8_t *name, int len, int device)',
  'int cuDeviceGetAttribute(_Out_ int *value, int attrib, int device)',
  'int cuDevicePrimaryCtxRetain(_Out_ uint64_t *ctx, int device)',
  'int cuDevicePrimaryCtxRelease_v2(int device)',
  'int cuCtxSetCurrent(uint64_t ctx)',
  'int cuCtxSynchronize()',
  'int cuMemAlloc_v2(_Out_ uint64_t *dptr, size_t bytes)',
  'int cuMemFree_v2(uint64_t dptr)',
  'int cuMemGetInfo_v2(_Out_ size_t *free, _Out_ size_t *total)',
  'int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t bytes)',
  'int cuMemcpyDtoH_v2(void *dst, uint64_t src, size_t bytes)',
  'int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t bytes, uint64_t stream)',
  'int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t bytes, uint64_t stream)',
  'int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, uint64_t stream)',
  'int cuMemsetD8_v2(uint64_t dptr, uint8_t value, size_t n)',
  'int cuMemsetD8Async(uint64_t dptr, uint8_t value, size_t n, uint64_t stream)',
  'int cuModuleLoadData(_Out_ uint64_t *module, const void *image)',
  'int cuModuleUnload(uint64_t module)',
  'int cuModuleGetFunction(_Out_ uint64_t *fn, uint64_t module, const char *name)',
  'int cuFuncSetAttribute(uint64_t fn, int attrib, int value)',
  'int cuLaunchKernel(uint64_t fn, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, unsigned int sharedBytes, uint64_t stream, void **params, void **extra)',
  'int cuStreamCreate(_Out_ uint64_t *stream, unsigned int flags)',
  'int cuStreamSynchronize(uint64_t stream)',
  'int cuStreamDestroy_v2(uint64_t stream)',
  'int cuEventCreate(_Out_ uint64_t *event, unsigned int flags)',
  'int cuEventRecord(uint64_t event, uint64_t stream)',
  'int cuEventSynchronize(uint64_t event)',
  'int cuEventQuery(uint64_t event)',
  'int cuEventDestroy_v2(uint64_t event)',
  'int cuGetErrorString(int error, _Out_ const char **text)',
  'int cuGetErrorName(int error, _Out_ const char **text)',
];
// CUDA 12.8 added cuEventElapsedTime_v2 and CUDA 13's header maps the name to it; older drivers have only the first.
const ELAPSED = ['int cuEventElapsedTime_v2(_Out_ float *ms, uint64_t start, uint64_t end)', 'int cuEventElapsedTime(_Out_ float *ms, uint64_t start, uint64_t end)'];
// Recovery after a kernel fault (CudaDevice.resetContext); optional: nothing else needs it.
const RESET = ['int cuDevicePrimaryCtxReset_v2(int device)', 'int cuDevicePrimaryCtxReset(int device)'];
// Page-locking host memory that reads land in (pinned_reads.ts); optional: reads use pageable memory without it.
const HOST_REGISTER = [
  ['int cuMemHostRegister_v2(void *p, size_t bytes, unsigned int flags)'],
  ['int cuMemHostUnregister(void *p)'],
];
// CUDA graphs (replayed forwards launched whole, src/backend/cuda_graph.ts); optional: without them each kernel is launched.
const GRAPHS = [
  ['int cuStreamBeginCapture_v2(uint64_t stream, int mode)'],
  ['int cuStreamEndCapture(uint64_t stream, _Out_ uint64_t *graph)'],
  ['int cuGraphInstantiateWithFlags(_Out_ uint64_t *exec, uint64_t graph, uint64_t flags)'],
  ['int cuGraphLaunch(uint64_t exec, uint64_t stream)'],
  ['int cuGraphExecDestroy(uint64_t exec)'],
  ['int cuGraphDestroy(uint64_t graph)'],
];

const NVRTC = [
  'int nvrtcVersion(_Out_ int *major, _Out_ int *minor)',
  'int nvrtcCreateProgram(_Out_ uint64_t *prog, const char *src, const char *name, int numHeaders, const char **headers, const char **includeNames)',
  'int nvrtcCompileProgram(uint64_t prog, int numOptions, const char **options)',
  'int nvrtcGetProgramLogSize(uint64_t prog, _Out_ size_t *size)',
  'int nvrtcGetProgramLog(uint64_t prog, _Out_ uint8_t *log)',
  'int nvrtcGetCUBINSize(uint64_t prog, _Out_ size_t *size)',
  'int nvrtcGetCUBIN(uint64_t prog, _Out_ uint8_t *cubin)',
  'int nvrtcGetPTXSize(uint64_t prog, _Out_ size_t *size)',
  'int nvrtcGetPTX(uint64_t prog, _Out_ uint8_t *ptx)',
  'int nvrtcDestroyProgram(_Inout_ uint64_t *prog)',
  'const char *nvrtcGetErrorString(int result)',
];

const CUBLASLT = [
  'size_t cublasLtGetVersion()',
  'int cublasLtCreate(_Out_ uint64_t *handle)',
  'int cublasLtDestroy(uint64_t handle)',
  'int cublasLtMatmulDescCreate(_Out_ uint64_t *desc, int computeType, int scaleType)',
  'int cublasLtMatmulDescDestroy(uint64_t desc)',
  'int cublasLtMatmulDescSetAttribute(uint64_t desc, int attr, const void *buf, size_t size)',
  'int cublasLtMatrixLayoutCreate(_Out_ uint64_t *layout, int type, uint64_t rows, uint64_t cols, int64_t ld)',
  'int cublasLtMatrixLayoutDestroy(uint64_t layout)',
  'int cublasLtMatrixLayoutSetAttribute(uint64_t layout, int attr, const void *buf, size_t size)',
  'int cublasLtMatmulPreferenceCreate(_Out_ uint64_t *pref)',
  'int cublasLtMatmulPreferenceDestroy(uint64_t pref)',
  'int cublasLtMatmulPreferenceSetAttribute(uint64_t pref, int attr, const void *buf, size_t size)',
  'int cublasLtMatmulAlgoGetHeuristic(uint64_t handle, uint64_t desc, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t pref, int requested, _Out_ uint8_t *results, _Out_ int *returned)',
  'int cublasLtMatmul(uint64_t handle, uint64_t desc, const void *alpha, uint64_t a, uint64_t aDesc, uint64_t b, uint64_t bDesc, const void *beta, uint64_t c, uint64_t cDesc, uint64_t d, uint64_t dDesc, const void *algo, uint64_t workspace, size_t workspaceBytes, uint64_t stream)',
];

interface Koffi {
  load(path: string): {func(proto: string): (...args: unknown[]) => unknown};
}

/** The function name of a prototype string. */
const nameOf = (proto: string) => proto.match(/(\w+)\s*\(/)![1];

function bind(lib: ReturnType<Koffi['load']>, protos: string[], optional: string[][] = []): Api {
  const api: Api = {};
  for (const p of protos) api[nameOf(p)] = lib.func(p) as Api[string];
  // Alternatives: the first that the library exports, under the first name.
  for (const alts of optional) {
    for (const p of alts) {
      try { api[nameOf(alts[0])] = lib.func(p) as Api[string]; break; } catch { /* next alternative */ }
    }
  }
  return api;
}

let cached: CudaLibs|null = null;

/** Finds and binds the libraries (once). Never throws. */
export function cudaLibs(): CudaLibs {
  if (cached) return cached;
  const out: CudaLibs = {available: false, reason: null, driver: null, nvrtc: null, cublasLt: null, nvrtcReason: null, cublasLtReason: null, paths: {}};
  cached = out;
  let koffi: Koffi;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (e) {
    out.reason = out.nvrtcReason = out.cublasLtReason = `the koffi FFI module does not load (${(e as Error).message.split('\n')[0]})`;
    return out;
  }
  const dirs = searchDirs();
  const where = `looked in ${dirs.join(', ')}`;
  const open = (file: string|null, bare: string|null, protos: string[], optional: string[][] = []) => {
    const errors: string[] = [];
    for (const candidate of [file, bare]) {
      if (candidate == null) continue;
      try { return {api: bind(koffi.load(candidate), protos, optional), path: candidate}; } catch (e) { errors.push(`${candidate}: ${(e as Error).message.split('\n')[0]}`); }
    }
    return {error: errors.join('; ')};
  };
  // The driver comes with the NVIDIA driver, not the toolkit: the system loader's paths count too.
  const drv = open(findLibrary(dirs, /^libcuda\.so\.1$/), 'libcuda.so.1', DRIVER, [ELAPSED, RESET, ...GRAPHS, ...HOST_REGISTER]);
  if ('api' in drv) { out.driver = drv.api!; out.paths.driver = drv.path; }
  const nvrtcFile = findLibrary(dirs, /^libnvrtc\.so(\.\d+)*$/);
  const nv = nvrtcFile ? open(nvrtcFile, null, NVRTC) : {error: `libnvrtc.so.* not found (${where})`};
  if ('api' in nv) { out.nvrtc = nv.api!; out.paths.nvrtc = nv.path; } else out.nvrtcReason = nv.error!;
  const ltFile = findLibrary(dirs, /^libcublasLt\.so(\.\d+)*$/);
  const lt = ltFile ? open(ltFile, null, CUBLASLT) : {error: `libcublasLt.so.* not found (${where})`};
  if ('api' in lt) { out.cublasLt = lt.api!; out.paths.cublasLt = lt.path; } else out.cublasLtReason = lt.error!;
  if (out.driver == null) {
    out.reason = `CUDA driver libcuda.so.1 not found or not loadable (${where}, and the system loader${'error' in drv && drv.error ? `: ${drv.error}` : ''})`;
  } else if (out.nvrtc == null) {
    out.reason = `NVRTC: ${out.nvrtcReason}`;
  } else {
    out.available = true;
  }
  return out;
}

/** Forgets what cudaLibs() found (tests that change CUDA_PATH / LD_LIBRARY_PATH). */
export function resetCudaLibs() {
  cached = null;
}
