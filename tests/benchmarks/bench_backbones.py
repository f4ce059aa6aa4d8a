"""Timing of cbirlib.backbones on this CPU (not a test).

Run from the repository root::

    python tests/benchmarks/bench_backbones.py [--threads 2] [--batch 32] [--images 64]

For every backbone loadable here (:func:`cbirlib.backbones.available_backbones`)
it prints

* the forward pass (logits) time per image at ``--batch`` on random input of
  the model's size, best of ``--repeat`` runs after one warm-up, wall clock
  and process CPU time (the sum over threads; less sensitive to other load);
* the throughput of :func:`cbirlib.backbones.extract_features` (preprocessing
  included) on ``--images`` synthetic 384 x 256 uint8 images (Corel-1K's size)
  for ``block6`` + ``block7`` together and for ``penultimate``.

Wall-clock seconds on a shared machine are noisy: the load average is printed
beside the numbers, and only runs at a load below the core count are
meaningful. ``--threads`` sets ``torch.set_num_threads``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cbirlib import backbones as B  # noqa: E402


def best_of(fn, repeat):
    """Best wall-clock and process-CPU seconds of ``repeat`` runs after a warm-up."""
    fn()  # warm-up (oneDNN primitive creation)
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", nargs="*", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    imgs = list(rng.integers(0, 256, size=(args.images, 256, 384, 3), dtype=np.uint8))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'model':20s} {'input':>5s} {'fwd ms/img':>10s} {'cpu ms/img':>10s} "
          f"{'b6+b7 img/s':>11s} {'penult img/s':>12s} {'load':>5s}")
    for name in args.models or B.available_backbones():
        b = B.load_backbone(name)
        x = torch.randn(args.batch, 3, b.input_size, b.input_size)

        def forward():
            with torch.no_grad():
                b.model(x)

        fwd, fwd_cpu = best_of(forward, args.repeat)
        t67, _ = best_of(lambda: B.extract_features(b, imgs, stage=("block6", "block7"),
                                                    batch_size=args.batch, progress=False),
                         max(1, args.repeat // 2))
        tpen, _ = best_of(lambda: B.extract_features(b, imgs, stage="penultimate",
                                                     batch_size=args.batch, progress=False),
                         max(1, args.repeat // 2))
        print(f"{name:20s} {b.input_size:5d} {1000 * fwd / args.batch:10.1f} "
              f"{1000 * fwd_cpu / args.batch:10.1f} {args.images / t67:11.1f} "
              f"{args.images / tpen:12.1f} {os.getloadavg()[0]:5.2f}", flush=True)


if __name__ == "__main__":
    main()
