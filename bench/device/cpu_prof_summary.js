// Summarizes a V8 .cpuprofile: self time by function inside the subtree of functions matching argv[3]
// (default: all), and inclusive time of the heaviest frames there.  node cpu_prof_summary.js FILE [REGEX]
const fs = require('fs');
const p = JSON.parse(fs.readFileSync(process.argv[2]));
const root = new RegExp(process.argv[3] ?? '.');
const dt = {};
for (let i = 0; i < p.samples.length; i++) dt[p.samples[i]] = (dt[p.samples[i]] || 0) + (p.timeDeltas[i] || 0);
const byId = new Map(p.nodes.map(n => [n.id, n]));
const name = n => `${n.callFrame.functionName || '(anon)'} ${(n.callFrame.url || '').split('/').pop()}:${n.callFrame.lineNumber}`;
const self = {}, incl = {};
function walk(id, inside) {
  const n = byId.get(id);
  const here = inside || root.test(name(n));
  let total = dt[id] || 0;
  for (const c of n.children || []) total += walk(c, here);
  if (here) {
    self[name(n)] = (self[name(n)] || 0) + (dt[id] || 0);
    incl[name(n)] = (incl[name(n)] || 0) + total;
  }
  return total;
}
walk(p.nodes[0].id, false);
const top = (o, k) => Object.entries(o).sort((a, b) => b[1] - a[1]).slice(0, k).map(([f, v]) => `  ${(v / 1000).toFixed(1).padStart(8)} ms  ${f}`).join('\n');
console.log(`self time under /${root.source}/:\n${top(self, 30)}\ninclusive:\n${top(incl, 30)}`);
