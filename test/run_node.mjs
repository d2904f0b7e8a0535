// Runs jasmine bundles in Node and writes {suite, passed, failed, skipped, failures} to build/results.
// Usage: node test/run_node.mjs <suite-name> <bundle.cjs> [--env JSON] [--expected-base NAME] [--filter TEXT] [--flags JSON]
// --flags: tf.env() flags the specs bundle sets once the package is loaded (e.g. {"STOF_DEVICE": "webgpu"}).
import fs from 'node:fs';
import path from 'node:path';
import {createRequire} from 'node:module';

const require = createRequire(import.meta.url);
const Jasmine = require('jasmine');

const [suite, bundle, ...rest] = process.argv.slice(2);
const opt = name => { const i = rest.indexOf(name); return i >= 0 ? rest[i + 1] : undefined; };
if (opt('--env')) globalThis.__stofCoreEnv = JSON.parse(opt('--env'));
if (opt('--flags')) globalThis.__stofTestFlags = JSON.parse(opt('--flags'));
if (opt('--expected-base')) globalThis.__stofExpectedBase = opt('--expected-base');

const runner = new Jasmine({projectBaseDir: process.cwd()});
runner.exitOnCompletion = false;
runner.loadConfig({spec_files: [], random: false, stopSpecOnExpectationFailure: false});
runner.jasmine.DEFAULT_TIMEOUT_INTERVAL = 60000;
const counts = {suite, passed: 0, failed: 0, skipped: 0, failures: [], seconds: 0, specs: []};
const started = Date.now();
runner.env.clearReporters();
runner.env.addReporter({
  specDone(r) {
    if (r.status === 'excluded') return;  // left out by --filter: not run, not a skip
    counts.specs.push({name: r.fullName, status: r.status, ms: r.duration});
    if (r.status === 'passed') counts.passed++;
    else if (r.status === 'failed') {
      counts.failed++;
      counts.failures.push({name: r.fullName, messages: r.failedExpectations.map(e => e.message.slice(0, 500))});
      console.log(`FAILED ${r.fullName}\n  ${r.failedExpectations.map(e => e.message.split('\n')[0]).join('\n  ')}`);
    } else counts.skipped++;
  },
  suiteDone(r) {
    if (r.status === 'failed') {  // afterAll/beforeAll errors
      counts.failed++;
      counts.failures.push({name: r.fullName, messages: r.failedExpectations.map(e => e.message.slice(0, 500))});
      console.log(`FAILED (suite) ${r.fullName}\n  ${r.failedExpectations.map(e => e.message.split('\n')[0]).join('\n  ')}`);
    }
  },
});
const filter = opt('--filter');
require(path.resolve(bundle));
const result = await runner.execute(undefined, filter);
counts.seconds = Math.round((Date.now() - started) / 100) / 10;
if (result.overallStatus === 'failed' && counts.failed === 0) {
  counts.failed++;
  counts.failures.push({name: `${suite} (run)`, messages: (result.failedExpectations || []).map(e => e.message)});
}
fs.mkdirSync('build/results', {recursive: true});
fs.writeFileSync(`build/results/${suite}.json`, JSON.stringify(counts, null, 1));
console.log(`${suite}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped (${counts.seconds} s)`);
process.exit(0);
