#!/usr/bin/env bash
# On the GPU machine: where the JavaScript time of a converted BERT-base forward goes on 'stof'
# (V8 CPU profile of bench/demo.mjs); prints the top self-time functions and the inclusive time of
# the backend's own steps.
set -u
rm -rf /tmp/prof && mkdir -p /tmp/prof
node bench/demo.mjs --runs 1 > /dev/null 2>&1  # writes the fixture first: not in the profile
node --cpu-prof --cpu-prof-dir=/tmp/prof bench/demo.mjs --runs 20 2>&1 | grep -E "^(stof|webgpu|fusion)"
node -e "
const fs=require('fs'); const f=fs.readdirSync('/tmp/prof')[0]; const p=JSON.parse(fs.readFileSync('/tmp/prof/'+f));
const dt={}; for (let i=0;i<p.samples.length;i++) dt[p.samples[i]]=(dt[p.samples[i]]||0)+(p.timeDeltas[i]||0);
const byId=new Map(p.nodes.map(n=>[n.id,n]));
const self={}; for (const n of p.nodes){ const k=n.callFrame.functionName+' '+(n.callFrame.url||'').split('/').slice(-1)[0]+':'+n.callFrame.lineNumber; self[k]=(self[k]||0)+(dt[n.id]||0); }
for (const [k,v] of Object.entries(self).sort((a,b)=>b[1]-a[1]).slice(0,25)) console.log('  self '+(v/1000).toFixed(1)+'ms', k);
const incl=n=>(dt[n.id]||0)+(n.children||[]).reduce((s,c)=>s+incl(byId.get(c)),0);
const want=['flush','signature','collectSubgraph','planSubgraph','run','runKernel','runOnBase','record','materialize','readSync','dispatch','createBindGroup'];
const tot={}; const seen=new Set();
const walk=(n,stack)=>{ const name=n.callFrame.functionName; const isW=want.includes(name)&&!stack.has(name); if(isW){tot[name]=(tot[name]||0)+incl(n);} const s2=isW?new Set([...stack,name]):stack; (n.children||[]).forEach(c=>walk(byId.get(c),s2)); };
walk(p.nodes[0], new Set());
for (const [k,v] of Object.entries(tot).sort((a,b)=>b[1]-a[1])) console.log('  incl '+(v/1000).toFixed(1)+'ms', k);"
