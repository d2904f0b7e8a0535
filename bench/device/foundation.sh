#!/usr/bin/env bash
# On the GPU machine (device tool), after `../shared/device/pack.sh dist build/test/specs_node_specs.cjs` here:
#   source .device-carry/unpack.sh; bash bench/device/foundation.sh
# Records the GPU, what Dawn exposes, the demo and the Node specs on the real GPU into $OUT.
set -u
out=${OUT:-/tmp/out}; mkdir -p "$out" build
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
node bench/adapter_info.mjs > "$out/adapter.json" 2> "$out/adapter.err"
node test/run_node.mjs specs-node specs_node_specs.cjs --expected-base webgpu > "$out/specs.log" 2>&1
node bench/demo.mjs --json > "$out/demo.json" 2> "$out/demo.err"
node bench/demo.mjs > "$out/demo.txt" 2>> "$out/demo.err"
cp build/results/specs-node.json "$out/" 2>/dev/null
echo "--- specs";  tail -3 "$out/specs.log"
echo "--- demo";   cat "$out/demo.txt"
echo "--- adapter"; node -e "const r=require('$out/adapter.json'); for (const [k,v] of Object.entries(r)) console.log(k, v && JSON.stringify(v.info), v && v.features.join(' '), v && JSON.stringify(v.limits))"
