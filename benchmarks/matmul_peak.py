"""Attainable fp32 GEMM throughput of this CPU: the denominator of model-FLOPs utilisation.

A square matmul of size n does 2·n³ floating-point operations (one multiply and one add per
term of each of the n² dot products of length n). We time `torch.mm` on n×n float32 matrices
for a few sizes, take the median of several repeats per size, and report the best size's
median as the *attainable peak* on `--threads` threads. It is what a well-shaped GEMM reaches
through the same BLAS/oneDNN kernels the models use, not the datasheet peak (2 cores × 2 FMA
units × 16 fp32 lanes × 2 × clock), which is rarely reachable and depends on the turbo state.

    .venv/bin/python benchmarks/matmul_peak.py              # 2 threads, sizes 1024 1536 2048
    .venv/bin/python benchmarks/matmul_peak.py --json       # one JSON line, for other scripts

MFU (Chowdhery et al. 2022, "PaLM", appendix B) = achieved model FLOP/s / peak FLOP/s, where a
training step costs ≈ 6·N FLOPs per token for N non-embedding parameters (2·N forward, 4·N
backward; Kaplan et al. 2020, "Scaling Laws for Neural Language Models", section 2.1).
`gemm_gflops(n, seconds)` is the arithmetic both scripts share:

    >>> gemm_gflops(1000, 0.5)  # 2·1000³ = 2e9 FLOPs in 0.5 s = 4 GFLOP/s
    4.0
"""
from __future__ import annotations

import argparse
import json
import statistics
import time


def gemm_gflops(n: int, seconds: float) -> float:
    """GFLOP/s of one n×n @ n×n matmul that took `seconds` (2·n³ FLOPs)."""
    return 2.0 * n ** 3 / seconds / 1e9


def measure(sizes: list[int], repeats: int, threads: int) -> dict:
    """Median GFLOP/s per size (after one untimed warm-up matmul per size) and the best median."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    per_size = {}
    for n in sizes:
        a = torch.randn(n, n, dtype=torch.float32)
        b = torch.randn(n, n, dtype=torch.float32)
        out = torch.empty(n, n, dtype=torch.float32)
        torch.mm(a, b, out=out)  # warm-up: page faults, kernel selection, thread pool start
        rates = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            rates.append(gemm_gflops(n, time.perf_counter() - t0))
        per_size[n] = {"median_gflops": statistics.median(rates), "min_gflops": min(rates),
                       "max_gflops": max(rates)}
    best = max(per_size, key=lambda n: per_size[n]["median_gflops"])
    return {"threads": threads, "peak_gflops": per_size[best]["median_gflops"], "best_size": best,
            "per_size": per_size, "torch": torch.__version__}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 1536, 2048])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = p.parse_args(argv)
    res = measure(args.sizes, args.repeats, args.threads)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"fp32 GEMM on {res['threads']} threads (torch {res['torch']}), "
              f"median of {args.repeats}:")
        for n, r in res["per_size"].items():
            print(f"  {n:5d}^3  {r['median_gflops']:7.1f} GFLOP/s  "
                  f"(min {r['min_gflops']:.1f}, max {r['max_gflops']:.1f})")
        print(f"attainable peak: {res['peak_gflops']:.1f} GFLOP/s (n={res['best_size']})")
    return res


if __name__ == "__main__":
    main()
