// The UMD bundles loaded by <script> tags: tf-core, tf-backend-cpu, tf-backend-webgpu, then ours.
describe('UMD bundle', () => {
  it('exposes tf.stof and registers the stof backend as the default', async () => {
    expect(typeof tf.stof.backendInfo).toBe('function');
    expect(tf.engine().getSortedBackends()[0]).toBe('stof');
    expect(await tf.setBackend('stof')).toBe(true);
    expect(tf.getBackend()).toBe('stof');
    expect(tf.stof.backendInfo().base).toBe('webgpu');
  });

  it('computes what tfjs-backend-cpu computes', async () => {
    await tf.setBackend('stof');
    // Inputs made on each backend: moving a GPU-resident tensor to the CPU reads it back through a
    // canvas, which SwiftShader answers with zeros (a base limitation, see test/core/exclusions.ts).
    const f = () => {
      const x = tf.tensor2d([[0.5, -1, 2], [3, 0, -0.25]]);
      return tf.add(tf.softmax(tf.matMul(x, x, false, true)), tf.relu(tf.sum(x, 1, true)));
    };
    const onStof = await f().data();
    await tf.setBackend('cpu');
    const onCpu = await f().data();
    expect(onStof.length).toBe(onCpu.length);
    for (let i = 0; i < onCpu.length; i++) expect(onStof[i]).toBeCloseTo(onCpu[i], 5);
  });
});
