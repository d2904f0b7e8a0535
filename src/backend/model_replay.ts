// Graph replay for tfjs-converter models on 'stof': GraphModel.execute/executeAsync capture the
// first forward of each input signature (input names, shapes, dtypes; output names) and replay it
// afterwards (src/backend/graph_trace.ts). A converted BERT-base forward spends most of its time in
// the converter, tfjs-core's engine and hundreds of tiny shape kernels; the replay runs only the
// kernels that depend on the inputs. Flag STOF_REPLAY (default true) turns it off for A/B runs.
import {engine, env, NamedTensorMap, Tensor} from '@tensorflow/tfjs-core';
import * as converter from '@tensorflow/tfjs-converter';

import {tuningActive} from '../search/tuner';

import {GraphCapture, GraphTrace, TraceMismatch} from './graph_trace';
import {StofBackend} from './stof_backend';

if ((env() as unknown as {flagRegistry: Record<string, unknown>}).flagRegistry['STOF_REPLAY'] == null) {
  env().registerFlag('STOF_REPLAY', () => true);
}

/** Input signatures a model keeps traces for (the least recently used one goes first). */
const TRACES_PER_MODEL = 8;

type Entry = {trace: GraphTrace} | {declined: string};
interface ModelTraces {backend: StofBackend; entries: Map<string, Entry>}

/** The members of GraphModel this hook uses (tfjs-converter 4.x). */
interface Model {
  resourceIdToCapturedInput: unknown;
  setResourceIdToCapturedInput(outputs: Tensor[]): void;
  executeInitializerGraph(): Tensor[];
  executeInitializerGraphAsync(): Promise<Tensor[]>;
  normalizeInputs(inputs: unknown): NamedTensorMap;
  normalizeOutputs(outputs: unknown): string[];
  executor: {execute(inputs: NamedTensorMap, outputs?: string[]): Tensor[]};
}

const traces = new WeakMap<object, ModelTraces>();

/** Why a forward on 'stof' runs as usual before any capture (a replay passes by the engine), or null. */
function offReason(): string|null {
  const state = engine().state;
  if (env().getBool('KEEP_INTERMEDIATE_TENSORS')) return 'KEEP_INTERMEDIATE_TENSORS is set';
  if (env().getBool('DEBUG')) return 'DEBUG is set (per-kernel checks)';
  if (engine().isTapeOn()) return 'under a gradient tape';
  if (state.profiling) return 'under tf.profile()';
  if (tuningActive()) return 'inside tune()';
  return null;
}

/** 'stof' when this forward may be captured or replayed; null (with the reason counted where it is 'stof') otherwise. */
function replayBackend(): StofBackend|null {
  const b = engine().backend;
  if (!(b instanceof StofBackend) || !env().getBool('STOF_REPLAY')) return null;
  const off = offReason();
  return off == null ? b : notReplayed(b, off);
}

function tracesOf(model: object, backend: StofBackend): Map<string, Entry> {
  let t = traces.get(model);
  if (t == null || t.backend !== backend) {
    if (t != null) dropTraces(model);
    t = {backend, entries: new Map()};
    traces.set(model, t);
  }
  return t.entries;
}

function dropTraces(model: object) {
  const t = traces.get(model);
  if (t == null) return;
  for (const e of t.entries.values()) if ('trace' in e) e.trace.dispose();
  traces.delete(model);
}

function signatureOf(names: string[], inputs: NamedTensorMap, outputs: string[]|undefined): string {
  return names.map(n => `${n}:${inputs[n].dtype}[${inputs[n].shape}]`).join(',') + '->' + (outputs ?? []).join(',');
}

/**
 * One forward through the replay: the trace of this signature if there is one, else a captured run
 * of `run`. Returns null where the caller must run the converter as usual (`why` says why, counted).
 */
function forward(backend: StofBackend, model: Model, inputs: NamedTensorMap, outputs: string[]|undefined,
                 run: () => Tensor[]): Tensor[]|null {
  const names = Object.keys(inputs).sort();
  const tensors = names.map(n => inputs[n]);
  const ids = new Set(tensors.map(t => t.dataId));
  if (ids.size !== tensors.length) return notReplayed(backend, 'two inputs share one tensor');
  if (tensors.some(t => !backend.hasValue(t.dataId))) return notReplayed(backend, `an input lives on another backend`);
  const entries = tracesOf(model, backend);
  const key = signatureOf(names, inputs, outputs);
  const entry = entries.get(key);
  if (entry != null) {
    entries.delete(key);  // most recently used last
    entries.set(key, entry);
    if ('declined' in entry) return notReplayed(backend, entry.declined);
    if (entry.trace.valid()) {
      try {
        const out = entry.trace.replay(tensors);
        backend.profiler.replayed();
        return out;
      } catch (e) {
        if (!(e instanceof TraceMismatch)) throw e;
        entries.set(key, {declined: `replay stopped: ${e.message}`});
        entry.trace.dispose();
        return notReplayed(backend, `replay stopped: ${e.message}`);
      }
    }
    entry.trace.dispose();  // a constant was moved to another backend or disposed: capture again
    entries.delete(key);
  }
  const capture = new GraphCapture(backend, tensors);
  backend.capture = capture;
  let out: Tensor[];
  try {
    out = run();
  } catch (e) {
    capture.release();
    throw e;
  } finally {
    backend.capture = null;
  }
  const trace = capture.finish(out);
  if (trace == null) {
    entries.set(key, {declined: capture.reason!});
    backend.profiler.notReplayed(capture.reason!);
  } else {
    entries.set(key, {trace});
    backend.profiler.captured();
  }
  while (entries.size > TRACES_PER_MODEL) {
    const [oldest, e] = entries.entries().next().value!;
    if ('trace' in e) e.trace.dispose();
    entries.delete(oldest);
  }
  return out;
}

function notReplayed(backend: StofBackend, reason: string): null {
  backend.profiler.notReplayed(reason);
  return null;
}

let installed = false;

/** Patches tfjs-converter's GraphModel (once; a no-op where the converter is not loaded). */
export function installModelReplay() {
  const GraphModel = (converter as unknown as {GraphModel?: {prototype: Record<string, unknown>}}).GraphModel;
  if (installed || GraphModel == null) return;
  const proto = GraphModel.prototype as {
    execute(this: Model, inputs: unknown, outputs?: unknown): Tensor|Tensor[];
    executeAsync(this: Model, inputs: unknown, outputs?: unknown): Promise<Tensor|Tensor[]>;
    dispose(this: Model): void;
  };
  const model = proto as unknown as Model;
  if (typeof proto.execute !== 'function' || typeof proto.executeAsync !== 'function' || typeof model.normalizeInputs !== 'function' ||
      typeof model.setResourceIdToCapturedInput !== 'function' || typeof model.executeInitializerGraph !== 'function') {
    return;  // another converter version: its models run as usual
  }
  installed = true;
  const {execute, executeAsync, dispose} = proto;
  proto.execute = function(inputs, outputs) {
    const backend = replayBackend();
    if (backend == null) return execute.call(this, inputs, outputs);
    // As GraphModel.execute does first: the initializer graph's resources, once.
    if (this.resourceIdToCapturedInput == null) this.setResourceIdToCapturedInput(this.executeInitializerGraph());
    const named = this.normalizeInputs(inputs), names = this.normalizeOutputs(outputs);
    const result = forward(backend, this, named, names, () => this.executor.execute(named, names)) ?? this.executor.execute(named, names);
    return result.length > 1 ? result : result[0];
  };
  proto.executeAsync = async function(inputs, outputs) {
    const backend = replayBackend();
    if (backend == null) return executeAsync.call(this, inputs, outputs);
    if (this.resourceIdToCapturedInput == null) this.setResourceIdToCapturedInput(await this.executeInitializerGraphAsync());
    const named = this.normalizeInputs(inputs), names = this.normalizeOutputs(outputs);
    // Captured through the synchronous executor: an await could let other code's kernels into the capture.
    // A graph with control flow or dynamic shapes refuses it before running anything.
    let result: Tensor[]|null = null;
    try {
      result = forward(backend, this, named, names, () => this.executor.execute(named, names));
    } catch (e) {
      if (!/dynamic op|returned a promise/.test((e as Error).message)) throw e;
      const declined = 'the graph has control flow or dynamic shapes (executeAsync)';
      tracesOf(this, backend).set(signatureOf(Object.keys(named).sort(), named, names), {declined});
      notReplayed(backend, declined);
    }
    if (result != null) return result.length > 1 ? result : result[0];
    return executeAsync.call(this, inputs, outputs);
  };
  proto.dispose = function() {
    dropTraces(this);
    dispose.call(this);
  };
}
