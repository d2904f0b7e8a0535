// The float64 reference of the attention benchmarks: one query row of softmax(scale·q kᵀ + mask) v,
// compared with a kernel's output row.

/**
 * Max |got - ref| / max(1, |ref|) over row i of the (batch·head) slice starting at row `base`;
 * `visible(j)` says whether key j is kept. NaN counts as infinite. q, k, v, out: [.., S, D] rows.
 */
export function rowDiff({q, k, v}, out, base, i, S, D, scale, visible) {
  const p = new Float64Array(S);
  let max = -Infinity;
  for (let j = 0; j < S; j++) {
    if (!visible(j)) { p[j] = -Infinity; continue; }
    let dot = 0;
    for (let d = 0; d < D; d++) dot += q[(base + i) * D + d] * k[(base + j) * D + d];
    p[j] = dot * scale;
    max = Math.max(max, p[j]);
  }
  let sum = 0;
  for (let j = 0; j < S; j++) { p[j] = Math.exp(p[j] - max); sum += p[j]; }
  let worst = 0;
  for (let d = 0; d < D; d++) {
    let acc = 0;
    for (let j = 0; j < S; j++) if (p[j] !== 0) acc += p[j] * v[(base + j) * D + d];
    const ref = acc / sum, got = out[(base + i) * D + d];
    const e = Math.abs(got - ref) / Math.max(1, Math.abs(ref));
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : e;
  }
  return worst;
}
