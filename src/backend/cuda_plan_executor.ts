// Runs the planner's kernels on the CUDA base: inputs are the base's tensors (host values go to the
// device once), outputs are new device-resident tensors of the base. The kernels are the same plan
// objects the WebGPU executor runs; CudaExecutor emits them as CUDA C (or hands GEMMs to cuBLASLt).
import {DataId} from '@tensorflow/tfjs-core';

import {Kernel} from '../fusion/planner';

import type {CudaBase} from './cuda_base';
import type {GroupReport} from './profiler';
import type {Executor} from './stof_backend';

export class CudaPlanExecutor implements Executor {
  readonly sparse = true;
  get lastDispatches() { return this.base.exec.lastDispatches; }

  constructor(private readonly base: CudaBase) {}

  run(kernel: Kernel, inputs: object[], timed?: GroupReport): object {
    const buffers = inputs.map((id, i) => this.base.buffer({dataId: id as DataId, shape: kernel.inputs[i].shape, dtype: kernel.inputs[i].dtype}));
    const out = this.base.exec.run(kernel, buffers, timed);
    // A grouped GEMM stores its groups one after the other; its tensor is group 0 (siblings are internal).
    return this.base.adopt(out, kernel.output.shape, kernel.output.dtype).dataId;
  }

  async collectTimes() {
    this.base.exec.collectTimes();
  }
}
