// The compilation templates as WGSL: each planned kernel becomes one compute shader and one
// dispatch. Shapes are compile-time constants (a transformer's shapes are fixed per model), so
// index arithmetic folds and pipelines are cached by source.
import {contiguousStrides, sizeOf} from '../../fusion/access';
import {Expr, walk} from '../../fusion/expr';
import {AttentionKernel, ElementwiseKernel, GemmKernel, Kernel, RowKernel, ValueInfo} from '../../fusion/planner';

import {MASKED_AT_OR_BELOW, TILE_EMPTY, TILE_FULL, TILE_PARTIAL} from '../sparse/mask_format';
import {gemmWgsl} from './gemm_wgsl';
import {ExprEmitter, offsetCode, WGSL_HELPERS} from './wgsl_expr';

export interface Shader {
  code: string;
  workgroups: [number, number, number];
  /** Slot of each input binding, in binding order after the output (binding 0). */
  bindings: number[];
  /** Binding of the mask's tile format (block-sparse attention). */
  tileBinding?: number;
}

const MAX_GRID = 65535;
const isInt = (dtype: string) => dtype === 'bool' || dtype === 'int32';
/** Whether a buffer holds i32 (bool and int32 tensors, and int32 buffers relabelled float32). */
const intBuffer = (v: ValueInfo) => isInt(v.storage ?? v.dtype);

/** Spreads `groups` workgroups over x and y (each at most 65535). */
function grid(groups: number): [number, number, number] {
  if (groups <= MAX_GRID) return [Math.max(groups, 1), 1, 1];
  return [MAX_GRID, Math.ceil(groups / MAX_GRID), 1];
}

function declarations(k: Kernel, slots: number[], outBinding = true): string {
  const lines: string[] = [];
  if (outBinding) lines.push(`@group(0) @binding(0) var<storage, read_write> out: array<${isInt(k.output.dtype) ? 'i32' : 'f32'}>;`);
  slots.forEach((slot, i) => {
    lines.push(`@group(0) @binding(${i + 1}) var<storage, read> in${slot}: array<${intBuffer(k.inputs[slot]) ? 'i32' : 'f32'}>;`);
  });
  return lines.join('\n');
}

function loader(k: Kernel) {
  return (slot: number, offset: string) => (intBuffer(k.inputs[slot]) ? `f32(in${slot}[${offset}])` : `in${slot}[${offset}]`);
}

function store(k: Kernel, index: string, value: string): string {
  return isInt(k.output.dtype) ? `out[${index}] = i32(${value} != 0.0);` : `out[${index}] = ${value};`;
}

/** Slots an expression reads, in first-use order. */
function slotsOf(exprs: Expr[]): number[] {
  const out: number[] = [];
  for (const e of exprs) walk(e, x => { if (x.k === 'in' && !out.includes(x.slot)) out.push(x.slot); });
  return out;
}

/** `let cN = ...` for each domain coordinate of the linear index `idx` over `shape`. */
function coordLines(shape: number[], idx: string, names: string[]): string[] {
  const strides = contiguousStrides(shape);
  return shape.map((d, i) => {
    const q = strides[i] === 1 ? idx : `(${idx} / ${strides[i]})`;
    return `let ${names[i]} = ${i === 0 ? q : `${q} % ${d}`};`;
  });
}

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

function row(k: RowKernel): Shader {
  const {rowShape, rows, length: L} = k;
  const r = rowShape.length;
  // About four elements per invocation: fewer threads, fewer barrier steps in the reduction tree.
  const wg = Math.min(256, Math.max(32, 2 ** Math.ceil(Math.log2(Math.max(1, L / 4)))));
  const coords = rowShape.map((_, i) => `c${i}`);
  const lead = coordLines(rowShape.slice(0, -1), 'row', coords);
  const rvName = (s: number) => `rv${s}`;
  const leaf = (e: Expr) => (e.k === 'rv' ? rvName(e.stage) : null);
  const body: string[] = [];
  k.stages.forEach((st, s) => {
    const em = new ExprEmitter(`s${s}_`, loader(k), coords, undefined, leaf);
    const x = em.emit(st.x);
    const init = st.op === 'max' ? '(-inf_())' : '0.0';
    const combine = (a: string, b: string) => (st.op === 'max' ? `max_(${a}, ${b})` : `(${a} + ${b})`);
    body.push(`
  var acc${s}: f32 = ${init};
  for (var col = i32(lid); col < ${L}; col += ${wg}) {
    let ${coords[r - 1]} = col;
    ${em.lines.join('\n    ')}
    acc${s} = ${combine(`acc${s}`, x)};
  }
  red[lid] = acc${s};
  workgroupBarrier();
  for (var w = ${wg / 2}u; w > 0u; w = w / 2u) {
    if (lid < w) { red[lid] = ${combine('red[lid]', 'red[lid + w]')}; }
    workgroupBarrier();
  }
  ${rvName(s)} = red[0];
  workgroupBarrier();`);
  });
  const em = new ExprEmitter('o', loader(k), coords, undefined, leaf);
  const value = em.emit(k.expr);
  const outStage = k.scalar ?
      `if (lid == 0u) {
    let ${coords[r - 1]} = 0;
    ${em.lines.join('\n    ')}
    ${store(k, 'row', value)}
  }` :
      `for (var col = i32(lid); col < ${L}; col += ${wg}) {
    let ${coords[r - 1]} = col;
    ${em.lines.join('\n    ')}
    ${store(k, `row * ${L} + col`, value)}
  }`;
  const slots = slotsOf([...k.stages.map(s => s.x), k.expr]);
  const [gx] = grid(rows);
  return {
    bindings: slots,
    workgroups: grid(rows),
    code: `${WGSL_HELPERS}
${declarations(k, slots)}
var<workgroup> red: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = i32(wid.x + wid.y * ${gx}u);
  if (row >= ${rows}) { return; }
  ${lead.join('\n  ')}
  ${k.stages.map((_, s) => `var ${rvName(s)}: f32;`).join(' ')}
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

/**
 * Flash attention over tiles: a workgroup takes Br query rows of one batch entry, one row per
 * invocation (q and the output row in registers); K and V stream through workgroup memory in tiles
 * of Bc keys; softmax is online (running max and sum), so no score matrix is stored. Block-sparse
 * (`k.mask`): only the key tiles the mask format lists for this query block are visited, and full
 * tiles compute the score without the mask term.
 */
function attention(k: AttentionKernel): Shader {
  const {batchShape, Sq, Sk, D, Dv, Br: WG, Bc, mask} = k;
  const batch = sizeOf(batchShape), qBlocks = Math.ceil(Sq / WG);
  const [gx] = grid(batch * qBlocks);
  const bc = batchShape.map((_, i) => `c${i}`);
  const leaf = (e: Expr) => (e.k === 'acc' ? 'acc' : null);
  const em = new ExprEmitter('t', loader(k), [...bc, 'ii', 'j'], undefined, leaf);
  const sc = em.emit(k.score);
  const slots = [k.qSlot, k.kSlot, k.vSlot, ...slotsOf([k.score])].filter((x, i, a) => a.indexOf(x) === i);
  const load = loader(k);
  const plainScore = `${em.lines.join('\n      ')}
      let s = ${sc};`;
  let tileLoop: string, scoreLines: string;
  if (mask) {
    // Flat mask-batch index: the batch coordinates the mask depends on.
    const mStrides = contiguousStrides(mask.maskBatch);
    const mb = mask.maskBatch.map((d, i) => (d > 1 ? `c${i} * ${mStrides[i]}` : '')).filter(x => x).join(' + ') || '0';
    const fe = new ExprEmitter('f', load, [...bc, 'ii', 'j'], undefined, leaf);
    const fv = mask.scoreFull ? fe.emit(mask.scoreFull) : null;
    tileLoop = `let tb = u32((${mb}) * ${mask.nQT} + flat % ${qBlocks}) * ${mask.nKT + 1}u;
  if (lid == 0u) { tileCount = tiles[tb]; }
  let nt = workgroupUniformLoad(&tileCount);
  // The block's tile list into workgroup memory: no dependent global load at each tile.
  for (var t = lid; t < nt; t += ${WG}u) { tileList[t] = tiles[tb + 1u + t]; }
  workgroupBarrier();
  for (var t = 0u; t < nt; t++) {
    let entry = tileList[t];
    let j0 = i32(entry & 0xffffu) * ${Bc};
    let full = (entry >> 16u) == ${TILE_FULL}u;`;
    scoreLines = fv == null ? plainScore : `var s: f32;
      if (full) {
        ${fe.lines.join('\n        ')}
        s = ${fv};
      } else {
        ${em.lines.join('\n        ')}
        s = ${sc};
      }`;
  } else {
    tileLoop = `for (var j0 = 0; j0 < ${Sk}; j0 += ${Bc}) {`;
    scoreLines = plainScore;
  }
  const tileBinding = slots.length + 1;
  // Head dims that are multiples of 4 read K and V tiles as vec4 (4 FMAs per shared-memory load).
  const W = D % 4 === 0 && Dv % 4 === 0 ? 4 : 1;
  const vt = W === 4 ? 'vec4<f32>' : 'f32', zero = W === 4 ? 'vec4<f32>(0.0)' : '0.0';
  const lanes = (f: (c: string) => string) => (W === 4 ? `${vt}(${['0', '1', '2', '3'].map(c => f(c)).join(', ')})` : f('0'));
  const Dw = D / W, Dvw = Dv / W;
  return {
    bindings: slots,
    tileBinding: mask ? tileBinding : undefined,
    workgroups: grid(batch * qBlocks),
    code: `${WGSL_HELPERS}
${declarations(k, slots)}
${mask ? `@group(0) @binding(${tileBinding}) var<storage, read> tiles: array<u32>;\nvar<workgroup> tileCount: u32;\nvar<workgroup> tileList: array<u32, ${mask.nKT}>;` : ''}
var<workgroup> ks: array<${vt}, ${Bc * Dw}>;
var<workgroup> vs: array<${vt}, ${Bc * Dvw}>;
// This tile's scores, one column per invocation: a private array indexed by a loop variable
// would live in local memory on some drivers.
var<workgroup> scs: array<f32, ${Bc * WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let flat = i32(wid.x + wid.y * ${gx}u);
  if (flat >= ${batch * qBlocks}) { return; }
  let bi = flat / ${qBlocks};
  let i = (flat % ${qBlocks}) * ${WG} + i32(lid);
  let ii = min(i, ${Sq - 1});
  ${coordLines(batchShape, 'bi', bc).join('\n  ')}
  var q: array<${vt}, ${Dw}>;
  for (var dw = 0; dw < ${Dw}; dw++) { q[dw] = ${lanes(c => load(k.qSlot, offsetCode(k.q, [...bc, 'ii', `(dw * ${W} + ${c})`])))}; }
  var o: array<${vt}, ${Dvw}>;
  for (var e = 0; e < ${Dvw}; e++) { o[e] = ${zero}; }
  var m = -inf_();
  var l = 0.0;
  let ninf = -inf_();
  ${tileLoop}
    for (var t = i32(lid); t < ${Bc * Dw}; t += ${WG}) {
      let jt = min(j0 + t / ${Dw}, ${Sk - 1});
      let dw = t % ${Dw};
      ks[t] = ${lanes(c => load(k.kSlot, offsetCode(k.k, [...bc, 'jt', `(dw * ${W} + ${c})`])))};
    }
    for (var t = i32(lid); t < ${Bc * Dvw}; t += ${WG}) {
      let jt = min(j0 + t / ${Dvw}, ${Sk - 1});
      let dw = t % ${Dvw};
      vs[t] = ${lanes(c => load(k.vSlot, offsetCode(k.v, [...bc, 'jt', `(dw * ${W} + ${c})`])))};
    }
    workgroupBarrier();
    let jn = min(${Bc}, ${Sk} - j0);
    // Scores of the tile, then one rescale of the running sum and output per tile (not per key).
    // Four keys at a time with lane-wise accumulators: 16 independent FMA chains, not one long one.
    var tmax = m;
    for (var jj = 0; jj < jn; jj += 4) {
      var a4: array<${vt}, 4>;
      for (var u = 0; u < 4; u++) { a4[u] = ${zero}; }
      for (var dw = 0; dw < ${Dw}; dw++) {
        let qq = q[dw];
        for (var u = 0; u < 4; u++) { a4[u] = fma(qq, ks[min(jj + u, ${Bc - 1}) * ${Dw} + dw], a4[u]); }
      }
      for (var u = 0; u < 4; u++) {
        if (jj + u < jn) {
          let acc = ${W === 4 ? 'a4[u].x + a4[u].y + a4[u].z + a4[u].w' : 'a4[u]'};
          let j = j0 + jj + u;
          ${scoreLines}
          scs[(jj + u) * ${WG} + i32(lid)] = s;
          tmax = max_(tmax, s);
        }
      }
    }
    // Only -inf so far: no weight yet (a row of only -inf ends 0/0 = NaN, as the chain gives).
    if (tmax != ninf) {
      let alpha = exp_(m - tmax);
      l = l * alpha;
      for (var e = 0; e < ${Dvw}; e++) { o[e] = o[e] * alpha; }
      for (var jj = 0; jj < jn; jj++) {
        let p = exp_(scs[jj * ${WG} + i32(lid)] - tmax);
        l = l + p;
        for (var e = 0; e < ${Dvw}; e++) { o[e] = fma(${W === 4 ? 'vec4<f32>(p)' : 'p'}, vs[jj * ${Dvw} + e], o[e]); }
      }
      m = tmax;
    }
    workgroupBarrier();
  }
  if (i < ${Sq}) {
    for (var e = 0; e < ${Dv}; e++) { ${store(k, offsetCode(k.out, [...bc, 'i', 'e']), `o[e / ${W}]${W === 4 ? '[e % 4]' : ''} / l`)} }
  }
}`,
  };
}

/**
 * The mask's tile format (../sparse/mask_format.ts), one workgroup per (mask batch entry, query
 * block): every score element of the block is classified from the mask expression at q·k = 0, tile
 * by tile; then one invocation lists the non-empty tiles. A block with a query row that keeps no key
 * lists every tile as partial, so that row is computed as the chain computes it.
 */
export function maskAnalysis(k: AttentionKernel): Shader {
  const m = k.mask!;
  const {Sq, Sk} = k;
  const {Br, Bc, nQT, nKT} = m;
  const mbCount = sizeOf(m.maskBatch), groups = mbCount * nQT;
  const [gx] = grid(groups);
  const coords = m.maskBatch.map((_, i) => `c${i}`);
  const em = new ExprEmitter('a', loader(k), [...coords, 'i', 'j'], undefined);
  const s0 = em.emit(m.s0);
  const zero = m.zero ? em.emit(m.zero) : null;
  const slots = slotsOf(m.zero ? [m.s0, m.zero] : [m.s0]);
  const words = Math.ceil(Br / 32);
  return {
    bindings: slots,
    workgroups: grid(groups),
    code: `${WGSL_HELPERS}
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
${declarations(k, slots, false)}
var<workgroup> kinds: array<u32, ${nKT}>;
var<workgroup> anyKept: atomic<u32>;
var<workgroup> notFull: atomic<u32>;
var<workgroup> rowKept: array<atomic<u32>, ${words}>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let flat = i32(wid.x + wid.y * ${gx}u);
  if (flat >= ${groups}) { return; }
  let mb = flat / ${nQT};
  let qt = flat % ${nQT};
  ${coordLines(m.maskBatch, 'mb', coords).join('\n  ')}
  if (lid < ${words}u) { atomicStore(&rowKept[lid], 0u); }
  for (var kt = 0; kt < ${nKT}; kt++) {
    if (lid == 0u) { atomicStore(&anyKept, 0u); atomicStore(&notFull, 0u); }
    workgroupBarrier();
    for (var e = i32(lid); e < ${Br * Bc}; e += 256) {
      let r = e / ${Bc};
      let i = qt * ${Br} + r;
      let j = kt * ${Bc} + e % ${Bc};
      if (i < ${Sq} && j < ${Sk}) {
        ${em.lines.join('\n        ')}
        let kept = !(${s0} <= ${MASKED_AT_OR_BELOW}.0);  // NaN is kept
        if (kept) { atomicOr(&anyKept, 1u); atomicOr(&rowKept[r / 32], 1u << u32(r % 32)); }
        if (!kept${zero ? ` || ${zero} == 0.0` : ' || true'}) { atomicOr(&notFull, 1u); }
      }
    }
    workgroupBarrier();
    if (lid == 0u) {
      kinds[kt] = select(select(${TILE_PARTIAL}u, ${TILE_FULL}u, atomicLoad(&notFull) == 0u), ${TILE_EMPTY}u, atomicLoad(&anyKept) == 0u);
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    var dense = false;
    for (var r = 0; r < ${Br}; r++) {
      if (qt * ${Br} + r < ${Sq} && (atomicLoad(&rowKept[r / 32]) & (1u << u32(r % 32))) == 0u) { dense = true; }
    }
    let base = u32(flat) * ${nKT + 1}u;
    var n = 0u;
    for (var kt = 0; kt < ${nKT}; kt++) {
      let kind = select(kinds[kt], ${TILE_PARTIAL}u, dense);
      if (kind != ${TILE_EMPTY}u) { out[base + 1u + n] = u32(kt) | (kind << 16u); n++; }
    }
    out[base] = n;
  }
}`,
  };
}

export function shaderOf(k: Kernel): Shader {
  switch (k.template) {
    case 'elementwise': return elementwise(k);
    case 'row': return row(k);
    case 'gemm': return gemm(k);
    case 'attention': return attention(k);
    case 'alias': throw new Error('alias kernels have no shader');
  }
}
