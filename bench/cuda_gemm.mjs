// The GEMMs of the BERT-base / GPT-2 forwards on their own, through the executor's cuBLASLt path
// (fp32 operands and output, tf32 tensor cores, as STOF_PRECISION tf32 and fp16 run them): device
// time per call (CUDA events around 50 back-to-back calls) and TFLOP/s. For comparing with PyTorch
// on the same shapes (bench/hf/torch_gemm.py) in the same device run.
//
//   npm run build && node bench/cuda_gemm.mjs [--tokens 1024,4096]
import {loadTsc as load} from '../scripts/load_tsc.mjs';

const {cudaLibs} = await load('src/kernels/cuda/cuda_libs.js');
const {CudaDevice} = await load('src/kernels/cuda/cuda_device.js');
const {LtGemm} = await load('src/kernels/cuda/cublaslt.js');

const argv = process.argv.slice(2);
const tokens = (argv.includes('--tokens') ? argv[argv.indexOf('--tokens') + 1] : '1024,4096').split(',').map(Number);
const libs = cudaLibs();
if (!libs.available || !libs.cublasLt) throw new Error(`CUDA or cuBLASLt missing: ${libs.reason ?? libs.cublasLtReason}`);
const device = new CudaDevice(libs.driver);
const lt = new LtGemm(libs.cublasLt, device);
const reps = 50;
const rows = [];
for (const M of tokens) {
  for (const [name, K, N] of [['qkv', 768, 2304], ['attn-out', 768, 768], ['ffn-up', 768, 3072], ['ffn-down', 3072, 768]]) {
    const a = device.alloc(4 * M * K), b = device.alloc(4 * K * N), d = device.alloc(4 * M * N), bias = device.alloc(4 * N);
    for (const [p, n] of [[a, M * K], [b, K * N], [d, M * N], [bias, N]]) device.memset(p, 0, 4 * n);
    const row = {M, K, N, gemm: name};
    for (const [epilogue, math] of [['none', 'tf32'], ['bias', 'tf32']]) {
      const p = {M, N, K, batch: 1, a: {offset: 0, ld: K, transposed: false, batchStride: 0}, b: {offset: 0, ld: N, transposed: false, batchStride: 0},
                 epilogue, biasSlot: epilogue === 'bias' ? 0 : null, biasOffset: 0};
      for (let i = 0; i < 5; i++) lt.run(p, a, b, d, epilogue === 'bias' ? bias : null, true);
      const e0 = device.createEvent(), e1 = device.createEvent();
      device.record(e0);
      for (let i = 0; i < reps; i++) lt.run(p, a, b, d, epilogue === 'bias' ? bias : null, true);
      device.record(e1);
      const ms = device.elapsed(e0, e1) / reps;
      row[`${math}${epilogue === 'bias' ? '+b' : ''} ms`] = +ms.toFixed(4);
      if (epilogue === 'none') row[`${math} TF/s`] = +((2 * M * N * K) / ms / 1e9).toFixed(0);
      device.destroyEvent(e0);
      device.destroyEvent(e1);
    }
    rows.push(row);
    for (const p of [a, b, d, bias]) device.free(p);
  }
}
console.log(`cuBLASLt, fp32 operands and output, tf32 tensor cores, on ${device.name}, mean of ${reps} back-to-back calls`);
console.table(rows);
lt.dispose();
device.dispose();
