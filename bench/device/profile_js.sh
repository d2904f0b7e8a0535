#!/usr/bin/env bash
# On the GPU machine: where the JavaScript time of one fused call goes (LayerNorm [1024,768] on
# 'stof' and on tfjs-backend-webgpu), from V8's CPU profile; prints the top self-time functions.
set -u
for be in stof webgpu; do
  rm -rf /tmp/prof && mkdir -p /tmp/prof
  node --cpu-prof --cpu-prof-dir=/tmp/prof bench/profile_layernorm.mjs $be 2>&1 | grep -v XDG | tail -1
  node -e "
const fs=require('fs'); const f=fs.readdirSync('/tmp/prof')[0]; const p=JSON.parse(fs.readFileSync('/tmp/prof/'+f));
const dt={}; for (let i=0;i<p.samples.length;i++) dt[p.samples[i]]=(dt[p.samples[i]]||0)+(p.timeDeltas[i]||0);
const self={}; for (const n of p.nodes){ const k=n.callFrame.functionName+' '+(n.callFrame.url||'').split('/').slice(-1)[0]+':'+n.callFrame.lineNumber; self[k]=(self[k]||0)+(dt[n.id]||0); }
for (const [k,v] of Object.entries(self).sort((a,b)=>b[1]-a[1]).slice(0,18)) console.log('  '+(v/1000).toFixed(1)+'ms', k);"
done
