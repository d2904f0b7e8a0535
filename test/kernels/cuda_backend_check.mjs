// CI check of 'stof' on the CUDA base (STOF_DEVICE='cuda') without a GPU: the real backend, planner
// and CudaExecutor over the fake driver (test/kernels/cuda_fake_driver.mjs: memory is host memory,
// launches only count, so values are not checked here; bench/cuda_backend_check.mjs checks them on
// the GPU). Checked: device selection and its errors, where tensors live (fused and CUDA kernels
// write device memory; nothing comes back to the host until read), fallbacks to tfjs-backend-cpu
// counted with their copies, host shape arithmetic left on the host, the converted BERT and GPT-2
// fixtures running with their data path on the device, and no leaked device memory or tensors.
// One PASS/FAIL line per check; exit 1 on a failure.
//
//   npx tsc -p tsconfig.json && node scripts/mark_esm.mjs && node test/kernels/cuda_backend_check.mjs
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import {loadTsc as load, root} from '../../scripts/load_tsc.mjs';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');


const tf = await import('@tensorflow/tfjs-core');
const tfconv = await import('@tensorflow/tfjs-converter');
await import('@tensorflow/tfjs-backend-cpu');
const stof = await load('src/public_api.js');
const {setCudaProvider} = await load('src/backend/register.js');
const {CudaBase} = await load('src/backend/cuda_base.js');
const {CudaExecutor} = await load('src/kernels/cuda/executor.js');
const {fakeCudaLibs} = await import('./cuda_fake_driver.mjs');
const {provideStandInCuda} = await import('./stand_in_cuda.mjs');
const {makeMaskedAttention, writeFixture, writeNamed} = await import('../fixtures/make_fixtures.mjs');
const {loadFixture} = await import('../fixtures/load_fixture.mjs');

let failures = 0;
async function check(name, f) {
  try {
    await f();
    console.log(`PASS ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.message.split('\n')[0]}`);
  }
}
function expect(cond, what) {
  if (!cond) throw new Error(what);
}

const standIn = provideStandInCuda();

async function useCuda() {
  tf.engine().reset();
  tf.env().set('STOF_DEVICE', 'cuda');
  expect(await tf.setBackend('stof'), 'setBackend(stof) failed');
  return tf.backend();
}
const inUse = backend => backend.base.exec.stats().inUseBytes;

await check('STOF_DEVICE=cuda sets up the CUDA base', async () => {
  const backend = await useCuda();
  expect(stof.backendInfo().base === 'cuda', `base is ${stof.backendInfo().base}`);
  expect(stof.backendInfo().adapter.device === 'Fake GPU', `device ${JSON.stringify(stof.backendInfo().adapter)}`);
  expect(backend.base instanceof CudaBase, 'base is not a CudaBase');
});

await check('fused kernels read and write device memory; nothing comes back until a read', async () => {
  const backend = await useCuda();
  const x = tf.randomNormal([64, 128]);
  const r = await stof.profile(() => tf.softmax(tf.mul(x, 2)));
  const y = r.result;
  expect(r.groups.length === 1 && r.groups[0].template === 'row', `groups ${JSON.stringify(r.groups.map(g => g.template))}`);
  expect(r.copies.toDevice === 1 && r.copies.toDeviceBytes === 64 * 128 * 4, `uploads ${JSON.stringify(r.copies)}`);
  expect(r.copies.toHost === 0, `downloads before the read ${r.copies.toHost}`);
  expect(r.fallbacks.length === 0, `fallbacks ${JSON.stringify(r.fallbacks)}`);
  expect(backend.base.hostValues({dataId: backend.baseIdOf(y.dataId)}) == null, 'the output has host values');
  const before = backend.deviceCopies().toHost;
  expect(y.dataSync().length === 64 * 128, 'read length');
  expect(backend.deviceCopies().toHost === before + 1, 'the read made no download');
  // The upload of x is cached: a second use uploads nothing.
  const r2 = await stof.profile(() => tf.exp(x));
  expect(r2.copies.toDevice === 0, `second use uploaded ${r2.copies.toDevice}`);
  tf.dispose([x, y, r2.result]);
});

await check('await data() of a device tensor waits for the GPU by polling, without blocking the thread', async () => {
  await useCuda();
  const x = tf.randomNormal([16, 16]);
  const y = tf.exp(x);
  const queries = standIn.fake.log.counts.queries;
  const values = await y.data();
  expect(values.length === 256, `read ${values.length} values`);
  // The stand-in reports "not ready" twice, then done: three polls on separate turns of the event loop.
  expect(standIn.fake.log.counts.queries - queries === 3, `polls ${standIn.fake.log.counts.queries - queries}`);
  tf.dispose([x, y]);
});

await check('large reads land in page-locked host memory, handed out without a copy; a block is reused only after what viewed it is collected', async () => {
  const fake = fakeCudaLibs();
  const exec = new CudaExecutor(fake.libs, {cacheDir: null, pinnedReadBytes: 4 << 20});
  const n = 100000;  // 400 kB: the 512 kB class
  const fill = v => Float32Array.from({length: n}, (_, i) => v + i);
  const a = exec.upload(fill(1), [n], 'float32'), b = exec.upload(fill(2), [n], 'float32');
  let ra = exec.read(a);
  let rb = exec.read(b);
  let st = exec.stats().pinned;
  expect(st.pinnedReads === 2 && st.blocks === 2 && st.bytes === 2 * (512 << 10), `pinned ${JSON.stringify(st)}`);
  expect(fake.log.registered.size === 2, `registered ${fake.log.registered.size}`);
  expect(ra.length === n && ra.buffer.byteLength === 4 * n && ra[7] === 8 && rb[7] === 9, 'the read values or their buffer size');
  // While ra is reachable its block is not reused: a third read gets a new block.
  let rc = exec.read(a);
  expect(exec.stats().pinned.blocks === 3 && ra[5] === 6 && rc[5] === 6, `blocks ${exec.stats().pinned.blocks}`);
  let keepBuffer = rb.buffer;  // only the ArrayBuffer of rb stays: rb's block must stay taken
  ra = null;
  for (let i = 0; i < 20 && exec.stats().pinned.recycled === 0; i++) { gc(); await new Promise(r => setTimeout(r, 5)); }
  let again = exec.read(b);
  st = exec.stats().pinned;
  expect(st.recycled === 1 && st.blocks === 3, `after collection ${JSON.stringify(st)}`);
  expect(new Float32Array(keepBuffer)[3] === 5 && again[3] === 5 && rc[3] === 4, 'values of reads still held');
  // The cap: a read that would pass it uses pageable memory, counted; small reads too.
  const big = exec.upload(new Float32Array(1 << 20), [1 << 20], 'float32');
  const pageable = exec.read(big);
  const small = exec.read(exec.upload(fill(3).subarray(0, 100), [100], 'float32'));
  st = exec.stats().pinned;
  expect(pageable.length === 1 << 20 && small[1] === 4 && st.atCap === 1 && st.pageableReads === 2, `cap ${JSON.stringify(st)}`);
  // Disposal frees the free blocks and unregisters them; held arrays stay readable.
  exec.dispose();
  expect(again[3] === 5 && rc[3] === 4, 'held values after dispose');
  expect(exec.stats().pinned.blocks === 3, `blocks after dispose, the app holding three: ${exec.stats().pinned.blocks}`);
  // What the app lets go after the disposal is freed once collected.
  keepBuffer = again = rc = rb = null;
  for (let i = 0; i < 20 && exec.stats().pinned.blocks > 0; i++) { gc(); await new Promise(r => setTimeout(r, 5)); }
  expect(exec.stats().pinned.blocks === 0, `blocks left ${exec.stats().pinned.blocks}`);
});

await check('reads of a model output on the CUDA base use the page-locked pool', async () => {
  const backend = await useCuda();
  const before = backend.base.exec.stats().pinned.pinnedReads;
  const x = tf.randomNormal([512, 256]);
  const y = tf.exp(x);
  const v = await y.data();
  expect(v.length === 512 * 256 && backend.base.exec.stats().pinned.pinnedReads === before + 1, `pinned reads ${before} -> ${backend.base.exec.stats().pinned.pinnedReads}`);
  tf.dispose([x, y]);
});

await check('large gathers and slices run as CUDA kernels on device data', async () => {
  const backend = await useCuda();
  const table = tf.randomNormal([1000, 64]);
  const ids = tf.tensor2d([[1, 5, 7, 999], [0, 2, 3, 4]], [2, 4], 'int32');
  const r = await stof.profile(() => {
    const e = tf.gather(table, ids);                 // GatherV2 on the device (the table is large)
    const s = tf.slice(tf.mul(e, 3), [0, 1, 0], [2, 2, 64]);  // Slice of a device-only value
    return tf.concat([s, s], 1);                      // Concat of device values
  });
  expect(r.fallbacks.length === 0, `fallbacks ${JSON.stringify(r.fallbacks)}`);
  expect(r.copies.toHost === 0, `downloads ${r.copies.toHost}`);
  expect(util_eq(r.result.shape, [2, 4, 64]), `shape ${r.result.shape}`);
  expect(backend.base.hostValues({dataId: backend.baseIdOf(r.result.dataId)}) == null, 'the output is on the host');
  tf.dispose([table, ids, r.result]);
});

await check('a kernel without a CUDA implementation falls back through host memory, counted', async () => {
  await useCuda();
  const x = tf.randomNormal([8, 16]);
  const r = await stof.profile(() => tf.cumsum(tf.exp(x), 1));
  const fb = r.fallbacks.find(f => f.kernel === 'Cumsum');
  expect(fb != null && /no CUDA kernel.*512 bytes copied from the device/.test(fb.reason), `fallbacks ${JSON.stringify(r.fallbacks)}`);
  expect(r.copies.toHost === 1 && r.copies.toHostBytes === 512, `copies ${JSON.stringify(r.copies)}`);
  tf.dispose([x, r.result]);
});

await check('small host values (shape arithmetic) stay on the host: no copies, no launches', async () => {
  const backend = await useCuda();
  const a = tf.tensor1d([1, 2, 3], 'int32');
  const launches = standIn.fake.log.counts.launches;
  const r = await stof.profile(() => tf.stack([tf.add(a, tf.scalar(1, 'int32')), a]).dataSync());
  expect(r.copies.toDevice === 0 && r.copies.toHost === 0, `copies ${JSON.stringify(r.copies)}`);
  expect(standIn.fake.log.counts.launches === launches, 'launched on the device');
  expect(Array.from(r.result).join() === '2,3,4,1,2,3', `values ${Array.from(r.result)}`);
  tf.dispose(a);
  void backend;
});

await check('converted BERT and GPT-2 fixtures run with their data path on the device', async () => {
  await useCuda();
  for (const m of ['bert', 'gpt2']) {
    const {dir} = writeNamed(path.join(root, 'tmp/cuda_check_fixtures'), m);
    const g = await loadFixture(dir, tfconv);
    const feeds = {};
    for (const inp of g.inputs) feeds[inp.name] = tf.ones([2, 16], 'int32');
    const r = await stof.profile(() => g.execute(feeds));
    const out = Array.isArray(r.result) ? r.result : [r.result];
    // Only the inputs' small int32 values and shape arithmetic may touch the CPU: no float data comes back.
    expect(r.copies.toHost === 0, `${m}: ${r.copies.toHost} downloads (${r.copies.toHostBytes} bytes): ${JSON.stringify(r.fallbacks)}`);
    expect(r.groups.some(gr => gr.template === 'attention') && r.groups.some(gr => gr.template === 'gemm'), `${m}: groups`);
    const big = Object.entries(r.baseKernels).filter(([k]) => ['GatherV2', 'SplitV', 'Concat', 'StridedSlice'].includes(k));
    expect(big.length > 0, `${m}: base kernels ${JSON.stringify(r.baseKernels)}`);
    tf.dispose([...out, ...Object.values(feeds)]);
    g.dispose();
  }
});

await check('graph replay: captured, replayed, captured again after the engine moved the weights away; freed with the model', async () => {
  const backend = await useCuda();
  const bytes = inUse(backend), values = backend.numDataIds();
  const {dir} = writeNamed(path.join(root, 'tmp/cuda_check_fixtures'), 'bert');
  const g = await loadFixture(dir, tfconv);
  const feeds = () => Object.fromEntries(g.inputs.map(i => [i.name, tf.ones([2, 16], 'int32')]));
  const forward = async () => {
    const f = feeds();
    const r = await stof.profile(() => g.execute(f));
    tf.dispose([r.result, ...Object.values(f)]);
    return r.replay.captured === 1 ? 'captured' : r.replay.replayed === 1 ? 'replayed' : JSON.stringify(r.replay);
  };
  const kinds = [await forward(), await forward()];
  await tf.setBackend('cpu');
  const f = feeds();
  tf.dispose([g.execute(f), ...Object.values(f)]);  // the engine moves every weight to 'cpu'
  await tf.setBackend('stof');
  kinds.push(await forward(), await forward());
  expect(kinds.join() === 'captured,replayed,captured,replayed', `forwards: ${kinds}`);
  g.dispose();
  expect(inUse(backend) === bytes && backend.numDataIds() === values,
         `after dispose: device bytes ${bytes} -> ${inUse(backend)}, values ${values} -> ${backend.numDataIds()}`);
});

await check('CUDA graph: captured at the second replay, then a forward is one graph launch of the same work; new output tensors; memory freed with the model', async () => {
  const backend = await useCuda();
  const counts = standIn.fake.log.counts, stats = () => backend.base.exec.stats();
  const bytes = inUse(backend), values = backend.numDataIds(), tensors = tf.memory().numTensors;
  const {dir} = writeNamed(path.join(root, 'tmp/cuda_check_fixtures'), 'bert');
  const g = await loadFixture(dir, tfconv);
  const forward = async () => {
    const f = Object.fromEntries(g.inputs.map(i => [i.name, tf.ones([2, 16], 'int32')]));
    const before = counts.launches + counts.matmuls, graphLaunches = counts.graphLaunches;
    const r = await stof.profile(() => g.execute(f), {timing: false});  // timed kernels would turn graphs off
    tf.dispose(Object.values(f));
    const kind = r.replay.captured ? 'captured' : r.replay.graphs ? 'graph' : r.replay.replayed ? 'replayed' : JSON.stringify(r.replay);
    return {r, kind, work: counts.launches + counts.matmuls - before, graphLaunches: counts.graphLaunches - graphLaunches};
  };
  const runs = [];
  for (let i = 0; i < 5; i++) runs.push(await forward());
  // Forward 3 runs kernel by kernel on the graph's input buffers, then captures; forwards 4 on launch the graph.
  expect(runs.map(x => x.kind).join() === 'captured,replayed,replayed,graph,graph', `forwards: ${runs.map(x => x.kind)} ${JSON.stringify(runs[2].r.replay)}`);
  expect(runs.map(x => x.graphLaunches).join() === '0,0,0,1,1', `graph launches per forward: ${runs.map(x => x.graphLaunches)}`);
  // The graph runs what forward 3 launched kernel by kernel (the capture itself runs nothing).
  expect(runs[1].work > 20 && runs[3].work === runs[2].work && runs[4].work === runs[2].work, `kernels per forward: ${runs.map(x => x.work)}`);
  expect(runs[3].r.dispatches === runs[3].work, `profile() of a graph forward: ${runs[3].r.dispatches} dispatches, ${runs[3].work} kernels`);
  expect(stats().parkedBytes > 0, 'the graph keeps its released blocks out of the pool');
  const steady = inUse(backend), steadyTensors = tf.memory().numTensors;
  for (let i = 0; i < 20; i++) tf.dispose((await forward()).r.result);
  expect(inUse(backend) === steady && tf.memory().numTensors === steadyTensors,
         `20 graph forwards: device bytes ${steady} -> ${inUse(backend)}, tensors ${steadyTensors} -> ${tf.memory().numTensors}`);
  const outs = runs.map(x => x.r.result);
  expect(new Set(outs.map(t => t.dataId)).size === 5 && outs.every(t => !t.isDisposed), 'each forward returns its own tensor');
  tf.dispose(outs);
  g.dispose();
  expect(inUse(backend) === bytes && stats().parkedBytes === 0 && backend.numDataIds() === values && tf.memory().numTensors === tensors,
         `after dispose: device bytes ${bytes} -> ${inUse(backend)}, parked ${stats().parkedBytes}, values ${values} -> ${backend.numDataIds()}`);
});

await check('CUDA graph: a mask fed as a model input is analysed inside the graph (its buffer is rewritten each launch)', async () => {
  const backend = await useCuda();
  const counts = standIn.fake.log.counts;
  const dir = writeFixture(path.join(root, 'tmp/cuda_check_fixtures/masked_attention'), makeMaskedAttention({seq: 16}));
  const g = await loadFixture(dir, tfconv);
  const works = [], kinds = [];
  for (let i = 0; i < 5; i++) {
    const f = {q: tf.ones([1, 2, 16, 8]), k: tf.ones([1, 2, 16, 8]), v: tf.ones([1, 2, 16, 8]),
               mask: tf.tensor4d(Float32Array.from({length: 256}, (_, j) => (j % 16 > i + 8 ? -1e9 : 0)), [1, 1, 16, 16])};
    const before = counts.launches + counts.matmuls;
    const r = await stof.profile(() => g.execute(f), {timing: false});
    works.push(counts.launches + counts.matmuls - before);
    kinds.push(r.replay.graphs ? 'graph' : r.replay.replayed ? 'replayed' : 'captured');
    tf.dispose([r.result, ...Object.values(f)]);
  }
  expect(kinds.join() === 'captured,replayed,replayed,graph,graph', `forwards: ${kinds}`);
  expect(works[3] === works[2] && works[4] === works[2], `kernels per forward (the mask analysis included): ${works}`);
  g.dispose();
  void backend;
});

await check('CUDA graph: a capture the driver refuses is declined with its reason (forwards replay kernel by kernel); STOF_CUDA_GRAPH=false', async () => {
  const backend = await useCuda();
  const api = backend.base.exec.device.api, begin = api.cuStreamBeginCapture_v2;
  const {dir} = writeNamed(path.join(root, 'tmp/cuda_check_fixtures'), 'gpt2');
  const g = await loadFixture(dir, tfconv);
  const forward = async () => {
    const f = Object.fromEntries(g.inputs.map(i => [i.name, tf.ones([1, 16], 'int32')]));
    const r = await stof.profile(() => g.execute(f), {timing: false});
    tf.dispose([r.result, ...Object.values(f)]);
    return r.replay;
  };
  api.cuStreamBeginCapture_v2 = () => 801;  // CUDA_ERROR_NOT_SUPPORTED
  let runs;
  try {
    runs = [await forward(), await forward(), await forward(), await forward()];
  } finally {
    api.cuStreamBeginCapture_v2 = begin;
  }
  expect(runs[2].replayed === 1 && runs[2].graphs === 0 && /cuStreamBeginCapture_v2/.test(runs[2].graphDeclined[0]?.reason ?? ''),
         `third forward: ${JSON.stringify(runs[2])}`);
  expect(runs[3].replayed === 1 && runs[3].graphDeclined.length === 0, `declined once per trace: ${JSON.stringify(runs[3])}`);
  g.dispose();
  tf.env().set('STOF_CUDA_GRAPH', false);
  try {
    const g2 = await loadFixture(dir, tfconv);
    const kinds = [];
    for (let i = 0; i < 4; i++) {
      const f = Object.fromEntries(g2.inputs.map(inp => [inp.name, tf.ones([1, 16], 'int32')]));
      const r = await stof.profile(() => g2.execute(f), {timing: false});
      tf.dispose([r.result, ...Object.values(f)]);
      kinds.push(r.replay.graphs);
    }
    g2.dispose();
    expect(kinds.every(n => n === 0), `graphs with STOF_CUDA_GRAPH=false: ${kinds}`);
  } finally {
    tf.env().set('STOF_CUDA_GRAPH', true);
  }
  void backend;
});

await check('no leaks: 50 forwards keep tensors and device bytes flat', async () => {
  const backend = await useCuda();
  const w = tf.randomNormal([64, 64]), table = tf.randomNormal([512, 64]);
  const step = () => tf.tidy(() => {
    const e = tf.gather(table, tf.tensor1d([3, 1, 4, 1, 5, 9, 2, 6], 'int32'));
    const h = tf.relu(tf.add(tf.matMul(e, w), 1));
    return tf.sum(tf.softmax(h), 1);
  });
  const warm = step();  // computed once: the weights' uploads are cached, not leaked
  warm.dataSync();
  warm.dispose();
  const tensors = tf.memory().numTensors, bytes = inUse(backend);
  for (let i = 0; i < 50; i++) {
    const y = step();
    y.dataSync();
    y.dispose();
  }
  expect(tf.memory().numTensors === tensors, `tensors ${tensors} -> ${tf.memory().numTensors}`);
  expect(inUse(backend) === bytes, `device bytes in use ${bytes} -> ${inUse(backend)}`);
  tf.dispose([w, table]);
});

await check('disposing the backend frees every device allocation', async () => {
  await useCuda();
  tf.tidy(() => tf.softmax(tf.randomNormal([32, 32])).dataSync());
  const log = standIn.fake.log;
  tf.engine().reset();
  expect(log.counts.allocs === log.counts.frees, `allocs ${log.counts.allocs}, frees ${log.counts.frees}`);
});

await check("STOF_DEVICE='cuda' without CUDA fails naming why; 'auto' goes on without it", async () => {
  setCudaProvider(() => ({reason: 'CUDA driver libcuda.so.1 not found'}));
  tf.engine().reset();
  tf.env().set('STOF_DEVICE', 'cuda');
  const warn = console.warn;
  const warnings = [];
  console.warn = (...a) => warnings.push(a.join(' '));
  try {
    const ok = await tf.setBackend('stof');
    expect(!ok, 'setBackend succeeded');
    expect(warnings.some(w => /STOF_DEVICE is 'cuda' but CUDA driver libcuda.so.1 not found/.test(w)), `warnings ${warnings}`);
    tf.engine().reset();
    tf.env().set('STOF_DEVICE', 'auto');
    expect(await tf.setBackend('stof'), 'auto failed');
    expect(stof.backendInfo().base !== 'cuda', 'auto chose cuda');
    expect(warnings.filter(w => /no CUDA \(CUDA driver libcuda.so.1 not found\) and no WebGPU .*runs on the CPU base/.test(w)).length === 1, `notice: ${warnings}`);
  } finally {
    console.warn = warn;
    tf.env().set('STOF_DEVICE', 'auto');
  }
});

await check('an unknown STOF_DEVICE or STOF_PRECISION is rejected naming the value', async () => {
  let m1 = '', m2 = '';
  try { tf.env().set('STOF_DEVICE', 'metal'); } catch (e) { m1 = e.message; }
  try { tf.env().set('STOF_PRECISION', 'bf16'); } catch (e) { m2 = e.message; }
  expect(/STOF_DEVICE must be one of 'auto', 'cuda', 'webgpu', 'cpu', got "metal"/.test(m1), m1);
  expect(/STOF_PRECISION must be one of 'fp32', 'tf32', 'fp16', got "bf16"/.test(m2), m2);
});

function util_eq(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

console.log(`${failures === 0 ? 'all passed' : `${failures} failed`} (${standIn.provided} CUDA bases made)`);
process.exit(failures === 0 ? 0 : 1);
