#!/usr/bin/env bash
# Masked attention on the CUDA executor against the PyTorch peers, on the GPU machine (issue #8):
# bench/cuda_attention.mjs (stof fp16 tensor-core and fp32 kernels), then bench/device/attn_peers.py
# (FlexAttention, SDPA + dense mask, SDPA flash; float16), one after the other on the same GPU in one
# command, merged by bench/cuda_attention_merge.mjs into $OUT/cuda_attention.json, ratio table last.
# Here, first:  flock /tmp/stof-build.lock npm run build && ../shared/device/pack.sh dist build/tsc
# Device run (carry [".device-carry"]):  source .device-carry/unpack.sh >/dev/null 2>&1; bash bench/device/cuda_attention.sh
# Writes under $OUT: cuda_attention_stof.json (+ .log), attn_peers.json (+ .log), cuda_attention.json,
# cuda_attention_table.md, gpu.txt. Env (optional): S (e.g. 128,512,1024), MASKS, TUNE=1 (also time
# other chunk / CTA sizes of the dense fp16 kernel, mask none), STAGING=1 (also the fp16 kernel with Q/K/V
# packed to fp16 first and without, forced), NO_FP32=1 (no fp32 kernel), STOF_BUDGET_S (default 150), PEERS_BUDGET_S (default 150).
# S and MASKS reach attn_peers.py through the environment (export them, or set them on the command line).
set -u
out=${OUT:-/tmp/out}; mkdir -p "$out"
# build/tsc travels in .device-carry/nm.tar.xz (as ./tsc); unpack.sh skips that archive on a warm
# machine that already has node_modules, so take it from this carry every time.
# TSC_TAR=path: a tar.xz of build/tsc (as tsc/...) carried on its own instead.
rm -rf /tmp/carry-tsc && mkdir -p /tmp/carry-tsc
if [ -n "${TSC_TAR:-}" ]; then tar -xJf "$TSC_TAR" -C /tmp/carry-tsc; else tar -xJf .device-carry/nm.tar.xz -C /tmp/carry-tsc ./tsc 2>/dev/null; fi
if [ -d /tmp/carry-tsc/tsc ]; then rm -rf build/tsc && mkdir -p build && mv /tmp/carry-tsc/tsc build/tsc; fi
[ -f build/tsc/src/kernels/cuda/attention_mma_cuda.js ] || { echo "no build/tsc: pack with ../shared/device/pack.sh dist build/tsc"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > "$out/gpu.txt" 2>&1
stof_budget=${STOF_BUDGET_S:-150}; peers_budget=${PEERS_BUDGET_S:-150}

echo "--- stof on the CUDA executor (fp16 tensor cores, fp32)"
timeout "$stof_budget" node bench/cuda_attention.mjs --out "$out/cuda_attention_stof.json" ${S:+--S $S} ${MASKS:+--masks $MASKS} \
  ${TUNE:+--tune} ${STAGING:+--staging} ${NO_FP32:+--no-fp32} > "$out/cuda_attention_stof.log" 2>&1
echo "exit $?"; tail -40 "$out/cuda_attention_stof.log"

echo "--- PyTorch peers (budget ${peers_budget} s)"
OUT="$out" PEERS_BUDGET_S=$peers_budget timeout $((peers_budget + 60)) python3 bench/device/attn_peers.py > "$out/attn_peers.log" 2>&1
echo "exit $?; $(grep -c '^{' "$out/attn_peers.log") rows"; grep -v '^{' "$out/attn_peers.log" | tail -5

echo "--- merged"
node bench/cuda_attention_merge.mjs --stof "$out/cuda_attention_stof.json" --peers "$out/attn_peers.json" --out "$out/cuda_attention.json" \
  --table "$out/cuda_attention_table.md" --command "bash bench/device/cuda_attention.sh (S=${S:-all} MASKS=${MASKS:-all}${TUNE:+ TUNE=1}${STAGING:+ STAGING=1}${NO_FP32:+ NO_FP32=1})"
