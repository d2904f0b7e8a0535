// npm test: every suite in Node and in headless Chromium, then one line `N passed, N failed`.
// Run after `npm run build:test`. Suites: tfjs-core's op suite on 'stof' (CPU base in Node, WebGPU
// base in Chromium) and on the base alone to judge the exclusion list, the package's own specs in
// both environments, and the UMD bundle loaded by script tags.
import {spawn, spawnSync} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import {EXCLUSIONS, matches} from '../build/tsc/test/core/exclusions.js';
import {describeVulkan, vulkanEnv} from './vulkan_env.mjs';

const only = process.argv.slice(2);  // optional suite names
const RESULTS = 'build/results';
fs.rmSync(RESULTS, {recursive: true, force: true});
fs.mkdirSync(RESULTS, {recursive: true});
fs.mkdirSync('tmp/karma', {recursive: true});

const coreEnv = (backendName, flags = {}) => JSON.stringify({name: backendName, backendName, isDataSync: true, flags});
const vk = vulkanEnv();
const nodeBase = describeVulkan(vk) === 'none found' ? 'cpu' : 'webgpu';
const hasExclusions = env => EXCLUSIONS.some(e => e.env === env);

// judge: 'stof' = excluded tests are counted apart; 'base' = each excluded test must fail there.
const SUITES = [
  {name: 'core-node-stof', judge: 'stof', exclusionEnv: 'node-cpu',
   node: ['build/test/core_node_core_suite.cjs', '--env', coreEnv('stof', {STOF_BASE: 'cpu'})]},
  {name: 'core-node-stof-unfused', judge: 'stof', exclusionEnv: 'node-cpu', sameAs: 'core-node-stof',
   node: ['build/test/core_node_core_suite.cjs', '--env', coreEnv('stof', {STOF_BASE: 'cpu', STOF_FUSION: false})]},
  {name: 'core-node-cpu', judge: 'base', exclusionEnv: 'node-cpu', skip: !hasExclusions('node-cpu'),
   node: ['build/test/core_node_core_suite.cjs', '--env', coreEnv('cpu')]},
  // The attention matrix (about 10 min on SwiftShader, mostly shader compiles) runs beside the
  // other suites, in its own process; specs-node runs the rest of the same bundle.
  {name: 'specs-node', node: ['build/test/specs_node_specs.cjs', '--expected-base', nodeBase, '--filter', '^(?!attention matrix)'], env: vk},
  // The GEMM generator with every register block forced, on Dawn (needs a Vulkan driver).
  {name: 'gemm-wgsl', script: ['test/kernels/gemm_wgsl_check.mjs', 'build/tsc/src/kernels/webgpu/gemm_wgsl.js'], env: vk,
   skip: nodeBase !== 'webgpu', background: true},
  // The CUDA C of every template and parameter class, compiled with nvcc for sm_90 (no GPU needed).
  {name: 'cuda-codegen', script: ['test/kernels/cuda_codegen_check.mjs'], background: true},
  // The CUDA kernels of tfjs's non-fused kernels: shapes against tfjs-backend-cpu, nvcc sm_90, values with host-compiled kernels.
  {name: 'cuda-movement', script: ['test/kernels/cuda_movement_check.mjs'], background: true},
  // 'stof' on the CUDA base (STOF_DEVICE='cuda') over a fake driver: residency, fallbacks, leaks.
  {name: 'cuda-backend', script: ['test/kernels/cuda_backend_check.mjs'], background: true},
  {name: 'core-browser-stof', judge: 'stof', exclusionEnv: 'browser-webgpu', karma: true},
  {name: 'core-browser-webgpu', judge: 'base', exclusionEnv: 'browser-webgpu', skip: !hasExclusions('browser-webgpu'), karma: true},
  {name: 'specs-browser', karma: true},
  {name: 'umd-browser', karma: true},
  {name: 'demo-browser', script: ['test/browser/demo_page.mjs']},
  {name: 'specs-node-attention', node: ['build/test/specs_node_specs.cjs', '--expected-base', nodeBase, '--filter', '^attention matrix'], env: vk,
   background: true},
];

/** A check script's or a background Node suite's run: {status, stdout, stderr} once it exits. */
function script(suite) {
  const env = {...process.env, ...(suite.env ?? {})};
  const args = suite.script ?? ['test/run_node.mjs', suite.name, ...suite.node];
  return new Promise(resolve => {
    const p = spawn(process.execPath, args, {env});
    let stdout = '', stderr = '';
    p.stdout.on('data', d => { stdout += d; });
    p.stderr.on('data', d => { stderr += d; });
    p.on('close', status => resolve({status, stdout, stderr}));
  });
}

const selected = suite => !suite.skip && (!only.length || only.includes(suite.name));
// The check scripts and the background Node suite need no browser and mostly one core (nvcc, g++,
// Dawn): they start at once and run beside the other suites (CI has two cores); their output is
// printed in suite order. STOF_TEST_SERIAL=1 runs them in turn instead.
const started = new Map(process.env.STOF_TEST_SERIAL ? [] :
    SUITES.filter(s => s.background && selected(s)).map(s => [s.name, script(s)]));

async function run(suite) {
  const env = {...process.env, ...(suite.env ?? {})};
  if (suite.karma) {
    Object.assign(env, {KARMA_SUITE: suite.name, CHROME_BIN: env.CHROME_BIN || '/usr/bin/chromium',
                        TMPDIR: path.resolve('tmp/karma')});
    return spawnSync(process.execPath, ['node_modules/karma/bin/karma', 'start', 'karma.conf.js'], {stdio: 'inherit', env});
  }
  if (suite.script) {  // a check script: one PASS/FAIL line per case, exit code 1 on a failure
    const r = await (started.get(suite.name) ?? script(suite));
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr.split('\n').filter(l => !/XDG_RUNTIME_DIR/.test(l)).join('\n'));
    const lines = r.stdout.split('\n');
    const failed = lines.filter(l => l.startsWith('FAIL'));
    fs.writeFileSync(`${RESULTS}/${suite.name}.json`, JSON.stringify({
      suite: suite.name, passed: lines.filter(l => l.startsWith('PASS')).length, failed: failed.length, skipped: 0,
      failures: failed.map(l => ({name: l, messages: [l]})), specs: []}));
    return r;
  }
  if (suite.background) {  // a Node suite run beside the others: its output now, its results in RESULTS
    const r = await (started.get(suite.name) ?? script(suite));
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr.split('\n').filter(l => !/XDG_RUNTIME_DIR/.test(l)).join('\n'));
    return r;
  }
  return spawnSync(process.execPath, ['test/run_node.mjs', suite.name, ...suite.node], {stdio: 'inherit', env});
}

function judge(result, suite) {
  if (!suite.judge) return result;
  const out = {suite: result.suite, passed: 0, failed: 0, skipped: 0, excluded: 0, failures: []};
  const fail = (name, message) => { out.failed++; out.failures.push({name, messages: [message]}); };
  const seen = new Set();
  for (const spec of result.specs) {
    const found = EXCLUSIONS.filter(e => e.env === suite.exclusionEnv && matches(e, spec.name));
    found.forEach(e => seen.add(e));
    const exclusion = found[0];
    if (suite.judge === 'stof') {
      if (exclusion) out.excluded++;
      else if (spec.status === 'passed') out.passed++;
      else if (spec.status === 'failed') fail(spec.name, result.failures.find(f => f.name === spec.name)?.messages[0] ?? 'failed');
      else out.skipped++;
    } else if (exclusion) {  // the base must fail every excluded test (a flaky one may pass)
      if (spec.status === 'failed') out.passed++;
      else if (exclusion.flaky) out.skipped++;
      else fail(spec.name, `excluded on 'stof' but ${spec.status} on the base alone: remove the exclusion`);
    }
  }
  for (const e of EXCLUSIONS.filter(e => e.env === suite.exclusionEnv && !seen.has(e))) {
    fail(`${e.describe} ... ${e.spec}`, 'exclusion matches no test');
  }
  // Errors outside any spec (a crashed run, an error in afterAll) fail the suite.
  for (const f of result.failures.filter(f => !result.specs.some(s => s.name === f.name))) fail(f.name, f.messages[0] ?? '');
  return out;
}

const totals = {passed: 0, failed: 0, skipped: 0, excluded: 0};
const judged = {};
const lines = [];
for (const suite of SUITES) {
  if (!selected(suite)) continue;
  console.log(`\n=== ${suite.name}`);
  const status = (await run(suite)).status;
  const file = `${RESULTS}/${suite.name}.json`;
  let result = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : null;
  if (result == null) {
    result = {suite: suite.name, passed: 0, failed: 0, skipped: 0, specs: [], failures: [{name: `${suite.name} runner`, messages: [`exited with ${status} and wrote no results`]}]};
  }
  result = judge(result, suite);
  if (result.failed === 0 && status !== 0 && !suite.judge) {
    result.failed++;
    result.failures.push({name: `${suite.name} runner`, messages: [`exited with ${status}`]});
  }
  if (suite.sameAs) {  // fusion must not change what passes
    const other = judged[suite.sameAs];
    if (other != null && other.passed !== result.passed) {
      result.failed++;
      result.failures.push({name: `${suite.name} vs ${suite.sameAs}`, messages: [`${result.passed} passed unfused, ${other.passed} fused`]});
    }
  }
  judged[suite.name] = result;
  for (const k of Object.keys(totals)) totals[k] += result[k] ?? 0;
  const excluded = result.excluded ? `, ${result.excluded} excluded (fail on the base too)` : '';
  const verb = suite.judge === 'base' ? ' (excluded tests that fail on the base alone)' : '';
  lines.push(`${suite.name.padEnd(22)} ${result.passed} passed, ${result.failed} failed, ${result.skipped} skipped${excluded}${verb}`);
  for (const f of result.failures.slice(0, 20)) lines.push(`  FAILED ${f.name}: ${(f.messages[0] ?? '').split('\n')[0]}`.slice(0, 400));
}
console.log(`\n${lines.join('\n')}`);
console.log(`\n${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(totals.failed === 0 && totals.passed > 0 ? 0 : 1);
