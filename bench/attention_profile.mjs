// Device time of each launch of one masked attention call (profile() with timestamp queries):
// the mask's tile format (first call only) and the attention kernel, per mask and kernel variant.
// Usage: node bench/attention_profile.mjs [S] [masks,...] (each kernel forced, then auto)
import * as tf from '@tensorflow/tfjs-core';
import * as stof from 'tfjs-backend-stof';

const S = +(process.argv[2] ?? 2048), B = 8, H = 12, D = 64;
const masks = (process.argv[3] ?? 'none,causal,sliding').split(',');
const build = {none: () => null, causal: () => stof.masks.causal(S), sliding: () => stof.masks.slidingWindow(S, 128),
               longformer: () => stof.masks.longformer(S, 128, Array.from({length: 32}, (_, i) => i))};
await tf.setBackend('stof');
const q = tf.randomNormal([B, H, S, D]), k = tf.randomNormal([B, H, S, D]), v = tf.randomNormal([B, H, S, D]);
for (const name of masks) {
  const mask = build[name]();
  for (const variant of mask ? ['dense', 'blockwise', 'rowwise', 'auto'] : ['dense', 'rowwise', 'auto']) {
    tf.env().set('STOF_ATTENTION', variant);  // rowwise at long S: as many rows as fit
    const rows = [];
    for (let i = 0; i < 3; i++) {
      const r = await stof.profile(() => stof.attention(q, k, v, {mask: mask ?? undefined}));
      r.result.dispose();
      rows.push(r.groups.map(g => `${g.template}${g.variant ? `/${g.variant} ${g.tiles.Br}x${g.tiles.Bc}/${g.tiles.threads}` : ''} ${g.ms?.toFixed(3)} ms`).join(', '));
    }
    console.log(`S=${S} ${name} ${variant}: ${rows.join(' | ')}`);
  }
  mask?.dispose();
}
