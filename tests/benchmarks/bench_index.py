"""Timing of cbirlib.index against FAISS, scikit-learn and PyPI peers (not a test).

Run from the repository root (``make bench`` runs the quick mode, as CI does)::

    python tests/benchmarks/bench_index.py --quick          # about a minute
    python tests/benchmarks/bench_index.py [--sizes 1000 10000 100000] [--dims 2 8 32 128] [--k 10]
    python tests/benchmarks/bench_index.py --quick --profile vptree   # cProfile of one tree search

It reports, it never fails on speed: every timing is printed as a ratio to a
reference measured in the same process on the same queries. The methods and
the measurements are those of notebook 04 (:mod:`cbirlib.indexbench`, whose
docstring defines every column):

* ``build s``: wall-clock build time; ``MiB``: memory held by the index;
* ``batch ms/q``: one ``knn(Q, k)`` call on the whole batch, per query;
* ``med ms`` / ``p95 ms``: single-query latency (one query per call);
* ``x flat``: batch and median timings over FAISS ``IndexFlatL2`` /
  ``IndexBinaryFlat``'s; ``x ours``: a PyPI peer's median latency over our
  tree of the same kind (the "10x faster than the peers" target);
* ``dist/N``: distance evaluations per query over ``N`` (``-`` where a
  library does not say);
* ``recall``: share of returned items within the exact ``k``-th distance;
  ``exact``: our indexes' indices *and* distances equal brute force bit for bit.

Data: uniform or clustered float32 vectors in ``d`` dimensions; 64-bit packed
codes from 16 noisy prototypes. Every library runs on one thread
(``--threads 1``) so that ratios compare algorithms, not thread pools. Packages
that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cbirlib import index as cx  # noqa: E402
from cbirlib import indexbench as ib  # noqa: E402

PEERS = {"PyPI vptree": "VP-tree", "PyPI downward-mtree": "M-tree"}


def make_codes(n, nq, bits, rng, *, flip=0.1):
    protos = rng.random((16, bits)) < 0.5

    def draw(m):
        return np.packbits(protos[rng.integers(0, 16, m)] ^ (rng.random((m, bits)) < flip), axis=1)

    return draw(n), draw(nq)


def fmt(x, spec):
    """Format ``x``, or a right-aligned ``-`` of the same width for None / NaN."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 0)
        return "-".rjust(width)
    return format(x, spec)


def run_case(title, X, Q, methods, args):
    exact = None
    rows = {}
    for name in ["brute force", *[m for m in methods if m != "brute force"]]:
        rows[name] = r = ib.measure(name, X, Q, args.k, n_latency=args.latency_queries,
                                    repeats=args.repeats if name in ("brute force", "FAISS flat") else 1,
                                    exact=exact)
        if name == "brute force":
            exact = (r["D"], r["I"])
            r["recall"], r["identical to brute force"] = 1.0, True
    ref = rows.get("FAISS flat")
    print(f"\n{title}")
    head = (f"  {'method':<21}{'build s':>8}{'MiB':>7}{'batch ms/q':>11}{'x flat':>8}{'med ms':>8}{'p95 ms':>8}"
            f"{'x flat':>7}{'x ours':>7}{'dist/N':>8}{'recall':>7}  exact")
    print(head)
    print("  " + "-" * (len(head) - 2))
    for name, r in rows.items():
        xb = r["batch time (ms/query)"] / ref["batch time (ms/query)"] if ref else None
        xm = r["latency median (ms)"] / ref["latency median (ms)"] if ref else None
        ours = rows.get(PEERS.get(name, ""))
        xo = r["latency median (ms)"] / ours["latency median (ms)"] if ours else None
        same = r["identical to brute force"]
        frac = r["distance fraction"]
        if not np.isfinite(frac):  # a library whose count varies between runs
            frac = r["distances per query (varies between runs)"] / len(X)
        print(f"  {name + (' ~' if r['approximate'] else ''):<21}{r['build time (s)']:8.3f}"
              f"{r['memory (bytes)'] / 2**20:7.2f}{r['batch time (ms/query)']:11.4f}{fmt(xb, '8.2f')}"
              f"{r['latency median (ms)']:8.3f}{r['latency p95 (ms)']:8.3f}{fmt(xm, '7.2f')}{fmt(xo, '7.1f')}"
              f"{fmt(frac, '8.4f')}{fmt(r['recall'], '7.3f')}  "
              f"{'' if same is None else ('yes' if same else 'NO')}")
    return rows


def float_methods(n, args):
    ms = ["FAISS flat", "VP-tree", "M-tree", "BK-tree", "sklearn BallTree", "FAISS HNSW"]
    if n <= args.peer_max_n:
        ms += ["PyPI vptree", "PyPI downward-mtree"]
    return [m for m in ms if m in ib.available_methods()]


def brute_force_section(args, rng):
    """Ours vs FAISS flat on one large batch, interleaved repeats."""
    if "FAISS flat" not in ib.available_methods():
        return
    import faiss

    n, d, nq, k = args.flat_n, args.flat_d, args.flat_queries, args.k
    X, Q = ib.synthetic_data("uniform", n, d, n_queries=nq, seed=int(rng.integers(1 << 30)))
    fi = faiss.IndexFlatL2(d)
    fi.add(X)
    bf = cx.BruteForceIndex().build(X)
    tf, to = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        fi.search(Q, k)
        tf.append(time.perf_counter() - t)
        t = time.perf_counter()
        bf.knn(Q, k)
        to.append(time.perf_counter() - t)
    _, If = fi.search(Q, k)
    _, I = bf.knn(Q, k)
    print(f"\nBrute force at scale: N={n}, d={d}, {nq} queries, k={k}, float32, {args.repeats} interleaved runs")
    print(f"  faiss IndexFlatL2     median {np.median(tf):.3f} s")
    print(f"  ours BruteForceIndex  median {np.median(to):.3f} s   ratio to FAISS {np.median(to) / np.median(tf):.2f} "
          f"(target <= 1.5); same indices as FAISS: {float((If == I).mean()):.4f}")
    B, QB = make_codes(n, nq, 64, rng)
    fb = faiss.IndexBinaryFlat(64)
    fb.add(B)
    bb = cx.BruteForceIndex().build(B)
    tf, to = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        fb.search(QB, k)
        tf.append(time.perf_counter() - t)
        t = time.perf_counter()
        bb.knn(QB, k)
        to.append(time.perf_counter() - t)
    print(f"  faiss IndexBinaryFlat median {np.median(tf):.3f} s; ours {np.median(to):.3f} s "
          f"(ratio {np.median(to) / np.median(tf):.2f}), 64-bit codes")


def duplicates_section():
    """Robustness: many identical points (binary codes repeat)."""
    X = np.vstack([np.ones((600, 8), dtype=np.float32), np.random.default_rng(0).random((20, 8), dtype=np.float32)])
    print("\nDuplicates: 600 identical vectors + 20 others, k=10")
    for name in ("VP-tree", "M-tree", "BK-tree", "PyPI vptree", "PyPI downward-mtree"):
        if name not in ib.available_methods():
            continue
        try:
            r = ib.measure(name, X, X[:1], 10, n_latency=1)
            frac = np.nanmax([r["distance fraction"], r["distances per query (varies between runs)"] / len(X)])
            print(f"  {name:<20} build {r['build time (s)']:.3f} s, knn ok, dist/N {fmt(frac, '.3f')}")
        except RecursionError:
            print(f"  {name:<20} RecursionError (recursion limit {sys.getrecursionlimit()})")


def profile_section(args):
    X, Q = ib.synthetic_data("clustered", max(args.sizes), 16, n_queries=args.queries, seed=0)
    factory = {"vptree": cx.VPTree, "mtree": cx.MTree, "bktree": lambda: cx.BKTree(bin_width=0.01),
               "brute": cx.BruteForceIndex}[args.profile]
    idx = factory().build(X)
    pr = cProfile.Profile()
    pr.enable()
    idx.knn(Q, args.k)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(15)
    print(f"\ncProfile of {args.profile}.knn on clustered d=16, N={max(args.sizes)}, {len(Q)} queries")
    print(s.getvalue())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    ap.add_argument("--sizes", type=int, nargs="+")
    ap.add_argument("--dims", type=int, nargs="+")
    ap.add_argument("--kinds", nargs="+")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int)
    ap.add_argument("--latency-queries", type=int)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-max-n", type=int)
    ap.add_argument("--radius", type=int, default=4)
    ap.add_argument("--profile", choices=["vptree", "mtree", "bktree", "brute"])
    ap.add_argument("--threads", type=int, default=1,
                    help="1: FAISS and every BLAS on one thread; 0: library defaults")
    args = ap.parse_args(argv)
    if args.threads == 1:
        ib.single_thread()
    quick = dict(sizes=[1000, 5000], dims=[4, 32], kinds=["uniform", "clustered"], queries=50,
                 latency_queries=10, peer_max_n=5000, flat=(100000, 64, 1000))
    full = dict(sizes=[1000, 10000, 100000], dims=[2, 8, 32, 128], kinds=["uniform", "clustered"], queries=500,
                latency_queries=100, peer_max_n=10000, flat=(1000000, 64, 1000))
    preset = quick if args.quick else full
    for key in ("sizes", "dims", "kinds", "queries", "latency_queries", "peer_max_n"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    args.flat_n, args.flat_d, args.flat_queries = preset["flat"]
    rng = np.random.default_rng(0)
    start = time.perf_counter()

    print(f"cbirlib.index benchmark; methods available: {', '.join(ib.available_methods())}")
    print(f"CPUs {os.cpu_count()}, threads per library {args.threads or 'default'}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}, k={args.k}, {args.queries} queries per case; "
          "'~' = approximate")
    if args.profile:
        profile_section(args)
        return
    for kind in args.kinds:
        for d in args.dims:
            for n in args.sizes:
                X, Q = ib.synthetic_data(kind, n, d, n_queries=args.queries, seed=int(rng.integers(1 << 30)))
                run_case(f"{kind} float32, d={d}, N={n}", X, Q, float_methods(n, args), args)
    for n in args.sizes:
        X, Q = make_codes(n, args.queries, 64, rng)
        run_case(f"64-bit codes (16 prototypes, 10% bit noise), N={n}", X, Q, float_methods(n, args), args)
    print(f"\nHamming range search, 64-bit codes, radius {args.radius} (pybktree has range search only)")
    for n in args.sizes:
        X, Q = make_codes(n, args.queries, 64, rng)
        methods = ["brute force", "BK-tree", "VP-tree", "FAISS flat"] + (["PyPI pybktree"] if n <= args.peer_max_n else [])
        table = ib.hamming_range_comparison(X, Q, args.radius, methods=methods)
        flat = table.set_index("method")["time (ms/query)"].get("FAISS flat", np.nan)
        for _, r in table.iterrows():
            t = r["time (ms/query)"]
            print(f"  N={n:>7}  {r['method']:<16} build {r['build time (s)']:7.3f} s  {t:8.3f} ms/query  "
                  f"x flat {fmt(t / flat, '6.2f')}  dist/N {r['distance fraction']:.4f}  "
                  f"same result {'yes' if r['same result as brute force'] else 'NO'}")
    brute_force_section(args, rng)
    duplicates_section()
    print(f"\ndone in {time.perf_counter() - start:.0f} s; load average at the end: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
