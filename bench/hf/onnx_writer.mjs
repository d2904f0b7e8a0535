// ONNX (opset 17) of BERT / GPT-2 / the long encoder from HF-named weights, written from Node with
// the protobufjs ONNX schema that onnxruntime-web ships. The graph is the plain model (MatMul + Add,
// LayerNormalization, erf or tanh GELU spelled out, Softmax, the masks as additive -10000 biases,
// the long encoder's window/global mask built in-graph from Range); inputs int64 [batch, seq] as
// torch.onnx.export writes them. Used where torch is absent (gen_node.mjs) and as the fallback
// when export_hf.py could not export.
//
// writeOnnx(model, hfConfig, structure, weights: Map HF name -> {shape, data}) -> {bytes: Uint8Array, opset, exporter, module, input_dtype}
import {createRequire} from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
// not an exported subpath: found from the package's main file (dist/ort.node.min.js)
const {onnx} = require(path.join(path.dirname(require.resolve('onnxruntime-web')), '../lib/onnxjs/ort-schema/protobuf/onnx.js'));

const FLOAT = 1, INT64 = 7;
const ATTR = {FLOAT: 1, INT: 2, INTS: 7};

class OnnxGraph {
  constructor() { this.nodes = []; this.inits = []; this.n = 0; this.consts = new Map(); }
  op(type, inputs, attrs = {}, nOut = 1) {
    const name = `${type}_${this.n++}`;
    const outputs = Array.from({length: nOut}, (_, i) => (nOut === 1 ? name : `${name}:${i}`));
    const attribute = Object.entries(attrs).map(([k, v]) =>
      Array.isArray(v) ? {name: k, type: ATTR.INTS, ints: v} : Number.isInteger(v) && k !== 'epsilon' ? {name: k, type: ATTR.INT, i: v} : {name: k, type: ATTR.FLOAT, f: v});
    this.nodes.push({name, opType: type, input: inputs, output: outputs, attribute});
    return nOut === 1 ? outputs[0] : outputs;
  }
  init(name, dims, data, dataType = FLOAT) {
    this.inits.push({name, dims, dataType, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength)});
    return name;
  }
  f(v) { return this.constant(`f${v}`, () => this.init(`const_f_${this.consts.size}`, [], Float32Array.of(v))); }
  i64(vs, scalar = false) {
    return this.constant(`i${scalar ? 's' : ''}${vs}`, () => this.init(`const_i_${this.consts.size}`, scalar ? [] : [vs.length], BigInt64Array.from(vs.map(BigInt)), INT64));
  }
  constant(key, make) { if (!this.consts.has(key)) this.consts.set(key, make()); return this.consts.get(key); }
  finish(inputs, output, H) {
    const vi = (name, elemType, dims) => ({name, type: {tensorType: {elemType, shape: {dim: dims.map(d => (typeof d === 'string' ? {dimParam: d} : {dimValue: d}))}}}});
    const model = onnx.ModelProto.create({
      irVersion: 8, producerName: 'tfjs-backend-stof bench/hf/onnx_writer.mjs', opsetImport: [{domain: '', version: 17}],
      graph: {name: 'main', node: this.nodes, initializer: this.inits,
              input: inputs.map(n => vi(n, INT64, ['batch', 'seq'])), output: [vi(output, FLOAT, ['batch', 'seq', H])]},
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function transposed({shape: [rows, cols], data}) {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return {shape: [cols, rows], data: out};
}

export function writeOnnx(model, hf, structure, weights) {
  const g = new OnnxGraph();
  const W = (name, t = false) => {
    const w = weights.get(name);
    if (w == null) throw new Error(`missing ${name}`);
    const v = t ? transposed(w) : w;
    return g.init(name, v.shape, v.data);
  };
  const gpt2 = model === 'gpt2';
  const H = gpt2 ? hf.n_embd : hf.hidden_size, heads = gpt2 ? hf.n_head : hf.num_attention_heads, dh = H / heads;
  const eps = gpt2 ? hf.layer_norm_epsilon : hf.layer_norm_eps;
  const inputs = gpt2 ? ['input_ids', 'attention_mask'] : ['input_ids', 'attention_mask', 'token_type_ids'];

  const seq = g.op('Gather', [g.op('Shape', ['input_ids']), g.i64([1], true)], {axis: 0});
  const pos = g.op('Range', [g.i64([0], true), seq, g.i64([1], true)]);
  const ln = (x, p) => g.op('LayerNormalization', [x, W(`${p}.weight`), W(`${p}.bias`)], {axis: -1, epsilon: eps});
  const iCol = g.op('Unsqueeze', [pos, g.i64([1])]), jRow = g.op('Unsqueeze', [pos, g.i64([0])]);
  const negBias = boolT => g.op('Mul', [g.op('Sub', [g.f(1), g.op('Cast', [boolT], {to: FLOAT})]), g.f(-10000)]);
  const pad = g.op('Mul', [g.op('Sub', [g.f(1), g.op('Unsqueeze', [g.op('Cast', ['attention_mask'], {to: FLOAT}), g.i64([1, 2])])]), g.f(-10000)]);
  let bias = pad;
  if (gpt2) bias = g.op('Add', [pad, negBias(g.op('LessOrEqual', [jRow, iCol]))]);
  if (model === 'long') {
    const band = g.op('LessOrEqual', [g.op('Abs', [g.op('Sub', [iCol, jRow])]), g.i64([structure.window], true)]);
    const glob = g.op('Or', [g.op('Less', [iCol, g.i64([structure.global_tokens], true)]), g.op('Less', [jRow, g.i64([structure.global_tokens], true)])]);
    bias = g.op('Add', [pad, negBias(g.op('Or', [band, glob]))]);
  }
  const heads4 = (x, perm) => g.op('Transpose', [g.op('Reshape', [x, g.i64([0, 0, heads, dh])])], {perm});
  const attention = (q, k, v) => {
    const s = g.op('Add', [g.op('Mul', [g.op('MatMul', [heads4(q, [0, 2, 1, 3]), heads4(k, [0, 2, 3, 1])]), g.f(1 / Math.sqrt(dh))]), bias]);
    const ctx = g.op('MatMul', [g.op('Softmax', [s], {axis: -1}), heads4(v, [0, 2, 1, 3])]);
    return g.op('Reshape', [g.op('Transpose', [ctx], {perm: [0, 2, 1, 3]}), g.i64([0, 0, H])]);
  };
  const affine = (x, w, b) => g.op('Add', [g.op('MatMul', [x, w]), b]);
  let x;
  if (gpt2) {
    x = g.op('Add', [g.op('Gather', [W('wte.weight'), 'input_ids'], {axis: 0}), g.op('Gather', [W('wpe.weight'), pos], {axis: 0})]);
    const c = Math.sqrt(2 / Math.PI);
    for (let l = 0; l < hf.n_layer; l++) {
      const p = `h.${l}`;
      const qkv = affine(ln(x, `${p}.ln_1`), W(`${p}.attn.c_attn.weight`), W(`${p}.attn.c_attn.bias`));
      const [q, k, v] = g.op('Split', [qkv, g.i64([H, H, H])], {axis: 2}, 3);
      x = g.op('Add', [x, affine(attention(q, k, v), W(`${p}.attn.c_proj.weight`), W(`${p}.attn.c_proj.bias`))]);
      const f = affine(ln(x, `${p}.ln_2`), W(`${p}.mlp.c_fc.weight`), W(`${p}.mlp.c_fc.bias`));
      const cube = g.op('Mul', [g.op('Mul', [f, f]), f]);
      const t = g.op('Tanh', [g.op('Mul', [g.op('Add', [f, g.op('Mul', [cube, g.f(0.044715)])]), g.f(c)])]);
      const gelu = g.op('Mul', [g.op('Mul', [f, g.f(0.5)]), g.op('Add', [t, g.f(1)])]);
      x = g.op('Add', [x, affine(gelu, W(`${p}.mlp.c_proj.weight`), W(`${p}.mlp.c_proj.bias`))]);
    }
    x = ln(x, 'ln_f');
  } else {
    const E = 'embeddings';
    const sum = g.op('Add', [g.op('Add', [g.op('Gather', [W(`${E}.word_embeddings.weight`), 'input_ids'], {axis: 0}),
                                          g.op('Gather', [W(`${E}.position_embeddings.weight`), pos], {axis: 0})]),
                             g.op('Gather', [W(`${E}.token_type_embeddings.weight`), 'token_type_ids'], {axis: 0})]);
    x = ln(sum, `${E}.LayerNorm`);
    for (let l = 0; l < hf.num_hidden_layers; l++) {
      const p = `encoder.layer.${l}`;
      const lin = (v, m) => affine(v, W(`${p}.${m}.weight`, true), W(`${p}.${m}.bias`));
      const ctx = attention(lin(x, 'attention.self.query'), lin(x, 'attention.self.key'), lin(x, 'attention.self.value'));
      const h1 = ln(g.op('Add', [lin(ctx, 'attention.output.dense'), x]), `${p}.attention.output.LayerNorm`);
      const f = lin(h1, 'intermediate.dense');
      const gelu = g.op('Mul', [g.op('Mul', [f, g.f(0.5)]), g.op('Add', [g.op('Erf', [g.op('Mul', [f, g.f(Math.SQRT1_2)])]), g.f(1)])]);
      x = ln(g.op('Add', [lin(gelu, 'output.dense'), h1]), `${p}.output.LayerNorm`);
    }
  }
  g.op('Identity', [x]);
  g.nodes[g.nodes.length - 1].output = ['last_hidden_state'];
  return {bytes: g.finish(inputs, 'last_hidden_state', H), opset: 17, exporter: 'node (bench/hf/onnx_writer.mjs)', module: 'plain graph', input_dtype: 'int64'};
}
