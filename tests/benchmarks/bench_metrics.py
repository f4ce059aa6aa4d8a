"""Timing of cbirlib.metrics against a naive per-query reference (not a test).

Run from the repository root::

    python tests/benchmarks/bench_metrics.py [--queries 1000] [--database 59000]

The workload mimics notebook 07's CIFAR-10 / NUS-WIDE hashing evaluation: 64-bit
codes (class prototypes with 20% of bits flipped), integer Hamming distances
0..64, 10 classes. The naive reference is the DeepHash-pytorch ``CalcTopMap``
pattern: a Python loop over queries with a full ``argsort`` per query (made
stable here, so that its result can be compared exactly with ``ties="stable"``).
Timings are wall-clock seconds of one run on this machine, printed with their
ratio to the naive reference measured in the same process; only the ratios are
comparable across machines.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cbirlib import metrics as M  # noqa: E402


def make_workload(n_queries, n_db, bits=64, n_classes=10, flip=0.2, seed=0):
    rng = np.random.default_rng(seed)
    protos = rng.choice([-1.0, 1.0], size=(n_classes, bits)).astype(np.float32)

    def codes(n):
        labels = rng.integers(0, n_classes, size=n)
        b = protos[labels].copy()
        b[rng.random(b.shape) < flip] *= -1
        return b, labels

    qb, ql = codes(n_queries)
    db, dl = codes(n_db)
    hamming = (0.5 * (bits - qb @ db.T)).astype(np.uint8)  # exact: +-1 dot products are integers
    return hamming, ql, dl


def naive_map(distances, ql, dl, k, normalize):
    """Per-query loop as in CalcTopMap (empty -> 0), with a stable argsort."""
    n_q, n_db = distances.shape
    k = n_db if k is None else min(k, n_db)
    total = 0.0
    for i in range(n_q):
        gnd = dl == ql[i]
        order = np.argsort(distances[i], kind="stable")
        tgnd = gnd[order][:k]
        hits = int(tgnd.sum())
        if hits == 0:
            continue
        pos = np.flatnonzero(tgnd) + 1.0
        s = float(np.sum(np.arange(1, hits + 1) / pos))
        z = {"retrieved": hits, "min_k_relevant": min(k, int(gnd.sum())), "all_relevant": int(gnd.sum())}[normalize]
        total += s / z
    return total / n_q


def timed(fn, repeat=1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--database", type=int, default=59000)
    args = parser.parse_args(argv)
    n_q, n_db = args.queries, args.database

    t0 = time.perf_counter()
    d, ql, dl = make_workload(n_q, n_db)
    print(f"workload: {n_q} queries x {n_db} database items, Hamming 0..64, built in {time.perf_counter() - t0:.2f} s")
    print(f"numpy {np.__version__}")

    d_float = d.astype(np.float32)  # what 0.5 * (bits - B1 @ B2.T) gives in practice
    rows = []
    for k in (None, 5000):
        label = "all" if k is None else str(k)
        # the reference: CalcTopMap's per-query loop on float Hamming distances
        t_naive, v_naive = timed(lambda: naive_map(d_float, ql, dl, k, "all_relevant"))
        rows.append((f"naive loop, float32 input, mAP@{label} (reference)", t_naive, 1.0, v_naive))
        t, v = timed(lambda: naive_map(d, ql, dl, k, "all_relevant"))
        rows.append((f"naive loop, uint8 input (radix argsort), mAP@{label}", t, t / t_naive, v))
        for ties, seed in (("stable", None), ("random", 0), ("expected", None)):
            t, res = timed(
                lambda: M.mean_average_precision_from_distances(
                    d, ql, dl, k=k, normalize="all_relevant", ties=ties, seed=seed
                ),
                repeat=2,
            )
            rows.append((f"from_distances ties={ties}, mAP@{label}", t, t / t_naive, res.value))
            if ties == "stable" and not np.isclose(res.value, v_naive, rtol=1e-12):
                raise SystemExit(f"stable mAP {res.value} != naive {v_naive}")
        for ties in ("stable", "expected"):
            t, res = timed(
                lambda: M.mean_average_precision_from_distances(
                    d_float, ql, dl, k=k, normalize="all_relevant", ties=ties
                ),
                repeat=2,
            )
            rows.append((f"from_distances ties={ties}, float32 input, mAP@{label}", t, t / t_naive, res.value))
        for normalize in ("retrieved", "min_k_relevant"):
            t, res = timed(
                lambda: M.mean_average_precision_from_distances(
                    d, ql, dl, k=k, normalize=normalize, ties="expected"
                ),
                repeat=2,
            )
            rows.append((f"from_distances ties=expected {normalize}, mAP@{label}", t, t / t_naive, res.value))

    t_rank, _ = timed(lambda: M.rank_by_distance(d, k=5000))
    rows.append(("rank_by_distance uint8, k=5000", t_rank, float("nan"), float("nan")))
    t_rank_all, _ = timed(lambda: M.rank_by_distance(d))
    rows.append(("rank_by_distance uint8, full", t_rank_all, float("nan"), float("nan")))
    df = d.astype(np.float64) + np.random.default_rng(1).random(d.shape) * 0.5  # tie-free floats
    t_rank_f, _ = timed(lambda: M.rank_by_distance(df, k=5000))
    rows.append(("rank_by_distance float64, k=5000", t_rank_f, float("nan"), float("nan")))

    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'seconds':>8}  {'x naive':>8}  {'mAP':>8}")
    for name, t, ratio, value in rows:
        print(f"{name:<{width}}  {t:8.3f}  {ratio:8.3f}  {value:8.4f}")


if __name__ == "__main__":
    main()
