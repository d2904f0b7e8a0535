// Records the GPU commands of one forward on tfjs-backend-webgpu's device, its own and 'stof''s,
// while they run as usual: compute passes (pipelines, bind groups, dispatches), buffer copies and
// clears in submit order, and queue.writeBuffer where a replay must repeat it. WebGPU has no
// reusable command buffers for compute, so a replay encodes the recorded commands again
// (src/backend/webgpu_graph.ts). Every buffer a recorded command uses is pinned: while a pin lasts
// the base's pool does not hand it out again (a released one is parked), so the recording stays
// valid; what cannot be replayed (textures, a read back to the host, timestamp queries) is refused.

/** Thrown while recording for work a replay could not repeat; the recording is dropped. */
export class RecordRefused extends Error {}

/** One command inside a compute pass. */
type PassCmd =
  | {op: 'pipeline', pipeline: GPUComputePipeline}
  | {op: 'bind', index: number, group: GPUBindGroup|null, offsets?: number[]}
  | {op: 'dispatch', x: number, y: number, z: number}
  | {op: 'indirect', buffer: GPUBuffer, offset: number};

/** A recorded command in submit order; `write` copies bytes kept in the recording's upload buffer. */
export type Recorded =
  | {op: 'pass', cmds: PassCmd[]}
  | {op: 'copy', src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number}
  | {op: 'clear', buffer: GPUBuffer, offset: number, size?: number}
  | {op: 'write', dst: GPUBuffer, dstOffset: number, size: number, from: number};

interface Pool {
  acquireBuffer(size: number, usage: number, mappedAtCreation?: boolean, reuse?: boolean): GPUBuffer;
  releaseBuffer(buffer: GPUBuffer, reuse?: boolean): void;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Fn = (this: any, ...args: any[]) => any;

/** Buffers of each bind group, for the pins (a bind group's entries cannot be asked for). */
const groupBuffers = new WeakMap<GPUBindGroup, GPUBuffer[]|null>();

/** Notes a bind group's buffers (null: it binds something other than buffers, which a recording refuses). */
export function noteBindGroup(group: GPUBindGroup, entries: Iterable<GPUBindGroupEntry>) {
  const buffers: GPUBuffer[] = [];
  for (const e of entries) {
    const r = e.resource as {buffer?: GPUBuffer};
    const b = r != null && typeof r === 'object' && 'buffer' in r ? r.buffer : (isBuffer(r) ? r as unknown as GPUBuffer : null);
    if (b == null) {
      groupBuffers.set(group, null);
      return;
    }
    buffers.push(b);
  }
  groupBuffers.set(group, buffers);
}

function isBuffer(x: unknown): boolean {
  return typeof GPUBuffer !== 'undefined' && x instanceof GPUBuffer;
}

/**
 * Pins of one base's pool, shared by every recording on it: a pinned buffer that the pool is given
 * back is parked, and goes back to the pool when its last pin goes.
 */
class Pins {
  private readonly count = new Map<GPUBuffer, number>();
  private readonly parked = new Map<GPUBuffer, boolean>();  // buffer -> the release's `reuse`
  private readonly release: (buffer: GPUBuffer, reuse?: boolean) => void;
  /** The recording under way: buffers only it pins go back to it for reuse within the forward. */
  active: CommandRecorder|null = null;

  constructor(pool: Pool) {
    const release = pool.releaseBuffer.bind(pool);
    this.release = release;
    pool.releaseBuffer = (buffer: GPUBuffer, reuse = true) => {
      if (!this.count.has(buffer)) release(buffer, reuse);
      else if (!(reuse && this.count.get(buffer) === 1 && this.active?.recycle(buffer))) this.parked.set(buffer, reuse);
    };
  }

  pin(buffers: Iterable<GPUBuffer>) {
    for (const b of buffers) this.count.set(b, (this.count.get(b) ?? 0) + 1);
  }

  park(buffer: GPUBuffer) {
    this.parked.set(buffer, true);
  }

  unpin(buffers: Iterable<GPUBuffer>) {
    for (const b of buffers) {
      const n = (this.count.get(b) ?? 1) - 1;
      if (n > 0) { this.count.set(b, n); continue; }
      this.count.delete(b);
      const reuse = this.parked.get(b);
      if (reuse != null) {
        this.parked.delete(b);
        this.release(b, reuse);
      }
    }
  }

  /** Parked buffers and their bytes (held by recordings, out of the pool). */
  stats() {
    let bytes = 0;
    for (const b of this.parked.keys()) bytes += b.size;
    return {pinned: this.count.size, parked: this.parked.size, parkedBytes: bytes};
  }
}

const PINS = Symbol.for('tfjs-backend-stof.pins');

export function pinsOf(pool: Pool): Pins {
  const p = pool as Pool & {[PINS]?: Pins};
  return p[PINS] ??= new Pins(pool);
}

/** A finished recording: the commands, the buffers they use (pinned), the bytes of replayed writes. */
export interface Recording {
  commands: Recorded[];
  pinned: GPUBuffer[];
  upload: GPUBuffer|null;
  dispatches: number;
}

type WriteEntry = Extract<Recorded, {op: 'write'}> & {bytes: Uint8Array, first: boolean};

/**
 * Watches `device` (its encoders, passes, queue and bind groups) and `pool` from construction
 * until `stop()`. Calls pass through unchanged; the first refusal throws RecordRefused. Buffers
 * are pinned when a command first uses them, so none goes back to the pool for other data.
 */
export class CommandRecorder {
  private readonly commands: Array<Recorded|WriteEntry> = [];
  private readonly pinned = new Set<GPUBuffer>();
  /** Handed out by the pool during the recording and not yet used by a command: a first write to one may be kept instead of repeated. */
  private readonly fresh = new Set<GPUBuffer>();
  /** Buffers released during the recording and handed out again (their content changes within the forward). */
  private readonly reused = new Set<GPUBuffer>();
  /** Writes, copies and clears per destination. */
  private readonly stores = new Map<GPUBuffer, number>();
  /** Released buffers only this recording pins, by size and usage, for the forward's later allocations. */
  private readonly free = new Map<string, GPUBuffer[]>();
  private dispatches = 0;
  private readonly pending = new WeakMap<GPUCommandBuffer, Recorded[]>();
  private readonly restore: Array<() => void> = [];
  private stopped = false;
  refused: string|null = null;

  constructor(private readonly device: GPUDevice, pool: Pool, private readonly pins: Pins) {
    const self = this;
    pins.active = this;
    this.patch(pool, 'acquireBuffer', (orig) => function(this: Pool, size: number, usage: number, mapped?: boolean, reuse?: boolean) {
      const again = reuse !== false ? self.free.get(`${size}|${usage}`)?.pop() : undefined;
      if (again != null) {
        self.reused.add(again);
        return again;
      }
      const b = orig.call(this, size, usage, mapped, reuse);
      if (!self.pinned.has(b)) self.fresh.add(b);
      return b;
    });
    this.patch(device, 'createBindGroup', (orig) => function(this: GPUDevice, desc: GPUBindGroupDescriptor) {
      const g = orig.call(this, desc);
      noteBindGroup(g, desc.entries);
      return g;
    });
    this.patch(device, 'createCommandEncoder', (orig) => function(this: GPUDevice, desc?: GPUCommandEncoderDescriptor) {
      return self.watchEncoder(orig.call(this, desc));
    });
    const queue = device.queue;
    this.patch(queue, 'submit', (orig) => function(this: GPUQueue, buffers: Iterable<GPUCommandBuffer>) {
      const list = [...buffers];
      for (const cb of list) {
        const cmds = self.pending.get(cb);
        if (cmds == null) self.refuse('a command buffer encoded before the recording');
        self.commands.push(...cmds!);
      }
      return orig.call(this, list);
    });
    this.patch(queue, 'writeBuffer', (orig) => function(this: GPUQueue, buffer: GPUBuffer, offset: number, data: BufferSource, dataOffset?: number, size?: number) {
      self.write(buffer, offset, data, dataOffset, size);
      return orig.call(this, buffer, offset, data, dataOffset, size);
    });
    for (const name of ['writeTexture', 'copyExternalImageToTexture'] as const) this.refuseOn(queue, name, `queue.${name}`);
  }

  /** Replaces obj[key] until the recording ends (an own property goes back, a prototype's is uncovered). */
  private patch(obj: object, key: string, make: (orig: Fn) => Fn) {
    const o = obj as Record<string, unknown>;
    const own = Object.prototype.hasOwnProperty.call(o, key);
    const prev = o[key];
    o[key] = make(prev as Fn);
    this.restore.push(() => {
      if (own) o[key] = prev; else delete o[key];
    });
  }

  private refuseOn(obj: object, key: string, what: string) {
    if (typeof (obj as Record<string, unknown>)[key] !== 'function') return;
    const self = this;
    this.patch(obj, key, () => function() { self.refuse(what); });
  }

  /** Work a replay cannot repeat: the recording is dropped (the error reaches the caller of the kernel). */
  refuse(what: string): never {
    this.refused ??= what;
    throw new RecordRefused(what);
  }

  /** A buffer the pool is given back that only this recording pins: kept for the forward's next allocation of its size. */
  recycle(buffer: GPUBuffer): boolean {
    if (this.stopped || !this.pinned.has(buffer)) return false;
    const key = `${buffer.size}|${buffer.usage}`;
    let list = this.free.get(key);
    if (list == null) this.free.set(key, list = []);
    list.push(buffer);
    return true;
  }

  private use(buffers: Iterable<GPUBuffer>) {
    for (const b of buffers) {
      if (!this.pinned.has(b)) {
        this.pinned.add(b);
        this.pins.pin([b]);
      }
      this.fresh.delete(b);  // used by a command: a later write to it is part of the forward
    }
  }

  private stored(b: GPUBuffer) {
    this.stores.set(b, (this.stores.get(b) ?? 0) + 1);
  }

  private watchEncoder(enc: GPUCommandEncoder): GPUCommandEncoder {
    const self = this;
    const cmds: Recorded[] = [];
    const e = enc as unknown as Record<string, unknown>;
    const call = (name: string) => (e[name] as (...a: unknown[]) => unknown).bind(enc);
    const begin = call('beginComputePass'), copy = call('copyBufferToBuffer'), clear = call('clearBuffer'), finish = call('finish');
    e['beginComputePass'] = (desc?: GPUComputePassDescriptor) => {
      if (desc?.timestampWrites != null) self.refuse('a timed compute pass');
      const pass = begin(desc) as GPUComputePassEncoder;
      const rec: PassCmd[] = [];
      cmds.push({op: 'pass', cmds: rec});
      return self.watchPass(pass, rec);
    };
    e['copyBufferToBuffer'] = (src: GPUBuffer, a: unknown, b: unknown, c?: unknown, d?: unknown) => {
      // (src, srcOffset, dst, dstOffset, size), or the newer (src, dst, size?)
      const [srcOffset, dst, dstOffset, size] = isBuffer(a) ? [0, a as GPUBuffer, 0, (b as number|undefined) ?? (a as GPUBuffer).size] :
                                                              [a as number, b as GPUBuffer, c as number, d as number];
      self.use([src, dst]);
      self.stored(dst);
      cmds.push({op: 'copy', src, srcOffset, dst, dstOffset, size});
      return copy(src, srcOffset, dst, dstOffset, size);
    };
    e['clearBuffer'] = (buffer: GPUBuffer, offset = 0, size?: number) => {
      self.use([buffer]);
      self.stored(buffer);
      cmds.push({op: 'clear', buffer, offset, size});
      return size == null ? clear(buffer, offset) : clear(buffer, offset, size);
    };
    for (const name of ['beginRenderPass', 'copyBufferToTexture', 'copyTextureToBuffer', 'copyTextureToTexture', 'resolveQuerySet', 'writeTimestamp']) {
      if (typeof e[name] === 'function') e[name] = () => self.refuse(`commandEncoder.${name}`);
    }
    e['finish'] = (desc?: GPUCommandBufferDescriptor) => {
      const cb = finish(desc) as GPUCommandBuffer;
      self.pending.set(cb, cmds);
      return cb;
    };
    return enc;
  }

  private watchPass(pass: GPUComputePassEncoder, rec: PassCmd[]): GPUComputePassEncoder {
    const self = this;
    const p = pass as unknown as Record<string, unknown>;
    const call = (name: string) => (p[name] as (...a: unknown[]) => unknown).bind(pass);
    const setPipeline = call('setPipeline'), setBindGroup = call('setBindGroup'), dispatch = call('dispatchWorkgroups'),
          indirect = call('dispatchWorkgroupsIndirect');
    p['setPipeline'] = (pipeline: GPUComputePipeline) => {
      rec.push({op: 'pipeline', pipeline});
      return setPipeline(pipeline);
    };
    p['setBindGroup'] = (index: number, group: GPUBindGroup|null, offsets?: Iterable<number>, ...rest: unknown[]) => {
      if (rest.length > 0) self.refuse('setBindGroup with offsets in a typed array');
      if (group != null) {
        const buffers = groupBuffers.get(group);
        if (buffers === undefined) self.refuse('a bind group made before the recording by other code');
        if (buffers === null) self.refuse('a bind group of textures or samplers');
        self.use(buffers!);
      }
      const off = offsets != null ? [...offsets] : undefined;
      rec.push({op: 'bind', index, group, offsets: off});
      return off != null ? setBindGroup(index, group, off) : setBindGroup(index, group);
    };
    p['dispatchWorkgroups'] = (x: number, y = 1, z = 1) => {
      self.dispatches++;
      rec.push({op: 'dispatch', x, y, z});
      return dispatch(x, y, z);
    };
    p['dispatchWorkgroupsIndirect'] = (buffer: GPUBuffer, offset: number) => {
      self.dispatches++;
      self.use([buffer]);
      rec.push({op: 'indirect', buffer, offset});
      return indirect(buffer, offset);
    };
    return pass;
  }

  private write(buffer: GPUBuffer, offset: number, data: BufferSource, dataOffset = 0, size?: number) {
    const view = ArrayBuffer.isView(data) ? data : null;
    const unit = view != null && 'BYTES_PER_ELEMENT' in view ? (view as unknown as {BYTES_PER_ELEMENT: number}).BYTES_PER_ELEMENT : 1;
    const whole = view != null ? view.byteLength : (data as ArrayBuffer).byteLength;
    const start = (view != null ? view.byteOffset : 0) + dataOffset * unit;
    const bytes = size != null ? size * unit : whole - dataOffset * unit;
    const first = this.fresh.has(buffer);
    this.use([buffer]);
    this.stored(buffer);
    const copy = new Uint8Array((view != null ? view.buffer : data as ArrayBuffer).slice(start, start + bytes));
    this.commands.push({op: 'write', dst: buffer, dstOffset: offset, size: bytes, from: 0, bytes: copy, first});
  }

  /** Ends the recording (restores the device): the commands, pinned, or null if it was refused. */
  stop(): Recording|null {
    if (this.stopped) throw new Error('stopped twice');
    this.end();
    if (this.refused != null) {
      this.pins.unpin(this.pinned);
      return null;
    }
    // A write into a buffer fresh from the pool, before any command used it, that nothing else
    // stores into during the forward (a uniform, an upload), holds while the buffer is pinned:
    // kept, not repeated. Every other write is repeated in order, from one upload buffer.
    const commands: Recorded[] = [];
    const writes: WriteEntry[] = [];
    let total = 0;
    for (const c of this.commands) {
      if (c.op !== 'write') { commands.push(c); continue; }
      const w = c as WriteEntry;
      if (w.first && this.stores.get(w.dst) === 1 && !this.reused.has(w.dst)) continue;
      w.from = total;
      total += Math.ceil(w.size / 4) * 4;
      writes.push(w);
      commands.push({op: 'write', dst: w.dst, dstOffset: w.dstOffset, size: w.size, from: w.from});
    }
    let upload: GPUBuffer|null = null;
    if (total > 0) {
      upload = this.device.createBuffer({size: total, usage: GPUBufferUsage.COPY_SRC, mappedAtCreation: true, label: 'stof-graph-writes'});
      const bytes = new Uint8Array(upload.getMappedRange());
      for (const w of writes) bytes.set(w.bytes, w.from);
      upload.unmap();
    }
    return {commands: merged(commands), pinned: [...this.pinned], upload, dispatches: this.dispatches};
  }

  /** Ends a recording that is not kept (its pins go). */
  abort() {
    if (this.stopped) return;
    this.end();
    this.pins.unpin(this.pinned);
  }

  private end() {
    this.stopped = true;
    if (this.pins.active === this) this.pins.active = null;
    while (this.restore.length) this.restore.pop()!();
    // Released buffers held for reuse: parked with the recording's pins (unpinned: back to the pool).
    for (const list of this.free.values()) list.forEach(b => this.pins.park(b));
    this.free.clear();
  }
}

/** Consecutive passes as one (dispatches in a pass are ordered like passes are; fewer passes to encode). */
function merged(commands: Recorded[]): Recorded[] {
  const out: Recorded[] = [];
  for (const c of commands) {
    const last = out[out.length - 1];
    if (c.op === 'pass' && last?.op === 'pass') last.cmds.push(...c.cmds); else out.push(c.op === 'pass' ? {op: 'pass', cmds: [...c.cmds]} : c);
  }
  return out.filter(c => c.op !== 'pass' || c.cmds.some(x => x.op === 'dispatch' || x.op === 'indirect'));
}

/** Encodes a recording into `enc` (one pass per recorded run of passes). */
export function encodeRecording(enc: GPUCommandEncoder, r: Recording) {
  for (const c of r.commands) {
    switch (c.op) {
      case 'pass': {
        const pass = enc.beginComputePass();
        for (const x of c.cmds) {
          if (x.op === 'pipeline') pass.setPipeline(x.pipeline);
          else if (x.op === 'bind') { if (x.offsets) pass.setBindGroup(x.index, x.group, x.offsets); else pass.setBindGroup(x.index, x.group); }
          else if (x.op === 'dispatch') pass.dispatchWorkgroups(x.x, x.y, x.z);
          else pass.dispatchWorkgroupsIndirect(x.buffer, x.offset);
        }
        pass.end();
        break;
      }
      case 'copy': enc.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.size); break;
      case 'clear': if (c.size == null) enc.clearBuffer(c.buffer, c.offset); else enc.clearBuffer(c.buffer, c.offset, c.size); break;
      case 'write': enc.copyBufferToBuffer(r.upload!, c.from, c.dst, c.dstOffset, c.size); break;
    }
  }
}
