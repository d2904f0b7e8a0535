// The compilation templates as WGSL: each planned kernel becomes one compute shader and one
// dispatch. Shapes are compile-time constants (a transformer's shapes are fixed per model), so
// index arithmetic folds and pipelines are cached by source.
import {contiguousStrides, sizeOf} from '../../fusion/access';
import {Expr, exprKey} from '../../fusion/expr';
import {ElementwiseKernel, GemmKernel, Kernel, RowKernel} from '../../fusion/planner';

import {attention, rowwiseAttention} from './attention_wgsl';
import {gemmWgsl} from './gemm_wgsl';
import {coordLines, declarations, grid, intBuffer, loader, Shader, slotsOf, store} from './shader_common';
import {ExprEmitter, offsetCode, WGSL_HELPERS} from './wgsl_expr';

export type {Shader} from './shader_common';
export {maskAnalysis} from './attention_wgsl';

function elementwise(k: ElementwiseKernel): Shader {
  const shape = k.output.shape, size = sizeOf(shape);
  const coords = shape.map((_, i) => `c${i}`);
  const em = new ExprEmitter('t', loader(k), coords, 'idx');
  const value = em.emit(k.expr);
  const slots = slotsOf([k.expr]);
  const wg = 256, groups = Math.ceil(size / wg);
  const [gx] = grid(groups);
  return {
    bindings: slots,
    workgroups: grid(groups),
    code: `${WGSL_HELPERS}
${declarations(k, slots)}
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let idx = i32(gid.x + gid.y * ${gx * wg}u);
  if (idx >= ${size}) { return; }
  ${coordLines(shape, 'idx', coords).join('\n  ')}
  ${em.lines.join('\n  ')}
  ${store(k, 'idx', value)}
}`,
  };
}

/** Most row elements per invocation kept in registers between the stages of a row kernel. */
const ROW_CACHE = 16;

function row(k: RowKernel): Shader {
  const {rowShape, rows, length: L} = k;
  const r = rowShape.length;
  // Up to ROW_CACHE elements per invocation, and rows shorter than a 128-wide workgroup share one (t
  // invocations each): a row kernel is bound by its reduction trees' barriers, not by bandwidth, so
  // fewer tree steps per row and more rows per barrier are what make it fast.
  const t = Math.min(256, Math.max(32, 2 ** Math.ceil(Math.log2(Math.max(1, L / ROW_CACHE)))));
  const rowsPerGroup = Math.max(1, 128 / t), wg = t * rowsPerGroup;
  const perThread = Math.ceil(L / t);
  // Stage 0's input (softmax's scaled, masked scores; LayerNorm's x or x + residual) recurs in the later
  // stages and the output: each invocation keeps its elements in registers, so the row is read once.
  const cached = perThread <= ROW_CACHE ? exprKey(k.stages[0].x) : null;
  const coords = rowShape.map((_, i) => `c${i}`);
  const lead = coordLines(rowShape.slice(0, -1), 'row', coords);
  const rvName = (s: number) => `rv${s}`;
  const rvLeaf = (e: Expr) => (e.k === 'rv' ? rvName(e.stage) : null);
  const leaf = (e: Expr) => rvLeaf(e) ?? (cached != null && exprKey(e) === cached ? 'xc[i]' : null);
  // The column loop: over the cached slots (a constant trip count) or strided over the row.
  const columns = (body: string) => cached != null ?
      `for (var i = 0; i < ${perThread}; i++) {
    let col = i32(lane) + i * ${t};
    ${L % t === 0 ? body : `if (col < ${L}) {\n      ${body}\n    }`}
  }` :
      `for (var col = i32(lane); col < ${L}; col += ${t}) {
    ${body}
  }`;
  const body: string[] = [];
  k.stages.forEach((st, s) => {
    const em = new ExprEmitter(`s${s}_`, loader(k), coords, undefined, s === 0 ? rvLeaf : leaf);
    const x = em.emit(st.x);
    const init = st.op === 'max' ? '(-inf_())' : '0.0';
    const combine = (a: string, b: string) => (st.op === 'max' ? `max_(${a}, ${b})` : `(${a} + ${b})`);
    const keep = s === 0 && cached != null ? `xc[i] = ${x};` : '';
    body.push(`
  var acc${s}: f32 = ${init};
  ${columns(`let ${coords[r - 1]} = col;
    ${em.lines.join('\n    ')}
    ${keep}
    acc${s} = ${combine(`acc${s}`, x)};`)}
  red[lid] = acc${s};
  workgroupBarrier();
  for (var w = ${t / 2}u; w > 0u; w = w / 2u) {
    if (lane < w) { red[lid] = ${combine('red[lid]', 'red[lid + w]')}; }
    workgroupBarrier();
  }
  ${rvName(s)} = red[lid - lane];
  workgroupBarrier();`);
  });
  const em = new ExprEmitter('o', loader(k), coords, undefined, leaf);
  let outStage: string;
  if (k.scalar) {
    const e0 = new ExprEmitter('o', loader(k), coords, undefined, rvLeaf);
    const value = e0.emit(k.expr);
    outStage = `if (lane == 0u && live) {
    let ${coords[r - 1]} = 0;
    ${e0.lines.join('\n    ')}
    ${store(k, 'row', value)}
  }`;
  } else {
    const value = em.emit(k.expr);
    outStage = `if (live) {
  ${columns(`let ${coords[r - 1]} = col;
    ${em.lines.join('\n    ')}
    ${store(k, `row * ${L} + col`, value)}`)}
  }`;
  }
  const slots = slotsOf([...k.stages.map(s => s.x), k.expr]);
  const groups = Math.ceil(rows / rowsPerGroup);
  const [gx] = grid(groups);
  return {
    bindings: slots,
    workgroups: grid(groups),
    code: `${WGSL_HELPERS}
${declarations(k, slots)}
var<workgroup> red: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  // Invocations of a row past the last one still take part in the barriers (loads of the last row, no stores).
  let lane = lid % ${t}u;
  let rowIndex = i32(wid.x + wid.y * ${gx}u) * ${rowsPerGroup} + i32(lid / ${t}u);
  let live = rowIndex < ${rows};
  let row = min(rowIndex, ${Math.max(rows - 1, 0)});
  ${lead.join('\n  ')}
  ${k.stages.map((_, s) => `var ${rvName(s)}: f32;`).join(' ')}
  ${cached != null ? `var xc: array<f32, ${perThread}>;` : ''}
  ${body.join('\n')}
  ${outStage}
}`,
  };
}

function gemm(k: GemmKernel): Shader {
  const {batchShape, M, N, K} = k;
  // A grouped GEMM (no batch dims) runs its groups as the batch: b is the group.
  const groups = k.group?.epilogues.length ?? 0;
  const batch = groups || sizeOf(batchShape);
  // Batch coordinates from the flat batch index b.
  const bStrides = contiguousStrides(batchShape);
  // (Grouped GEMMs have a batch of one: their batch coordinates are 0.)
  const bc = batchShape.map((d, i) => (groups ? '0' : `(${bStrides[i] === 1 ? 'b' : `(b / ${bStrides[i]})`} % ${d})`));
  const epilogues = k.group?.epilogues ?? [k.epilogue];
  const bSlots = k.group?.bSlots ?? [k.bSlot];
  const bMaps = k.group?.bMaps ?? [k.b];
  const extras = [...bSlots.slice(1), ...slotsOf(epilogues)].filter((s, i, a) => a.indexOf(s) === i);
  const em = new ExprEmitter('e', loader(k), [...bc, 'm', 'n'], undefined, e => (e.k === 'acc' ? 'acc' : null));
  const perGroup = (body: (g: number) => string) =>
      groups ? bSlots.map((_, g) => (g < groups - 1 ? `if (b == ${g}) { ${body(g)} } else ` : `{ ${body(g)} }`)).join('') : body(0);
  const bName = (g: number) => (g === 0 ? 'B' : `in${bSlots[g]}`);
  let epilogue: string;
  if (groups) {
    epilogue = `var r: f32;\n${perGroup(g => {
      const e = new ExprEmitter(`e${g}_`, loader(k), [...bc, 'm', 'n'], undefined, x => (x.k === 'acc' ? 'acc' : null));
      const v = e.emit(epilogues[g]);
      return `${e.lines.join(' ')} r = ${v};`;
    })}\nlet out: f32 = r;`;
  } else {
    const value = em.emit(k.epilogue);
    epilogue = `${em.lines.join('\n')}\nlet out: f32 = ${value};`;
  }
  const spec = gemmWgsl({
    batch, M, N, K,
    aIndex: offsetCode(k.a, [...bc, 'm', 'k']),
    bIndex: offsetCode(k.b, [...bc, 'k', 'n']),
    loadB: groups ? perGroup(g => `return ${bName(g)}[${offsetCode(bMaps[g], [...bc, 'k', 'n'])}];`) : undefined,
    extraInputs: extras.map(s => `in${s}`),
    epilogue,
    outIndex: offsetCode(k.out, [...bc, 'm', 'n']) + (groups ? ` + b * ${M * N}` : ''),
    helpers: WGSL_HELPERS,
  });
  let code = spec.code;
  for (const s of extras) {
    if (intBuffer(k.inputs[s])) code = code.replace(new RegExp(`(var<storage, read> in${s}\\s*:\\s*array<)f32>`), '$1i32>');
  }
  return {code, workgroups: spec.workgroups, bindings: [k.aSlot, bSlots[0], ...extras]};
}

export function shaderOf(k: Kernel): Shader {
  switch (k.template) {
    case 'elementwise': return elementwise(k);
    case 'row': return row(k);
    case 'gemm': return gemm(k);
    case 'attention': return k.variant === 'rowwise' ? rowwiseAttention(k) : attention(k);
    case 'alias': throw new Error('alias kernels have no shader');
  }
}
