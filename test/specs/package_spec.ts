// Node only: the built package, imported by name as a user's script does (ESM and CommonJS), in a
// fresh process, gives 'stof' and results equal to tfjs-backend-cpu's.
import {execFileSync, spawnSync} from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ESM = `
import * as tf from '@tensorflow/tfjs-core';
import * as stof from 'tfjs-backend-stof';
await tf.ready();
// Inputs made on each backend: tfjs-backend-webgpu cannot readSync in Node (no OffscreenCanvas).
const f = () => {
  const x = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
  return tf.add(tf.mul(tf.softmax(tf.matMul(x, x, false, true)), 3), tf.sum(x));
};
const y = f();
const onStof = Array.from(await y.data());
const backend = tf.getBackend(), base = stof.backendInfo().base;
await tf.setBackend('cpu');
const onCpu = Array.from(await f().data());
console.log(JSON.stringify({backend, base, onStof, onCpu}));
`;
const CJS = `
const tf = require('@tensorflow/tfjs-core');
const stof = require('tfjs-backend-stof');
tf.ready().then(async () => {
  const y = tf.exp(tf.tensor1d([0, 1, 2]));
  const onStof = Array.from(await y.data());
  const backend = tf.getBackend(), base = stof.backendInfo().base;
  await tf.setBackend('cpu');
  console.log(JSON.stringify({backend, base, onStof, onCpu: Array.from(await tf.exp(tf.tensor1d([0, 1, 2])).data())}));
});
`;

function runScript(ext: string, source: string, env: NodeJS.ProcessEnv = {}) {
  // Inside the package directory, so that the package's name resolves to itself (package self-reference).
  const dir = fs.mkdtempSync(path.join(process.cwd(), 'build', 'pkgspec-'));
  const file = path.join(dir, `user_script.${ext}`);
  fs.writeFileSync(file, source);
  try {
    const out = execFileSync(process.execPath, [file], {env: {...process.env, ...env}, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']});
    return JSON.parse(out.trim().split('\n').pop()!);
  } finally {
    fs.rmSync(dir, {recursive: true, force: true});
  }
}

describe('the built package in Node', () => {
  const expectedBase = (globalThis as unknown as {__stofExpectedBase: string}).__stofExpectedBase;

  it('ESM: import of the package makes stof the backend, equal to tfjs-backend-cpu', () => {
    const r = runScript('mjs', ESM);
    expect(r.backend).toBe('stof');
    expect(r.base).toBe(expectedBase);
    for (let i = 0; i < r.onCpu.length; i++) expect(r.onStof[i]).toBeCloseTo(r.onCpu[i], 5);
  });

  it('CommonJS: require of the package does the same', () => {
    const r = runScript('cjs', CJS);
    expect(r.backend).toBe('stof');
    expect(r.base).toBe(expectedBase);
    for (let i = 0; i < r.onCpu.length; i++) expect(r.onStof[i]).toBeCloseTo(r.onCpu[i], 5);
  });

  it('with no Vulkan driver there is no adapter: CPU base and one clear message, no crash', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stof-novk-'));
    const file = path.join(dir, 'none.json');  // an ICD list that names no driver
    fs.writeFileSync(file, '{"file_format_version": "1.0.0", "ICD": {"library_path": "/nonexistent/libvk.so", "api_version": "1.3.0"}}');
    const script = path.join(process.cwd(), 'build', 'novk_user_script.mjs');
    fs.writeFileSync(script, ESM);
    try {
      const res = spawnSync(process.execPath, [script], {
        env: {...process.env, VK_ICD_FILENAMES: file, VK_DRIVER_FILES: file}, encoding: 'utf8'});
      expect(res.status).toBe(0);
      const r = JSON.parse(res.stdout.trim().split('\n').pop()!);
      expect(r.backend).toBe('stof');
      expect(r.base).toBe('cpu');
      const notices = (res.stderr as string).split('\n').filter(l => l.includes('tfjs-backend-stof'));
      expect(notices.length).toBe(1);
      expect(notices[0]).toContain("'stof' runs on the CPU base");
    } finally {
      fs.rmSync(dir, {recursive: true, force: true});
      fs.rmSync(script, {force: true});
    }
  });
});
