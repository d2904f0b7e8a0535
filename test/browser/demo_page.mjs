// The browser demo (examples/browser/) end to end: writes the tiny BERT fixture into tmp/, serves the
// repository root on 127.0.0.1, opens the page in headless Chromium (WebGPU on SwiftShader where there
// is no GPU), waits for window.demoResult, checks it and saves build/results/browser-demo.png.
// Prints `PASS name` / `FAIL name: why` per check; exits 1 on a failure. Run after `npm run build`.
// `--serve`: only write the fixture and serve the repository root, printing the page's URL.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

import {writeNamed} from '../fixtures/make_fixtures.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SCREENSHOT = path.join(ROOT, 'build/results/browser-demo.png');
const TIMEOUT_MS = 120000;
const RTOL = 1e-4;
// As karma.conf.js's ChromeHeadlessWebGPU launcher (README of test/shared: TESTING.md).
const CHROME_FLAGS = ['--no-sandbox', '--disable-gpu-sandbox', '--disable-quic', '--no-first-run',
                      '--disable-background-networking', '--disable-component-update', '--disable-sync',
                      '--enable-unsafe-webgpu', '--disable-gpu', '--disable-dev-shm-usage'];

const MIME = {'.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
              '.json': 'application/json', '.map': 'application/json', '.bin': 'application/octet-stream',
              '.css': 'text/css', '.png': 'image/png', '.md': 'text/plain; charset=utf-8'};

/** A static server of the repository root on an ephemeral port of 127.0.0.1 (a secure context for WebGPU). */
function serve(root) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const file = path.join(root, decodeURIComponent(url.pathname));
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, {'content-type': 'text/plain'}).end(`not found: ${url.pathname}`);
      return;
    }
    res.writeHead(200, {'content-type': MIME[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store'});
    fs.createReadStream(file).pipe(res);
  });
  return new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const serveOnly = process.argv.includes('--serve');
// --serve writes where the page looks by default; a check run writes its own copy (runs may overlap).
fs.mkdirSync(path.join(ROOT, 'tmp'), {recursive: true});
const fixtureRoot = serveOnly ? path.join(ROOT, 'tmp/browser-demo') : fs.mkdtempSync(path.join(ROOT, 'tmp', 'browser-demo-'));
const fixture = writeNamed(fixtureRoot, 'bert', 'tiny');
const modelUrl = '/' + path.relative(ROOT, path.join(fixture.dir, 'model.json')).split(path.sep).join('/');
const server = await serve(ROOT);
const pageUrl = `http://127.0.0.1:${server.address().port}/examples/browser/index.html?model=${encodeURIComponent(modelUrl)}`;
if (serveOnly) {
  console.log(`serving ${ROOT}\nopen ${pageUrl}\n(Ctrl-C stops)`);
} else {
  try {
    process.exitCode = await check();
  } finally {
    server.close();
    fs.rmSync(fixtureRoot, {recursive: true, force: true});
  }
}

async function check() {
  const results = [];
  const pass = name => { results.push(true); console.log(`PASS ${name}`); };
  const fail = (name, why) => { results.push(false); console.log(`FAIL ${name}: ${String(why).split('\n')[0].slice(0, 300)}`); };
  const expect = (name, ok, why) => (ok ? pass(name) : fail(name, why));

  const {default: puppeteer} = await import('puppeteer-core');
  const tmp = fs.mkdtempSync(path.join(ROOT, 'tmp', 'chromium-'));
  const browserLog = [];
  let browser = null, result = null;
  try {
    browser = await puppeteer.launch({
      executablePath: process.env.CHROME_BIN || '/usr/bin/chromium', headless: true, args: CHROME_FLAGS,
      userDataDir: path.join(tmp, 'profile'), env: {...process.env, TMPDIR: tmp}, protocolTimeout: TIMEOUT_MS + 60000,
    });
    const page = await browser.newPage();
    await page.setViewport({width: 1100, height: 900});
    page.on('console', m => browserLog.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', e => browserLog.push(`pageerror: ${e.message}`));
    page.on('requestfailed', r => browserLog.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
    page.on('response', r => { if (r.status() >= 400) browserLog.push(`HTTP ${r.status()}: ${r.url()}`); });
    await page.goto(pageUrl, {waitUntil: 'load', timeout: 60000});
    try {
      await page.waitForFunction(() => window.demoResult != null, {timeout: TIMEOUT_MS, polling: 250});
      result = await page.evaluate(() => window.demoResult);
    } catch (e) {
      const status = await page.$eval('#status', s => s.textContent).catch(() => '?');
      result = {error: `no window.demoResult after ${TIMEOUT_MS / 1000} s (page status: ${status})`};
    }
    await new Promise(r => setTimeout(r, 200));  // let the last paint land
    fs.mkdirSync(path.dirname(SCREENSHOT), {recursive: true});
    await page.screenshot({path: SCREENSHOT, fullPage: true});
  } catch (e) {
    result = result ?? {error: `browser: ${e.message}`};
  } finally {
    await browser?.close().catch(() => {});
    fs.rmSync(tmp, {recursive: true, force: true});
  }

  expect('demo page finishes without an error', result != null && result.error == null, result?.error ?? 'no result');
  const r = result ?? {};
  expect("stof's base is webgpu", r.backendInfo?.base === 'webgpu', `backendInfo = ${JSON.stringify(r.backendInfo)}`);
  expect('both backends timed', r.stofMs > 0 && r.webgpuMs > 0, `stofMs = ${r.stofMs}, webgpuMs = ${r.webgpuMs}`);
  expect('stof output is finite and not all zeros', r.finite === true, `finite = ${r.finite}`);
  expect(`stof and webgpu outputs agree (max rel diff <= ${RTOL})`, r.maxDiff <= RTOL, `max rel diff = ${r.maxDiff}`);
  expect(`stof and cpu outputs agree (max rel diff <= ${RTOL})`, r.maxDiffCpu <= RTOL, `max rel diff = ${r.maxDiffCpu}`);
  const fused = (r.groups ?? []).filter(g => g.template !== 'alias' && g.ops.length >= 2);
  expect('stof profile has a fused group', fused.length > 0, `groups = ${JSON.stringify(r.groups)}`);
  expect('screenshot saved', fs.existsSync(SCREENSHOT) && fs.statSync(SCREENSHOT).size > 0, `${SCREENSHOT} missing`);

  if (results.some(ok => !ok)) {
    process.stderr.write(`page: ${pageUrl}\n${browserLog.slice(-40).join('\n')}\n`);
  } else if (r.stofMs > 0) {
    console.log(`# stof ${r.stofMs.toFixed(2)} ms, webgpu ${r.webgpuMs.toFixed(2)} ms per forward; ${r.dispatches} launches, ` +
                `${fused.length} fused groups; max rel diff ${r.maxDiff.toExponential(2)} vs webgpu, ${r.maxDiffCpu.toExponential(2)} vs cpu; screenshot ${path.relative(ROOT, SCREENSHOT)}`);
  }
  return results.every(ok => ok) ? 0 : 1;
}
