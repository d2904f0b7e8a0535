"""PyTorch peers of the end-to-end benchmark: the same models (bench/hf/export_hf.py's seeded configs,
the weights the fixtures carry) run by PyTorch on the GPU, eager in fp32 and fp16 and torch.compile'd
in fp16, for the cases of bench/e2e.mjs. One timed call is one forward as an app makes it there:
int64 inputs copied from the host, last_hidden_state read back to the host (float32). Median of
--trials after warm-up. BERT and GPT-2 use the transformers models with SDPA attention (their
fastest eager path); the long encoder uses export_hf's explicit BERT (window + global mask as a bias).
Writes JSON {device, date, command, torch, rows: [{case, model, batch, seq, peers: {name: ms}}]}.

  python3 bench/hf/torch_e2e.py --out bench/results/torch_e2e.json [--cases REGEX] [--no-compile]
"""
import argparse
import json
import os
import re
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from export_hf import MODELS, build_hf, explicit_of  # noqa: E402

CASES = [('bert_base', 'BERT-base', [(1, 128), (1, 512), (8, 128), (8, 512)]),
         ('gpt2_base', 'GPT-2 small prefill', [(1, 512), (1, 1024)]),
         ('long_base', 'long encoder (BERT-base, w=256, 4 global)', [(1, 4096)])]


def sdpa(model):
    for attr in ('_attn_implementation', 'attn_implementation'):
        try:
            setattr(model.config, attr, 'sdpa')
            return model
        except Exception:
            pass
    return model


def forward_fn(name, model):
    spec = MODELS[name]
    if spec['model'] == 'long':
        # The long encoder needs its explicit mask: the 4096-position model over export_hf's explicit forward.
        return explicit_of(model, spec)
    kind = spec['model']

    def f(input_ids, attention_mask, token_type_ids=None):
        if kind == 'gpt2':
            return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
    return f


def inputs_for(name, B, S, seed):
    g = torch.Generator().manual_seed(seed)
    vocab = MODELS[name]['hf']['vocab_size']
    ids = torch.randint(1, vocab, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    types = (torch.arange(S)[None, :].expand(B, S) >= S // 2).long()
    return [ids, mask] if MODELS[name]['model'] == 'gpt2' else [ids, mask, types]


def time_call(f, host_inputs, trials, seconds):
    def call():
        with torch.no_grad():
            ins = [t.to('cuda', non_blocking=False) for t in host_inputs]
            return f(*ins).float().cpu()
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    samples, start = [], time.perf_counter()
    for _ in range(trials):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() - start > seconds:
            break
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='bench/results/torch_e2e.json')
    ap.add_argument('--cases', default='.')
    ap.add_argument('--trials', type=int, default=20)
    ap.add_argument('--case-seconds', type=float, default=20)
    ap.add_argument('--no-compile', action='store_true')
    ap.add_argument('--compile-cases', default='.', help='regex of the cases torch.compile runs (each shape compiles anew)')
    args = ap.parse_args()
    pick = re.compile(args.cases)
    rows = []
    for name, label, shapes in CASES:
        if not any(pick.search(f'{label} B={B} S={S}') for B, S in shapes):
            continue
        model, _ = build_hf(MODELS[name])
        model = sdpa(model).cuda().eval()
        modes = {'torch-eager-fp32': (model, torch.float32)}
        half = sdpa(build_hf(MODELS[name])[0]).cuda().eval().half()
        modes['torch-eager-fp16'] = (half, torch.float16)
        fns = {k: forward_fn(name, m) for k, (m, _) in modes.items()}
        if not args.no_compile:
            fns['torch-compile-fp16'] = torch.compile(forward_fn(name, half))
        for B, S in shapes:
            case = f'{label} B={B} S={S}'
            if not pick.search(case):
                continue
            host = inputs_for(name, B, S, 7 * B + S)
            row = {'case': case, 'model': name, 'batch': B, 'seq': S, 'peers': {}}
            for k, f in fns.items():
                if k.startswith('torch-compile') and not re.search(args.compile_cases, case):
                    continue
                try:
                    row['peers'][k] = time_call(f, host, args.trials, args.case_seconds)
                except Exception as e:  # e.g. a compile failure: reported, the others go on
                    row['peers'][k] = None
                    row.setdefault('errors', {})[k] = str(e).split('\n')[0][:300]
            rows.append(row)
            print(case.ljust(52), '  '.join(f'{k} {v:.2f} ms' if v is not None else f'{k} failed' for k, v in row['peers'].items()), flush=True)
        del model, half, fns
        torch.cuda.empty_cache()
    report = {'device': torch.cuda.get_device_name(), 'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
              'command': 'python3 bench/hf/torch_e2e.py ' + ' '.join(sys.argv[1:]), 'torch': torch.__version__, 'rows': rows}
    os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
    with open(args.out, 'w') as fh:
        json.dump(report, fh, indent=1)


if __name__ == '__main__':
    main()
