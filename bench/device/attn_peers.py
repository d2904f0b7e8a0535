# PyTorch peers of bench/attention.mjs on the GPU machine (copied from ../shared/device/peers/attn_peers.py,
# which does not travel to the device, and aligned with bench/attention.mjs): FlexAttention (compiled,
# BlockMask), SDPA with a dense boolean mask, SDPA flash (none/causal only) and naive
# matmul-softmax-matmul; float16, B=8, H=12, D=64.
# Masks are the ones bench/attention.mjs builds with stof.masks: none, padding (lengths S - floor(b*S/16)),
# causal, sliding (|i-j| <= 128), dilated (|i-j| <= 256, i-j even), longformer (window 128 + the first 32
# tokens global), bigbird (64-token blocks: 3 window, the first 2 blocks global, 3 random key blocks per
# query block from stof.masks.bigBird's LCG with seed 1).
# Effective TFLOP/s counts only the unmasked (i, j) pairs: 4*B*H*D*nnz, nnz per head (mean over the batch).
# Env: OUT (folder for attn_peers.json, written after every row), B, S ("128,512,..."), MASKS,
#      PEERS_BUDGET_S (no new row starts after this many seconds; default 270).
import json, math, os, time
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention, create_block_mask

torch.manual_seed(0)
dev = "cuda"
DT = torch.float16
import torch._dynamo
torch._dynamo.config.cache_size_limit = 256
if hasattr(torch._dynamo.config, "recompile_limit"):
    torch._dynamo.config.recompile_limit = 256
flex = torch.compile(flex_attention, dynamic=False)

W, G = 128, 32


def bigbird_blocks(S, block=64, window=3, glob=2, random=3, seed=1):
    """stof.masks.bigBird's block pattern, bit for bit (same LCG)."""
    nb = -(-S // block)
    keep = torch.zeros(nb, nb, dtype=torch.bool)
    state = [seed & 0xFFFFFFFF]

    def rnd(n):
        state[0] = (state[0] * 1664525 + 1013904223) & 0xFFFFFFFF
        return (state[0] >> 8) % n

    half = window // 2
    for bi in range(nb):
        for bj in range(nb):
            if abs(bi - bj) <= half or bi < glob or bj < glob:
                keep[bi, bj] = True
        for _ in range(random):
            keep[bi, rnd(nb)] = True
    return keep


def mask_fn(kind, S, B):
    """Returns (mask_mod for flex, dense bool mask broadcastable to [B,H,S,S] (True=keep), nnz per head)."""
    i = torch.arange(S, device=dev)[:, None]
    j = torch.arange(S, device=dev)[None, :]
    if kind == "none":
        m = torch.ones(S, S, dtype=torch.bool, device=dev)
        mm = lambda b, h, q, k: q >= 0
    elif kind == "padding":
        lens = torch.tensor([S - (b * S) // 16 for b in range(B)], device=dev)
        m = (torch.arange(S, device=dev)[None, :] < lens[:, None])[:, None, None, :]
        mm = lambda b, h, q, k: k < lens[b]
        return mm, m, S * lens.sum().item() / B
    elif kind == "causal":
        m = j <= i
        mm = lambda b, h, q, k: k <= q
    elif kind == "sliding":
        m = (i - j).abs() <= W
        mm = lambda b, h, q, k: (q - k).abs() <= W
    elif kind == "dilated":
        m = ((i - j).abs() <= 2 * W) & ((i - j) % 2 == 0)
        mm = lambda b, h, q, k: ((q - k).abs() <= 2 * W) & ((q - k) % 2 == 0)
    elif kind == "longformer":
        m = ((i - j).abs() <= W) | (i < G) | (j < G)
        mm = lambda b, h, q, k: ((q - k).abs() <= W) | (q < G) | (k < G)
    elif kind == "bigbird":
        Bk = 64
        blk = bigbird_blocks(S).to(dev)
        m = blk.repeat_interleave(Bk, 0).repeat_interleave(Bk, 1)[:S, :S]
        mm = lambda b, h, q, k: blk[q // Bk, k // Bk]
    else:
        raise ValueError(kind)
    return mm, m, m.sum().item()


def bench(fn, iters=50):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    st = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    en = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for a, b in zip(st, en):
        a.record(); fn(); b.record()
    torch.cuda.synchronize()
    t = sorted(a.elapsed_time(b) for a, b in zip(st, en))
    return t[len(t) // 2]


def main():
    started = time.time()
    budget = float(os.environ.get("PEERS_BUDGET_S", 270))
    B, H, D = int(os.environ.get("B", 8)), 12, 64
    seqs = [int(s) for s in os.environ.get("S", "128,512,1024,2048,4096").split(",")]
    kinds = os.environ.get("MASKS", "none,padding,causal,sliding,dilated,longformer,bigbird").split(",")
    out = os.environ.get("OUT", ".")
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "B": B, "H": H, "D": D,
              "dtype": str(DT), "rows": [], "skipped": []}

    def save():
        with open(os.path.join(out, "attn_peers.json"), "w") as f:
            json.dump(report, f, indent=1)

    for S in seqs:
        q, k, v = (torch.randn(B, H, S, D, device=dev, dtype=DT) for _ in range(3))
        for kind in kinds:
            if time.time() - started > budget:
                report["skipped"].append({"S": S, "mask": kind, "why": f"PEERS_BUDGET_S={budget:g} s spent"})
                continue
            mm, dense, nnz = mask_fn(kind, S, B)
            flops = 4 * B * H * D * nnz
            r = {"S": S, "mask": kind, "kept_pairs": nnz, "density": round(nnz / (S * S), 4)}
            bm = create_block_mask(mm, B if kind == "padding" else None, None, S, S, device=dev)
            ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=dense).to(DT) if S <= 2048 else None

            def rec(name, fn):
                try:
                    o = fn()
                    err = ((o.float() - ref.float()).norm() / ref.float().norm()).item() if ref is not None else None
                    ms = bench(fn)
                    r[name] = {"ms": round(ms, 4), "tflops": round(flops / ms / 1e9, 1), "relerr": err}
                except Exception as e:  # noqa
                    r[name] = {"error": str(e)[:160]}
            rec("flex", lambda: flex(q, k, v, block_mask=bm))
            rec("sdpa_dense_mask", lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=dense))
            if kind in ("none", "causal"):
                rec("sdpa_flash", lambda: F.scaled_dot_product_attention(q, k, v, is_causal=(kind == "causal")))
            if S <= 2048:
                def naive():
                    s = (q @ k.transpose(-1, -2)) * (1 / math.sqrt(D))
                    s = s.masked_fill(~dense, float("-inf"))
                    return torch.softmax(s, -1) @ v
                rec("naive", naive)
            r["seconds_so_far"] = round(time.time() - started, 1)
            report["rows"].append(r)
            save()
            print(json.dumps(r), flush=True)
            del ref
        del q, k, v
        torch.cuda.empty_cache()
    save()


if __name__ == "__main__":
    main()
