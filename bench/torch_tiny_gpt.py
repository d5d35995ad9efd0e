#!/usr/bin/python3
"""The tiny GPT of the layers issue in PyTorch, for a side-by-side speed reference.

vocab 65, d_model 128, 4 layers, 4 heads, ctx 128, batch 16, AdamW, pre-LayerNorm,
GELU MLP of 4x width, learned positions, cross-entropy over all positions, synthetic
random tokens; 5 warm-up and 20 timed steps; prints the median tokens/s.

Usage: /usr/bin/python3 bench/torch_tiny_gpt.py THREADS [--moe]  (Debian's python3-torch)
Thread settings must be in the environment before torch is imported (its GEMMs run
in OpenBLAS's own pool), so this script re-executes itself with them set.
"""
import os
import sys

threads = sys.argv[1] if len(sys.argv) > 1 else "1"
if os.environ.get("TINY_GPT_CHILD") != "1":
    env = dict(os.environ, TINY_GPT_CHILD="1", OPENBLAS_NUM_THREADS=threads,
               OMP_NUM_THREADS=threads, OMP_WAIT_POLICY="PASSIVE", MKL_NUM_THREADS=threads)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(int(threads))
torch.manual_seed(0)
V, D, L, H, T, B = 65, 128, 4, 4, 128, 16
MOE = "--moe" in sys.argv


class Expertwise(nn.Module):
    """Top-2-of-8 MoE of GELU MLPs, looping over experts with index_add."""

    def __init__(self):
        super().__init__()
        self.router = nn.Linear(D, 8, bias=False)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D)) for _ in range(8))

    def forward(self, x):
        b, t, d = x.shape
        flat = x.reshape(-1, d)
        logits = self.router(flat)
        top, idx = logits.topk(2, dim=-1)
        w = F.softmax(top, dim=-1)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = (idx == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            y = expert(flat[rows]) * w[rows, slot].unsqueeze(-1)
            out.index_add_(0, rows, y)
        return out.reshape(b, t, d)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D)
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)
        self.ln2 = nn.LayerNorm(D)
        self.mlp = Expertwise() if MOE else nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        q, k, v = (z.view(b, t, H, d // H).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / (d // H) ** 0.5
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(V, D)
        self.pos = nn.Embedding(T, D)
        self.blocks = nn.ModuleList(Block() for _ in range(L))
        self.ln = nn.LayerNorm(D)
        self.head = nn.Linear(D, V, bias=False)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


model = GPT()
opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
times = []
for step in range(25):
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if step >= 5:
        times.append(time.perf_counter() - t0)
med = statistics.median(times)
print(f"pytorch {torch.__version__} {'moe ' if MOE else ''}threads={threads} "
      f"step={med * 1e3:.1f}ms tokens/s={B * T / med:.0f}")
