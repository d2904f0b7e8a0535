// The exchange format between bench/hf/export_hf.py (torch + transformers, on the GPU machine),
// bench/hf/gen_node.mjs (the same format from Node, seeded, no torch) and the Node consumers
// (validate_hf.mjs, e2e.mjs). One directory per model:
//   manifest.json   {format, name, model: 'bert'|'gpt2'|'long', source, hf_config, structure?,
//                    weights_file, weights: {<HF parameter name>: {shape, dtype: 'float32', offset}},
//                    inputs: {<name>: {shape, dtype: 'int32', file}},
//                    outputs: {last_hidden_state: {shape, dtype: 'float32', file, reference}} | {},
//                    onnx: {file, opset, exporter, module, input_dtype} | null, onnx_error?}
//   weights.bin     raw little-endian float32, HF layouts (Linear [out, in], GPT-2 Conv1D [in, out])
//   <input>.bin     int32 [B, S];  last_hidden_state.bin float32 [B, S, H]
//   model.onnx      the same model for ONNX Runtime (optional)
import fs from 'node:fs';
import path from 'node:path';

import {makeBert, makeGpt2, makeLongEncoder} from '../../test/fixtures/make_fixtures.mjs';

export const FORMAT = 'stof-hf-export/1';

/**
 * The models both exporters write (the same list is in export_hf.py). hf: the HF config fields the
 * fixtures use; inputs: [B, S] of the validation inputs (right-padded, see makeInputs).
 */
export const MODELS = {
  bert_tiny: {model: 'bert', hf: {vocab_size: 100, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 256,
                                  max_position_embeddings: 64, type_vocab_size: 2, layer_norm_eps: 1e-12, hidden_act: 'gelu'}, inputs: [2, 13], seed: 1},
  gpt2_tiny: {model: 'gpt2', hf: {vocab_size: 100, n_positions: 64, n_embd: 64, n_layer: 2, n_head: 4, n_inner: null,
                                  layer_norm_epsilon: 1e-5, activation_function: 'gelu_new'}, inputs: [2, 11], seed: 2},
  long_tiny: {model: 'long', hf: {vocab_size: 100, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 256,
                                  max_position_embeddings: 128, type_vocab_size: 2, layer_norm_eps: 1e-12, hidden_act: 'gelu'},
              structure: {window: 4, global_tokens: 2}, inputs: [2, 40], seed: 3},
  bert_base: {model: 'bert', hf: {vocab_size: 30522, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072,
                                  max_position_embeddings: 512, type_vocab_size: 2, layer_norm_eps: 1e-12, hidden_act: 'gelu'}, inputs: [2, 128], seed: 1},
  gpt2_base: {model: 'gpt2', hf: {vocab_size: 50257, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12, n_inner: null,
                                  layer_norm_epsilon: 1e-5, activation_function: 'gelu_new'}, inputs: [2, 128], seed: 2},
  long_base: {model: 'long', hf: {vocab_size: 30522, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072,
                                  max_position_embeddings: 4096, type_vocab_size: 2, layer_norm_eps: 1e-12, hidden_act: 'gelu'},
              structure: {window: 256, global_tokens: 4}, inputs: [1, 1024], seed: 3},
};

/** HF config (+ structure) -> the config of makeBert / makeGpt2 / makeLongEncoder. */
export function fixtureConfig(model, hf, structure) {
  if (model === 'gpt2') {
    const act = hf.activation_function ?? 'gelu_new';
    if (!['gelu_new', 'gelu_pytorch_tanh'].includes(act)) throw new Error(`GPT-2 activation ${act}: the fixture has tanh GELU only`);
    return {layers: hf.n_layer, hidden: hf.n_embd, heads: hf.n_head, intermediate: hf.n_inner ?? 4 * hf.n_embd, vocab: hf.vocab_size,
            maxPositions: hf.n_positions, eps: hf.layer_norm_epsilon ?? 1e-5, attentionMask: true};
  }
  if ((hf.hidden_act ?? 'gelu') !== 'gelu') throw new Error(`BERT activation ${hf.hidden_act}: the fixture has erf GELU only`);
  if ((hf.position_embedding_type ?? 'absolute') !== 'absolute') throw new Error(`position_embedding_type ${hf.position_embedding_type}`);
  const cfg = {layers: hf.num_hidden_layers, hidden: hf.hidden_size, heads: hf.num_attention_heads, intermediate: hf.intermediate_size,
               vocab: hf.vocab_size, maxPositions: hf.max_position_embeddings, typeVocab: hf.type_vocab_size, eps: hf.layer_norm_eps ?? 1e-12};
  if (model === 'long') Object.assign(cfg, {window: structure.window, globalTokens: structure.global_tokens});
  return cfg;
}

/** Reads an export directory: manifest, weights (Map HF name -> {shape, data}), inputs, expected output. */
export function readExport(dir) {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  if (manifest.format !== FORMAT) throw new Error(`${dir}: format ${manifest.format}, expected ${FORMAT}`);
  const bytes = fs.readFileSync(path.join(dir, manifest.weights_file));
  const weights = new Map();
  for (const [name, spec] of Object.entries(manifest.weights)) {
    if (spec.dtype !== 'float32') throw new Error(`${name}: dtype ${spec.dtype}`);
    const size = spec.shape.reduce((a, b) => a * b, 1);
    if (spec.offset + 4 * size > bytes.byteLength) throw new Error(`${name}: past the end of ${manifest.weights_file}`);
    // copy: the Buffer's offset need not be 4-aligned
    const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset + spec.offset, bytes.byteOffset + spec.offset + 4 * size));
    weights.set(name, {shape: spec.shape, data});
  }
  const readBin = (spec, Typed) => {
    const b = fs.readFileSync(path.join(dir, spec.file));
    const a = new Typed(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    if (a.length !== spec.shape.reduce((x, y) => x * y, 1)) throw new Error(`${spec.file}: ${a.length} values for [${spec.shape}]`);
    return a;
  };
  const inputs = Object.fromEntries(Object.entries(manifest.inputs).map(([k, spec]) => [k, readBin(spec, Int32Array)]));
  const out = manifest.outputs?.last_hidden_state;
  return {dir, manifest, weights, inputs, inputShape: manifest.inputs.input_ids.shape,
          expected: out ? readBin(out, Float32Array) : null, expectedShape: out?.shape ?? null};
}

/** The graph-model fixture of an export (makeBert / makeGpt2 / makeLongEncoder with its weights). */
export function buildFixture(exp) {
  const {model, hf_config: hf, structure} = exp.manifest;
  const cfg = {...fixtureConfig(model, hf, structure), weights: exp.weights};
  return model === 'bert' ? makeBert(cfg) : model === 'gpt2' ? makeGpt2(cfg) : makeLongEncoder(cfg);
}

/**
 * Writes an export directory. weights: Map HF name -> {shape, data: Float32Array}; inputs: {name:
 * Int32Array}; lastHiddenState: Float32Array or null; onnx: {bytes, ...info} or null.
 */
export function writeExport(dir, {name, model, source, hf, structure, weights, inputs, inputShape, lastHiddenState, reference, onnx}) {
  fs.mkdirSync(dir, {recursive: true});
  const manifest = {format: FORMAT, name, model, source, hf_config: hf, ...(structure ? {structure} : {}),
                    weights_file: 'weights.bin', weights: {}, inputs: {}, outputs: {}, onnx: null};
  const fd = fs.openSync(path.join(dir, 'weights.bin'), 'w');
  let offset = 0;
  for (const [k, {shape, data}] of weights) {
    manifest.weights[k] = {shape, dtype: 'float32', offset};
    fs.writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    offset += data.byteLength;
  }
  fs.closeSync(fd);
  for (const [k, v] of Object.entries(inputs)) {
    fs.writeFileSync(path.join(dir, `${k}.bin`), new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    manifest.inputs[k] = {shape: inputShape, dtype: 'int32', file: `${k}.bin`};
  }
  if (lastHiddenState) {
    fs.writeFileSync(path.join(dir, 'last_hidden_state.bin'), new Uint8Array(lastHiddenState.buffer, lastHiddenState.byteOffset, lastHiddenState.byteLength));
    const H = model === 'gpt2' ? hf.n_embd : hf.hidden_size;
    manifest.outputs.last_hidden_state = {shape: [...inputShape, H], dtype: 'float32', file: 'last_hidden_state.bin', reference};
  }
  if (onnx) {
    const {bytes, ...info} = onnx;
    fs.writeFileSync(path.join(dir, 'model.onnx'), bytes);
    manifest.onnx = {file: 'model.onnx', ...info};
  }
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest, null, 1));
  return dir;
}

/** The export directories under root (each with a manifest.json), by name. */
export function listExports(root) {
  if (!fs.existsSync(root)) return {};
  return Object.fromEntries(fs.readdirSync(root).filter(d => fs.existsSync(path.join(root, d, 'manifest.json')))
    .sort().map(d => [d, path.join(root, d)]));
}

/** Largest |a - e| / max(1, |e|) and where (the metric of test/specs/model_spec.ts). */
export function worstRel(actual, expected) {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  let err = 0, at = -1;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.abs(actual[i] - expected[i]) / Math.max(1, Math.abs(expected[i]));
    if (!(e <= err)) { err = e; at = i; }
  }
  return {err, at};
}
