#!/usr/bin/env bash
# On the GPU machine (device tool): HF export -> validation against HF -> end-to-end benchmark.
# Here first: npm ci && npm run build && ../shared/device/pack.sh dist
# Then a device run with carry [".device-carry"]:
#   source .device-carry/unpack.sh; bash bench/device/e2e.sh [STAGE...]
# STAGE: export | validate | e2e | quick (default: export validate e2e). One device command may run
# 10 minutes: if all three do not fit, run "export validate" and then "e2e" as two commands (the
# export dir is kept in the repo's ignored tmp/ while the machine stays warm; export skips models
# already there). Env: HF_EXPORT (default tmp/hf_export), MODELS (export list), E2E_ARGS (extra
# bench/e2e.mjs options, e.g. "--peers webgpu,ort-webgpu --trials 5"), VALIDATE_BACKENDS,
# T_EXPORT / T_VALIDATE / T_E2E (stage time limits in s).
# Logs and JSON go to $OUT; a short table is printed last.
set -u
out=${OUT:-/tmp/out}; mkdir -p "$out"
hf=${HF_EXPORT:-tmp/hf_export}
models=${MODELS:-bert_tiny,gpt2_tiny,long_tiny,bert_base,gpt2_base,long_base}
stages=${*:-export validate e2e}
summary="$out/summary.txt"; : > "$summary"
note() { echo "$*" | tee -a "$summary"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/gpu.txt" 2>&1
python3 -c 'import sys, torch, transformers; print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())' > "$out/versions.txt" 2>&1
node --version >> "$out/versions.txt" 2>&1
note "gpu: $(cat "$out/gpu.txt")"; note "$(cat "$out/versions.txt" | tr '\n' ' ')"

for stage in $stages; do
  t0=$(date +%s)
  case $stage in
    export)
      timeout "${T_EXPORT:-400}" python3 bench/hf/export_hf.py --out "$hf" --models "$models" --skip-existing > "$out/export.log" 2>&1
      rc=$?
      mkdir -p "$out/manifests"
      for d in "$hf"/*/; do [ -f "$d/manifest.json" ] && cp "$d/manifest.json" "$out/manifests/$(basename "$d").json"; done
      note "export: rc=$rc ($(( $(date +%s) - t0 )) s); $(grep -E '^(exported |FAILED)' "$out/export.log" | sed 's/ ([^)]*)//' | tr '\n' ';')";;
    validate)
      timeout "${T_VALIDATE:-300}" node bench/hf/validate_hf.mjs --dir "$hf" --backends "${VALIDATE_BACKENDS:-stof,webgpu,cpu,ort-webgpu}" \
        --out "$out/validate_hf.json" > "$out/validate.log" 2>&1
      note "validate: rc=$? ($(( $(date +%s) - t0 )) s)";;
    e2e)
      # shellcheck disable=SC2086
      timeout "${T_E2E:-560}" node bench/e2e.mjs --hf "$hf" --out "$out/e2e.json" ${E2E_ARGS:-} > "$out/e2e.log" 2>&1
      note "e2e: rc=$? ($(( $(date +%s) - t0 )) s)";;
    quick)
      timeout "${T_E2E:-300}" node bench/e2e.mjs --quick --hf "$hf" --out "$out/e2e_quick.json" ${E2E_ARGS:-} > "$out/e2e_quick.log" 2>&1
      note "e2e --quick: rc=$? ($(( $(date +%s) - t0 )) s)";;
    *) note "unknown stage $stage";;
  esac
done

for f in validate.log e2e_quick.log e2e.log; do
  [ -f "$out/$f" ] || continue
  echo "--- $f"
  # the closing table of each script: from its 'wrote ...' line on
  sed -n '/^wrote /,$p' "$out/$f" | tail -n 25
  grep -qE '^wrote ' "$out/$f" || tail -n 15 "$out/$f"
done
echo "--- summary"; cat "$summary"
