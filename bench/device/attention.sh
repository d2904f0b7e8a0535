#!/usr/bin/env bash
# Masked attention on the GPU machine (issue #5): the PyTorch peers, then 'stof' against
# tfjs-backend-webgpu, one after the other on the same GPU, in one command.
# Here, first:  flock /tmp/stof-build.lock npm run build && ../shared/device/pack.sh dist
# Device run (carry [".device-carry"]):  source .device-carry/unpack.sh; bash bench/device/attention.sh
# Writes under $OUT: attn_peers.json (+ .log), attention.json (+ .log), attention_table.md, gpu.txt;
# prints the merged table (stof vs tfjs-backend-webgpu vs flex / sdpa / flash, ms per S x mask) last.
# Env (all optional): KERNEL (STOF_ATTENTION, default auto), MASK_FORM (bool|bias|op, default bool),
#   S (e.g. 128,512,1024), MASKS (e.g. causal,sliding), PEERS_BUDGET_S (default 200), STOF_BUDGET_S
#   (default 220): no new case starts after its budget, so both parts fit the device's 10 minutes;
#   cases left out are listed in the JSONs. For the full matrix in two runs: S=128,512,1024 then S=2048,4096.
set -u
out=${OUT:-/tmp/out}; mkdir -p "$out"
# dist travels in .device-carry/nm.tar.xz; unpack.sh skips that archive when node_modules is already
# there (a warm machine keeps ignored dirs), so take dist from this carry every time.
rm -rf /tmp/carry-dist && mkdir -p /tmp/carry-dist
if tar -xJf .device-carry/nm.tar.xz -C /tmp/carry-dist ./dist 2>/dev/null; then rm -rf dist && mv /tmp/carry-dist/dist dist; fi
[ -f dist/node/index.mjs ] || { echo "no dist/node/index.mjs: pack with ../shared/device/pack.sh dist"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/gpu.txt" 2>&1
peers_budget=${PEERS_BUDGET_S:-200}; stof_budget=${STOF_BUDGET_S:-220}

echo "--- PyTorch peers (budget ${peers_budget} s)"
OUT="$out" PEERS_BUDGET_S=$peers_budget timeout $((peers_budget + 90)) python3 bench/device/attn_peers.py > "$out/attn_peers.log" 2>&1
echo "exit $?; $(grep -c '^{' "$out/attn_peers.log") rows"; grep -v '^{' "$out/attn_peers.log" | tail -5

echo "--- stof vs tfjs-backend-webgpu (budget ${stof_budget} s)"
timeout $((stof_budget + 90)) node bench/attention.mjs --kernel "${KERNEL:-auto}" --mask-form "${MASK_FORM:-bool}" \
  --out "$out/attention.json" --budget-s "$stof_budget" ${S:+--S $S} ${MASKS:+--masks $MASKS} > "$out/attention.log" 2>&1
echo "exit $?"; grep -v XDG "$out/attention.log" | tail -45

echo "--- merged (ms per call; stof and tfjs-backend-webgpu float32, PyTorch float16)"
node - "$out" <<'EOF'
const fs = require('fs'), path = require('path');
const dir = process.argv[2];
const read = f => { try { return JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')); } catch { return {rows: []}; } };
const js = read('attention.json'), py = read('attn_peers.json');
const ms = x => (x == null ? '-' : x < 10 ? x.toFixed(3) : x.toFixed(1));
const peer = (r, name) => (r == null ? null : r[name]?.ms ?? null);
const lines = [
  `${js.device ?? '?'} | ${py.device ?? '?'} (torch ${py.torch ?? '?'}); B=${js.config?.B} H=${js.config?.H} D=${js.config?.D}; ` +
  `kernel ${js.config?.kernel}, mask form ${js.config?.mask_form}`,
  '',
  '| S | mask | kept | stof ms | kernel | tfjs-webgpu ms | webgpu/stof | stof TFLOP/s | flex ms | sdpa+mask ms | flash ms | naive ms | stof/flex | max rel diff | vs f64 |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
];
const keys = new Set([...js.rows.map(r => `${r.S} ${r.mask}`), ...py.rows.map(r => `${r.S} ${r.mask}`)]);
for (const key of [...keys].sort((a, b) => parseInt(a) - parseInt(b))) {
  const [S, mask] = key.split(' ');
  const a = js.rows.find(r => `${r.S} ${r.mask}` === key), p = py.rows.find(r => `${r.S} ${r.mask}` === key);
  const web = a?.peers?.['tfjs-backend-webgpu'];
  const flex = peer(p, 'flex');
  lines.push(`| ${S} | ${mask} | ${((a?.density ?? p?.density ?? 0) * 100).toFixed(1)}% | ${ms(a?.stof_ms)} | ${a?.kernel ?? '-'} | ` +
             `${web == null ? (a?.peer_notes ? 'n/a' : '-') : ms(web)} | ${a?.ratio == null ? '-' : a.ratio.toFixed(2) + 'x'} | ` +
             `${a?.tflops == null ? '-' : a.tflops.toFixed(2)} | ${ms(flex)} | ${ms(peer(p, 'sdpa_dense_mask'))} | ${ms(peer(p, 'sdpa_flash'))} | ` +
             `${ms(peer(p, 'naive'))} | ${a?.stof_ms != null && flex != null ? (a.stof_ms / flex).toFixed(1) + 'x' : '-'} | ` +
             `${a?.max_rel_diff == null ? '-' : a.max_rel_diff.toExponential(1)} | ${a?.max_rel_diff_ref64 == null ? '-' : a.max_rel_diff_ref64.toExponential(1)} |`);
}
const notes = [...new Set(js.rows.flatMap(r => Object.values(r.peer_notes ?? {}).map(n => `S=${r.S}: tfjs-backend-webgpu ${n}`)))];
const errors = js.rows.filter(r => r.stof_error).map(r => `S=${r.S} ${r.mask}: stof failed: ${r.stof_error.split('\n')[0]}`);
const skipped = [...(js.skipped ?? []).map(s => `stof S=${s.S} ${s.mask}`), ...(py.skipped ?? []).map(s => `peers S=${s.S} ${s.mask}`)];
lines.push('', ...notes, ...errors, ...(skipped.length ? [`not run (budget): ${skipped.join(', ')}`] : []));
fs.writeFileSync(path.join(dir, 'attention_table.md'), lines.join('\n') + '\n');
console.log(lines.join('\n'));
EOF
