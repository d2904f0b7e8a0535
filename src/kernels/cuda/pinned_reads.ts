// Page-locked host memory that device-to-host reads land in, handed to the app without a copy.
//
// Why: a read into a new (pageable) Float32Array costs more than the DMA itself — the driver stages
// it, and the fresh pages fault in — and each such array is external memory that pushes V8 into
// extra garbage collections. Measured on an H200 (bench/cuda_readback.mjs): 12.6 MB in 2.3 ms into a
// new array, 0.24 ms into page-locked memory.
//
// How: blocks come from the C allocator (libc through koffi: their lifetime is ours, not a CUDA
// context's, so a reset context never frees memory that the app still reads) and are registered
// with the driver (cuMemHostRegister). A read gets a block of its power-of-two size class and
// returns a typed array over an ArrayBuffer that views the block (koffi.view, exactly the read's
// bytes). The block comes back to the pool when that ArrayBuffer is garbage collected
// (FinalizationRegistry on the buffer, so an app that keeps only `.buffer` still owns the memory):
// a block is never written while anything can see it. Reads below MIN_BYTES, and reads while the
// pool holds its cap, use pageable memory (counted).
import {createRequire} from 'node:module';

import type {CudaDevice} from './cuda_device';

/** Smaller reads: the pageable path's fixed cost is small next to a block's bookkeeping. */
const MIN_BYTES = 64 << 10;
/** CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED */
const HOST_MEMORY_ALREADY_REGISTERED = 712;

interface Libc {
  alloc(bytes: number): unknown;
  free(ptr: unknown): void;
  view(ptr: unknown, bytes: number): ArrayBuffer;
}

let libc: Libc|null|undefined;

/** libc's aligned_alloc/free and koffi.view, or null where koffi or libc does not load. */
function hostLibc(): Libc|null {
  if (libc !== undefined) return libc;
  try {
    const koffi = createRequire(import.meta.url)('koffi');
    const lib = koffi.load('libc.so.6');
    const alignedAlloc = lib.func('void *aligned_alloc(size_t alignment, size_t size)');
    const free = lib.func('void free(void *ptr)');
    libc = {alloc: bytes => alignedAlloc(4096, bytes), free: p => free(p), view: (p, n) => koffi.view(p, n)};
  } catch {
    libc = null;
  }
  return libc;
}

/** FinalizationRegistry (ES2021; this package's lib setting is older). */
type Registry = new(cleanup: (held: Block) => void) => {register(target: object, held: Block): void};

interface Block {
  ptr: unknown;
  bytes: number;
  /** The registration's context epoch (a reset context forgets registrations). */
  epoch: number;
}

export interface PinnedStats {
  /** Blocks and bytes allocated (free + handed out). */
  blocks: number;
  bytes: number;
  /** Reads served from page-locked memory, of which from a recycled block. */
  pinnedReads: number;
  recycled: number;
  /** Reads that used pageable memory: below the size threshold, or with the pool at its cap. */
  pageableReads: number;
  atCap: number;
}

export class PinnedReads {
  private readonly free = new Map<number, Block[]>();
  private readonly registry = new (globalThis as unknown as {FinalizationRegistry: Registry})
      .FinalizationRegistry((b: Block) => this.returned(b));
  private epoch = 0;
  private disposed = false;
  private contextGone = false;
  private readonly counts = {blocks: 0, bytes: 0, pinnedReads: 0, recycled: 0, pageableReads: 0, atCap: 0};

  /** A pool over `device`, or null where the driver cannot register host memory or libc does not load. */
  static create(device: CudaDevice, capBytes: number): PinnedReads|null {
    const c = hostLibc();
    if (capBytes <= 0 || c == null || typeof device.api['cuMemHostRegister_v2'] !== 'function') return null;
    return new PinnedReads(device, c, capBytes);
  }

  private constructor(private readonly device: CudaDevice, private readonly c: Libc, private readonly capBytes: number) {}

  /**
   * An Int32Array (`int`) or Float32Array of `elements` over page-locked memory for the next device
   * read, or null (then the caller reads into pageable memory).
   */
  take(int: boolean, elements: number): Float32Array|Int32Array|null {
    const bytes = 4 * elements;
    if (this.disposed || bytes < MIN_BYTES) {
      this.counts.pageableReads++;
      return null;
    }
    const cls = 2 ** Math.ceil(Math.log2(bytes));
    let block = this.free.get(cls)?.pop() ?? null;
    if (block != null) {
      this.counts.recycled++;
    } else {
      if (this.counts.bytes + cls > this.capBytes) {
        this.counts.pageableReads++;
        this.counts.atCap++;
        return null;
      }
      const ptr = this.c.alloc(cls);
      if (ptr == null) return null;
      block = {ptr, bytes: cls, epoch: -1};
      this.counts.blocks++;
      this.counts.bytes += cls;
    }
    if (block.epoch !== this.epoch) {
      const api = this.device.api;
      let r = api['cuMemHostRegister_v2'](block.ptr, block.bytes, 0);
      // Memory that an earlier pool of this context freed while registered: register it afresh.
      if (r === HOST_MEMORY_ALREADY_REGISTERED) r = api['cuMemHostUnregister'](block.ptr) || api['cuMemHostRegister_v2'](block.ptr, block.bytes, 0);
      this.device.check(r, 'cuMemHostRegister_v2');
      block.epoch = this.epoch;
    }
    const buffer = this.c.view(block.ptr, bytes);
    this.registry.register(buffer, block);
    this.counts.pinnedReads++;
    return int ? new Int32Array(buffer) : new Float32Array(buffer);
  }

  private returned(block: Block) {
    if (this.disposed) {
      this.release(block);
      return;
    }
    const list = this.free.get(block.bytes) ?? [];
    list.push(block);
    this.free.set(block.bytes, list);
  }

  private release(block: Block) {
    // Unregister only while the registration's context lives (a reset or released one has forgotten it).
    if (block.epoch === this.epoch && !this.contextGone) this.device.api['cuMemHostUnregister'](block.ptr);
    this.c.free(block.ptr);
    this.counts.blocks--;
    this.counts.bytes -= block.bytes;
  }

  /** The device's context was reset: registrations are gone; blocks re-register when next used. */
  contextLost() {
    this.epoch++;
  }

  stats(): PinnedStats {
    return {...this.counts};
  }

  /**
   * Frees the blocks not in use; those the app still holds are freed when it lets them go. Call
   * before the context goes (`contextReleased` after it has).
   */
  dispose() {
    if (this.disposed) return;
    for (const list of this.free.values()) list.forEach(b => this.release(b));
    this.free.clear();
    this.disposed = true;
  }

  /** After the device's context is released: later frees skip the unregistration. */
  contextReleased() {
    this.contextGone = true;
  }
}
