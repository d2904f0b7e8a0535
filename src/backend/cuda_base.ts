// The base of 'stof' on CUDA (STOF_DEVICE='cuda', Node): tfjs-backend-cpu's backend whose tensors may
// live in CUDA memory. An entry holds host values, a device buffer, or both (tensors are immutable,
// so either copy stays valid). Fused kernels and the CUDA kernels of cuda_kernels.ts read and write
// device buffers; tfjs-backend-cpu's kernels read `.values`, which copies a device-only tensor to the
// host on first use: that copy is a fallback, counted and reported with the kernel that caused it.
import {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {BackendValues, DataId, DataType, TensorInfo, TypedArray, util} from '@tensorflow/tfjs-core';

import {CudaBuffer, CudaExecutor} from '../kernels/cuda/executor';

import type {DeviceHost} from './cuda_kernels';

/** A tensor's storage here: what tfjs-backend-cpu's kernels see as TensorData, plus the device copy. */
interface Entry {
  values: BackendValues;
  dtype: DataType;
  refCount: number;
  device?: CudaBuffer|null;
}

/** Host <-> device traffic, for profile() and the tests. */
export interface CopyCounts {
  toDevice: number;
  toDeviceBytes: number;
  toHost: number;
  toHostBytes: number;
}

/** Called when a base kernel (not the app) makes a device-only tensor come to the host. */
export type HostReadListener = (kernel: string, bytes: number) => void;

export class CudaBase extends MathBackendCPU implements DeviceHost {
  readonly copies: CopyCounts = {toDevice: 0, toDeviceBytes: 0, toHost: 0, toHostBytes: 0};
  /** The base kernel running now (set by 'stof' around tfjs-backend-cpu's kernels), for fallback reports. */
  kernelInProgress: string|null = null;
  onHostRead: HostReadListener|null = null;
  private disposedBase = false;

  constructor(readonly exec: CudaExecutor) {
    super();
    // 'stof' says which device it runs on; tfjs-node is no base of 'stof' (see register.ts).
    (this as unknown as {firstUse: boolean}).firstUse = false;
  }

  private entry(dataId: DataId): Entry {
    return this.data.get(dataId) as unknown as Entry;
  }

  /** The device buffer of a tensor stored here; host-only values are copied to the device once. */
  buffer(info: TensorInfo): CudaBuffer {
    const e = this.entry(info.dataId);
    if (e == null) throw new Error(`tfjs-backend-stof (cuda): tensor [${info.shape}] ${info.dtype} is not stored on the CUDA base`);
    if (e.device != null) return e.device;
    if (e.dtype === 'string' || e.dtype === 'complex64') {
      throw new Error(`tfjs-backend-stof (cuda): a ${e.dtype} tensor [${info.shape}] cannot go to the device`);
    }
    const values = e.values as TypedArray;
    e.device = this.exec.upload(values, [values.length], e.dtype);
    this.copies.toDevice++;
    this.copies.toDeviceBytes += 4 * values.length;
    return e.device;
  }

  /** Host values without a copy from the device (null when the tensor is only on the device). */
  hostValues(info: TensorInfo): TypedArray|null {
    const e = this.entry(info.dataId);
    if (e instanceof DeviceEntry) return e.host as TypedArray|null;
    return e.values as TypedArray;
  }

  /** The dtype of the stored values (tfjs-backend-cpu's Cast int32 -> float32 relabels int32 values). */
  storedDtype(dataId: DataId): DataType|null {
    return this.data.has(dataId) ? this.entry(dataId).dtype : null;
  }

  /** Wraps a device buffer (its one reference passes to the new tensor) as a tensor of this base. */
  adopt(buf: CudaBuffer, shape: number[], dtype: DataType): TensorInfo {
    const dataId = {id: (this as unknown as {nextDataId(): number}).nextDataId()};  // private in the .d.ts
    this.data.set(dataId, new DeviceEntry(this, buf, dtype, util.sizeFromShape(shape)) as unknown as Entry);
    return {dataId, shape, dtype};
  }

  /** Copies a device-only entry to the host (the getter of DeviceEntry.values). */
  download(buf: CudaBuffer, dtype: DataType, size: number): BackendValues {
    const raw = this.exec.read(buf, size);
    this.copies.toHost++;
    this.copies.toHostBytes += 4 * size;
    if (this.kernelInProgress != null) this.onHostRead?.(this.kernelInProgress, 4 * size);
    // tfjs-backend-cpu keeps bool as Uint8Array; the device stores every non-float as int32.
    return dtype === 'bool' ? Uint8Array.from(raw) : raw;
  }

  /** Async read: a tensor only on the device waits for the GPU without blocking the thread, then copies. */
  override async read(dataId: DataId): Promise<BackendValues> {
    const e = this.data.has(dataId) ? this.entry(dataId) : null;
    if (e instanceof DeviceEntry && e.host == null && e.device != null) await this.exec.idle();
    return super.read(dataId);
  }

  override disposeData(dataId: DataId, force = false): boolean {
    const e = this.data.has(dataId) ? this.entry(dataId) : null;
    const deleted = super.disposeData(dataId, force);
    if (e != null && !this.data.has(dataId) && e.device != null && !this.disposedBase) {
      this.exec.release(e.device);
      e.device = null;
    }
    return deleted;
  }

  override memory() {
    return {...super.memory(), numBytesInGPU: this.exec.stats().inUseBytes, numBytesInGPUAllocated: this.exec.stats().heldBytes};
  }

  override floatPrecision(): 16|32 {
    return 32;
  }

  override dispose() {
    if (this.disposedBase) return;
    this.disposedBase = true;
    this.exec.dispose();
    super.dispose();
  }
}

/** An entry whose values are on the device; `values` brings them to the host on first read. */
class DeviceEntry {
  refCount = 1;
  host: BackendValues|null = null;
  constructor(private readonly owner: CudaBase, public device: CudaBuffer|null, readonly dtype: DataType, private readonly size: number) {}

  get values(): BackendValues {
    if (this.host == null) {
      if (this.device == null) throw new Error('tfjs-backend-stof (cuda): read of a disposed tensor');
      this.host = this.owner.download(this.device, this.dtype, this.size);
    }
    return this.host;
  }
  set values(v: BackendValues) {
    this.host = v;
  }
}
