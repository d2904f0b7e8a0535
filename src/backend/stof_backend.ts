// The 'stof' KernelBackend: owns a base backend (tfjs-backend-webgpu or tfjs-backend-cpu) and
// delegates storage, reads and timing to it. Kernels reach the base through runKernel(), the one
// place where later stages intercept (lazy recording) or materialize lazy inputs.
import {
  BackendTimingInfo, BackendValues, DataId, DataToGPUOptions, DataType, GPUData,
  KernelBackend, KernelConfig, NamedAttrMap, NamedTensorInfoMap, Tensor, TensorInfo, WebGLData, WebGPUData,
} from '@tensorflow/tfjs-core';

export type BaseName = 'webgpu' | 'cpu';

export interface StofBackendInfo {
  /** Name of the base backend that runs the kernels 'stof' does not fuse. */
  base: BaseName;
  /** Adapter description when the base is WebGPU (vendor, architecture, device, description). */
  adapter?: Record<string, string>;
}

export class StofBackend extends KernelBackend {
  private disposed = false;

  /**
   * @param base the base backend instance (shared with the engine's registry when `ownsBase` is false)
   * @param ownsBase whether dispose() must dispose the base too
   */
  constructor(readonly base: KernelBackend, readonly baseName: BaseName, private readonly ownsBase: boolean) {
    super();
  }

  /** Runs a base kernel for the 'stof' backend. Every mirrored kernel goes through here. */
  runKernel(config: KernelConfig, inputs: NamedTensorInfoMap, attrs?: NamedAttrMap): TensorInfo|TensorInfo[] {
    return config.kernelFunc({inputs, attrs, backend: this.base});
  }

  info(): StofBackendInfo {
    const info: StofBackendInfo = {base: this.baseName};
    const adapterInfo = (this.base as unknown as {adapterInfo?: GPUAdapterInfo}).adapterInfo;
    if (adapterInfo != null) {
      info.adapter = {};
      for (const key of ['vendor', 'architecture', 'device', 'description'] as const) {
        const value = (adapterInfo as unknown as Record<string, unknown>)[key];
        if (typeof value === 'string' && value !== '') info.adapter[key] = value;
      }
    }
    return info;
  }

  override refCount(dataId: DataId): number { return this.base.refCount(dataId); }
  override incRef(dataId: DataId): void { this.base.incRef(dataId); }
  override timerAvailable(): boolean { return this.base.timerAvailable(); }
  override time(f: () => void): Promise<BackendTimingInfo> { return this.base.time(f); }
  override read(dataId: object): Promise<BackendValues> { return this.base.read(dataId); }
  override readSync(dataId: object): BackendValues { return this.base.readSync(dataId); }
  override readToGPU(dataId: object, options?: DataToGPUOptions): GPUData {
    return this.base.readToGPU(dataId, options);
  }
  override numDataIds(): number { return this.base.numDataIds(); }
  override disposeData(dataId: object, force?: boolean): boolean { return this.base.disposeData(dataId, force); }
  override write(values: BackendValues, shape: number[], dtype: DataType): DataId {
    return this.base.write(values, shape, dtype);
  }
  override move(dataId: DataId, values: BackendValues, shape: number[], dtype: DataType, refCount: number): void {
    this.base.move(dataId, values, shape, dtype, refCount);
  }
  override createTensorFromGPUData(values: WebGLData|WebGPUData, shape: number[], dtype: DataType): Tensor {
    // The tensor is tracked on the base, which holds its data; 'stof' kernels read it from there.
    return this.base.createTensorFromGPUData(values, shape, dtype);
  }
  override memory() { return this.base.memory(); }
  override floatPrecision(): 16|32 { return this.base.floatPrecision(); }
  override epsilon(): number { return this.base.epsilon(); }

  override dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.ownsBase) this.base.dispose();
  }
}
