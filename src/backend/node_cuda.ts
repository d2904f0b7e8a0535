// Node only: offers the CUDA base to 'stof' (STOF_DEVICE 'cuda' or 'auto'). Nothing CUDA is loaded
// until 'stof' is set up; without a driver or NVRTC the provider says why in one sentence.
import {CudaExecutor} from '../kernels/cuda/executor';

import {CudaBase} from './cuda_base';
import {setCudaProvider} from './register';

setCudaProvider(precision => {
  const exec = CudaExecutor.create({gemm: precision === 'fp32' ? 'fp32' : 'tf32', attention: precision === 'fp16' ? 'fp16' : 'fp32'});
  return 'reason' in exec ? {reason: exec.reason} : new CudaBase(exec);
});
