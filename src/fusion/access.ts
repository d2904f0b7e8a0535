// How a kernel reads a stored buffer from the coordinates of its own iteration domain. Views
// (reshape, transpose, broadcast) compose into this map, so they cost no memory pass: the head
// split and merge of attention and the bias broadcast all become index arithmetic.
//
// For domain coordinates c, the element offset is  offset + Σ_i Σ_{t in dims[i]} ((c_i / t.div) % t.mod) * t.stride
// (t.mod = 0: no modulo). A dim with no terms is broadcast.

export interface Term {
  div: number;
  mod: number;
  stride: number;
}

export interface AccessMap {
  /** The domain this map is indexed by. */
  shape: number[];
  dims: Term[][];
  offset: number;
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

/** The map of a stored, row-major buffer of `shape`. */
export function contiguous(shape: readonly number[]): AccessMap {
  const strides = contiguousStrides(shape);
  return {
    shape: [...shape],
    dims: shape.map((d, i) => (d === 1 ? [] : [{div: 1, mod: 0, stride: strides[i]}])),
    offset: 0,
  };
}

export function transposeAccess(a: AccessMap, perm: readonly number[]): AccessMap {
  return {shape: perm.map(p => a.shape[p]), dims: perm.map(p => a.dims[p]), offset: a.offset};
}

/** Broadcasts `a` (numpy rules, right-aligned) to `shape`. */
export function broadcastAccess(a: AccessMap, shape: readonly number[]): AccessMap {
  const lead = shape.length - a.shape.length;
  if (lead < 0) throw new Error(`cannot broadcast [${a.shape}] to [${shape}]`);
  const dims: Term[][] = [];
  for (let i = 0; i < shape.length; i++) {
    const j = i - lead;
    if (j < 0) { dims.push([]); continue; }
    if (a.shape[j] === shape[i]) dims.push(a.dims[j]);
    else if (a.shape[j] === 1) dims.push([]);
    else throw new Error(`cannot broadcast [${a.shape}] to [${shape}]`);
  }
  return {shape: [...shape], dims, offset: a.offset};
}

/**
 * Re-indexes `a` by a domain of `shape` with the same number of elements, row-major (a reshape).
 * Returns null where the terms do not compose (a many-to-many regrouping of dims that were already
 * split); the caller then stores the value contiguously first.
 */
export function reshapeAccess(a: AccessMap, shape: readonly number[]): AccessMap|null {
  if (sizeOf(a.shape) !== sizeOf(shape)) {
    throw new Error(`reshape of [${a.shape}] to [${shape}] changes the number of elements`);
  }
  if (sizeOf(shape) === 0) return {shape: [...shape], dims: shape.map(() => []), offset: a.offset};
  // Size-1 dims carry no index; drop them on both sides and put them back as broadcast dims.
  const from = a.shape.map((d, i) => ({d, terms: a.dims[i]})).filter(x => x.d !== 1);
  const toIdx = shape.map((d, i) => ({d, i})).filter(x => x.d !== 1);
  const dims: Term[][] = shape.map(() => []);
  let f = 0, t = 0;
  while (f < from.length || t < toIdx.length) {
    // Smallest groups with equal products.
    let pf = from[f].d, pt = toIdx[t].d;
    const fg = [f++], tg = [t++];
    while (pf !== pt) {
      if (pf < pt) { pf *= from[f].d; fg.push(f++); } else { pt *= toIdx[t].d; tg.push(t++); }
    }
    if (fg.length === 1 && tg.length === 1) {
      dims[toIdx[tg[0]].i].push(...from[fg[0]].terms);  // the same dim, renamed
    } else if (fg.length === 1) {
      // One source dim split over several target dims: c_src = Σ_j c_j * P_j.
      const src = from[fg[0]];
      let inner = 1;
      const places = tg.map(j => toIdx[j]).reverse().map(x => { const p = inner; inner *= x.d; return {x, p}; });
      for (const term of src.terms) {
        // The term reads digits [tLo, tHi) of c_src (a term without modulo: up to the dim's size).
        // Splittable only if each target digit lands entirely inside or outside that range.
        const tLo = term.div, tHi = term.mod === 0 ? src.d : term.div * term.mod;
        for (const {x, p} of places) {
          const lo = p, hi = p * x.d;  // this target dim covers source values [lo, hi) in steps of lo
          if (hi <= tLo) continue;  // digits below the term: together less than its divisor
          if (lo >= tHi) {  // digits above: must add whole multiples of the modulus
            if (lo % tHi !== 0) return null;
            continue;
          }
          if (lo >= tLo && hi <= tHi && lo % tLo === 0) {
            dims[x.i].push({div: 1, mod: 0, stride: term.stride * (lo / tLo)});
          } else if (lo <= tLo && hi >= tHi && tLo % lo === 0 && hi % tHi === 0) {
            dims[x.i].push({div: tLo / lo, mod: term.mod, stride: term.stride});
          } else {
            return null;
          }
        }
      }
    } else if (tg.length === 1) {
      // Several source dims merged into one target dim: c_j = (c / P_j) % n_j.
      const dst = toIdx[tg[0]];
      let inner = 1;
      for (const j of [...fg].reverse()) {
        const src = from[j];
        for (const term of src.terms) {
          const div = inner * term.div;
          // ((c / inner) % n) / div % mod  ==  (c / (inner * div)) % (n / div) % mod  when div | n and mod | n / div
          if (src.d % term.div !== 0 || (term.mod !== 0 && (src.d / term.div) % term.mod !== 0)) return null;
          const mod = term.mod !== 0 ? term.mod : src.d / term.div;
          dims[dst.i].push({div, mod: j === fg[0] && term.mod === 0 ? 0 : mod, stride: term.stride});
        }
        inner *= src.d;
      }
    } else {
      // Many-to-many (e.g. [2,3] -> [3,2]): fine where the source dims form one contiguous block.
      const block = fg.map(j => from[j]);
      const plain = block.every(x => x.terms.length === 1 && x.terms[0].div === 1 && (x.terms[0].mod === 0 || x.terms[0].mod >= x.d));
      if (!plain) return null;
      for (let j = 0; j + 1 < block.length; j++) {
        if (block[j].terms[0].stride !== block[j + 1].terms[0].stride * block[j + 1].d) return null;
      }
      let inner = block[block.length - 1].terms[0].stride;
      for (const j of [...tg].reverse()) {
        dims[toIdx[j].i].push({div: 1, mod: 0, stride: inner});
        inner *= toIdx[j].d;
      }
    }
  }
  return {shape: [...shape], dims, offset: a.offset};
}

/**
 * The same map with the terms of each dim joined where one continues the other: (c % a)·s +
 * (c / a)·(a·s) is c·s. A reshape that splits a dim and merges it back leaves such pairs; joined,
 * the map is a plain strided matrix again (what cuBLASLt takes).
 */
export function mergeTerms(a: AccessMap): AccessMap {
  const dims = a.dims.map(terms => {
    const ts = [...terms].sort((x, y) => x.div - y.div);
    for (let i = 0; i + 1 < ts.length; i++) {
      const [t, u] = [ts[i], ts[i + 1]];
      if (t.mod !== 0 && u.div === t.div * t.mod && u.stride === t.stride * t.mod) {
        ts.splice(i, 2, {div: t.div, mod: u.mod === 0 ? 0 : t.mod * u.mod, stride: t.stride});
        i--;
      }
    }
    return ts;
  });
  return {shape: a.shape, dims, offset: a.offset};
}

/** Offset of the element at `coords` (for the CPU executor and tests). */
export function offsetAt(a: AccessMap, coords: ArrayLike<number>): number {
  let off = a.offset;
  for (let i = 0; i < a.dims.length; i++) {
    const c = coords[i];
    for (const t of a.dims[i]) {
      const q = Math.floor(c / t.div);
      off += (t.mod === 0 ? q : q % t.mod) * t.stride;
    }
  }
  return off;
}

/** Whether the map reads element i of the buffer at domain linear index i. */
export function isIdentity(a: AccessMap): boolean {
  if (a.offset !== 0) return false;
  const strides = contiguousStrides(a.shape);
  for (let i = 0; i < a.shape.length; i++) {
    const terms = a.dims[i];
    if (a.shape[i] === 1) { if (terms.length !== 0) return false; continue; }
    if (terms.length !== 1) return false;
    const t = terms[0];
    if (t.div !== 1 || (t.mod !== 0 && t.mod < a.shape[i]) || t.stride !== strides[i]) return false;
  }
  return true;
}

export function accessKey(a: AccessMap): string {
  return `${a.offset}|${a.dims.map(ts => ts.map(t => `${t.div}/${t.mod}*${t.stride}`).join('+')).join(',')}`;
}
