// A stand-in for libcuda, NVRTC and cuBLASLt with the same call signatures as the koffi bindings of
// src/kernels/cuda/cuda_libs.ts: memory is host memory, launches and matmuls only count. It checks
// the executor's bookkeeping (allocator, plans, tile-format cache, events, disposal) on machines
// without a GPU; the numbers come from bench/cuda_check.mjs on the GPU machine. Stream capture
// records the stream's work (launches, copies, matmuls) instead of doing it; a graph launch does it.
export function fakeCudaLibs() {
  const memory = new Map();  // base pointer -> Uint8Array
  let next = 0x10000n;
  const counts = {launches: 0, allocs: 0, frees: 0, matmuls: 0, compiles: 0, queries: 0, graphs: 0, graphLaunches: 0, hostRegisters: 0};
  const registered = new Set();  // host pointers (koffi externals) page-locked by cuMemHostRegister
  let capture = null;  // {ops: [[f, args]], saved: [[api, name, f]]} while the stream is captured
  const graphs = new Map();  // graph or exec handle -> ops
  const bytesAt = ptr => {
    for (const [base, mem] of memory) if (ptr >= base && ptr < base + BigInt(mem.length)) return mem.subarray(Number(ptr - base));
    throw new Error(`fake CUDA: 0x${ptr.toString(16)} is not allocated`);
  };
  const handle = () => (next += 0x100n);
  const out = (box, v) => { box[0] = typeof box[0] === 'bigint' ? BigInt(v) : v; return 0; };
  const driver = {
    cuInit: () => 0, cuDeviceGetCount: n => out(n, 1), cuDeviceGet: d => out(d, 0),
    cuDeviceGetName: buf => { buf.write('Fake GPU\0'); return 0; },
    cuDeviceGetAttribute: (v, a) => out(v, {75: 9, 76: 0, 16: 132, 97: 232448}[a] ?? 0),
    cuDevicePrimaryCtxRetain: c => out(c, handle()), cuDevicePrimaryCtxRelease_v2: () => 0, cuCtxSetCurrent: () => 0,
    // Address ranges never overlap (a gap of 1 MiB after each block), so a pointer names one block.
    cuMemAlloc_v2: (p, bytes) => { const base = (next += 0x100000n); next += BigInt(bytes); memory.set(base, new Uint8Array(bytes)); counts.allocs++; return out(p, base); },
    cuMemFree_v2: p => { if (!memory.delete(p)) throw new Error('fake CUDA: double free'); counts.frees++; return 0; },
    cuMemcpyHtoDAsync_v2: (dst, src, n) => { bytesAt(dst).set(new Uint8Array(src.buffer, src.byteOffset, n)); return 0; },
    cuMemcpyDtoDAsync_v2: (dst, src, n) => { bytesAt(dst).set(bytesAt(src).subarray(0, n)); return 0; },
    cuMemsetD8Async: (dst, v, n) => { bytesAt(dst).fill(v, 0, n); return 0; },
    cuMemHostRegister_v2: p => { if (registered.has(p)) return 712; registered.add(p); counts.hostRegisters++; return 0; },
    cuMemHostUnregister: p => (registered.delete(p) ? 0 : 713),
    cuMemcpyDtoH_v2: (dst, src, n) => { new Uint8Array(dst.buffer, dst.byteOffset, n).set(bytesAt(src).subarray(0, n)); return 0; },
    cuModuleLoadData: m => out(m, handle()), cuModuleUnload: () => 0, cuModuleGetFunction: f => out(f, handle()),
    cuFuncSetAttribute: () => 0,
    cuLaunchKernel: (fn, gx, gy, gz, bx, by, bz, smem, stream, params) => {
      if (gx < 1 || gy < 1 || gz < 1 || gy > 65535 || gz > 65535 || bx * by * bz > 1024) throw new Error(`fake CUDA: bad launch ${[gx, gy, gz, bx, by, bz]}`);
      for (const p of params) if (p instanceof BigUint64Array) bytesAt(p[0]);  // every pointer is live
      counts.launches++;
      return 0;
    },
    cuStreamBeginCapture_v2: () => {
      if (capture != null) return 900;  // CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
      capture = {ops: [], saved: []};
      // Stream work goes to the capture: the functions as they are now (a host emulator's launch included).
      for (const [api, name] of [[driver, 'cuLaunchKernel'], [driver, 'cuMemcpyDtoDAsync_v2'], [driver, 'cuMemsetD8Async'],
                                 [driver, 'cuMemcpyHtoDAsync_v2'], [cublasLt, 'cublasLtMatmul']]) {
        const f = api[name];
        capture.saved.push([api, name, f]);
        api[name] = (...args) => { capture.ops.push([f, args]); return 0; };
      }
      return 0;
    },
    cuStreamEndCapture: (s, g) => {
      if (capture == null) return 901;
      for (const [api, name, f] of capture.saved) api[name] = f;
      const h = handle();
      graphs.set(h, capture.ops);
      capture = null;
      return out(g, h);
    },
    cuGraphInstantiateWithFlags: (e, g) => { const h = handle(); graphs.set(h, graphs.get(g)); counts.graphs++; return out(e, h); },
    cuGraphLaunch: e => {
      if (capture != null) return 900;
      for (const [f, args] of graphs.get(e)) { const r = f(...args); if (r !== 0) return r; }
      counts.graphLaunches++;
      return 0;
    },
    cuGraphDestroy: g => (graphs.delete(g) ? 0 : 400), cuGraphExecDestroy: e => (graphs.delete(e) ? 0 : 400),
    cuStreamCreate: s => out(s, handle()), cuStreamSynchronize: () => (capture != null ? 900 : 0), cuStreamDestroy_v2: () => 0,
    cuEventCreate: e => out(e, handle()), cuEventRecord: () => 0, cuEventSynchronize: () => 0, cuEventQuery: () => { counts.queries++; return counts.queries % 3 === 0 ? 0 : 600; },
    cuEventElapsedTime_v2: ms => { ms[0] = 0.01; return 0; }, cuEventDestroy_v2: () => 0,
    cuGetErrorName: (e, s) => out(s, 'FAKE_ERROR'), cuGetErrorString: (e, s) => out(s, 'fake error'),
  };
  const log = {counts, memory, graphs, registered};
  const nvrtc = {
    nvrtcVersion: (a, b) => { a[0] = 13; b[0] = 0; return 0; },
    nvrtcCreateProgram: p => out(p, handle()), nvrtcCompileProgram: () => { counts.compiles++; return 0; },
    nvrtcGetProgramLogSize: (p, s) => out(s, 1), nvrtcGetProgramLog: () => 0, nvrtcGetCUBINSize: (p, s) => out(s, 16),
    nvrtcGetCUBIN: () => 0, nvrtcDestroyProgram: () => 0, nvrtcGetErrorString: () => 'fake',
  };
  const cublasLt = {
    cublasLtCreate: h => out(h, handle()), cublasLtDestroy: () => 0,
    cublasLtMatmulDescCreate: d => out(d, handle()), cublasLtMatmulDescDestroy: () => 0, cublasLtMatmulDescSetAttribute: () => 0,
    cublasLtMatrixLayoutCreate: l => out(l, handle()), cublasLtMatrixLayoutDestroy: () => 0, cublasLtMatrixLayoutSetAttribute: () => 0,
    cublasLtMatmulPreferenceCreate: p => out(p, handle()), cublasLtMatmulPreferenceDestroy: () => 0, cublasLtMatmulPreferenceSetAttribute: () => 0,
    cublasLtMatmulAlgoGetHeuristic: (h, d, a, b, c, dd, p, n, results, returned) => { returned[0] = 1; return 0; },
    cublasLtMatmul: (h, desc, alpha, a, al, b, bl, beta, c, cl, d) => { bytesAt(a); bytesAt(b); bytesAt(d); counts.matmuls++; return 0; },
  };
  return {libs: {available: true, reason: null, driver, nvrtc, cublasLt, nvrtcReason: null, cublasLtReason: null, paths: {}},
          log};
}
