#!/usr/bin/env bash
# On the GPU machine (device tool): 'stof' on CUDA end to end, validated against Hugging Face and timed
# against tfjs-backend-webgpu (same process) and PyTorch (eager fp32/fp16, torch.compile fp16; same
# weights: bench/hf/export_hf.py's seeded models, which the fixtures are built from).
# Here first: npm ci && npm run build && ../shared/device/pack.sh dist build/tsc
# Then a device run with carry [".device-carry"]:
#   source .device-carry/unpack.sh; bash bench/device/cuda_e2e.sh [STAGE...]
# STAGE: export | validate | check32 | check16 | torch | e2e32 | e2e16 (default: all but check32, which needs two 10-minute
# commands: "export validate check16 torch" then "e2e32 e2e16"; the export stays in tmp/ while warm).
# Env: PEERS32 / PEERS16 (bench/e2e.mjs peers), TRIALS, TORCH_ARGS (default: torch.compile on two cases).
# Logs and JSON go to $OUT; a short summary is printed last.
set -u
out=${OUT:-/tmp/out}; mkdir -p "$out"
hf=${HF_EXPORT:-tmp/hf_export}
stages=${*:-export validate check16 torch e2e32 e2e16}
summary="$out/cuda_summary.txt"; : > "$summary"
note() { echo "$*" | tee -a "$summary"; }
for stage in $stages; do
  t0=$(date +%s)
  case $stage in
    export)
      timeout 300 python3 bench/hf/export_hf.py --out "$hf" --no-onnx --skip-existing \
        --models bert_tiny,gpt2_tiny,long_tiny,bert_base,gpt2_base,long_base > "$out/export.log" 2>&1
      note "export: rc=$? ($(( $(date +%s) - t0 )) s)";;
    validate)  # tiny models: 'stof' on CUDA (fp32) and tfjs-backend-cpu against HF's last hidden state
      timeout 200 node bench/hf/validate_hf.mjs --dir "$hf" --models bert_tiny,gpt2_tiny,long_tiny --backends stof,cpu \
        --device cuda --out "$out/validate_cuda.json" > "$out/validate_cuda.log" 2>&1
      note "validate (cuda, fp32): rc=$? ($(( $(date +%s) - t0 )) s)"; sed -n '/^model /,$p' "$out/validate_cuda.log" | head -8 | tee -a "$summary";;
    check32)  # the same in fp32 (bound 1e-4), CUDA-graph forwards included
      timeout 150 node bench/cuda_backend_check.mjs --precision fp32 > "$out/cuda_backend_check_fp32.log" 2>&1
      note "cuda_backend_check fp32: rc=$? $(tail -1 "$out/cuda_backend_check_fp32.log")"; grep -E '^FAIL|forwards:' "$out/cuda_backend_check_fp32.log" | head -8 | tee -a "$summary";;
    check16)  # the fixtures and attention chains on CUDA with STOF_PRECISION=fp16 against tfjs-backend-cpu
      timeout 150 node bench/cuda_backend_check.mjs --precision fp16 > "$out/cuda_backend_check_fp16.log" 2>&1
      note "cuda_backend_check fp16: rc=$? $(tail -1 "$out/cuda_backend_check_fp16.log")"; grep -E '^FAIL|forwards:' "$out/cuda_backend_check_fp16.log" | head -8 | tee -a "$summary";;
    torch)
      timeout 330 python3 bench/hf/torch_e2e.py --out "$out/torch_e2e.json" ${TORCH_ARGS:---compile-cases 'B=8 S=512|S=1024'} > "$out/torch_e2e.log" 2>&1
      note "torch: rc=$? ($(( $(date +%s) - t0 )) s)"; tee -a "$summary" < "$out/torch_e2e.log" | tail -8;;
    e2e32)
      timeout 280 node bench/e2e.mjs --hf "$hf" --device cuda --peers ${PEERS32:-webgpu,stof-noreplay} --trials ${TRIALS:-15} --case-seconds 20 --out "$out/e2e_cuda_fp32.json" > "$out/e2e_cuda_fp32.log" 2>&1
      note "e2e cuda fp32: rc=$? ($(( $(date +%s) - t0 )) s)"; sed -n '/^wrote /,$p' "$out/e2e_cuda_fp32.log" | tail -10 | tee -a "$summary";;
    e2e16)
      timeout 250 node bench/e2e.mjs --hf "$hf" --device cuda --precision fp16 --peers ${PEERS16:-stof-noreplay} --trials ${TRIALS:-15} --case-seconds 20 --out "$out/e2e_cuda_fp16.json" > "$out/e2e_cuda_fp16.log" 2>&1
      note "e2e cuda fp16: rc=$? ($(( $(date +%s) - t0 )) s)"; sed -n '/^wrote /,$p' "$out/e2e_cuda_fp16.log" | tail -10 | tee -a "$summary";;
    *) note "unknown stage $stage";;
  esac
done
echo "--- summary"; cat "$summary"
