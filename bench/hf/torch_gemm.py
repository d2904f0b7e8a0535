"""PyTorch on the GEMM shapes of bench/cuda_gemm.mjs (BERT-base / GPT-2 projections), same run:
fp32 with TF32 allowed (what cuBLAS gives fp32 operands on tensor cores) and fp16; mean of 50
back-to-back calls between CUDA events, with and without a bias (F.linear).

    python3 bench/hf/torch_gemm.py [--tokens 1024,4096]
"""
import argparse

import torch
import torch.nn.functional as F


def timed(f, reps=50):
    for _ in range(5):
        f()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(reps):
        f()
    e1.record()
    torch.cuda.synchronize()
    return e0.elapsed_time(e1) / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--tokens', default='1024,4096')
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f'PyTorch {torch.__version__} on {torch.cuda.get_device_name()}, mean of 50 back-to-back calls (ms, TFLOP/s)')
    print(f"{'M':>5} {'gemm':>9} {'tf32':>8} {'tf32+b':>8} {'fp16':>8} {'fp16+b':>8} {'TF tf32':>8} {'TF fp16':>8}")
    for M in map(int, args.tokens.split(',')):
        for name, K, N in [('qkv', 768, 2304), ('attn-out', 768, 768), ('ffn-up', 768, 3072), ('ffn-down', 3072, 768)]:
            row = []
            for dt in (torch.float32, torch.float16):
                a = torch.randn(M, K, device='cuda', dtype=dt)
                w = torch.randn(N, K, device='cuda', dtype=dt)
                b = torch.randn(N, device='cuda', dtype=dt)
                row += [timed(lambda: a @ w.t()), timed(lambda: F.linear(a, w, b))]
            tf = lambda ms: 2 * M * N * K / ms / 1e9
            print(f'{M:>5} {name:>9} {row[0]:8.4f} {row[1]:8.4f} {row[2]:8.4f} {row[3]:8.4f} {tf(row[0]):8.1f} {tf(row[2]):8.1f}')


if __name__ == '__main__':
    main()
