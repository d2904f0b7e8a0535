// npm test: every suite in Node and in headless Chromium, then one line `N passed, N failed`.
// Run after `npm run build:test`. Suites: tfjs-core's op suite on 'stof' (CPU base in Node, WebGPU
// base in Chromium), a check that each exclusion also fails on the base itself, the package's own
// specs in both environments, and the UMD bundle loaded by script tags.
import {spawnSync} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import {EXCLUSIONS, matches} from '../build/tsc/test/core/exclusions.js';
import {describeVulkan, vulkanEnv} from './vulkan_env.mjs';

const only = process.argv.slice(2);  // optional suite names
const RESULTS = 'build/results';
fs.rmSync(RESULTS, {recursive: true, force: true});
fs.mkdirSync(RESULTS, {recursive: true});
fs.mkdirSync('tmp/karma', {recursive: true});

const coreEnv = (backendName, exclusionEnv, flags = {}, onlyExcluded = false) =>
    JSON.stringify({name: backendName, backendName, isDataSync: true, flags, exclusionEnv, onlyExcluded});
const vk = vulkanEnv();
const nodeBase = describeVulkan(vk) === 'none found' ? 'cpu' : 'webgpu';
const hasExclusions = env => EXCLUSIONS.some(e => e.env === env);

const SUITES = [
  {name: 'core-node-stof', node: ['build/test/core_node_core_suite.cjs', '--env', coreEnv('stof', 'node-cpu', {STOF_BASE: 'cpu'})]},
  {name: 'core-node-cpu-excluded', exclusionCheck: 'node-cpu', skip: !hasExclusions('node-cpu'),
   node: ['build/test/core_node_core_suite.cjs', '--env', coreEnv('cpu', 'node-cpu', {}, true)]},
  {name: 'specs-node', node: ['build/test/specs_node_specs.cjs', '--expected-base', nodeBase], env: vk},
  {name: 'core-browser-stof', karma: true},
  {name: 'core-browser-webgpu-excluded', exclusionCheck: 'browser-webgpu', skip: !hasExclusions('browser-webgpu'), karma: true},
  {name: 'specs-browser', karma: true},
  {name: 'umd-browser', karma: true},
];

function run(suite) {
  const env = {...process.env, ...(suite.env ?? {})};
  if (suite.karma) {
    Object.assign(env, {KARMA_SUITE: suite.name, CHROME_BIN: env.CHROME_BIN || '/usr/bin/chromium',
                        TMPDIR: path.resolve('tmp/karma')});
    return spawnSync(process.execPath, ['node_modules/karma/bin/karma', 'start', 'karma.conf.js'], {stdio: 'inherit', env});
  }
  return spawnSync(process.execPath, ['test/run_node.mjs', suite.name, ...suite.node], {stdio: 'inherit', env});
}

/** An exclusion check passes for each excluded spec that fails on the base too, and fails otherwise. */
function judgeExclusions(result, envName) {
  const judged = {suite: result.suite, passed: 0, failed: 0, skipped: 0, failures: []};
  for (const spec of result.specs) {
    if (spec.status === 'failed') judged.passed++;
    else if (spec.status === 'passed') {
      judged.failed++;
      judged.failures.push({name: spec.name, messages: ['excluded on stof, but passes on the base: remove the exclusion']});
    }
  }
  for (const e of EXCLUSIONS.filter(e => e.env === envName)) {
    if (!result.specs.some(s => matches(e, s.name))) {
      judged.failed++;
      judged.failures.push({name: `${e.describe} ... ${e.spec}`, messages: ['exclusion matches no test']});
    }
  }
  return judged;
}

const totals = {passed: 0, failed: 0, skipped: 0};
const lines = [];
for (const suite of SUITES) {
  if (suite.skip || (only.length && !only.includes(suite.name))) continue;
  console.log(`\n=== ${suite.name}`);
  const status = run(suite).status;
  const file = `${RESULTS}/${suite.name}.json`;
  let result = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : null;
  if (result == null || status !== 0) {
    result = {suite: suite.name, passed: result?.passed ?? 0, failed: (result?.failed ?? 0) + 1, skipped: 0,
              failures: [{name: `${suite.name} runner`, messages: [`exited with ${status}`]}], specs: []};
  }
  if (suite.exclusionCheck) result = judgeExclusions(result, suite.exclusionCheck);
  totals.passed += result.passed; totals.failed += result.failed; totals.skipped += result.skipped;
  lines.push(`${suite.name.padEnd(30)} ${result.passed} passed, ${result.failed} failed, ${result.skipped} skipped`);
  for (const f of result.failures.slice(0, 20)) lines.push(`  FAILED ${f.name}: ${f.messages[0] ?? ''}`.slice(0, 400));
}
console.log(`\n${lines.join('\n')}`);
console.log(`\n${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(totals.failed === 0 && totals.passed > 0 ? 0 : 1);
