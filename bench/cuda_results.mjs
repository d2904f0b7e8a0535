// Merges the CUDA runs into bench/results/cuda.json (issue #8's record) and prints the RESULTS.md
// tables: attention (bench/results/cuda_attention.json, bench/device/cuda_attention.sh) and end to
// end ('stof' on CUDA fp32 / fp16 from bench/device/cuda_e2e.sh with tfjs-backend-webgpu in the same
// process, and PyTorch from bench/hf/torch_e2e.py on the same machine, same weights).
//   node bench/cuda_results.mjs [--dir bench/results]
import fs from 'node:fs';
import path from 'node:path';

const argv = process.argv.slice(2);
const dir = argv.includes('--dir') ? argv[argv.indexOf('--dir') + 1] : 'bench/results';
const read = f => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
const attention = read('cuda_attention.json');
const [fp32, fp16, torch] = [read('e2e_cuda_fp32.json'), read('e2e_cuda_fp16.json'), read('torch_e2e.json')];
const geomean = xs => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);

const e2e = fp32.rows.map(r => {
  const h = fp16.rows.find(x => x.case === r.case), t = torch.rows.find(x => x.case === r.case);
  return {case: r.case, stof_fp32_ms: r.stof_ms, stof_fp16_ms: h?.stof_ms ?? null,
          peers: {...r.peers, ...(t?.peers ?? {})}};
});
const ratio = (peer, ours) => (peer != null && ours != null ? peer / ours : null);
const report = {
  device: attention.device, date: new Date().toISOString().slice(0, 10),
  command: 'bash bench/device/cuda_attention.sh; bash bench/device/cuda_e2e.sh (two commands); python3 bench/hf/torch_e2e.py; node bench/cuda_results.mjs',
  sources: {attention: {date: attention.date, command: attention.command}, e2e_fp32: {date: fp32.date, command: fp32.command},
            e2e_fp16: {date: fp16.date, command: fp16.command}, torch: {date: torch.date, command: torch.command, torch: torch.torch}},
  attention: {config: attention.config, rows: attention.rows, geomean: attention.geomean},
  e2e,
  goals: {
    attention_fp16_vs_flex_geomean: {goal: 1.5, measured: attention.geomean?.fp16_vs_flex ?? null},
    attention_fp16_vs_flash_dense_causal_min: {goal: 0.9, measured: Math.min(...attention.rows.filter(r => r.speedup?.fp16_vs_flash != null).map(r => r.speedup.fp16_vs_flash))},
    e2e_fp16_vs_torch_eager_fp16: {goal: 1.3, measured: e2e.filter(r => /BERT|GPT/.test(r.case)).map(r => ({case: r.case, ratio: ratio(r.peers['torch-eager-fp16'], r.stof_fp16_ms)}))},
  },
};
fs.writeFileSync(path.join(dir, 'cuda.json'), JSON.stringify(report, null, 1));

const f = x => (x == null ? "-" : x.toFixed(2));
const fx = x => (x == null ? "-" : `${x.toFixed(2)}x`);
console.log(`| case | stof CUDA fp32 | stof CUDA fp16 | tfjs-webgpu | torch eager fp32 | torch eager fp16 | torch.compile fp16 | fp32 vs webgpu | fp16 vs torch fp16 |`);
console.log(`|---|---|---|---|---|---|---|---|---|`);
for (const r of e2e) {
  const p = r.peers;
  console.log(`| ${r.case} | ${f(r.stof_fp32_ms)} | ${f(r.stof_fp16_ms)} | ${f(p['tfjs-backend-webgpu'])} | ${f(p['torch-eager-fp32'])} | ` +
              `${f(p['torch-eager-fp16'])} | ${f(p['torch-compile-fp16'])} | ${fx(ratio(p["tfjs-backend-webgpu"], r.stof_fp32_ms))} | ` +
              `${fx(ratio(p["torch-eager-fp16"], r.stof_fp16_ms))} |`);
}
const g = attention.geomean ?? {};
console.log(`\nattention geomean: fp16 vs flex ${f(g.fp16_vs_flex)}x, vs flash ${f(g.fp16_vs_flash)}x, vs sdpa+mask ${f(g.fp16_vs_sdpa_mask)}x; wrote ${path.join(dir, 'cuda.json')}`);
