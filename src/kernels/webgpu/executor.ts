// Runs planned kernels on tfjs-backend-webgpu's device: its buffers (no copies), its command
// encoder and compute pass (so fused and unfused work interleave in order), its submit batching.
import {BackendValues, env, KernelBackend} from '@tensorflow/tfjs-core';

import {sizeOf} from '../../fusion/access';
import {Kernel} from '../../fusion/planner';
import {evaluateKernel} from '../cpu/executor';
import type {Profiler} from '../../backend/profiler';
import {Shader, shaderOf} from './templates';

/** The parts of tfjs-backend-webgpu's WebGPUBackend (4.x) that the executor uses. */
export interface WebGPUBase extends KernelBackend {
  device: GPUDevice;
  tensorMap: {get(dataId: object): {resource?: GPUBuffer|GPUTexture|GPUExternalTexture|null, values?: ArrayLike<number>|null}};
  commandEncoder: GPUCommandEncoder|null;
  computePassEncoder: GPUComputePassEncoder|null;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
  makeTensorInfo(shape: number[], dtype: string): {dataId: object};
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  runWebGPUProgram(...args: unknown[]): unknown;
}

const HOOK = Symbol.for('tfjs-backend-stof.dispatchHook');
/** tfjs-backend-webgpu's CPU_HANDOFF_SIZE_THRESHOLD. */
const CPU_FORWARD_SIZE = 128;

interface Compiled {
  shader: Shader;
  pipeline: GPUComputePipeline;
}

export class WebGPUExecutor {
  private readonly compiled = new WeakMap<Kernel, Compiled>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();

  constructor(private readonly base: WebGPUBase, profiler: Profiler) {
    // Count the base's own programs too, so profile() reports every dispatch of a forward. The base
    // instance can outlive a 'stof' backend: hook it once, point the hook at the current profiler.
    const hooked = base as WebGPUBase & {[HOOK]?: {profiler: Profiler}};
    if (hooked[HOOK] == null) {
      const hook = {profiler};
      hooked[HOOK] = hook;
      const run = base.runWebGPUProgram.bind(base);
      base.runWebGPUProgram = (...args: unknown[]) => {
        hook.profiler.baseDispatch();
        return run(...args);
      };
    }
    hooked[HOOK]!.profiler = profiler;
  }

  private compile(k: Kernel): Compiled {
    let c = this.compiled.get(k);
    if (c != null) return c;
    const shader = shaderOf(k);
    let pipeline = this.pipelines.get(shader.code);
    if (pipeline == null) {
      const device = this.base.device;
      const module = device.createShaderModule({code: shader.code, label: `stof-${k.template}`});
      pipeline = device.createComputePipeline({layout: 'auto', compute: {module, entryPoint: 'main'}, label: `stof-${k.template}`});
      this.pipelines.set(shader.code, pipeline);
    }
    c = {shader, pipeline};
    this.compiled.set(k, c);
    return c;
  }

  /** WGSL of a kernel (for explain() and tests). */
  source(k: Kernel): string {
    return this.compile(k).shader.code;
  }

  /** Launches of the last run: one, on the GPU or (tiny, CPU-resident work) on the CPU. */
  readonly lastDispatches = 1;

  run(k: Kernel, inputs: object[]): object {
    const base = this.base;
    // Like the base (WEBGPU_CPU_FORWARD): tiny work on data still on the CPU stays there.
    if (env().getBool('WEBGPU_CPU_FORWARD') && sizeOf(k.output.shape) < CPU_FORWARD_SIZE &&
        inputs.every((id, i) => base.tensorMap.get(id).values != null && sizeOf(k.inputs[i].shape) < CPU_FORWARD_SIZE)) {
      const values = evaluateKernel(k, inputs.map(id => base.tensorMap.get(id).values!));
      return base.write(values as BackendValues, k.output.shape, k.output.dtype);
    }
    const {shader, pipeline} = this.compile(k);
    const out = base.makeTensorInfo(k.output.shape, k.output.dtype);
    base.uploadToGPU(out.dataId);
    const ids = [out.dataId, ...shader.bindings.map(slot => inputs[slot])];
    const entries: GPUBindGroupEntry[] = ids.map((id, binding) => {
      base.uploadToGPU(id);
      base.commandQueueOwnedIds.add(id);
      return {binding, resource: {buffer: base.tensorMap.get(id).resource as GPUBuffer}};
    });
    const bindGroup = base.device.createBindGroup({layout: pipeline.getBindGroupLayout(0), entries});
    base.ensureCommandEncoderReady();
    if (base.computePassEncoder == null) base.computePassEncoder = base.commandEncoder!.beginComputePass({});
    const pass = base.computePassEncoder;
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(...shader.workgroups);
    base.dispatchCountInPass++;
    if (base.dispatchCountInPass >= (env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number)) {
      base.endComputePassEncoder();
      base.submitQueue();
    }
    return out.dataId;
  }
}
