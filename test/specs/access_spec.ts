// AccessMap composition against brute force: chains of reshape / transpose / broadcast over a
// stored buffer must read exactly the element that materializing each view would.
import {AccessMap, broadcastAccess, contiguous, contiguousStrides, offsetAt, reshapeAccess, sizeOf, transposeAccess} from '../../src/fusion/access';

/** A view as an explicit table: element i of the view reads buffer[table[i]]. */
type Table = {shape: number[], table: number[]};

function unravel(i: number, shape: number[]): number[] {
  const strides = contiguousStrides(shape);
  return shape.map((d, k) => Math.floor(i / strides[k]) % d);
}

function tReshape(t: Table, shape: number[]): Table { return {shape, table: t.table}; }
function tTranspose(t: Table, perm: number[]): Table {
  const shape = perm.map(p => t.shape[p]);
  const inStrides = contiguousStrides(t.shape);
  const table = Array.from({length: sizeOf(shape)}, (_, i) => {
    const c = unravel(i, shape);
    let src = 0;
    perm.forEach((p, k) => { src += c[k] * inStrides[p]; });
    return t.table[src];
  });
  return {shape, table};
}
function tBroadcast(t: Table, shape: number[]): Table {
  const lead = shape.length - t.shape.length;
  const inStrides = contiguousStrides(t.shape);
  const table = Array.from({length: sizeOf(shape)}, (_, i) => {
    const c = unravel(i, shape);
    let src = 0;
    for (let k = 0; k < t.shape.length; k++) if (t.shape[k] !== 1) src += c[k + lead] * inStrides[k];
    return t.table[src];
  });
  return {shape, table};
}

function expectSame(a: AccessMap|null, t: Table) {
  if (a == null) return;  // allowed: the planner stores the value first
  expect(a.shape).toEqual(t.shape);
  for (let i = 0; i < t.table.length; i++) {
    const off = offsetAt(a, unravel(i, t.shape));
    if (off !== t.table[i]) {
      fail(`element ${i} of [${t.shape}] reads ${off}, expected ${t.table[i]} (map ${JSON.stringify(a.dims)})`);
      return;
    }
  }
}

describe('access maps', () => {
  it('compose the attention head split and merge', () => {
    const [B, S, H, D] = [2, 3, 4, 5];
    let a: AccessMap|null = contiguous([B * S, H * D]);
    let t: Table = {shape: [B * S, H * D], table: Array.from({length: B * S * H * D}, (_, i) => i)};
    a = reshapeAccess(a, [B, S, H, D])!; t = tReshape(t, [B, S, H, D]); expectSame(a, t);
    a = transposeAccess(a, [0, 2, 1, 3]); t = tTranspose(t, [0, 2, 1, 3]); expectSame(a, t);
    // merge back: [B, H, S, D] -> transpose -> [B, S, H, D] -> reshape [B, S, H*D]
    a = transposeAccess(a, [0, 2, 1, 3]); t = tTranspose(t, [0, 2, 1, 3]);
    a = reshapeAccess(a, [B, S, H * D]); t = tReshape(t, [B, S, H * D]); expectSame(a, t);
    expect(a).not.toBeNull();
  });

  it('merge heads after attention (non-contiguous merge) keeps div/mod terms', () => {
    const [B, H, S, D] = [2, 3, 4, 5];
    const t0: Table = {shape: [B, H, S, D], table: Array.from({length: B * H * S * D}, (_, i) => i)};
    let a = transposeAccess(contiguous([B, H, S, D]), [0, 2, 1, 3]);
    let t = tTranspose(t0, [0, 2, 1, 3]);
    const m = reshapeAccess(a, [B * S, H * D]);
    expect(m).not.toBeNull();
    expectSame(m, tReshape(t, [B * S, H * D]));
    a = m!; t = tReshape(t, [B * S, H * D]);
    expectSame(reshapeAccess(a, [B, S * H * D]), tReshape(t, [B, S * H * D]));
  });

  it('broadcast a bias and a padding mask', () => {
    const bias = contiguous([7]);
    expectSame(broadcastAccess(bias, [2, 3, 7]), tBroadcast({shape: [7], table: [0, 1, 2, 3, 4, 5, 6]}, [2, 3, 7]));
    const mask = reshapeAccess(contiguous([2, 5]), [2, 1, 1, 5])!;
    const tm = tReshape({shape: [2, 5], table: Array.from({length: 10}, (_, i) => i)}, [2, 1, 1, 5]);
    expectSame(broadcastAccess(mask, [2, 3, 5, 5]), tBroadcast(tm, [2, 3, 5, 5]));
  });

  it('random chains agree with materialized views', () => {
    let seed = 7;
    const rnd = (n: number) => { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return (seed >>> 8) % n; };
    const factor = (n: number): number[] => {  // a random factorization of n into a shape
      const out: number[] = [];
      while (n > 1) { const ds = [...Array(n + 1).keys()].filter(d => d > 1 && n % d === 0); const d = ds[rnd(ds.length)]; out.push(d); n /= d; }
      if (rnd(3) === 0) out.splice(rnd(out.length + 1), 0, 1);
      return out.length ? out : [1];
    };
    let composed = 0, declined = 0;
    for (let trial = 0; trial < 300; trial++) {
      const shape0 = factor([12, 24, 36, 60, 30, 16][rnd(6)]);
      let a: AccessMap = contiguous(shape0);
      let t: Table = {shape: shape0, table: Array.from({length: sizeOf(shape0)}, (_, i) => i)};
      for (let step = 0; step < 4; step++) {
        const kind = rnd(3);
        if (kind === 0) {
          const shape = factor(sizeOf(t.shape));
          const r = reshapeAccess(a, shape);
          if (r == null) { declined++; break; }
          a = r; t = tReshape(t, shape);
        } else if (kind === 1) {
          const perm = [...t.shape.keys()].sort(() => rnd(2) - 0.5);
          a = transposeAccess(a, perm); t = tTranspose(t, perm);
        } else {
          const shape = [1 + rnd(3), ...t.shape];
          a = broadcastAccess(a, shape); t = tBroadcast(t, shape);
        }
        expectSame(a, t);
        composed++;
      }
    }
    expect(composed).toBeGreaterThan(500);
    expect(declined).toBeLessThan(composed);
  });
});
