// The Node stand-in for export_hf.py (no torch needed): the same export format (hf_format.mjs) with
// seeded HF-layout weights under HF parameter names, the validation inputs, last_hidden_state from
// the float64 HF-layout forward of hf_reference.mjs, and model.onnx from onnx_writer.mjs.
// Used to check the plumbing of validate_hf.mjs and e2e.mjs end to end where torch is absent.
//
// Usage: node bench/hf/gen_node.mjs --out DIR [--models bert_tiny,gpt2_tiny,long_tiny] [--reference auto|yes|no] [--no-onnx]
//   --reference auto: computes last_hidden_state for the *_tiny models only (the float64 JS forward of
//   a base model takes minutes).
import path from 'node:path';
import {fileURLToPath} from 'node:url';

import {makeRng} from '../../test/fixtures/make_fixtures.mjs';
import {MODELS, writeExport} from './hf_format.mjs';
import {hfForward} from './hf_reference.mjs';
import {writeOnnx} from './onnx_writer.mjs';

/** HF parameter names and shapes, in BertModel / GPT2Model named_parameters() order (no pooler). */
export function hfParameterShapes(model, hf) {
  const out = [];
  if (model === 'gpt2') {
    const H = hf.n_embd, I = hf.n_inner ?? 4 * H;
    out.push(['wte.weight', [hf.vocab_size, H]], ['wpe.weight', [hf.n_positions, H]]);
    for (let l = 0; l < hf.n_layer; l++) {
      const p = `h.${l}`;
      out.push([`${p}.ln_1.weight`, [H]], [`${p}.ln_1.bias`, [H]], [`${p}.attn.c_attn.weight`, [H, 3 * H]], [`${p}.attn.c_attn.bias`, [3 * H]],
               [`${p}.attn.c_proj.weight`, [H, H]], [`${p}.attn.c_proj.bias`, [H]], [`${p}.ln_2.weight`, [H]], [`${p}.ln_2.bias`, [H]],
               [`${p}.mlp.c_fc.weight`, [H, I]], [`${p}.mlp.c_fc.bias`, [I]], [`${p}.mlp.c_proj.weight`, [I, H]], [`${p}.mlp.c_proj.bias`, [H]]);
    }
    out.push(['ln_f.weight', [H]], ['ln_f.bias', [H]]);
    return out;
  }
  const H = hf.hidden_size, I = hf.intermediate_size;
  out.push(['embeddings.word_embeddings.weight', [hf.vocab_size, H]], ['embeddings.position_embeddings.weight', [hf.max_position_embeddings, H]],
           ['embeddings.token_type_embeddings.weight', [hf.type_vocab_size, H]], ['embeddings.LayerNorm.weight', [H]], ['embeddings.LayerNorm.bias', [H]]);
  for (let l = 0; l < hf.num_hidden_layers; l++) {
    const p = `encoder.layer.${l}`;
    for (const m of ['query', 'key', 'value']) out.push([`${p}.attention.self.${m}.weight`, [H, H]], [`${p}.attention.self.${m}.bias`, [H]]);
    out.push([`${p}.attention.output.dense.weight`, [H, H]], [`${p}.attention.output.dense.bias`, [H]],
             [`${p}.attention.output.LayerNorm.weight`, [H]], [`${p}.attention.output.LayerNorm.bias`, [H]],
             [`${p}.intermediate.dense.weight`, [I, H]], [`${p}.intermediate.dense.bias`, [I]],
             [`${p}.output.dense.weight`, [H, I]], [`${p}.output.dense.bias`, [H]],
             [`${p}.output.LayerNorm.weight`, [H]], [`${p}.output.LayerNorm.bias`, [H]]);
  }
  return out;
}

/**
 * Seeded weights like HF's init (N(0, 0.02) matrices and embeddings) but with LayerNorm weights in
 * [0.95, 1.05) and biases N(0, 0.02) rather than ones and zeros, so that a swapped or missing
 * vector changes the output (export_hf.py perturbs the same way).
 */
export function seededWeights(model, hf, seed) {
  const rng = makeRng(seed);
  const weights = new Map();
  for (const [name, shape] of hfParameterShapes(model, hf)) {
    const n = shape.reduce((a, b) => a * b, 1), data = new Float32Array(n);
    const isLnWeight = /(LayerNorm|ln_\d|ln_f)\.weight$/.test(name);
    for (let i = 0; i < n; i++) data[i] = isLnWeight ? 1 + 0.1 * (rng.uniform() - 0.5) : 0.02 * rng.normal();
    weights.set(name, {shape, data});
  }
  return weights;
}

/** Right-padded validation inputs: row 0 full, other rows random lengths, at least one padded row. */
export function makeInputs(model, hf, [B, S], seed) {
  const rng = makeRng(seed + 1000);
  const lengths = Array.from({length: B}, (_, b) => (b === 0 && B > 1 ? S : 1 + Math.floor(rng.uniform() * S)));
  if (lengths.every(n => n === S)) lengths[B - 1] = S - Math.max(1, Math.floor(S / 8));
  const ids = new Int32Array(B * S), mask = new Int32Array(B * S), types = new Int32Array(B * S);
  lengths.forEach((len, b) => {
    const second = 1 + Math.floor(rng.uniform() * len);
    for (let s = 0; s < S; s++) {
      ids[b * S + s] = 1 + Math.floor(rng.uniform() * (hf.vocab_size - 1));  // padded positions get ids too, as a tokenizer's pad id would
      mask[b * S + s] = s < len ? 1 : 0;
      types[b * S + s] = s < len && s >= second ? 1 : 0;
    }
  });
  return model === 'gpt2' ? {input_ids: ids, attention_mask: mask} : {input_ids: ids, attention_mask: mask, token_type_ids: types};
}

export function generate(outRoot, name, {reference = 'auto', onnx = true} = {}) {
  const spec = MODELS[name];
  if (spec == null) throw new Error(`unknown model ${name}; known: ${Object.keys(MODELS).join(', ')}`);
  const weights = seededWeights(spec.model, spec.hf, spec.seed);
  const inputs = makeInputs(spec.model, spec.hf, spec.inputs, spec.seed);
  const doRef = reference === 'yes' || (reference === 'auto' && name.endsWith('_tiny'));
  const [B, S] = spec.inputs;
  const lastHiddenState = doRef ? Float32Array.from(hfForward(spec.model, spec.hf, spec.structure, weights, inputs, B, S)) : null;
  const onnxModel = onnx ? writeOnnx(spec.model, spec.hf, spec.structure, weights) : null;
  return writeExport(path.join(outRoot, name), {
    name, model: spec.model, source: {generator: 'node (bench/hf/gen_node.mjs)', seed: spec.seed}, hf: spec.hf, structure: spec.structure,
    weights, inputs, inputShape: spec.inputs, lastHiddenState, reference: doRef ? 'float64 JS forward on the HF-layout weights (bench/hf/hf_reference.mjs)' : undefined,
    onnx: onnxModel,
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const opt = (k, d) => (argv.includes(`--${k}`) ? argv[argv.indexOf(`--${k}`) + 1] : d);
  const out = opt('out');
  if (!out) { console.error('usage: node bench/hf/gen_node.mjs --out DIR [--models a,b] [--reference auto|yes|no] [--no-onnx]'); process.exit(2); }
  for (const name of opt('models', 'bert_tiny,gpt2_tiny,long_tiny').split(',')) {
    const t0 = performance.now();
    const dir = generate(out, name, {reference: opt('reference', 'auto'), onnx: !argv.includes('--no-onnx')});
    console.log(`${dir} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
}
