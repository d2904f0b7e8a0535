// The attention templates as WGSL: the block-wise (flash-style) and row-wise masked attention
// kernels, and the mask analysis that makes their tile format.
import {contiguousStrides, sizeOf} from '../../fusion/access';
import {Expr} from '../../fusion/expr';
import {AttentionKernel} from '../../fusion/planner';

import {MASKED_AT_OR_BELOW, MaskSpec, TILE_EMPTY, TILE_FULL, TILE_PARTIAL} from '../sparse/mask_format';
import {coordLines, declarations, grid, loader, Shader, slotsOf, store} from './shader_common';
import {ExprEmitter, offsetCode, WGSL_HELPERS} from './wgsl_expr';

/** Flat index of the mask batch entry (the batch coordinates the mask depends on). */
function maskBatchIndex(mask: MaskSpec): string {
  const strides = contiguousStrides(mask.maskBatch);
  return mask.maskBatch.map((d, i) => (d > 1 ? `c${i} * ${strides[i]}` : '')).filter(x => x).join(' + ') || '0';
}

/** WGSL that copies this query block's tile list into workgroup memory (`tileList`, `nt` tiles). */
function tileListLines(mask: MaskSpec, qBlocks: number, threads: number): string {
  return `let tb = u32((${maskBatchIndex(mask)}) * ${mask.nQT} + flat % ${qBlocks}) * ${mask.nKT + 1}u;
  if (lid == 0u) { tileCount = tiles[tb]; }
  let nt = i32(workgroupUniformLoad(&tileCount));
  // The block's tile list into workgroup memory: no dependent global load at each tile.
  for (var t = i32(lid); t < nt; t += ${threads}) { tileList[t] = tiles[tb + 1u + u32(t)]; }`;
}

function tileDeclarations(mask: MaskSpec|null, binding: number): string {
  return mask ? `@group(0) @binding(${binding}) var<storage, read> tiles: array<u32>;
var<workgroup> tileCount: u32;
var<workgroup> tileList: array<u32, ${mask.nKT}>;` : '';
}

/**
 * The score of one (query ii, key j) pair from `acc` = q·k, as WGSL statements assigning `s`: with
 * a mask format, a full tile (`full`) computes the score without its mask term (no mask loads).
 */
function scoreLines(k: AttentionKernel, bc: string[], indent: string): string {
  const leaf = (e: Expr) => (e.k === 'acc' ? 'acc' : null);
  const em = new ExprEmitter('t', loader(k), [...bc, 'ii', 'j'], undefined, leaf);
  const sc = em.emit(k.score);
  const plain = [...em.lines, `s = ${sc};`].join(`\n${indent}`);
  if (!k.mask?.scoreFull) return plain;
  const fe = new ExprEmitter('f', loader(k), [...bc, 'ii', 'j'], undefined, leaf);
  const fv = fe.emit(k.mask.scoreFull);
  return `if (full) {
${indent}  ${[...fe.lines, `s = ${fv};`].join(`\n${indent}  `)}
${indent}} else {
${indent}  ${plain.split('\n').join('\n  ')}
${indent}}`;
}

/** Input slots of an attention kernel in binding order: q, k, v, then what the score reads. */
const attentionSlots = (k: AttentionKernel) => [k.qSlot, k.kSlot, k.vSlot, ...slotsOf([k.score])].filter((x, i, a) => a.indexOf(x) === i);

/** What both attention kernels derive from the kernel: grid, coordinates, loads, vector width (4 where D and Dv allow). */
function attentionSetup(k: AttentionKernel, rows: number) {
  const {batchShape, Sq, D, Dv} = k;
  const batch = sizeOf(batchShape), qBlocks = Math.ceil(Sq / rows);
  const W = D % 4 === 0 && Dv % 4 === 0 ? 4 : 1;
  const vt = W === 4 ? 'vec4<f32>' : 'f32';
  return {
    batch, qBlocks, gx: grid(batch * qBlocks)[0], bc: batchShape.map((_, i) => `c${i}`), load: loader(k), slots: attentionSlots(k),
    W, vt, zero: W === 4 ? 'vec4<f32>(0.0)' : '0.0', Dw: D / W, Dvw: Dv / W,
    lanes: (f: (c: string) => string) => (W === 4 ? `${vt}(${['0', '1', '2', '3'].map(c => f(c)).join(', ')})` : f('0')),
    dot: (a: string, b: string) => (W === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`),
  };
}

/**
 * An attention shader around `body`: bindings (q, k, v, the mask's buffers, the tile format), the
 * workgroup declarations `decls`, and a main() that finds its batch entry `bi` (coordinates c0..)
 * and first query row `q0` of `rows` before running `body`.
 */
function attentionShader(k: AttentionKernel, rows: number, threads: number, decls: string, body: string): Shader {
  const {batch, qBlocks, gx, bc, slots} = attentionSetup(k, rows);
  return {
    bindings: slots,
    tileBinding: k.mask ? slots.length + 1 : undefined,
    workgroups: grid(batch * qBlocks),
    code: `${WGSL_HELPERS}
${declarations(k, slots)}
${tileDeclarations(k.mask, slots.length + 1)}
${decls}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let flat = i32(wid.x + wid.y * ${gx}u);
  if (flat >= ${batch * qBlocks}) { return; }
  let bi = flat / ${qBlocks};
  let q0 = (flat % ${qBlocks}) * ${rows};
  ${coordLines(k.batchShape, 'bi', bc).join('\n  ')}
${body}
}`,
  };
}

/**
 * Block-wise (flash-style) attention with register tiles: a workgroup of 2·Br invocations takes Br
 * query rows of one batch entry; Q stays in workgroup memory, K and V stream through it in tiles of
 * 32 keys, and softmax is online (running max and sum per row), so no score matrix is stored. Each
 * invocation owns 4 query rows: it computes their scores against 4 keys of the tile (16 dot
 * products from 8 loads of 4 lanes each) and their output columns c ≡ its lane (mod 8), so every
 * value loaded from workgroup memory feeds several FMAs. Block-sparse (`k.mask`): only the key tiles
 * the mask format lists for this query block are visited; full tiles skip the mask term.
 */
export function attention(k: AttentionKernel): Shader {
  const {Sq, Sk, Br, mask} = k;
  const Bc = 32, T = 2 * Br;  // 8 invocations share 4 rows: 4 keys each, columns interleaved by 8
  if (k.Bc !== Bc || k.threads !== T || Br % 4 !== 0) {
    throw new Error(`block-wise attention runs Bc=32 and 2·Br invocations (Br a multiple of 4), got Br=${Br} Bc=${k.Bc} threads=${k.threads}`);
  }
  const {qBlocks, bc, load, W, vt, zero, lanes, dot, Dw, Dvw} = attentionSetup(k, Br);
  // Rows of Q and K padded by one element: the 8 lanes of a row group read 8 rows at once without bank conflicts.
  const QS = Dw + 1, KS = Math.max(Dw + 1, Dvw);
  const NC = Math.ceil(Dvw / 8);  // output column chunks per invocation
  const R4 = [0, 1, 2, 3];
  const chunk = (n: number) => `kg + ${8 * n}`;
  const chunkGuard = (n: number, body: string) => ((n + 1) * 8 <= Dvw ? `{ ${body} }` : `if (${chunk(n)} < ${Dvw}) { ${body} }`);
  const accs = R4.flatMap(i => R4.map(u => `a${i}${u}`));
  const tileLoop = mask ? `${tileListLines(mask, qBlocks, T)}
  workgroupBarrier();
  for (var t = 0; t < nt; t++) {
    let entry = tileList[t];
    let j0 = i32(entry & 0xffffu) * ${Bc};
    let full = (entry >> 16u) == ${TILE_FULL}u;` : `workgroupBarrier();
  for (var j0 = 0; j0 < ${Sk}; j0 += ${Bc}) {`;
  const decls = `var<workgroup> qs: array<${vt}, ${Br * QS}>;
var<workgroup> kv: array<${vt}, ${Bc * KS}>;
var<workgroup> ps: array<f32, ${Br * Bc}>;
var<workgroup> pmax: array<f32, ${Br * 8}>;  // per row, the 8 invocations' maxima over their keys`;
  return attentionShader(k, Br, T, decls, `  let rg = i32(lid) / 8;   // this invocation's rows: 4·rg .. 4·rg + 3 of the block
  let kg = i32(lid) % 8;   // its keys kg + 8u of a tile, its output chunks kg + 8n
  for (var t = i32(lid); t < ${Br * Dw}; t += ${T}) {
    let ii = min(q0 + t / ${Dw}, ${Sq - 1});
    let dw = t % ${Dw};
    qs[(t / ${Dw}) * ${QS} + dw] = ${lanes(c => load(k.qSlot, offsetCode(k.q, [...bc, 'ii', `(dw * ${W} + ${c})`])))};
  }
  ${R4.map(i => `var m${i} = -inf_(); var l${i} = 0.0;`).join(' ')}
  ${R4.flatMap(i => Array.from({length: NC}, (_, n) => `var o${i}_${n} = ${zero};`)).join(' ')}
  ${tileLoop}
    // K tile (the previous tile's readers are done: barrier at the loop's end).
    for (var t = i32(lid); t < ${Bc * Dw}; t += ${T}) {
      let jt = min(j0 + t / ${Dw}, ${Sk - 1});
      let dw = t % ${Dw};
      kv[(t / ${Dw}) * ${KS} + dw] = ${lanes(c => load(k.kSlot, offsetCode(k.k, [...bc, 'jt', `(dw * ${W} + ${c})`])))};
    }
    workgroupBarrier();
    // Scores of 4 rows × 4 keys.
    ${accs.map(a => `var ${a} = 0.0;`).join(' ')}
    for (var dw = 0; dw < ${Dw}; dw++) {
      ${R4.map(i => `let qa${i} = qs[(rg * 4 + ${i}) * ${QS} + dw];`).join(' ')}
      ${R4.map(u => `let kb${u} = kv[(kg + ${8 * u}) * ${KS} + dw];`).join(' ')}
      ${R4.flatMap(i => R4.map(u => `a${i}${u} = a${i}${u} + ${dot(`qa${i}`, `kb${u}`)};`)).join(' ')}
    }
    var sv = array<f32, 16>(${accs.join(', ')});
    var tm = array<f32, 4>(-inf_(), -inf_(), -inf_(), -inf_());  // this invocation's max per row
    for (var e = 0; e < 16; e++) {
      let r = rg * 4 + e / 4;
      let j = j0 + kg + 8 * (e % 4);
      let ii = min(q0 + r, ${Sq - 1});
      let acc = sv[e];
      var s = -inf_();
      if (j < ${Sk}) {
        ${scoreLines(k, bc, '        ')}
      }
      ps[r * ${Bc} + kg + 8 * (e % 4)] = s;
      tm[e / 4] = max_(tm[e / 4], s);
    }
    ${R4.map(i => `pmax[(rg * 4 + ${i}) * 8 + kg] = tm[${i}];`).join(' ')}
    workgroupBarrier();
    // V tile over K; each row's new running max (the 8 lanes of a row group compute the same).
    for (var t = i32(lid); t < ${Bc * Dvw}; t += ${T}) {
      let jt = min(j0 + t / ${Dvw}, ${Sk - 1});
      let dw = t % ${Dvw};
      kv[(t / ${Dvw}) * ${KS} + dw] = ${lanes(c => load(k.vSlot, offsetCode(k.v, [...bc, 'jt', `(dw * ${W} + ${c})`])))};
    }
    ${R4.map(i => `var n${i} = m${i};`).join(' ')}
    for (var c = 0; c < 8; c++) {
      ${R4.map(i => `n${i} = max_(n${i}, pmax[(rg * 4 + ${i}) * 8 + c]);`).join(' ')}
    }
    workgroupBarrier();
    // p = exp(s - max) for this invocation's 16 scores; rows with only -inf so far keep no weight
    // (a row of only -inf ends 0/0 = NaN, as the chain gives).
    let ninf = -inf_();
    for (var e = 0; e < 16; e++) {
      let i = e / 4;
      let at = (rg * 4 + i) * ${Bc} + kg + 8 * (e % 4);
      let mx = select(select(select(n3, n2, i == 2), n1, i == 1), n0, i == 0);
      ps[at] = select(exp_(ps[at] - mx), 0.0, mx == ninf);
    }
    ${R4.map(i => `if (n${i} != ninf) { let alpha = exp_(m${i} - n${i}); l${i} = l${i} * alpha; ${
      Array.from({length: NC}, (_, n) => `o${i}_${n} = o${i}_${n} * alpha;`).join(' ')} m${i} = n${i}; }`).join('\n    ')}
    workgroupBarrier();
    for (var jj = 0; jj < ${Bc}; jj++) {
      ${R4.map(i => `let p${i} = ps[(rg * 4 + ${i}) * ${Bc} + jj]; l${i} = l${i} + p${i};`).join(' ')}
      ${Array.from({length: NC}, (_, n) => chunkGuard(n, `let v = kv[jj * ${KS} + ${chunk(n)}]; ${
        R4.map(i => `o${i}_${n} = fma(${W === 4 ? `vec4<f32>(p${i})` : `p${i}`}, v, o${i}_${n});`).join(' ')}`)).join('\n      ')}
    }
    workgroupBarrier();
  }
  ${R4.map(i => `if (q0 + rg * 4 + ${i} < ${Sq}) {
    let i = q0 + rg * 4 + ${i};
    ${Array.from({length: NC}, (_, n) => chunkGuard(n, (W === 4 ? [0, 1, 2, 3] : [0]).map(c =>
        store(k, offsetCode(k.out, [...bc, 'i', `((${chunk(n)}) * ${W} + ${c})`]), `o${i}_${n}${W === 4 ? `[${c}]` : ''} / l${i}`)).join(' '))).join('\n    ')}
  }`).join('\n  ')}`);
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


/**
 * Row-wise attention (STOF's kernel for short rows): a workgroup of `threads` invocations takes Br
 * query rows of one batch entry and keeps their whole score rows in workgroup memory, so softmax is
 * exact (one max, one sum, no per-tile rescaling) and every invocation has work even when Sq is
 * small. Three phases: scores (one key per invocation, its K row in registers, the Br rows' q from
 * workgroup memory), row max and sum (threads/Br invocations per row), then P·V (one (row, vec4 of
 * Dv) output per invocation). With a mask, only the keys of the non-empty Br × Bc tiles are visited;
 * their scores are stored compactly by position in the tile list.
 */
export function rowwiseAttention(k: AttentionKernel): Shader {
  const {Sq, Sk, Br: R, Bc, threads: T, mask} = k;
  const {qBlocks, bc, load, W, vt, zero, lanes, dot, Dw, Dvw} = attentionSetup(k, R);
  const TPR = T / R;
  const nKT = Math.ceil(Sk / Bc), PS = mask ? nKT * Bc : Sk;  // score slots per row
  // Key of score slot x: through the tile list with a mask, else x itself.
  const keyOf = mask ? `let entry = tileList[x / ${Bc}];
      let j = i32(entry & 0xffffu) * ${Bc} + x % ${Bc};` : 'let j = x;';
  const reduce = (op: (a: string, b: string) => string) => `workgroupBarrier();
  for (var w = ${Math.floor(TPR / 2)}u; w > 0u; w = w / 2u) {
    if (u < w) { red[lid] = ${op('red[lid]', 'red[lid + w]')}; }
    workgroupBarrier();
  }`;
  const decls = `var<workgroup> qs: array<${vt}, ${R * Dw}>;
var<workgroup> ps: array<f32, ${R * PS}>;
var<workgroup> red: array<f32, ${T}>;
var<workgroup> rowSum: array<f32, ${R}>;`;
  return attentionShader(k, R, T, decls, `  for (var t = i32(lid); t < ${R * Dw}; t += ${T}) {
    let ii = min(q0 + t / ${Dw}, ${Sq - 1});
    let dw = t % ${Dw};
    qs[t] = ${lanes(c => load(k.qSlot, offsetCode(k.q, [...bc, 'ii', `(dw * ${W} + ${c})`])))};
  }
  ${mask ? `${tileListLines(mask, qBlocks, T)}
  let nk = nt * ${Bc};` : `let nk = ${Sk};`}
  workgroupBarrier();
  // Scores: one key per invocation, q·k for the block's rows.
  for (var x = i32(lid); x < nk; x += ${T}) {
    ${keyOf}
    ${mask ? `let full = (entry >> 16u) == ${TILE_FULL}u;` : ''}
    if (j < ${Sk}) {
      var accs: array<f32, ${R}>;
      for (var r = 0; r < ${R}; r++) { accs[r] = 0.0; }
      for (var dw = 0; dw < ${Dw}; dw++) {
        let kk = ${lanes(c => load(k.kSlot, offsetCode(k.k, [...bc, 'j', `(dw * ${W} + ${c})`])))};
        for (var r = 0; r < ${R}; r++) { accs[r] = accs[r] + ${dot(`qs[r * ${Dw} + dw]`, 'kk')}; }
      }
      for (var r = 0; r < ${R}; r++) {
        let ii = min(q0 + r, ${Sq - 1});
        let acc = accs[r];
        var s: f32;
        ${scoreLines(k, bc, '        ')}
        ps[r * ${PS} + x] = s;
      }
    } else {
      for (var r = 0; r < ${R}; r++) { ps[r * ${PS} + x] = -inf_(); }
    }
  }
  workgroupBarrier();
  // Row max, then p = exp(s - max) in place and the row sum (a row of only -inf gives NaN, as the chain).
  let r = i32(lid) / ${TPR};
  let u = lid % ${TPR}u;
  var mx = -inf_();
  for (var x = i32(u); x < nk; x += ${TPR}) { mx = max_(mx, ps[r * ${PS} + x]); }
  red[lid] = mx;
  ${reduce((a, b) => `max_(${a}, ${b})`)}
  let m = red[u32(r * ${TPR})];
  workgroupBarrier();
  var sum = 0.0;
  for (var x = i32(u); x < nk; x += ${TPR}) {
    let p = exp_(ps[r * ${PS} + x] - m);
    ps[r * ${PS} + x] = p;
    sum = sum + p;
  }
  red[lid] = sum;
  ${reduce((a, b) => `(${a} + ${b})`)}
  if (u == 0u) { rowSum[r] = red[lid]; }
  workgroupBarrier();
  // P·V: one (row, ${W === 4 ? 'vec4 of Dv' : 'Dv element'}) per invocation.
  for (var o = i32(lid); o < ${R * Dvw}; o += ${T}) {
    let rr = o / ${Dvw};
    let e = o % ${Dvw};
    var acc = ${zero};
    for (var x = 0; x < nk; x++) {
      ${keyOf}
      let p = ps[rr * ${PS} + x];
      if (j < ${Sk} && p != 0.0) {
        acc = fma(${W === 4 ? 'vec4<f32>(p)' : 'p'}, ${lanes(c => load(k.vSlot, offsetCode(k.v, [...bc, 'j', `(e * ${W} + ${c})`])))}, acc);
      }
    }
    let i = q0 + rr;
    if (i < ${Sq}) {
      let l = rowSum[rr];
      ${W === 4 ? [0, 1, 2, 3].map(c => store(k, offsetCode(k.out, [...bc, 'i', `(e * 4 + ${c})`]), `acc[${c}] / l`)).join('\n      ') :
                  store(k, offsetCode(k.out, [...bc, 'i', 'e']), 'acc / l')}
    }
  }`);
}
