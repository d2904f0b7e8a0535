// Mask builders for attention: boolean tensors, true where a query may see a key. Built on the CPU
// (they are small and made once per shape) and broadcastable to [batch, heads, Sq, Sk].
import * as tf from '@tensorflow/tfjs-core';

function check(name: string, value: number, min: number) {
  if (!Number.isInteger(value) || value < min) throw new Error(`masks: ${name} must be an integer >= ${min}, got ${value}`);
}

/** [Sq, Sk] from a predicate over (query i, key j). */
function build(sq: number, sk: number, keep: (i: number, j: number) => boolean): tf.Tensor2D {
  check('query length', sq, 0);
  check('key length', sk, 0);
  const out = new Uint8Array(sq * sk);
  for (let i = 0; i < sq; i++) for (let j = 0; j < sk; j++) out[i * sk + j] = keep(i, j) ? 1 : 0;
  return tf.tensor2d(out, [sq, sk], 'bool');
}

/** Key j visible to query i when j <= i (aligned at the end when sk > sq, as in decoding with a cache). */
export function causal(sq: number, sk = sq): tf.Tensor2D {
  return build(sq, sk, (i, j) => j <= i + (sk - sq));
}

/** Keys within `window` positions on either side. */
export function slidingWindow(s: number, window: number): tf.Tensor2D {
  check('window', window, 0);
  return build(s, s, (i, j) => Math.abs(i - j) <= window);
}

/** Every `dilation`-th key within `window * dilation` positions on either side. */
export function dilated(s: number, window: number, dilation: number): tf.Tensor2D {
  check('window', window, 0);
  check('dilation', dilation, 1);
  return build(s, s, (i, j) => Math.abs(i - j) <= window * dilation && (i - j) % dilation === 0);
}

/** Longformer: a sliding window plus global tokens that see and are seen by every position. */
export function longformer(s: number, window: number, globalTokens: number[]): tf.Tensor2D {
  check('window', window, 0);
  const g = new Set(globalTokens);
  for (const t of g) if (!Number.isInteger(t) || t < 0 || t >= s) throw new Error(`masks.longformer: global token ${t} is outside [0, ${s})`);
  return build(s, s, (i, j) => Math.abs(i - j) <= window || g.has(i) || g.has(j));
}

/**
 * BigBird over blocks of `block` tokens: `window` blocks around the diagonal, the first `global`
 * blocks global (rows and columns), and `random` extra key blocks per query block (seeded).
 */
export function bigBird(s: number, opts: {block: number, window: number, global: number, random: number, seed?: number}): tf.Tensor2D {
  const {block, window, global, random} = opts;
  check('block', block, 1);
  const nb = Math.ceil(s / block);
  const keep = new Uint8Array(nb * nb);
  let seed = (opts.seed ?? 1) >>> 0;
  const rnd = (n: number) => { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return (seed >>> 8) % n; };
  const half = Math.floor(window / 2);
  for (let bi = 0; bi < nb; bi++) {
    for (let bj = 0; bj < nb; bj++) {
      if (Math.abs(bi - bj) <= half || bi < global || bj < global) keep[bi * nb + bj] = 1;
    }
    for (let r = 0; r < random; r++) keep[bi * nb + rnd(nb)] = 1;
  }
  return build(s, s, (i, j) => keep[Math.floor(i / block) * nb + Math.floor(j / block)] === 1);
}

/** Padding: [B, 1, 1, S], key j visible where j < lengths[b]. */
export function padding(lengths: number[], s: number): tf.Tensor4D {
  lengths.forEach(l => { if (!Number.isInteger(l) || l < 0 || l > s) throw new Error(`masks.padding: length ${l} is outside [0, ${s}]`); });
  const out = new Uint8Array(lengths.length * s);
  lengths.forEach((l, b) => out.fill(1, b * s, b * s + l));
  return tf.tensor4d(out, [lengths.length, 1, 1, s], 'bool');
}

/** A block pattern ([query blocks][key blocks], truthy = visible) expanded to [sq, sk]. */
export function fromBlocks(blocks: ArrayLike<ArrayLike<number|boolean>>, block: number, sq: number, sk = sq): tf.Tensor2D {
  check('block', block, 1);
  const nq = Math.ceil(sq / block), nk = Math.ceil(sk / block);
  if (blocks.length !== nq || Array.from(blocks).some(r => r.length !== nk)) {
    throw new Error(`masks.fromBlocks: expected ${nq} x ${nk} blocks of ${block} for [${sq}, ${sk}], got ${blocks.length} x ${blocks[0]?.length ?? 0}`);
  }
  return build(sq, sk, (i, j) => !!blocks[Math.floor(i / block)][Math.floor(j / block)]);
}
