// Times one compute pass of GPU work: timestamp queries where the device has 'timestamp-query'
// (GPU time of the pass alone), otherwise the wall time from submit to onSubmittedWorkDone (which
// includes the submission latency). Used by the device microbenchmarks and by stage-2 runners.

/** WebGPU usage bits (numbers, so this works before Dawn's globals are installed). */
export const USAGE = {MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80, QUERY_RESOLVE: 0x200} as const;
const MAP_MODE_READ = 0x1;

export type TimingMethod = 'timestamp'|'wall';

export interface GpuTimer {
  /** How `time` measures: device timestamps around the pass, or wall time around submit + done. */
  readonly method: TimingMethod;
  /**
   * Encodes `encode` into one compute pass of its own command buffer, submits it, waits for it and
   * returns its duration in ms. Work already queued on the device is drained first, so it is not
   * counted (callers sharing tfjs-backend-webgpu's device submit the backend's pending encoder first).
   */
  time(encode: (pass: GPUComputePassEncoder) => void): Promise<number>;
  /** Frees the query set and readback buffers. */
  dispose(): void;
}

const nowMs = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

export function createGpuTimer(device: GPUDevice, opts: {wallOnly?: boolean} = {}): GpuTimer {
  const timestamps = !opts.wallOnly && device.features.has('timestamp-query');
  let querySet: GPUQuerySet|null = null, resolve: GPUBuffer|null = null, read: GPUBuffer|null = null;
  if (timestamps) {
    querySet = device.createQuerySet({type: 'timestamp', count: 2, label: 'stof-timer'});
    resolve = device.createBuffer({size: 16, usage: USAGE.QUERY_RESOLVE | USAGE.COPY_SRC, label: 'stof-timer-resolve'});
    read = device.createBuffer({size: 16, usage: USAGE.MAP_READ | USAGE.COPY_DST, label: 'stof-timer-read'});
  }
  return {
    method: timestamps ? 'timestamp' : 'wall',
    async time(encode) {
      await device.queue.onSubmittedWorkDone();
      const encoder = device.createCommandEncoder({label: 'stof-timer'});
      const pass = encoder.beginComputePass(
          querySet ? {timestampWrites: {querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1}} : {});
      encode(pass);
      pass.end();
      if (querySet) {
        encoder.resolveQuerySet(querySet, 0, 2, resolve!, 0);
        encoder.copyBufferToBuffer(resolve!, 0, read!, 0, 16);
      }
      const t0 = nowMs();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      const wall = nowMs() - t0;
      if (!querySet) return wall;
      await read!.mapAsync(MAP_MODE_READ);
      const [begin, end] = new BigUint64Array(read!.getMappedRange().slice(0));
      read!.unmap();
      const ms = Number(end - begin) / 1e6;
      // Some implementations write zeros (or wrap) for unsupported or quantized queries: use the wall time then.
      return ms > 0 && ms <= wall * 2 + 1 ? ms : wall;
    },
    dispose() {
      querySet?.destroy();
      resolve?.destroy();
      read?.destroy();
    },
  };
}

/** Median of `repeats` timings of the same work (odd counts give a measured value). */
export async function medianTime(timer: GpuTimer, encode: (pass: GPUComputePassEncoder) => void, repeats: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < Math.max(1, repeats); i++) times.push(await timer.time(encode));
  times.sort((a, b) => a - b);
  return times[(times.length - 1) >> 1];
}

/**
 * Milliseconds per repetition of `encode`, repeating it within one pass until the pass lasts at
 * least `minMs` (default 1 ms). For stage-2 runners timing kernels shorter than that: timestamps are
 * quantized (Dawn rounds them to ~65 µs unless its timestamp_quantization toggle is off) and wall
 * time includes the submission latency.
 */
export async function timePerRepetition(timer: GpuTimer, encode: (pass: GPUComputePassEncoder) => void,
                                        opts: {minMs?: number, maxRepetitions?: number} = {}): Promise<number> {
  const minMs = opts.minMs ?? 1, max = opts.maxRepetitions ?? 4096;
  for (let n = 1; ; ) {
    const ms = await timer.time(pass => { for (let i = 0; i < n; i++) encode(pass); });
    if (ms >= minMs || n >= max) return ms / n;
    n = Math.min(max, n * Math.min(64, Math.max(2, Math.ceil(1.2 * minMs / Math.max(ms, 1e-3)))));
  }
}
