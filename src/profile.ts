// profile() and explain(): what the last forward ran, group by group.
import {engine, Tensor} from '@tensorflow/tfjs-core';

import {ProfileReport} from './backend/profiler';
import {StofBackend} from './backend/stof_backend';
import {exprText} from './fusion/expr';
import {Kernel} from './fusion/planner';

export {GroupReport, ProfileReport} from './backend/profiler';

function activeStof(): StofBackend {
  const backend = engine().backend;
  if (!(backend instanceof StofBackend)) {
    throw new Error(`tfjs-backend-stof: profile()/explain() need 'stof' as the current backend (it is '${engine().backendName}')`);
  }
  return backend;
}

function tensorsIn(x: unknown, out: Tensor[] = []): Tensor[] {
  if (x instanceof Tensor) out.push(x);
  else if (Array.isArray(x)) x.forEach(y => tensorsIn(y, out));
  else if (x != null && typeof x === 'object') Object.values(x).forEach(y => tensorsIn(y, out));
  return out;
}

export interface ProfileOptions {
  /**
   * Measure each fused dispatch on the device (timestamp queries; each timed dispatch gets its own
   * compute pass). Default true; groups get `ms` only where the device has the feature.
   */
  timing?: boolean;
}

/**
 * Runs `fn` and reports what it ran on 'stof': dispatches, fused groups (template, the kernels each
 * fused, device ms where measurable), and fallbacks. Tensors `fn` returns are computed before the
 * report is made; they are returned as `result` (the caller disposes them).
 */
export async function profile<T>(fn: () => T|Promise<T>, options: ProfileOptions = {}): Promise<ProfileReport & {result: T}> {
  const backend = activeStof();
  backend.profiler.start(options.timing ?? true);
  const copiesBefore = backend.deviceCopies();
  let result: T;
  try {
    result = await fn();
    backend.materialize(tensorsIn(result).map(t => t.dataId));
    await backend.executor.collectTimes?.();
  } catch (e) {
    backend.profiler.stop();
    throw e;
  }
  const report: ProfileReport & {result: T} = {...backend.profiler.stop(), result};
  const copiesAfter = backend.deviceCopies();
  if (copiesBefore != null && copiesAfter != null) {
    const made = {...copiesAfter};
    for (const key of Object.keys(made) as Array<keyof typeof made>) made[key] -= copiesBefore[key];
    report.copies = made;
  }
  return report;
}

function describe(k: Kernel, i: number): string {
  const shape = `[${k.output.shape}] ${k.output.dtype}`;
  const head = `#${i} ${k.template.padEnd(11)} -> ${shape}  fuses ${k.ops.length} op(s): ${k.ops.join(' ')}`;
  const name = (s: number) => `in${s}[${k.inputs[s].shape}]`;
  switch (k.template) {
    case 'elementwise': return `${head}\n    out = ${exprText(k.expr, name)}`;
    case 'row': return `${head}\n` + k.stages.map((st, j) => `    r${j} = ${st.op} over the row of ${exprText(st.x, name)}`).join('\n') +
                       `\n    out = ${exprText(k.expr, name)}${k.scalar ? ' (one per row)' : ''}`;
    case 'gemm':
      if (k.group) {
        return `${head}\n    ${k.group.epilogues.length} GEMMs sharing A, one launch; group g stored at offset g*${k.M * k.N}, M=${k.M} N=${k.N} K=${k.K}\n` +
               k.group.epilogues.map((e, g) => `    out${g} = ${exprText(e, name)} with acc = A[m,k] * in${k.group!.bSlots[g]}[k,n]`).join('\n');
      }
      return `${head}\n    acc = A[${k.batchShape.length ? 'b,' : ''}m,k] * B[${k.batchShape.length ? 'b,' : ''}k,n], M=${k.M} N=${k.N} K=${k.K}` +
             (k.batchShape.length ? ` batch=[${k.batchShape}]` : '') + `\n    out = ${exprText(k.epilogue, name)}`;
    case 'attention': return `${head}\n    out = softmax_rows(score) V, score = ${exprText(k.score, name)} with acc = q·k;` +
                             ` Sq=${k.Sq} Sk=${k.Sk} D=${k.D}` + (k.batchShape.length ? ` batch=[${k.batchShape}]` : '') +
                             `\n    ${k.variant} kernel, ${k.Br} query rows x ${k.Bc}-key tiles per workgroup of ${k.threads}` +
                             (k.mask ? ', empty tiles of the mask skipped' : ', every tile');
    case 'alias': return `${head}\n    shares the storage of its input`;
  }
}

/** The last fusion plan that ran, readable; also printed to the console unless `print` is false. */
export function explain(print = true): string {
  const plan = activeStof().lastPlan;
  const text = plan.length === 0 ? '(no plan has run yet)' : plan.map(describe).join('\n');
  if (print) console.log(text);
  return text;
}
