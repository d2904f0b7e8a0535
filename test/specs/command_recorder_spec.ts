// The WebGPU command recorder (src/kernels/webgpu/command_recorder.ts) on a real device: what it
// keeps, what it repeats and in which order, what it refuses, and its pins on the pool.
import * as tf from '@tensorflow/tfjs-core';

import {CommandRecorder, encodeRecording, pinsOf} from '../../src/kernels/webgpu/command_recorder';
import {StofBackend} from '../../src/public_api';

import {useStof} from './node_fixtures';

const STORAGE = 0x80 | 0x04 | 0x08;  // STORAGE | COPY_SRC | COPY_DST

/** A pool like the base's: buffers by size and usage, handed out again once released. */
class TestPool {
  readonly free: GPUBuffer[] = [];
  readonly made: GPUBuffer[] = [];
  constructor(private readonly device: GPUDevice) {}
  acquireBuffer(size: number, usage: number): GPUBuffer {
    const i = this.free.findIndex(b => b.size === size && b.usage === usage);
    if (i >= 0) return this.free.splice(i, 1)[0];
    const b = this.device.createBuffer({size, usage});
    this.made.push(b);
    return b;
  }
  releaseBuffer(buffer: GPUBuffer) { this.free.push(buffer); }
  destroy() { this.made.forEach(b => b.destroy()); }
}

async function readBack(device: GPUDevice, src: GPUBuffer): Promise<number[]> {
  const dst = device.createBuffer({size: src.size, usage: 0x01 | 0x08});  // MAP_READ | COPY_DST
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, dst, 0, src.size);
  device.queue.submit([enc.finish()]);
  await dst.mapAsync(0x0001);  // GPUMapMode.READ
  const out = Array.from(new Float32Array(dst.getMappedRange().slice(0)));
  dst.unmap();
  dst.destroy();
  return out;
}

describe('CommandRecorder', () => {
  let device: GPUDevice;
  beforeAll(async () => {
    if (!await useStof()) return;
    const backend = tf.backend() as StofBackend;
    if (backend.baseName !== 'webgpu') return;
    device = (backend.base as unknown as {device: GPUDevice}).device;
  });
  const f32 = (...v: number[]) => new Float32Array(v);

  it('keeps a fresh buffer written once, repeats other writes and copies in order, on a new encoder', async () => {
    if (device == null) { pending('no WebGPU base'); return; }
    const pool = new TestPool(device);
    const pins = pinsOf(pool);
    const rec = new CommandRecorder(device, pool, pins);
    const a = pool.acquireBuffer(16, STORAGE);   // fresh, written once: kept
    const b = pool.acquireBuffer(16, STORAGE);   // written twice: both writes repeated
    const c = pool.acquireBuffer(16, STORAGE), d = pool.acquireBuffer(16, STORAGE);
    device.queue.writeBuffer(a, 0, f32(1, 2, 3, 4));
    device.queue.writeBuffer(b, 0, f32(5, 6, 7, 8));
    let enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(b, 0, c, 0, 16);
    enc.copyBufferToBuffer(a, 0, d, 8, 8);
    device.queue.submit([enc.finish()]);
    device.queue.writeBuffer(b, 4, f32(9));
    enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(b, 0, d, 0, 8);
    device.queue.submit([enc.finish()]);
    const r = rec.stop()!;
    expect(r).not.toBeNull();
    expect(r.commands.map(x => x.op)).toEqual(['write', 'copy', 'copy', 'write', 'copy']);
    expect(r.upload!.size).toBe(20);
    expect(await readBack(device, c)).toEqual([5, 6, 7, 8]);
    expect(await readBack(device, d)).toEqual([5, 9, 1, 2]);
    // Clobber what the commands store; the replay restores it (and `a` keeps its kept write).
    for (const x of [b, c, d]) device.queue.writeBuffer(x, 0, f32(0, 0, 0, 0));
    enc = device.createCommandEncoder();
    encodeRecording(enc, r);
    device.queue.submit([enc.finish()]);
    expect(await readBack(device, c)).toEqual([5, 6, 7, 8]);
    expect(await readBack(device, d)).toEqual([5, 9, 1, 2]);
    expect(await readBack(device, b)).toEqual([5, 9, 7, 8]);
    // Pinned buffers released to the pool are parked until the pins go.
    expect(pins.stats().pinned).toBe(4);
    pool.releaseBuffer(c);
    expect(pool.free).toEqual([]);
    expect(pins.stats().parked).toBe(1);
    pins.unpin(r.pinned);
    expect(pins.stats()).toEqual({pinned: 0, parked: 0, parkedBytes: 0});
    expect(pool.free).toEqual([c]);
    r.upload!.destroy();
    pool.destroy();
  });

  it('refuses work a replay cannot repeat, says what, restores the device and releases its pins', async () => {
    if (device == null) { pending('no WebGPU base'); return; }
    const pool = new TestPool(device);
    const pins = pinsOf(pool);
    const rec = new CommandRecorder(device, pool, pins);
    const a = pool.acquireBuffer(16, STORAGE), b = pool.acquireBuffer(16, STORAGE);
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(a, 0, b, 0, 16);
    device.queue.submit([enc.finish()]);
    const tex = device.createTexture({size: [1, 1], format: 'rgba8unorm', usage: 0x02});  // COPY_DST
    expect(() => device.queue.writeTexture({texture: tex}, new Uint8Array(4), {bytesPerRow: 4}, [1, 1])).toThrowError(/queue\.writeTexture/);
    expect(rec.stop()).toBeNull();
    expect(rec.refused).toBe('queue.writeTexture');
    expect(pins.stats()).toEqual({pinned: 0, parked: 0, parkedBytes: 0});
    // The device is itself again: a write to a texture goes through.
    device.queue.writeTexture({texture: tex}, new Uint8Array(4), {bytesPerRow: 4}, [1, 1]);
    expect(Object.prototype.hasOwnProperty.call(device.queue, 'writeTexture')).toBe(false);
    expect(Object.prototype.hasOwnProperty.call(device, 'createCommandEncoder')).toBe(false);
    tex.destroy();
    pool.destroy();
  });

  it('refuses a bind group made before the recording by code it did not watch', async () => {
    if (device == null) { pending('no WebGPU base'); return; }
    const pool = new TestPool(device);
    const buffer = pool.acquireBuffer(16, STORAGE);
    const module = device.createShaderModule({code: '@group(0) @binding(0) var<storage, read_write> x: array<f32>;\n' +
                                                    '@compute @workgroup_size(1) fn main() { x[0] = x[0] + 1.0; }'});
    const pipeline = device.createComputePipeline({layout: 'auto', compute: {module, entryPoint: 'main'}});
    const group = device.createBindGroup({layout: pipeline.getBindGroupLayout(0), entries: [{binding: 0, resource: {buffer}}]});
    const rec = new CommandRecorder(device, pool, pinsOf(pool));
    const pass = device.createCommandEncoder().beginComputePass();
    pass.setPipeline(pipeline);
    expect(() => pass.setBindGroup(0, group)).toThrowError(/bind group made before the recording/);
    pass.end();
    expect(rec.stop()).toBeNull();
    // A group made while recording is known: its dispatch is kept and repeated.
    const rec2 = new CommandRecorder(device, pool, pinsOf(pool));
    const group2 = device.createBindGroup({layout: pipeline.getBindGroupLayout(0), entries: [{binding: 0, resource: {buffer}}]});
    const enc = device.createCommandEncoder();
    const p2 = enc.beginComputePass();
    p2.setPipeline(pipeline);
    p2.setBindGroup(0, group2);
    p2.dispatchWorkgroups(1);
    p2.end();
    device.queue.submit([enc.finish()]);
    const r = rec2.stop()!;
    expect(r.dispatches).toBe(1);
    for (let i = 0; i < 3; i++) {
      const e = device.createCommandEncoder();
      encodeRecording(e, r);
      device.queue.submit([e.finish()]);
    }
    expect((await readBack(device, buffer))[0]).toBe(4);
    pinsOf(pool).unpin(r.pinned);
    pool.destroy();
  });
});
