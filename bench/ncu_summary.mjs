// Sums Nsight Compute's CSV (bench/cuda_ncu_forward.mjs) per kernel name, and lists the kernels in
// launch order with grid and time:  node bench/ncu_summary.mjs ncu.csv [--list]
import fs from 'node:fs';

const [file, ...rest] = process.argv.slice(2);
const lines = fs.readFileSync(file, 'utf8').split('\n').filter(l => l.startsWith('"'));
const parse = l => [...l.matchAll(/"((?:[^"]|"")*)"/g)].map(m => m[1]);
const head = parse(lines[0]);
const col = n => head.indexOf(n);
const rows = lines.slice(1).map(parse).filter(r => r[col('Metric Name')] === 'gpu__time_duration.sum');
const unit = rows[0]?.[col('Metric Unit')];
const scale = {nsecond: 1e-3, ns: 1e-3, usecond: 1, us: 1, msecond: 1e3, ms: 1e3}[unit] ?? 1;
const kernels = rows.map(r => ({name: r[col('Kernel Name')].slice(0, 60), grid: r[col('Grid Size')], block: r[col('Block Size')],
                                us: Number(r[col('Metric Value')].replace(/,/g, '')) * scale}));
const by = new Map();
for (const k of kernels) { const e = by.get(k.name) ?? {n: 0, us: 0}; e.n++; e.us += k.us; by.set(k.name, e); }
const total = kernels.reduce((a, k) => a + k.us, 0);
console.log(`${kernels.length} kernels, ${(total / 1e3).toFixed(3)} ms of device time (each timed alone)`);
for (const [name, e] of [...by].sort((a, b) => b[1].us - a[1].us)) console.log(`  ${(e.us / 1e3).toFixed(3).padStart(7)} ms ${String(e.n).padStart(4)} x  ${name}`);
if (rest.includes('--list')) for (const k of kernels) console.log(`  ${k.us.toFixed(1).padStart(8)} us  ${k.grid.padEnd(14)} ${k.block.padEnd(12)} ${k.name}`);
