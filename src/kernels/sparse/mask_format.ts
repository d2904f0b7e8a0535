// The unified sparse format of an attention mask (STOF): the scores are cut into Br×Bc tiles and
// each tile gets a kind — empty (skipped), full (no mask term: the score without mask loads),
// partial (the element mask applied). Stored BSR-style with a fixed row stride: for each (mask
// batch entry, query block) r, word r·(nKT+1) is the count n of non-empty key blocks, followed by n
// words `kt | kind << 16` in increasing kt. Made on the device from the mask's own expression, once
// per mask tensor (every layer of a forward reads the same mask).
import {sizeOf} from '../../fusion/access';
import {binary, constant, Expr, hasNode, mapLeaves, unary, walk} from '../../fusion/expr';

export const TILE_EMPTY = 0;
export const TILE_FULL = 1;
export const TILE_PARTIAL = 2;
/**
 * Partial, but every element either masked out or with a no-op mask term (a two-valued mask:
 * causal, sliding, dilated, padding edges): kernels that read the mask's bitmap (maskBits) apply it
 * from one bit per element instead of the mask expression; others treat it as partial.
 */
export const TILE_BITS = 3;

/**
 * A key whose score at q·k = 0 is at or below this (or -Infinity) is masked out: its softmax weight
 * is exp(score - rowMax), exactly 0 in fp32 unless the row's unmasked logits exceed it by ~900.
 * A query row with no unmasked key keeps every key (the chain's uniform or NaN row is reproduced).
 */
export const MASKED_AT_OR_BELOW = -1000;

export interface MaskSpec {
  /** Query rows per block (the attention workgroup's rows) and keys per block (its K/V tile). */
  Br: number;
  Bc: number;
  nQT: number;
  nKT: number;
  /** For each batch dim of the attention: its size when the mask depends on it, else 1. */
  maskBatch: number[];
  /** The score at acc = 0, over [...batch, Sq, Sk]. */
  s0: Expr;
  /** Nonzero where the mask term is a no-op, so `scoreFull` equals the score; null: no full tiles. */
  zero: Expr|null;
  /** The score without its mask term (reads no buffer). */
  scoreFull: Expr|null;
}

/** `e` with acc replaced by `by`. */
export function substituteAcc(e: Expr, by: Expr): Expr {
  return mapLeaves(e, l => (l.k === 'acc' ? by : l))!;
}

/**
 * Splits score = f(acc, mask term) into the score without the term and the test that the term is a
 * no-op: `x + M` (M = 0 leaves x exactly) under any chain of scale/shift by constants, and
 * `select(C, x, y)` (C true gives x). Null when the score has no such single mask term.
 */
function splitMaskTerm(e: Expr): {full: Expr, zero: Expr}|null {
  const isMask = (m: Expr) => !hasNode(m, 'acc') && hasNode(m, 'in');
  const isConst = (m: Expr) => !hasNode(m, 'acc') && !hasNode(m, 'in');
  if (e.k === 'b' && e.op === 'add') {
    if (hasNode(e.a, 'acc') && isMask(e.b)) return {full: e.a, zero: binary('eq', e.b, constant(0))};
    if (hasNode(e.b, 'acc') && isMask(e.a)) return {full: e.b, zero: binary('eq', e.a, constant(0))};
  }
  if (e.k === 'sel' && isMask(e.c) && hasNode(e.a, 'acc') && isConst(e.b)) return {full: e.a, zero: unary('ne0', e.c)};
  if (e.k === 'b' && ['add', 'sub', 'mul', 'div'].includes(e.op)) {
    if (hasNode(e.a, 'acc') && isConst(e.b)) { const r = splitMaskTerm(e.a); return r && {full: {...e, a: r.full}, zero: r.zero}; }
    if (hasNode(e.b, 'acc') && isConst(e.a)) { const r = splitMaskTerm(e.b); return r && {full: {...e, b: r.full}, zero: r.zero}; }
  }
  return null;
}

/** Which of the first `n` domain dims the expression's loads depend on. */
function dependsOn(e: Expr, n: number): boolean[] {
  const out = new Array<boolean>(n).fill(false);
  walk(e, x => {
    if (x.k === 'in') x.map.dims.slice(0, n).forEach((terms, d) => { if (terms.length > 0) out[d] = true; });
  });
  return out;
}

/** The mask of an attention score expression, or null when the score reads no buffer (no mask). */
export function maskSpec(score: Expr, batchShape: number[], Sq: number, Sk: number, Br: number, Bc: number): MaskSpec|null {
  if (!hasNode(score, 'in')) return null;
  const s0 = substituteAcc(score, constant(0));
  const dep = dependsOn(s0, batchShape.length);
  const split = splitMaskTerm(score);
  const full = split && !hasNode(split.full, 'in') ? split : null;
  return {Br, Bc, nQT: Math.ceil(Sq / Br), nKT: Math.ceil(Sk / Bc), maskBatch: batchShape.map((d, i) => (dep[i] ? d : 1)),
          s0, zero: full?.zero ?? null, scoreFull: full?.full ?? null};
}

/** u32 words of the format: (count + nKT entries) per mask batch entry and query block. */
export function formatWords(m: MaskSpec): number {
  return sizeOf(m.maskBatch) * m.nQT * (m.nKT + 1);
}

/** Largest bitmap (u32 words, 64 MiB) kept beside a format; a larger mask has no TILE_BITS tiles. */
const MAX_BITMAP_WORDS = 2 ** 24;

/**
 * The mask's bitmap, where it has one: bit (j % 32) of word [mask batch entry, row i, j / 32] (rows
 * padded to nQT·Br, keys to nKT·Bc; rows past Sq and keys past Sk are 0) is set where key j is kept
 * (the score at q·k = 0 above MASKED_AT_OR_BELOW). Kept after the format's words. Needs tiles of
 * whole words (Bc a multiple of 32) and a mask term that can be a no-op (`zero`).
 */
export function maskBits(m: MaskSpec): {rowWords: number, words: number}|null {
  if (m.zero == null || m.Bc % 32 !== 0) return null;
  const rowWords = (m.nKT * m.Bc) / 32;
  const words = sizeOf(m.maskBatch) * m.nQT * m.Br * rowWords;
  return words <= MAX_BITMAP_WORDS ? {rowWords, words} : null;
}
