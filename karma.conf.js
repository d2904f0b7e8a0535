// Karma in headless Chromium (WebGPU on SwiftShader where there is no GPU; see README).
// The suite to run is picked by KARMA_SUITE (see SUITES); results go to build/results/<suite>.json.
const fs = require('fs');
const path = require('path');

const tfDist = pkg => `node_modules/@tensorflow/${pkg}/dist`;
const SUITES = {
  // tfjs-core's op suite on 'stof' over the WebGPU base, and on the base alone (judges the exclusions).
  'core-browser-stof': {
    files: ['build/test/core_browser_core_suite.js'],
    env: {name: 'stof', backendName: 'stof', isDataSync: true, flags: {STOF_BASE: 'webgpu'}},
  },
  'core-browser-webgpu': {
    files: ['build/test/core_browser_core_suite.js'],
    env: {name: 'webgpu', backendName: 'webgpu', isDataSync: true, flags: {}},
  },
  // The package's own specs, bundled with tfjs.
  'specs-browser': {files: ['build/test/specs_browser_specs.js'], expectedBase: 'webgpu'},
  // The UMD bundles as a page would load them: tfjs first, then ours, then a spec that uses global tf.
  'umd-browser': {
    files: [`${tfDist('tfjs-core')}/tf-core.min.js`, `${tfDist('tfjs-backend-cpu')}/tf-backend-cpu.min.js`,
            `${tfDist('tfjs-backend-webgpu')}/tf-backend-webgpu.min.js`, 'dist/tf-backend-stof.min.js',
            'test/browser/umd_spec.js'],
  },
};

function resultsReporter(baseReporterDecorator, config) {
  baseReporterDecorator(this);
  const counts = {suite: config.stofSuite, passed: 0, failed: 0, skipped: 0, failures: [], seconds: 0, specs: []};
  const started = Date.now();
  this.onSpecComplete = (browser, result) => {
    const name = `${result.suite.join(' ')} ${result.description}`;
    counts.specs.push({name, status: result.skipped || result.pending ? 'skipped' : result.success ? 'passed' : 'failed'});
    if (result.skipped || result.pending) counts.skipped++;
    else if (result.success) counts.passed++;
    else {
      counts.failed++;
      counts.failures.push({name, messages: result.log.map(l => String(l).slice(0, 500))});
      process.stdout.write(`FAILED ${name}\n  ${result.log.map(l => String(l).split('\n')[0]).join('\n  ')}\n`);
    }
  };
  this.onBrowserError = (browser, error) => {
    counts.failed++;
    counts.failures.push({name: `${config.stofSuite} (browser error)`, messages: [String(error).slice(0, 2000)]});
    process.stdout.write(`BROWSER ERROR ${String(error).slice(0, 2000)}\n`);
  };
  this.onRunComplete = () => {
    counts.seconds = Math.round((Date.now() - started) / 100) / 10;
    fs.mkdirSync('build/results', {recursive: true});
    fs.writeFileSync(`build/results/${config.stofSuite}.json`, JSON.stringify(counts, null, 1));
    process.stdout.write(`${config.stofSuite}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped (${counts.seconds} s)\n`);
  };
}
resultsReporter.$inject = ['baseReporterDecorator', 'config'];

module.exports = config => {
  const suiteName = process.env.KARMA_SUITE || 'specs-browser';
  const suite = SUITES[suiteName];
  if (suite == null) throw new Error(`KARMA_SUITE=${suiteName} is not one of ${Object.keys(SUITES).join(', ')}`);
  const files = [...suite.files];
  // What the bundles read from globalThis: the core suite's environment, the specs' expected base.
  const envFile = `build/test/karma_env_${suiteName}.js`;
  fs.mkdirSync(path.dirname(envFile), {recursive: true});
  fs.writeFileSync(envFile, `globalThis.__stofCoreEnv = ${JSON.stringify(suite.env ?? null)};\n` +
                            `globalThis.__stofExpectedBase = ${JSON.stringify(suite.expectedBase ?? null)};\n`);
  files.unshift(envFile);
  config.set({
    stofSuite: suiteName,
    basePath: __dirname,
    frameworks: ['jasmine'],
    files: files.map(pattern => ({pattern, watched: false})),
    plugins: ['karma-jasmine', 'karma-chrome-launcher', {'reporter:stof-results': ['type', resultsReporter]}],
    reporters: ['stof-results'],
    hostname: '127.0.0.1',
    listenAddress: '127.0.0.1',
    port: 9876,
    browsers: ['ChromeHeadlessWebGPU'],
    customLaunchers: {
      ChromeHeadlessWebGPU: {
        base: 'ChromeHeadless',
        flags: ['--no-sandbox', '--disable-gpu-sandbox', '--disable-quic', '--no-first-run',
                '--disable-background-networking', '--disable-component-update', '--disable-sync',
                '--enable-unsafe-webgpu', '--remote-debugging-port=0'],
      },
    },
    singleRun: true,
    browserNoActivityTimeout: 600000,
    browserDisconnectTimeout: 60000,
    captureTimeout: 120000,
    // KARMA_GREP=text runs only the specs whose full name contains it (debugging one part of a suite).
    client: {jasmine: {random: false, timeoutInterval: 60000}, captureConsole: false,
             ...(process.env.KARMA_GREP ? {args: ['--grep', process.env.KARMA_GREP]} : {})},
    logLevel: config.LOG_WARN,
  });
};
