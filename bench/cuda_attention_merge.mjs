// Merges bench/cuda_attention.mjs output(s) (stof fp16 / fp32 on the CUDA executor) with
// bench/device/attn_peers.py output(s) (PyTorch fp16: FlexAttention, SDPA + dense mask, SDPA flash)
// into one JSON, rows {S, mask, stof_fp16_ms, stof_fp32_ms, peers: {flex, sdpa_mask, flash}, ...},
// and prints a ratio table: speedup = peer ms / stof ms (above 1: stof is faster), geometric means.
// Several files of each kind (runs over parts of the S x mask matrix) are combined; a later file's
// row replaces an earlier one's.
//
//   node bench/cuda_attention_merge.mjs --stof a.json[,b.json] --peers p.json[,q.json] --out merged.json
//        [--command "..."] [--table table.md]
import fs from 'node:fs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : dflt; };
const read = f => { try { return JSON.parse(fs.readFileSync(f, 'utf8')); } catch (e) { console.log(`(${f}: ${e.message})`); return {rows: []}; } };
const stofs = (opt('stof', '') || '').split(',').filter(x => x).map(read);
const peerss = (opt('peers', '') || '').split(',').filter(x => x).map(read);
const key = r => `${r.S} ${r.mask}`;
const stofRows = new Map(), peerRows = new Map();
for (const j of stofs) for (const r of j.rows) stofRows.set(key(r), r);
for (const j of peerss) for (const r of j.rows) peerRows.set(key(r), r);
const ms = (p, name) => (p?.[name]?.ms ?? null);
const MASK_ORDER = ['none', 'padding', 'causal', 'sliding', 'dilated', 'longformer', 'bigbird'];
const keys = [...new Set([...stofRows.keys(), ...peerRows.keys()])].sort((a, b) => {
  const [sa, ma] = a.split(' '), [sb, mb] = b.split(' ');
  return Number(sa) - Number(sb) || MASK_ORDER.indexOf(ma) - MASK_ORDER.indexOf(mb);
});
const ratio = (peer, ours) => (peer != null && ours != null ? peer / ours : null);
const rows = keys.map(k => {
  const s = stofRows.get(k) ?? {}, p = peerRows.get(k);
  const [S, mask] = k.split(' ');
  const peers = {flex: ms(p, 'flex'), sdpa_mask: ms(p, 'sdpa_dense_mask'), flash: ms(p, 'sdpa_flash')};
  return {S: Number(S), mask, density: s.density ?? p?.density ?? null, kept_pairs: s.kept_pairs ?? p?.kept_pairs ?? null,
          stof_fp16_ms: s.stof_fp16_ms ?? null, stof_fp32_ms: s.stof_fp32_ms ?? null,
          ...Object.fromEntries(Object.entries(s).filter(([n, v]) => /^stof_fp16_.+_ms$/.test(n) && v != null)),
          tflops_eff: s.tflops_eff ?? null, max_rel_diff_f64: s.max_rel_diff_f64 ?? null, kernels: s.kernels ?? null,
          peers, peer_errors: p ? Object.fromEntries(Object.entries(p).filter(([, v]) => v?.error).map(([n, v]) => [n, v.error])) : null,
          speedup: {fp16_vs_flex: ratio(peers.flex, s.stof_fp16_ms), fp16_vs_flash: ratio(peers.flash, s.stof_fp16_ms),
                    fp16_vs_sdpa_mask: ratio(peers.sdpa_mask, s.stof_fp16_ms), fp32_vs_flex: ratio(peers.flex, s.stof_fp32_ms),
                    fp16_vs_fp32: ratio(s.stof_fp32_ms, s.stof_fp16_ms)},
          ...(s.error ? {stof_error: s.error} : {})};
});
const geo = xs => { const v = xs.filter(x => x != null && x > 0); return v.length ? Math.exp(v.reduce((a, x) => a + Math.log(x), 0) / v.length) : null; };
const geomean = {fp16_vs_flex: geo(rows.map(r => r.speedup.fp16_vs_flex)), fp16_vs_flash: geo(rows.map(r => r.speedup.fp16_vs_flash)),
                 fp16_vs_sdpa_mask: geo(rows.map(r => r.speedup.fp16_vs_sdpa_mask)), fp32_vs_flex: geo(rows.map(r => r.speedup.fp32_vs_flex)),
                 fp16_vs_fp32: geo(rows.map(r => r.speedup.fp16_vs_fp32))};
const merged = {
  device: stofs.find(j => j.device)?.device ?? peerss.find(j => j.device)?.device ?? null,
  peers_device: peerss.find(j => j.device)?.device ?? null, torch: peerss.find(j => j.torch)?.torch ?? null,
  date: new Date().toISOString(),
  command: opt('command', null) ?? stofs.map(j => j.command).join('; '),
  stof_commands: stofs.map(j => j.command), stof_dates: stofs.map(j => j.date),
  config: stofs.find(j => j.config)?.config ?? null,
  note: 'stof: fp32 inputs/outputs in device memory, fp16 = tensor-core kernel (fp16 operands, fp32 accumulate/softmax), fp32 = CUDA-core kernel; ' +
        'peers: PyTorch float16 tensors. speedup = peer ms / stof ms (above 1: stof faster). Times: medians of CUDA-event-timed runs.',
  rows, geomean,
  skipped: peerss.flatMap(j => j.skipped ?? []),
};
const out = opt('out', null);
if (out) fs.writeFileSync(out, JSON.stringify(merged, null, 1));
const f = (x, d = 3) => (x == null ? '-' : x >= 10 ? x.toFixed(1) : x.toFixed(d));
const x = v => (v == null ? '-' : `${v.toFixed(2)}x`);
const lines = [`${merged.device ?? '?'} | peers: ${merged.peers_device ?? '?'} (torch ${merged.torch ?? '?'}); B=8 H=12 D=64; speedup = peer ms / stof ms`, '',
  '| S | mask | kept | stof fp16 ms | stof fp32 ms | TFLOP/s fp16 | flex ms | flash ms | sdpa+mask ms | fp16 vs flex | fp16 vs flash | fp32 vs flex | fp16 vs fp32 | diff f64 fp16 |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|'];
for (const r of rows) {
  lines.push(`| ${r.S} | ${r.mask} | ${r.density == null ? '-' : (r.density * 100).toFixed(1) + '%'} | ${f(r.stof_fp16_ms)} | ${f(r.stof_fp32_ms)} | ${f(r.tflops_eff, 1)} | ` +
             `${f(r.peers.flex)} | ${f(r.peers.flash)} | ${f(r.peers.sdpa_mask)} | ${x(r.speedup.fp16_vs_flex)} | ${x(r.speedup.fp16_vs_flash)} | ` +
             `${x(r.speedup.fp32_vs_flex)} | ${x(r.speedup.fp16_vs_fp32)} | ${r.max_rel_diff_f64?.fp16 == null ? '-' : r.max_rel_diff_f64.fp16.toExponential(1)} |`);
}
lines.push('', `geomean speedup: fp16 vs flex ${x(geomean.fp16_vs_flex)} (${rows.filter(r => r.speedup.fp16_vs_flex != null).length} rows), ` +
           `fp16 vs flash ${x(geomean.fp16_vs_flash)} (${rows.filter(r => r.speedup.fp16_vs_flash != null).length} rows), fp16 vs sdpa+mask ${x(geomean.fp16_vs_sdpa_mask)}, ` +
           `fp32 vs flex ${x(geomean.fp32_vs_flex)}, fp16 vs fp32 ${x(geomean.fp16_vs_fp32)}`);
const errs = rows.filter(r => r.stof_error).map(r => `S=${r.S} ${r.mask}: ${r.stof_error}`);
if (errs.length) lines.push(...errs);
if (merged.skipped.length) lines.push(`peers not run: ${merged.skipped.map(s => `S=${s.S} ${s.mask}`).join(', ')}`);
const table = opt('table', null);
if (table) fs.writeFileSync(table, lines.join('\n') + '\n');
console.log(lines.join('\n'));
