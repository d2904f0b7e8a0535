#!/usr/bin/env python3
"""Exports seeded random-init Hugging Face models for bench/hf/validate_hf.mjs and bench/e2e.mjs.

No network: configs are built here, weights come from torch.manual_seed + the models' own init
(then LayerNorm weights and all biases are redrawn from a seeded generator, so that a swapped or
missing vector shows up in the comparison; HF's init makes them ones and zeros).

For each model, a directory <out>/<name>/ in the format of bench/hf/hf_format.mjs:
  manifest.json            HF config, {HF parameter name: {shape, dtype, offset}}, inputs, outputs, ONNX info
  weights.bin              named_parameters() as little-endian float32, HF layouts
  input_ids.bin, attention_mask.bin[, token_type_ids.bin]   int32 [B, S], right-padded
  last_hidden_state.bin    float32 [B, S, H]: the model run in float64 on the CPU
  model.onnx               torch.onnx.export of the float32 model, opset 17 (18 if the dynamo exporter
                           cannot do 17), dynamic batch/seq axes, int64 inputs

Models: bert_* = transformers.BertModel (add_pooling_layer=False), gpt2_* = transformers.GPT2Model,
long_* = the weights of a BertModel (max_position_embeddings 4096 for base) run with a
Longformer-style mask (padding + |i - j| <= window + leading global tokens) built in-graph. HF has no
such model, so its reference is ExplicitBert below (the BERT forward spelled out over the BertModel's
own submodules, float64); for bert/gpt2 the same explicit forward is a cross-check of HF's
(manifest: explicit_vs_hf_max_rel).

Usage: python3 bench/hf/export_hf.py --out DIR [--models bert_tiny,gpt2_tiny,long_tiny,bert_base,gpt2_base,long_base] [--no-onnx] [--skip-existing]
"""
import argparse
import copy
import inspect
import json
import math
import os
import sys
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F

FORMAT = 'stof-hf-export/1'

# Same list as MODELS in bench/hf/hf_format.mjs.
MODELS = {
    'bert_tiny': dict(model='bert', hf=dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                                            max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act='gelu'), inputs=(2, 13), seed=1),
    'gpt2_tiny': dict(model='gpt2', hf=dict(vocab_size=100, n_positions=64, n_embd=64, n_layer=2, n_head=4, n_inner=None,
                                            layer_norm_epsilon=1e-5, activation_function='gelu_new'), inputs=(2, 11), seed=2),
    'long_tiny': dict(model='long', hf=dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                                            max_position_embeddings=128, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act='gelu'),
                      structure=dict(window=4, global_tokens=2), inputs=(2, 40), seed=3),
    'bert_base': dict(model='bert', hf=dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                                            max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act='gelu'), inputs=(2, 128), seed=1),
    'gpt2_base': dict(model='gpt2', hf=dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=None,
                                            layer_norm_epsilon=1e-5, activation_function='gelu_new'), inputs=(2, 128), seed=2),
    'long_base': dict(model='long', hf=dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                                            max_position_embeddings=4096, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act='gelu'),
                      structure=dict(window=256, global_tokens=4), inputs=(1, 1024), seed=3),
}


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------------------------------------
# Models.

def make_config(cls, fields, **extra):
    """A transformers config; eager attention where the version knows the option."""
    try:
        cfg = cls(**fields, **extra, attn_implementation='eager')
    except TypeError:
        cfg = cls(**fields, **extra)
    for attr in ('_attn_implementation', 'attn_implementation'):
        try:
            setattr(cfg, attr, 'eager')
            break
        except Exception:
            pass
    return cfg


def is_ln_weight(name):
    return name.endswith('.weight') and ('LayerNorm' in name or '.ln_' in name or name.startswith('ln_'))


def build_hf(spec):
    import transformers
    torch.manual_seed(spec['seed'])
    if spec['model'] == 'gpt2':
        cfg = make_config(transformers.GPT2Config, spec['hf'], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False)
        model = transformers.GPT2Model(cfg)
    else:
        cfg = make_config(transformers.BertConfig, spec['hf'], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        try:
            model = transformers.BertModel(cfg, add_pooling_layer=False)
        except TypeError:
            model = transformers.BertModel(cfg)
    model = model.float().eval()
    g = torch.Generator().manual_seed(spec['seed'] + 7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if is_ln_weight(name):
                p.copy_(1 + 0.1 * (torch.rand(p.shape, generator=g) - 0.5))
            elif name.endswith('bias'):
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            if not torch.isfinite(p).all():
                raise RuntimeError(f'{name}: non-finite after init')
    return model, cfg


class ExplicitBert(nn.Module):
    """BERT's forward over a BertModel's submodules; optional sliding-window + global-token mask."""

    def __init__(self, bert, window=None, global_tokens=0):
        super().__init__()
        self.bert, self.window, self.global_tokens = bert, window, global_tokens

    def forward(self, input_ids, attention_mask, token_type_ids):
        cfg, emb = self.bert.config, self.bert.embeddings
        H, nh = cfg.hidden_size, cfg.num_attention_heads
        dh = H // nh
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = emb.word_embeddings(input_ids) + emb.position_embeddings(pos)[None] + emb.token_type_embeddings(token_type_ids)
        x = emb.LayerNorm(x)
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        if self.window is not None:
            i, j = pos[:, None], pos[None, :]
            visible = ((i - j).abs() <= self.window) | (i < self.global_tokens) | (j < self.global_tokens)
            bias = bias + (1.0 - visible.to(x.dtype))[None, None] * -10000.0

        def heads(t):
            return t.reshape(t.shape[0], t.shape[1], nh, dh).transpose(1, 2)

        for layer in self.bert.encoder.layer:
            sa = layer.attention.self
            s = heads(sa.query(x)) @ heads(sa.key(x)).transpose(-1, -2) / math.sqrt(dh) + bias
            ctx = (s.softmax(-1) @ heads(sa.value(x))).transpose(1, 2)
            ctx = ctx.reshape(ctx.shape[0], ctx.shape[1], H)
            ao = layer.attention.output
            h1 = ao.LayerNorm(ao.dense(ctx) + x)
            inter = F.gelu(layer.intermediate.dense(h1))  # erf GELU, HF "gelu"
            x = layer.output.LayerNorm(layer.output.dense(inter) + h1)
        return x


class ExplicitGpt2(nn.Module):
    """GPT-2's forward over a GPT2Model's submodules (causal + padding mask, tanh GELU)."""

    def __init__(self, gpt2):
        super().__init__()
        self.gpt2 = gpt2

    def forward(self, input_ids, attention_mask):
        m, cfg = self.gpt2, self.gpt2.config
        H, nh = cfg.n_embd, cfg.n_head
        dh = H // nh
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = m.wte(input_ids) + m.wpe(pos)[None]
        causal = pos[None, :] <= pos[:, None]
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0 + (1.0 - causal.to(x.dtype))[None, None] * -10000.0

        def heads(t):
            return t.reshape(t.shape[0], t.shape[1], nh, dh).transpose(1, 2)

        for blk in m.h:
            q, k, v = blk.attn.c_attn(blk.ln_1(x)).split(H, dim=2)
            s = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(dh) + bias
            ctx = (s.softmax(-1) @ heads(v)).transpose(1, 2)
            x = x + blk.attn.c_proj(ctx.reshape(ctx.shape[0], ctx.shape[1], H))
            x = x + blk.mlp.c_proj(F.gelu(blk.mlp.c_fc(blk.ln_2(x)), approximate='tanh'))
        return m.ln_f(x)


class HFWrap(nn.Module):
    """The HF model with positional inputs and last_hidden_state as the one output (for export)."""

    def __init__(self, model, kind):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        if self.kind == 'gpt2':
            return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state


def explicit_of(model, spec):
    if spec['model'] == 'gpt2':
        return ExplicitGpt2(model)
    st = spec.get('structure') or {}
    return ExplicitBert(model, st.get('window'), st.get('global_tokens', 0))


# ------------------------------------------------------------------------------------------------
# Inputs and outputs.

def make_inputs(spec):
    """Right-padded: row 0 full, other rows random lengths, at least one padded row; a sentence pair's token types."""
    B, S = spec['inputs']
    g = torch.Generator().manual_seed(spec['seed'] + 1000)
    vocab = spec['hf']['vocab_size']
    lengths = [S if (b == 0 and B > 1) else int(torch.randint(1, S + 1, (1,), generator=g)) for b in range(B)]
    if all(n == S for n in lengths):
        lengths[-1] = S - max(1, S // 8)
    ids = torch.randint(1, vocab, (B, S), generator=g)
    mask = torch.zeros(B, S, dtype=torch.long)
    types = torch.zeros(B, S, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        second = int(torch.randint(1, n + 1, (1,), generator=g))
        types[b, second:n] = 1
    if spec['model'] == 'gpt2':
        return dict(input_ids=ids, attention_mask=mask)
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


def max_rel(a, e):
    return float(((a - e).abs() / e.abs().clamp(min=1)).max())


def run(module, inputs):
    with torch.no_grad():
        return module(*inputs.values())


# ------------------------------------------------------------------------------------------------
# ONNX.

def _export(module, example, path, dynamo, opset):
    names = list(example.keys())
    kw = dict(input_names=names, output_names=['last_hidden_state'], opset_version=opset,
              dynamic_axes={**{n: {0: 'batch', 1: 'seq'} for n in names}, 'last_hidden_state': {0: 'batch', 1: 'seq'}},
              do_constant_folding=True, dynamo=dynamo, external_data=False)
    params = inspect.signature(torch.onnx.export).parameters
    if 'dynamo' not in params:
        if dynamo:
            raise RuntimeError(f'torch {torch.__version__}: torch.onnx.export has no dynamo option')
        kw.pop('dynamo')
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        kw = {k: v for k, v in kw.items() if k in params}
    if dynamo:
        kw.pop('do_constant_folding', None)
    torch.onnx.export(module, tuple(example.values()), path, **kw)
    if os.path.exists(path + '.data'):  # external data: inline it (ORT Web would need it passed separately)
        import onnx
        m = onnx.load(path)
        onnx.save(m, path, save_as_external_data=False)
        os.remove(path + '.data')


def export_onnx(model, spec, outdir, expected32):
    """Tries the HF module then the explicit one, TorchScript exporter then dynamo. Returns (info, errors)."""
    example = {k: v[:, :16] if v.shape[1] > 16 else v for k, v in make_inputs(spec).items()}
    attempts = []
    if spec['model'] != 'long':
        attempts += [('transformers', HFWrap(model, spec['model']), False, 17), ('transformers', HFWrap(model, spec['model']), True, 17),
                     ('transformers', HFWrap(model, spec['model']), True, 18)]
    exp = explicit_of(model, spec)
    attempts += [('explicit', exp, False, 17), ('explicit', exp, True, 17), ('explicit', exp, True, 18)]
    path = os.path.join(outdir, 'model.onnx')
    errors = []
    for module_name, module, dynamo, opset in attempts:
        what = f'{module_name}, {"dynamo" if dynamo else "torchscript"} exporter, opset {opset}'
        try:
            t0 = time.time()
            _export(module.eval(), example, path, dynamo, opset)
            info = dict(file='model.onnx', opset=opset, exporter=f'torch.onnx.export ({"dynamo" if dynamo else "torchscript"}), torch {torch.__version__}',
                        module=module_name, input_dtype='int64', seconds=round(time.time() - t0, 1), bytes=os.path.getsize(path))
            try:  # check it where the onnxruntime wheel exists
                import numpy as np
                import onnxruntime
                sess = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
                feeds = {i.name: expected32['inputs'][i.name].numpy() for i in sess.get_inputs()}
                got = torch.from_numpy(np.asarray(sess.run(None, feeds)[0]))
                info['onnxruntime_python_max_rel_vs_fp32'] = max_rel(got.double(), expected32['out'].double())
            except ImportError:
                pass
            except Exception as e:  # noqa: BLE001
                info['onnxruntime_python_error'] = str(e).split('\n')[0][:300]
            log(f'  onnx: {what}: ok ({info["bytes"] / 2**20:.0f} MiB, {info["seconds"]} s)')
            return info, errors
        except Exception as e:  # noqa: BLE001
            msg = f'{what}: {type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ""}'
            errors.append(msg)
            log(f'  onnx: {msg}')
            if os.path.exists(path):
                os.remove(path)
    return None, errors


# ------------------------------------------------------------------------------------------------

def export_one(name, spec, out_root, with_onnx):
    import transformers
    outdir = os.path.join(out_root, name)
    os.makedirs(outdir, exist_ok=True)
    t0 = time.time()
    model, cfg = build_hf(spec)
    inputs = make_inputs(spec)
    B, S = spec['inputs']

    # float64 reference on the CPU, plus the float32 run and the explicit forward as cross-checks
    m64 = copy.deepcopy(model).double()
    explicit64 = run(explicit_of(m64, spec), inputs)
    notes = {}
    if spec['model'] == 'long':
        ref, reference = explicit64, 'float64 CPU: ExplicitBert over transformers.BertModel submodules, sliding-window + global mask (export_hf.py)'
    else:
        ref = run(HFWrap(m64, spec['model']), inputs)
        reference = f'float64 CPU: transformers.{type(model).__name__} (attn {getattr(cfg, "_attn_implementation", "?")}) last_hidden_state'
        notes['explicit_vs_hf_max_rel'] = max_rel(explicit64, ref)
    out32 = run(HFWrap(model, spec['model']) if spec['model'] != 'long' else explicit_of(model, spec), inputs)
    notes['fp32_vs_reference_max_rel'] = max_rel(out32.double(), ref)

    manifest = dict(format=FORMAT, name=name, model=spec['model'],
                    source=dict(generator='transformers (bench/hf/export_hf.py)', transformers=transformers.__version__, torch=torch.__version__, seed=spec['seed']),
                    hf_config={k: getattr(cfg, k, v) for k, v in spec['hf'].items()},
                    weights_file='weights.bin', weights={}, inputs={}, outputs={}, onnx=None, notes=notes)
    if spec.get('structure'):
        manifest['structure'] = spec['structure']
    offset = 0
    with open(os.path.join(outdir, 'weights.bin'), 'wb') as f:
        for pname, p in model.named_parameters():
            b = p.detach().cpu().contiguous().float().numpy().astype('<f4').tobytes()
            manifest['weights'][pname] = dict(shape=list(p.shape), dtype='float32', offset=offset)
            f.write(b)
            offset += len(b)
    for k, v in inputs.items():
        with open(os.path.join(outdir, f'{k}.bin'), 'wb') as f:
            f.write(v.to(torch.int32).numpy().astype('<i4').tobytes())
        manifest['inputs'][k] = dict(shape=[B, S], dtype='int32', file=f'{k}.bin')
    with open(os.path.join(outdir, 'last_hidden_state.bin'), 'wb') as f:
        f.write(ref.float().numpy().astype('<f4').tobytes())
    manifest['outputs']['last_hidden_state'] = dict(shape=list(ref.shape), dtype='float32', file='last_hidden_state.bin', reference=reference)

    if with_onnx:
        info, errors = export_onnx(model, spec, outdir, dict(inputs=inputs, out=out32))
        manifest['onnx'] = info
        if errors:
            manifest['onnx_error' if info is None else 'onnx_failed_attempts'] = errors
    with open(os.path.join(outdir, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
    log(f'exported {name} ({outdir}): {len(manifest["weights"])} tensors, {offset / 2**20:.0f} MiB, inputs [{B}, {S}], '
        f'{", ".join(f"{k} {v:.1e}" for k, v in notes.items())}, onnx {"yes" if manifest["onnx"] else "no"} ({time.time() - t0:.0f} s)')
    return manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True)
    ap.add_argument('--models', default=','.join(MODELS))
    ap.add_argument('--no-onnx', action='store_true')
    ap.add_argument('--skip-existing', action='store_true', help='keep models whose manifest.json exists')
    args = ap.parse_args()
    import transformers
    log(f'torch {torch.__version__}, transformers {transformers.__version__}, python {sys.version.split()[0]}')
    failed = []
    for name in args.models.split(','):
        if name not in MODELS:
            raise SystemExit(f'unknown model {name}; known: {", ".join(MODELS)}')
        if args.skip_existing and os.path.exists(os.path.join(args.out, name, 'manifest.json')):
            log(f'exported {name}: {os.path.join(args.out, name)} exists, kept')
            continue
        try:
            export_one(name, MODELS[name], args.out, not args.no_onnx)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            failed.append(name)
    if failed:
        log(f'FAILED: {", ".join(failed)} (traceback above)')
        sys.exit(1)


if __name__ == '__main__':
    main()
