"""Timing of cbirlib.index against FAISS, scikit-learn and PyPI peers (not a test).

Run from the repository root::

    python tests/benchmarks/bench_index.py --quick
    python tests/benchmarks/bench_index.py [--sizes 1000 10000 100000] [--dims 2 8 32 128] [--k 10]
    python tests/benchmarks/bench_index.py --quick --profile vptree   # cProfile of one tree search

For each data set (uniform or clustered float32 vectors in ``d`` dimensions;
64-bit packed hash codes from 16 noisy prototypes) and each database size
``N``, every method is built on the same data and queried with the same
queries (drawn from the same distribution, not database members):

* ``build s``: wall-clock build time;
* ``batch ms/q``: one ``knn(Q, k)`` call on the whole batch, divided by the
  number of queries (median of ``--repeats`` runs for the vectorised methods;
  the trees search query by query, so their batch time is one run);
* ``med ms`` / ``p95 ms``: single-query latency (``knn`` called with one
  query at a time) over ``--latency-queries`` queries;
* ``x flat``: the batch and median timings divided by those of FAISS
  ``IndexFlatL2`` / ``IndexBinaryFlat`` measured in the same process;
* ``dist/N``: distance evaluations per query over ``N`` (our
  ``last_stats``; FAISS HNSW's ``hnsw_stats.ndis``; the PyPI peers through a
  counting distance function; ``-`` where a library does not say);
* ``recall``: fraction of the ``k`` returned items whose distance is within
  the exact ``k``-th distance (tie-aware); ``exact`` marks our indexes whose
  indices *and* distances equal :class:`BruteForceIndex` bit for bit.

Timings are wall-clock on a shared machine: compare ratios measured in the
same run, not absolute numbers across machines. By default every library runs
on one thread (``--threads 1``: FAISS's OpenMP pool and every OpenBLAS through
threadpoolctl), so that the ratios compare algorithms rather than thread pools,
and because OpenMP spin-waiting makes FAISS erratic on a loaded machine; the
load average is printed with the results. The PyPI
peers ``vptree`` and ``pybktree`` are used only if installed (they are not
dependencies of the package); ``pybktree`` has range search only, so it is
compared on Hamming range queries.
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

try:
    import faiss
except ImportError:  # pragma: no cover
    faiss = None
try:
    from sklearn.neighbors import BallTree
except ImportError:  # pragma: no cover
    BallTree = None
try:
    import vptree as peer_vptree
except ImportError:
    peer_vptree = None
try:
    import pybktree as peer_pybktree
except ImportError:
    peer_pybktree = None


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def make_float(kind, n, nq, d, rng):
    if kind == "uniform":
        return rng.random((n, d), dtype=np.float32), rng.random((nq, d), dtype=np.float32)
    centres = rng.random((20, d), dtype=np.float32)

    def draw(m):
        return (centres[rng.integers(0, 20, m)] + 0.03 * rng.standard_normal((m, d))).astype(np.float32)

    return draw(n), draw(nq)


def make_codes(n, nq, bits, rng, *, flip=0.1):
    protos = rng.random((16, bits)) < 0.5

    def draw(m):
        return np.packbits(protos[rng.integers(0, 16, m)] ^ (rng.random((m, bits)) < flip), axis=1)

    return draw(n), draw(nq)


# --------------------------------------------------------------------------
# methods: build(X), knn(Q, k) -> (D, I), dist_fraction() -> float or None
# --------------------------------------------------------------------------


class Method:
    """A uniform wrapper: build, knn on a batch, optional distance counter."""

    exact_ours = False
    reference = False

    def __init__(self, name):
        self.name = name

    def build(self, X):
        raise NotImplementedError

    def knn(self, Q, k):
        raise NotImplementedError

    def dist_fraction(self):
        return None


class Ours(Method):
    exact_ours = True

    def __init__(self, name, factory):
        super().__init__(name)
        self.factory = factory

    def build(self, X):
        self.idx = self.factory().build(X)

    def knn(self, Q, k):
        return self.idx.knn(Q, k)

    def dist_fraction(self):
        return self.idx.last_stats.mean_fraction


class FaissFlat(Method):
    reference = True

    def build(self, X):
        if X.dtype == np.uint8:
            self.idx = faiss.IndexBinaryFlat(8 * X.shape[1])
        else:
            self.idx = faiss.IndexFlatL2(X.shape[1])
        self.idx.add(X)
        self.binary = X.dtype == np.uint8

    def knn(self, Q, k):
        D, I = self.idx.search(Q if self.binary else np.ascontiguousarray(Q, dtype=np.float32), k)
        return (D if self.binary else np.sqrt(np.maximum(D, 0))), I

    def dist_fraction(self):
        return 1.0


class FaissHNSW(Method):
    def __init__(self, name, M=32, ef_search=64):
        super().__init__(name)
        self.M, self.ef = M, ef_search

    def build(self, X):
        self.idx = faiss.IndexHNSWFlat(X.shape[1], self.M)
        self.idx.add(X)
        self.idx.hnsw.efSearch = self.ef
        self.n = X.shape[0]
        self._nq = 0

    def knn(self, Q, k):
        faiss.cvar.hnsw_stats.reset()
        D, I = self.idx.search(np.ascontiguousarray(Q, dtype=np.float32), k)
        self._nq = Q.shape[0]
        return np.sqrt(np.maximum(D, 0)), I

    def dist_fraction(self):
        if not self._nq:
            return None
        return faiss.cvar.hnsw_stats.ndis / self._nq / self.n


class SkBallTree(Method):
    def build(self, X):
        if X.dtype == np.uint8:
            self.bits = 8 * X.shape[1]
            self.idx = BallTree(np.unpackbits(X, axis=1).astype(bool), metric="hamming")
        else:
            self.bits = None
            self.idx = BallTree(X.astype(np.float64))

    def knn(self, Q, k):
        if self.bits:
            D, I = self.idx.query(np.unpackbits(Q, axis=1).astype(bool), k=k)
            return np.rint(D * self.bits).astype(np.int64), I
        return self.idx.query(np.asarray(Q, dtype=np.float64), k=k)


class PeerVPTree(Method):
    """PyPI ``vptree``: points are database indices, the query an array."""

    def build(self, X):
        self.calls = 0
        if X.dtype == np.uint8:
            ints = cx._Hamming.to_ints(np.ascontiguousarray(X))
            self.ints = ints

            def dist(a, b):
                self.calls += 1
                va = ints[a] if isinstance(a, (int, np.integer)) else a[0]
                vb = ints[b] if isinstance(b, (int, np.integer)) else b[0]
                return (va ^ vb).bit_count()
        else:
            X64 = X.astype(np.float64)

            def dist(a, b):
                self.calls += 1
                va = X64[a] if isinstance(a, (int, np.integer)) else a
                vb = X64[b] if isinstance(b, (int, np.integer)) else b
                diff = va - vb
                return float(np.sqrt(diff @ diff))
        self.binary = X.dtype == np.uint8
        self.n = X.shape[0]
        self.tree = peer_vptree.VPTree(np.arange(X.shape[0]), dist)
        self.build_calls = self.calls

    def knn(self, Q, k):
        self.calls = 0
        D = np.zeros((Q.shape[0], k))
        I = np.zeros((Q.shape[0], k), dtype=np.intp)
        for i, q in enumerate(Q):
            qq = [cx._Hamming.to_ints(q[None])[0]] if self.binary else q.astype(np.float64)
            res = self.tree.get_n_nearest_neighbors(qq, k)
            D[i] = [r[0] for r in res]
            I[i] = [int(r[1]) for r in res]
        self._nq = Q.shape[0]
        return D, I

    def dist_fraction(self):
        return self.calls / self._nq / self.n


# --------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def tie_aware_recall(D, D_ref):
    """Share of returned items no farther than the exact k-th distance."""
    kth = D_ref[:, -1:].astype(np.float64)
    tol = 1e-5 * np.maximum(kth, 1e-12)  # float32 libraries
    return float((D.astype(np.float64) <= kth + tol).mean())


def measure(method, X, Q, k, *, repeats, n_lat, max_query_s, vectorised):
    row = {"method": method.name}
    try:
        row["build"], _ = timed(method.build, X)
    except RecursionError:
        row["note"] = "RecursionError in build"
        return row, None
    t1, _ = timed(method.knn, Q[:1], k)
    if t1 > max_query_s:
        row["note"] = f"skipped: one query took {t1:.2f} s"
        return row, None
    reps = repeats if vectorised else 1
    times = []
    for _ in range(reps):
        t, (D, I) = timed(method.knn, Q, k)
        times.append(t)
    row["batch"] = float(np.median(times)) / Q.shape[0]
    row["dist"] = method.dist_fraction()
    lat = []
    for i in range(min(n_lat, Q.shape[0])):
        t, _ = timed(method.knn, Q[i : i + 1], k)
        lat.append(t)
    row["med"] = float(np.median(lat))
    row["p95"] = float(np.percentile(lat, 95))
    return row, (np.asarray(D), np.asarray(I))


def fmt(x, spec):
    """Format ``x``, or a right-aligned ``-`` of the same width for None."""
    if x is None:
        width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 0)
        return "-".rjust(width)
    return format(x, spec)


def print_table(title, rows, ref):
    print(f"\n{title}")
    head = (f"  {'method':<22}{'build s':>9}{'batch ms/q':>12}{'x flat':>8}{'med ms':>9}{'p95 ms':>9}"
            f"{'x flat':>8}{'dist/N':>8}{'recall':>8}  exact")
    print(head)
    print("  " + "-" * (len(head) - 2))
    for r in rows:
        if "batch" not in r:
            print(f"  {r['method']:<22}{fmt(r.get('build'), '9.3f')}  {r.get('note', '')}")
            continue
        xb = r["batch"] / ref["batch"] if ref and ref.get("batch") else None
        xm = r["med"] / ref["med"] if ref and ref.get("med") else None
        print(
            f"  {r['method']:<22}{r['build']:9.3f}{r['batch'] * 1e3:12.4f}{fmt(xb, '8.2f')}"
            f"{r['med'] * 1e3:9.3f}{r['p95'] * 1e3:9.3f}{fmt(xm, '8.2f')}{fmt(r.get('dist'), '8.4f')}"
            f"{fmt(r.get('recall'), '8.3f')}  {r.get('exact', '')}"
        )


def run_case(title, X, Q, k, methods, args):
    rows, ref_row = [], None
    truth = None
    results = {}
    for m in methods:
        vectorised = isinstance(m, (FaissFlat, FaissHNSW, SkBallTree)) or (
            isinstance(m, Ours) and m.name.startswith("ours brute"))
        row, res = measure(m, X, Q, k, repeats=args.repeats, n_lat=args.latency_queries,
                           max_query_s=args.max_query_s, vectorised=vectorised)
        if m.name == "ours brute force" and res is not None:
            truth = res
        results[m.name] = res
        if m.reference:
            ref_row = row
        rows.append(row)
    for row in rows:
        res = results.get(row["method"])
        if res is None or truth is None:
            continue
        row["recall"] = tie_aware_recall(res[0], truth[0])
        m = next(mm for mm in methods if mm.name == row["method"])
        if m.exact_ours:
            same = np.array_equal(res[1], truth[1]) and np.array_equal(res[0], truth[0])
            row["exact"] = "yes" if same else "NO"
    print_table(title, rows, ref_row)
    return rows


# --------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------


def float_methods(X, args):
    sample = X[np.random.default_rng(1).choice(X.shape[0], min(200, X.shape[0]), replace=False)]
    med = float(np.median(cx.exact_distances(sample[:20], sample)))
    ms = []
    if faiss is not None:
        ms.append(FaissFlat("faiss IndexFlatL2"))
    ms += [
        Ours("ours brute force", lambda: cx.BruteForceIndex()),
        Ours("ours VPTree", lambda: cx.VPTree()),
        Ours("ours MTree", lambda: cx.MTree()),
        Ours("ours BKTree(bin=med/20)", lambda: cx.BKTree(bin_width=med / 20)),
    ]
    if BallTree is not None:
        ms.append(SkBallTree("sklearn BallTree"))
    if faiss is not None:
        ms.append(FaissHNSW("faiss HNSW32 ef64 ~"))
    if peer_vptree is not None and X.shape[0] <= args.peer_max_n:
        ms.append(PeerVPTree("PyPI vptree"))
    return ms


def code_methods(X, args):
    ms = []
    if faiss is not None:
        ms.append(FaissFlat("faiss IndexBinaryFlat"))
    ms += [
        Ours("ours brute force", lambda: cx.BruteForceIndex()),
        Ours("ours VPTree", lambda: cx.VPTree()),
        Ours("ours MTree", lambda: cx.MTree()),
        Ours("ours BKTree", lambda: cx.BKTree()),
    ]
    if BallTree is not None:
        ms.append(SkBallTree("sklearn BallTree ham"))
    if peer_vptree is not None and X.shape[0] <= args.peer_max_n:
        ms.append(PeerVPTree("PyPI vptree"))
    return ms


def hamming_range_section(args, rng):
    """Range search on codes: our BK-tree and brute force vs pybktree and FAISS."""
    radius = args.radius
    print(f"\nHamming range search, 64-bit codes, radius {radius} (pybktree has range search only)")
    head = f"  {'N':>7}  {'method':<24}{'build s':>9}{'ms/query':>10}{'x flat':>8}{'dist/N':>8}  same result"
    print(head)
    print("  " + "-" * (len(head) - 2))
    for n in args.sizes:
        X, Q = make_codes(n, args.queries, 64, rng)
        nq = min(args.queries, 50)
        Qs = Q[:nq]
        bf = cx.BruteForceIndex().build(X)
        ref = bf.range_query(Qs, radius)
        ref_sets = [set(i.tolist()) for _, i in ref]
        rows = []
        if faiss is not None:
            fi = faiss.IndexBinaryFlat(64)
            tb, _ = timed(fi.add, X)
            t, (lims, Dr, Ir) = timed(fi.range_search, Qs, radius + 1)  # FAISS: distance < radius
            same = all(set(Ir[lims[i] : lims[i + 1]].tolist()) == ref_sets[i] for i in range(nq))
            rows.append(("faiss IndexBinaryFlat", tb, t / nq, 1.0, same))
            flat_t = t / nq
        else:
            flat_t = None
        for name, factory in (("ours brute force", cx.BruteForceIndex), ("ours BKTree", cx.BKTree),
                              ("ours VPTree", cx.VPTree)):
            tb, idx = timed(lambda: factory().build(X))
            t, res = timed(idx.range_query, Qs, radius)
            same = all(np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0]) for a, b in zip(res, ref))
            rows.append((name, tb, t / nq, idx.last_stats.mean_fraction, same))
        if peer_pybktree is not None and n <= args.peer_max_n:
            ints = cx._Hamming.to_ints(X)
            calls = [0]

            def dist(a, b):
                calls[0] += 1
                return (a[0] ^ b[0]).bit_count()

            tb, tree = timed(lambda: peer_pybktree.BKTree(dist, [(c, i) for i, c in enumerate(ints)]))
            calls[0] = 0
            qints = cx._Hamming.to_ints(Qs)
            t, res = timed(lambda: [tree.find((c, -1), radius) for c in qints])
            same = all({it[1] for _, it in r} == ref_sets[i] for i, r in enumerate(res))
            rows.append(("PyPI pybktree", tb, t / nq, calls[0] / nq / n, same))
        for name, tb, t, frac, same in rows:
            x = t / flat_t if flat_t else None
            print(f"  {n:>7}  {name:<24}{tb:9.3f}{t * 1e3:10.3f}{fmt(x, '8.2f')}{fmt(frac, '8.4f')}  "
                  f"{'yes' if same else 'NO'}")


def brute_force_section(args, rng):
    """Ours vs FAISS flat on one large batch, interleaved repeats."""
    if faiss is None:
        return
    n, d, nq, k = args.flat_n, args.flat_d, args.flat_queries, args.k
    X, Q = make_float("uniform", n, nq, d, rng)
    fi = faiss.IndexFlatL2(d)
    fi.add(X)
    bf = cx.BruteForceIndex().build(X)
    tf, to = [], []
    for _ in range(args.repeats):
        tf.append(timed(fi.search, Q, k)[0])
        to.append(timed(bf.knn, Q, k)[0])
    Df, If = fi.search(Q, k)
    D, I = bf.knn(Q, k)
    agree = float((If == I).mean())
    print(f"\nBrute force at scale: N={n}, d={d}, {nq} queries, k={k}, float32, {args.repeats} interleaved runs")
    print(f"  faiss IndexFlatL2   median {np.median(tf):.3f} s  (min {min(tf):.3f})")
    print(f"  ours BruteForce     median {np.median(to):.3f} s  (min {min(to):.3f})  "
          f"ratio to FAISS {np.median(to) / np.median(tf):.2f} (median), {min(to) / min(tf):.2f} (min); "
          f"same indices as FAISS: {agree:.4f}")
    B, QB = make_codes(n, nq, 64, rng)
    fb = faiss.IndexBinaryFlat(64)
    fb.add(B)
    bb = cx.BruteForceIndex().build(B)
    tf, to = [], []
    for _ in range(args.repeats):
        tf.append(timed(fb.search, QB, k)[0])
        to.append(timed(bb.knn, QB, k)[0])
    print(f"  faiss IndexBinaryFlat median {np.median(tf):.3f} s; ours {np.median(to):.3f} s "
          f"(ratio {np.median(to) / np.median(tf):.2f}), 64-bit codes")


def duplicates_section(args):
    """Robustness: many identical points (binary codes repeat)."""
    X = np.vstack([np.ones((600, 8), dtype=np.float32), np.random.default_rng(0).random((20, 8), dtype=np.float32)])
    print("\nDuplicates: 600 identical vectors + 20 others, k=10")
    for name, factory in (("ours VPTree", cx.VPTree), ("ours MTree", cx.MTree),
                          ("ours BKTree", lambda: cx.BKTree(bin_width=0.1))):
        tb, idx = timed(lambda: factory().build(X))
        idx.knn(X[:1], 10)
        print(f"  {name:<14} build {tb:.3f} s, knn ok, dist/N {idx.last_stats.mean_fraction:.3f}")
    if peer_vptree is not None:
        limit = sys.getrecursionlimit()
        try:
            peer_vptree.VPTree(np.arange(len(X)), lambda a, b: float(np.linalg.norm(X[a] - X[b])))
            print("  PyPI vptree    build ok")
        except RecursionError:
            print(f"  PyPI vptree    RecursionError (recursion limit {limit})")


def profile_section(args, rng):
    X, Q = make_float("clustered", max(args.sizes), args.queries, 16, rng)
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
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    ap.add_argument("--sizes", type=int, nargs="+")
    ap.add_argument("--dims", type=int, nargs="+")
    ap.add_argument("--kinds", nargs="+", default=["uniform", "clustered"])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int)
    ap.add_argument("--latency-queries", type=int)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-query-s", type=float)
    ap.add_argument("--peer-max-n", type=int, default=10000)
    ap.add_argument("--radius", type=int, default=4)
    ap.add_argument("--profile", choices=["vptree", "mtree", "bktree", "brute"])
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for FAISS (OpenMP) and every BLAS (threadpoolctl); 0 = library defaults")
    args = ap.parse_args(argv)
    if args.threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads)
        if faiss is not None:
            faiss.omp_set_num_threads(args.threads)
    if args.quick:
        args.sizes = args.sizes or [1000, 10000, 30000]
        args.dims = args.dims or [4, 32]
        args.queries = args.queries or 200
        args.latency_queries = args.latency_queries or 20
        args.max_query_s = args.max_query_s or 0.25
        args.flat_n, args.flat_d, args.flat_queries = 100000, 64, 1000
    else:
        args.sizes = args.sizes or [1000, 10000, 100000]
        args.dims = args.dims or [2, 8, 32, 128]
        args.queries = args.queries or 1000
        args.latency_queries = args.latency_queries or 100
        args.max_query_s = args.max_query_s or 1.0
        args.flat_n, args.flat_d, args.flat_queries = 1000000, 64, 1000
    rng = np.random.default_rng(0)

    vers = [f"numpy {np.__version__}"]
    for mod, name in ((faiss, "faiss"), (peer_vptree, "vptree"), (peer_pybktree, "pybktree")):
        if mod is not None:
            vers.append(f"{name} {getattr(mod, '__version__', _dist_version(name))}")
    if BallTree is not None:
        import sklearn

        vers.append(f"scikit-learn {sklearn.__version__}")
    print("cbirlib.index benchmark (" + ", ".join(vers) + ")")
    print(f"CPUs {os.cpu_count()}, threads per library {args.threads or 'default'}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}, k={args.k}, {args.queries} queries per case; "
          "'~' = approximate method")

    if args.profile:
        profile_section(args, rng)
        return

    for kind in args.kinds:
        for d in args.dims:
            for n in args.sizes:
                X, Q = make_float(kind, n, args.queries, d, rng)
                run_case(f"{kind} float32, d={d}, N={n}", X, Q, args.k, float_methods(X, args), args)
    for n in args.sizes:
        X, Q = make_codes(n, args.queries, 64, rng)
        run_case(f"64-bit codes (16 prototypes, 10% bit noise), N={n}", X, Q, args.k, code_methods(X, args), args)
    hamming_range_section(args, rng)
    brute_force_section(args, rng)
    duplicates_section(args)
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def _dist_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # pragma: no cover
        return "?"


if __name__ == "__main__":
    main()
