// Round-trip latency of reading a small tensor back to the host on each backend (Dawn in Node):
// the floor under any per-forward time that ends in a read. Median of 20.
import * as tf from '@tensorflow/tfjs-core';
import 'tfjs-backend-stof';

tf.env().set('STOF_DEVICE', 'webgpu');  // 'stof' on the same Dawn device as the peer, also where CUDA exists

for (const backend of ['webgpu', 'stof']) {
  await tf.setBackend(backend);
  const x = tf.ones([4096]);  // above the size the base keeps on the CPU
  const ms = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    const y = tf.add(x, 1);
    await y.data();
    ms.push(performance.now() - t0);
    y.dispose();
  }
  ms.sort((a, b) => a - b);
  console.log(`readback ${backend}: median ${ms[10].toFixed(2)} ms (min ${ms[0].toFixed(2)}, max ${ms[19].toFixed(2)})`);
  x.dispose();
}
