// A pooling allocator over cuMemAlloc: freed blocks go to a free list per size class and are
// reused by the next request of that class, so a forward pass that runs again allocates nothing.
// Classes: multiples of 512 B up to 64 KiB, then eight steps per power of two (at most 12.5%
// padding). Memory goes back to the driver on trim() (e.g. when an allocation fails) and dispose().
import type {CudaDevice, DevicePtr} from './cuda_device';

export interface Block {
  ptr: DevicePtr;
  /** The size class (bytes actually allocated). */
  bytes: number;
}

/** The size class of a request of `bytes`. */
export function sizeClass(bytes: number): number {
  if (bytes <= 0) return 512;
  if (bytes <= 65536) return Math.ceil(bytes / 512) * 512;
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 3);
  return Math.ceil(bytes / step) * step;
}

export class DeviceAllocator {
  private readonly free = new Map<number, DevicePtr[]>();
  private readonly live = new Map<DevicePtr, number>();
  /** Bytes held from the driver (in use + pooled). */
  held = 0;
  inUse = 0;

  constructor(private readonly device: CudaDevice) {}

  alloc(bytes: number): Block {
    const cls = sizeClass(bytes);
    const pooled = this.free.get(cls);
    let ptr = pooled?.pop();
    if (ptr == null) {
      try {
        ptr = this.device.alloc(cls);
      } catch (e) {
        if (this.held === this.inUse) throw e;
        this.trim();  // out of memory with blocks pooled: give them back and try once more
        ptr = this.device.alloc(cls);
      }
      this.held += cls;
    }
    this.live.set(ptr, cls);
    this.inUse += cls;
    return {ptr, bytes: cls};
  }

  /** Returns a block to its pool. Work already queued on the stream that reads it still runs first (one stream). */
  release(ptr: DevicePtr) {
    const cls = this.live.get(ptr);
    if (cls == null) throw new Error(`DeviceAllocator: release of 0x${ptr.toString(16)}, which is not allocated here (double free?)`);
    this.live.delete(ptr);
    this.inUse -= cls;
    let list = this.free.get(cls);
    if (list == null) this.free.set(cls, list = []);
    list.push(ptr);
  }

  /** Frees every pooled block (waits for the stream: queued kernels may still read them). */
  trim() {
    this.device.synchronize();
    for (const [cls, list] of this.free) {
      for (const p of list) { this.device.free(p); this.held -= cls; }
    }
    this.free.clear();
  }

  dispose() {
    this.trim();
    for (const [p, cls] of this.live) { this.device.free(p); this.held -= cls; }
    this.live.clear();
    this.inUse = 0;
  }
}
