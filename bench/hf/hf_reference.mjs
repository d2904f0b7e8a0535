// Float64 forward passes of HF BertModel / GPT2Model (and the long encoder: BertModel weights with
// the sliding-window + global mask) written against the HF parameter names and layouts (Linear
// weight [out, in], y = x W^T + b; GPT-2 Conv1D weight [in, out], y = x W + b). Independent of the
// fixture graph and of test/fixtures/reference.mjs, so that a wrong name or a missing transpose in
// the HF -> fixture mapping shows up as a mismatch.
//
// hfForward(model, hfConfig, structure, weights: Map name -> {shape, data}, inputs, B, S) -> Float64Array [B, S, H]
import {erf} from '../../test/fixtures/reference.mjs';

function getter(weights) {
  return (name, shape) => {
    const t = weights.get(name);
    if (t == null) throw new Error(`missing ${name}`);
    if (shape && JSON.stringify([...t.shape]) !== JSON.stringify(shape)) throw new Error(`${name}: [${t.shape}], expected [${shape}]`);
    return t.data;
  };
}

/** torch.nn.Linear: x [rows, in], W [out, in]. */
function linear(x, rows, W, b, inDim, outDim) {
  const y = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outDim; o++) {
      let acc = b[o];
      const wo = o * inDim, xr = r * inDim;
      for (let i = 0; i < inDim; i++) acc += x[xr + i] * W[wo + i];
      y[r * outDim + o] = acc;
    }
  }
  return y;
}

/** HF Conv1D: x [rows, nx], W [nx, nf]. */
function conv1d(x, rows, W, b, nx, nf) {
  const y = new Float64Array(rows * nf);
  for (let r = 0; r < rows; r++) {
    const yr = r * nf;
    for (let o = 0; o < nf; o++) y[yr + o] = b[o];
    for (let i = 0; i < nx; i++) {
      const xv = x[r * nx + i], wr = i * nf;
      for (let o = 0; o < nf; o++) y[yr + o] += xv * W[wr + o];
    }
  }
  return y;
}

function layerNorm(x, rows, H, w, b, eps) {
  const y = new Float64Array(rows * H);
  for (let r = 0; r < rows; r++) {
    const o = r * H;
    let m = 0;
    for (let i = 0; i < H; i++) m += x[o + i];
    m /= H;
    let v = 0;
    for (let i = 0; i < H; i++) v += (x[o + i] - m) ** 2;
    const inv = 1 / Math.sqrt(v / H + eps);
    for (let i = 0; i < H; i++) y[o + i] = (x[o + i] - m) * inv * w[i] + b[i];
  }
  return y;
}

/** softmax(q k^T / sqrt(dh) + bias) v per head; q, k, v [rows, H] with heads side by side. */
function mha(q, k, v, B, S, H, heads, bias) {
  const dh = H / heads, scale = 1 / Math.sqrt(dh), out = new Float64Array(B * S * H), p = new Float64Array(S);
  for (let b = 0; b < B; b++) for (let h = 0; h < heads; h++) for (let i = 0; i < S; i++) {
    const qo = (b * S + i) * H + h * dh;
    let mx = -Infinity;
    for (let j = 0; j < S; j++) {
      const ko = (b * S + j) * H + h * dh;
      let s = 0;
      for (let d = 0; d < dh; d++) s += q[qo + d] * k[ko + d];
      p[j] = s * scale + bias(b, i, j);
      if (p[j] > mx) mx = p[j];
    }
    let z = 0;
    for (let j = 0; j < S; j++) { p[j] = Math.exp(p[j] - mx); z += p[j]; }
    for (let j = 0; j < S; j++) {
      const wgt = p[j] / z, vo = (b * S + j) * H + h * dh;
      for (let d = 0; d < dh; d++) out[qo + d] += wgt * v[vo + d];
    }
  }
  return out;
}

const add = (a, b) => { const y = new Float64Array(a.length); for (let i = 0; i < a.length; i++) y[i] = a[i] + b[i]; return y; };

function gather(table, H, ids) {
  const y = new Float64Array(ids.length * H);
  ids.forEach((id, r) => { for (let i = 0; i < H; i++) y[r * H + i] = table[id * H + i]; });
  return y;
}

export function hfForward(model, hf, structure, weights, inputs, B, S) {
  const W = getter(weights), rows = B * S;
  const ids = Array.from(inputs.input_ids), mask = Array.from(inputs.attention_mask ?? new Int32Array(rows).fill(1));
  const pos = Array.from({length: rows}, (_, r) => r % S);
  if (model === 'gpt2') {
    const H = hf.n_embd, I = hf.n_inner ?? 4 * H, eps = hf.layer_norm_epsilon;
    let x = add(gather(W('wte.weight'), H, ids), gather(W('wpe.weight'), H, pos));
    const bias = (b, i, j) => (j <= i ? 0 : -1e4) + (1 - mask[b * S + j]) * -1e4;
    const c = Math.sqrt(2 / Math.PI);
    for (let l = 0; l < hf.n_layer; l++) {
      const p = `h.${l}`;
      const a = layerNorm(x, rows, H, W(`${p}.ln_1.weight`), W(`${p}.ln_1.bias`), eps);
      const qkv = conv1d(a, rows, W(`${p}.attn.c_attn.weight`, [H, 3 * H]), W(`${p}.attn.c_attn.bias`), H, 3 * H);
      const part = o => { const t = new Float64Array(rows * H); for (let r = 0; r < rows; r++) for (let i = 0; i < H; i++) t[r * H + i] = qkv[r * 3 * H + o * H + i]; return t; };
      const ctx = mha(part(0), part(1), part(2), B, S, H, hf.n_head, bias);
      x = add(x, conv1d(ctx, rows, W(`${p}.attn.c_proj.weight`, [H, H]), W(`${p}.attn.c_proj.bias`), H, H));
      const m = layerNorm(x, rows, H, W(`${p}.ln_2.weight`), W(`${p}.ln_2.bias`), eps);
      const fc = conv1d(m, rows, W(`${p}.mlp.c_fc.weight`, [H, I]), W(`${p}.mlp.c_fc.bias`), H, I)
          .map(u => 0.5 * u * (1 + Math.tanh(c * (u + 0.044715 * u ** 3))));
      x = add(x, conv1d(fc, rows, W(`${p}.mlp.c_proj.weight`, [I, H]), W(`${p}.mlp.c_proj.bias`), I, H));
    }
    return layerNorm(x, rows, H, W('ln_f.weight'), W('ln_f.bias'), eps);
  }
  const H = hf.hidden_size, I = hf.intermediate_size, eps = hf.layer_norm_eps;
  const types = Array.from(inputs.token_type_ids ?? new Int32Array(rows));
  let x = add(add(gather(W('embeddings.word_embeddings.weight'), H, ids), gather(W('embeddings.position_embeddings.weight'), H, pos)),
              gather(W('embeddings.token_type_embeddings.weight'), H, types));
  x = layerNorm(x, rows, H, W('embeddings.LayerNorm.weight'), W('embeddings.LayerNorm.bias'), eps);
  const win = model === 'long' ? structure.window : Infinity, G = model === 'long' ? structure.global_tokens : 0;
  const bias = (b, i, j) => (1 - mask[b * S + j]) * -1e4 + (Math.abs(i - j) <= win || i < G || j < G ? 0 : -1e4);
  const lin = (name, v, inDim, outDim) => linear(v, rows, W(`${name}.weight`, [outDim, inDim]), W(`${name}.bias`, [outDim]), inDim, outDim);
  for (let l = 0; l < hf.num_hidden_layers; l++) {
    const p = `encoder.layer.${l}`;
    const ctx = mha(lin(`${p}.attention.self.query`, x, H, H), lin(`${p}.attention.self.key`, x, H, H), lin(`${p}.attention.self.value`, x, H, H),
                    B, S, H, hf.num_attention_heads, bias);
    const h1 = layerNorm(add(lin(`${p}.attention.output.dense`, ctx, H, H), x), rows, H,
                         W(`${p}.attention.output.LayerNorm.weight`), W(`${p}.attention.output.LayerNorm.bias`), eps);
    const inter = lin(`${p}.intermediate.dense`, h1, H, I).map(u => 0.5 * u * (1 + erf(u / Math.SQRT2)));
    x = layerNorm(add(lin(`${p}.output.dense`, inter, I, H), h1), rows, H, W(`${p}.output.LayerNorm.weight`), W(`${p}.output.LayerNorm.bias`), eps);
  }
  return x;
}
