// A replayed forward on the CUDA base launched as one CUDA graph. The trace's steps run once more
// with the stream captured (nothing runs: every launch, copy and cuBLASLt call is recorded) on
// fixed input buffers, which each later forward copies its inputs into; the graph writes fixed
// output buffers, which each forward copies out into new tensors (the app may still hold the last
// forward's). Every block the graph uses stays out of the pool while the graph lives (pinned), so a
// later forward is copies in, one cuGraphLaunch, copies out: no recording, planning or per-kernel
// launches on the host. Flag STOF_CUDA_GRAPH (default true) turns it off for A/B runs.
import {DataId, DataType, engine, env, Tensor} from '@tensorflow/tfjs-core';

import {CaptureRefused, CudaError, DevicePtr} from '../kernels/cuda/cuda_device';
import type {CudaBuffer} from '../kernels/cuda/executor';

import type {CudaBase} from './cuda_base';
import type {StofBackend} from './stof_backend';

if ((env() as unknown as {flagRegistry: Record<string, unknown>}).flagRegistry['STOF_CUDA_GRAPH'] == null) {
  env().registerFlag('STOF_CUDA_GRAPH', () => true);
}

export interface Shaped {
  shape: number[];
  dtype: DataType;
}

interface Fixed extends Shaped {
  id: DataId;
  buf: CudaBuffer;
}

/** Why forwards on this backend cannot be CUDA graphs now, or null. */
export function graphsOff(backend: StofBackend): string|null {
  if (backend.baseName !== 'cuda') return 'not on the CUDA base';
  if (!env().getBool('STOF_CUDA_GRAPH')) return 'STOF_CUDA_GRAPH is false';
  if (backend.profiler.timing) return 'profile() times kernels';
  if (!(backend.base as CudaBase).exec.device.graphs) return 'the CUDA driver has no graph API (CUDA 11.4 or later)';
  return null;
}

const shaped = (s: Shaped): Shaped => ({shape: s.shape, dtype: s.dtype});

export class CudaForwardGraph {
  private disposed = false;

  private constructor(private readonly backend: StofBackend, private readonly exec: bigint, private readonly inputs: Fixed[],
                      private readonly outputs: Fixed[], private readonly pins: DevicePtr[],
                      /** Kernels one launch of the graph runs. */
                      readonly launches: number) {}

  private get base() {
    return this.backend.base as CudaBase;
  }

  /**
   * This forward, and the graph of later ones. `run` runs the trace's steps on the given input ids
   * and returns the output ids (one reference each for the caller). It runs twice: on fixed input
   * buffers, which gives this forward's outputs and makes the state a capture meets (inputs only on
   * the device: kernels that ran on the host for host inputs take their device path, and upload the
   * constants that needs); then with the stream captured. The capture is declined, with the reason,
   * where the forward does work a capture cannot record (a read of device values, a copy from host
   * memory, a kernel on the host); nothing of the attempt is kept then.
   */
  static capture(backend: StofBackend, inputs: Tensor[], run: (ids: DataId[]) => DataId[], outputs: Shaped[]):
      {graph: CudaForwardGraph|null, declined?: string, out: Tensor[]} {
    const base = backend.base as CudaBase, exec = base.exec, device = exec.device;
    device.makeCurrent();
    backend.materializeAll();  // the app's pending work runs now, not in the graph
    const fixedIn = inputs.map(t => {
      const src = backend.cudaBuffer(t);
      const buf = exec.alloc(src.shape, src.dtype);
      device.copy(buf.ptr, src.ptr, buf.bytes);
      return {id: backend.wrapBase(base.adopt(buf, t.shape, t.dtype)), buf, shape: t.shape, dtype: t.dtype};
    });
    const fixedIds = fixedIn.map(f => f.id);
    let rehearsal: DataId[];
    try {
      rehearsal = run(fixedIds);
      backend.materialize(rehearsal);
    } catch (e) {
      fixedIds.forEach(id => backend.disposeData(id));
      throw e;
    }
    const out = rehearsal.map((dataId, i) => engine().makeTensorFromTensorInfo({dataId, ...shaped(outputs[i])}, backend));
    let outIds: DataId[] = [];
    let captured: ReturnType<typeof device.endCapture>;
    let fixedOut: Fixed[];
    exec.forgetDerived(fixedIn.map(f => f.buf));  // the graph rewrites these: what is made from them is made in it
    try {
      device.beginCapture();
      outIds = run(fixedIds);
      backend.materialize(outIds);
      fixedOut = outIds.map((id, i) => ({id, buf: backend.cudaBuffer({dataId: id, ...shaped(outputs[i])}), ...shaped(outputs[i])}));
      captured = device.endCapture();
    } catch (e) {
      device.abortCapture();
      exec.dropDerived();  // formats made in the capture were never computed
      for (const id of [...outIds, ...fixedIds]) backend.disposeData(id);
      if (e instanceof CaptureRefused || e instanceof CudaError) return {graph: null, declined: (e as Error).message, out};
      throw e;
    }
    const pins = exec.pin(captured.pointers);
    return {graph: new CudaForwardGraph(backend, captured.exec, fixedIn, fixedOut, pins, captured.launches), out};
  }

  /** One forward: the inputs copied in, the graph, the outputs copied out into new tensors. */
  run(inputs: Tensor[]): Tensor[] {
    const device = this.base.exec.device;
    device.makeCurrent();
    inputs.forEach((t, i) => {
      const src = this.backend.cudaBuffer(t), dst = this.inputs[i].buf;
      if (src.ptr !== dst.ptr) device.copy(dst.ptr, src.ptr, dst.bytes);
    });
    device.launchGraph(this.exec);
    return this.copyOut();
  }

  private copyOut(): Tensor[] {
    const exec = this.base.exec;
    return this.outputs.map(o => {
      const buf = exec.alloc(o.buf.shape, o.buf.dtype);
      exec.device.copy(buf.ptr, o.buf.ptr, buf.bytes);
      const dataId = this.backend.wrapBase(this.base.adopt(buf, o.shape, o.dtype));
      return engine().makeTensorFromTensorInfo({dataId, shape: o.shape, dtype: o.dtype}, this.backend);
    });
  }

  dispose() {
    if (this.disposed) return;
    this.disposed = true;
    const exec = this.base.exec;
    if (!exec.device.alive) return;  // the context went with the backend, and the graph with it
    exec.device.destroyGraph(this.exec);  // a launch still in flight completes first (the driver defers the free)
    for (const f of [...this.inputs, ...this.outputs]) this.backend.disposeData(f.id);
    exec.unpin(this.pins);
  }
}
