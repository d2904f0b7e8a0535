// A pooling allocator over cuMemAlloc: freed blocks go to a free list per size class and are
// reused by the next request of that class, so a forward pass that runs again allocates nothing.
// Classes: multiples of 512 B up to 64 KiB, then eight steps per power of two (at most 12.5%
// padding). Memory goes back to the driver on trim() (e.g. when an allocation fails) and dispose().
// A CUDA graph bakes the addresses it was captured with into its launches: the blocks it uses are
// pinned, and a pinned block that is released is parked (kept from the pool) until unpinned.
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
  /** Pin counts of blocks that CUDA graphs use; released ones among them wait in `parked` (by size class). */
  private readonly pins = new Map<DevicePtr, number>();
  private readonly parked = new Map<DevicePtr, number>();
  /** Bytes held from the driver (in use + pooled + parked). */
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
    if (this.pins.has(ptr)) {
      this.parked.set(ptr, cls);
      return;
    }
    this.pool(ptr, cls);
  }

  private pool(ptr: DevicePtr, cls: number) {
    let list = this.free.get(cls);
    if (list == null) this.free.set(cls, list = []);
    list.push(ptr);
  }

  /**
   * Pins the blocks that hold these addresses (a block's base or any byte inside it; addresses of no
   * block here, such as a library's workspace, are skipped). Pooled ones leave the pool at once.
   * Returns the blocks, for unpin().
   */
  pin(addresses: Iterable<DevicePtr>): DevicePtr[] {
    const blocks: Array<[DevicePtr, number]> = [...this.live, ...this.parked];
    for (const [cls, list] of this.free) for (const p of list) blocks.push([p, cls]);
    blocks.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const found = new Set<DevicePtr>();
    for (const a of addresses) {
      let lo = 0, hi = blocks.length - 1;
      while (lo < hi) {  // the last block that starts at or before `a`
        const mid = (lo + hi + 1) >> 1;
        if (blocks[mid][0] <= a) lo = mid; else hi = mid - 1;
      }
      const b = blocks[lo];
      if (b != null && b[0] <= a && a < b[0] + BigInt(b[1])) found.add(b[0]);
    }
    for (const p of found) {
      this.pins.set(p, (this.pins.get(p) ?? 0) + 1);
      if (this.live.has(p) || this.parked.has(p)) continue;
      for (const [cls, list] of this.free) {
        const i = list.indexOf(p);
        if (i >= 0) { list.splice(i, 1); this.parked.set(p, cls); break; }
      }
    }
    return [...found];
  }

  /** Drops one pin of each block; a released block with no pin left goes back to its pool. */
  unpin(blocks: DevicePtr[]) {
    for (const p of blocks) {
      const n = (this.pins.get(p) ?? 0) - 1;
      if (n > 0) { this.pins.set(p, n); continue; }
      this.pins.delete(p);
      const cls = this.parked.get(p);
      if (cls != null) { this.parked.delete(p); this.pool(p, cls); }
    }
  }

  /** Bytes of released blocks kept for CUDA graphs. */
  get parkedBytes(): number {
    let n = 0;
    for (const cls of this.parked.values()) n += cls;
    return n;
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
    for (const [p, cls] of [...this.live, ...this.parked]) { this.device.free(p); this.held -= cls; }
    this.live.clear();
    this.parked.clear();
    this.pins.clear();
    this.inUse = 0;
  }
}
