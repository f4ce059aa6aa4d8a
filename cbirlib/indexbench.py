"""Measuring nearest-neighbour indexes: scaling sweeps, references and pipelines.

Notebook 04 (index comparison, paper 000) and ``tests/benchmarks/bench_index.py``
use this module to put :mod:`cbirlib.index` (brute force, VP-tree, M-tree,
BK-tree) beside the tools a user would pick instead, on the same data and the
same queries, in the same process:

=======================  ===================================================================
method name              what runs
=======================  ===================================================================
``"brute force"``        :class:`cbirlib.index.BruteForceIndex` (BLAS / popcount, exact)
``"VP-tree"``            :class:`cbirlib.index.VPTree` (max-spread vantage points, leaves of 64)
``"M-tree"``             :class:`cbirlib.index.MTree` (mM_RAD + generalized hyperplane, 64)
``"BK-tree"``            :class:`cbirlib.index.BKTree` (Hamming keys; float features: keys
                         ``floor(d / w)`` with ``w`` = median distance / 20, still exact)
``"FAISS flat"``         ``faiss.IndexFlatL2`` (float32) / ``faiss.IndexBinaryFlat`` (codes)
``"FAISS HNSW"``         ``faiss.IndexHNSWFlat`` / ``IndexBinaryHNSW``, M = 32, efSearch 64:
                         *approximate*, reported with its recall
``"sklearn BallTree"``   ``sklearn.neighbors.BallTree`` (codes: unpacked bits, Hamming)
``"PyPI vptree"``        ``vptree`` 1.3 with a Python distance callback (what its README does)
``"PyPI downward-mtree"`` ``downward-mtree`` 1.0.4 (``dmtree.DMTree``), the only M-tree on PyPI
                         that installs (the ``mtree`` package is unrelated)
=======================  ===================================================================

``pybktree`` has no k-NN search (only ``find(item, radius)``): it is compared on
Hamming range queries by :func:`hamming_range_comparison`.

Measurements (:func:`measure`): build time, index memory (bytes held by the
index beyond the input vectors: numpy buffers and Python objects walked
recursively, FAISS's serialised size), time of one batched ``knn`` call per
query, single-query latency (median and 95th percentile), distance evaluations
per query (our ``last_stats``; FAISS HNSW's counter; a counting callback for
the PyPI peers; ``NaN`` where a library does not say; ``downward-mtree``'s count
varies between processes and goes to its own column), recall (tie-aware, against
the exact ``k``-th distance) and, for our indexes, whether the result equals
brute force bit for bit. Timings depend on the machine: tables carry them as
ratios to a reference measured in the same run (:func:`add_ratios`).

Scaling (:func:`scaling_sweep`, :func:`fit_loglog`): distance evaluations per
query against ``N`` on nested databases (the first ``N`` rows of one pool), the
slope of ``log(distances)`` against ``log(N)`` per data set and method, and
:func:`complexity_verdict`, which reads a slope as "O(log N)", "sublinear
polynomial" or "linear" (see its docstring for the thresholds).
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import index as cx
from ._checks import check_choice as _check_choice
from ._checks import check_int as _check_int

__all__ = [
    "SYNTHETIC_KINDS",
    "METHODS",
    "synthetic_data",
    "pca_truncate",
    "available_methods",
    "make_method",
    "tie_aware_recall",
    "deep_nbytes",
    "measure",
    "scaling_sweep",
    "add_ratios",
    "fit_loglog",
    "complexity_verdict",
    "LOG_SLOPE_MAX",
    "LINEAR_SLOPE_MIN",
    "single_query_latency",
    "hamming_range_comparison",
    "single_thread",
    "log_sizes",
    "PIPELINES",
    "prepare_pipelines",
    "evaluate_pipelines",
    "precision_recall_points",
    "flat_comparison",
]

SYNTHETIC_KINDS = ("uniform", "clustered", "subspace")

#: Method names accepted by :func:`make_method`, in the tables' order.
METHODS = ("brute force", "VP-tree", "M-tree", "BK-tree", "FAISS flat", "FAISS HNSW",
           "sklearn BallTree", "PyPI vptree", "PyPI downward-mtree")

#: A log-log slope of distance evaluations vs N at or below this is read as
#: O(log N): ``c log N`` has local slope ``1 / ln N``, 0.145 at N = 1,000 and
#: less beyond, and an additive constant only lowers it.
LOG_SLOPE_MAX = 0.2
#: At or above this the search is read as linear: no pruning worth the name.
LINEAR_SLOPE_MIN = 0.9


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def synthetic_data(kind: str, n: int, d: int, *, n_queries: int, seed: int,
                   intrinsic_dim: int | None = None, n_clusters: int = 20,
                   spread: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """Database and queries (float32) from one distribution (notebook 04).

    Parameters
    ----------
    kind : {"uniform", "clustered", "subspace"}
        ``"uniform"``: the unit cube ``[0, 1]^d`` (intrinsic dimension ``d``).
        ``"clustered"``: ``n_clusters`` centres uniform in the cube, points
        Gaussian around them with standard deviation ``spread`` per axis.
        ``"subspace"``: uniform in ``[0, 1]^m`` (``m = intrinsic_dim``) mapped
        into ``d`` dimensions by a random orthonormal ``d x m`` matrix: the
        distances are those of the ``m``-dimensional cube, so intrinsic and
        ambient dimension are separated.
    n, d : int
        Database size and (ambient) dimension.
    n_queries : int, keyword-only
        Queries, drawn from the same distribution (not database members).
    seed : int, keyword-only

    Returns
    -------
    (X, Q) : float32 arrays of shapes ``(n, d)`` and ``(n_queries, d)``
    """
    _check_choice("kind", kind, SYNTHETIC_KINDS)
    n = _check_int("n", n, minimum=1)
    d = _check_int("d", d, minimum=1)
    n_queries = _check_int("n_queries", n_queries, minimum=0)
    rng = np.random.default_rng(seed)
    m = n + n_queries
    if kind == "uniform":
        Z = rng.random((m, d))
    elif kind == "clustered":
        centres = rng.random((n_clusters, d))
        Z = centres[rng.integers(0, n_clusters, m)] + spread * rng.standard_normal((m, d))
    else:
        if intrinsic_dim is None or not 1 <= intrinsic_dim <= d:
            raise ValueError(f"kind='subspace' needs 1 <= intrinsic_dim <= d={d}, got {intrinsic_dim}")
        basis, _ = np.linalg.qr(rng.standard_normal((d, intrinsic_dim)))
        Z = rng.random((m, intrinsic_dim)) @ basis.T
    Z = Z.astype(np.float32)
    return np.ascontiguousarray(Z[:n]), np.ascontiguousarray(Z[n:])


def log_sizes(n_min: int, n_max: int, points: int) -> list[int]:
    """``points`` database sizes log-spaced from ``n_min`` to ``n_max`` (both included).

    Rounded to integers, duplicates dropped; ``n_min`` is clipped to
    ``n_max``. Used by notebook 04 for the N sweeps on real features (up to the
    whole database).
    """
    n_max = _check_int("n_max", n_max, minimum=1)
    n_min = min(_check_int("n_min", n_min, minimum=1), n_max)
    points = _check_int("points", points, minimum=1)
    if points == 1:
        return [n_max]
    grid = np.exp(np.linspace(np.log(n_min), np.log(n_max), points))
    return sorted({int(round(x)) for x in grid})


def pca_truncate(X: np.ndarray, Q: np.ndarray, dims: Sequence[int], *,
                 seed: int = 0) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """PCA of the database ``X``, truncated to each of ``dims`` (notebook 04).

    One PCA is fitted on ``X`` (scikit-learn, full SVD: deterministic); the
    first ``d`` components of ``X`` and ``Q`` are returned for every ``d`` in
    ``dims``. A ``d`` at or above ``min(n, dim)`` keeps every component: a
    rotation of the centred features, with the same distances as the input.

    Returns
    -------
    dict
        ``{d: (X_d, Q_d)}``, float32.
    """
    from sklearn.decomposition import PCA

    X = np.asarray(X, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    n_comp = min(max(int(x) for x in dims), *X.shape)
    pca = PCA(n_components=n_comp, svd_solver="full", random_state=seed).fit(X)
    Xt, Qt = pca.transform(X), pca.transform(Q)
    return {int(d): (np.ascontiguousarray(Xt[:, :min(int(d), n_comp)], dtype=np.float32),
                     np.ascontiguousarray(Qt[:, :min(int(d), n_comp)], dtype=np.float32))
            for d in dims}


# --------------------------------------------------------------------------
# methods: build(X), knn(Q, k), distances per query, memory
# --------------------------------------------------------------------------


def deep_nbytes(obj, *, exclude: Sequence = ()) -> int:
    """Bytes held by ``obj``: numpy buffers plus Python objects, walked recursively.

    Containers, instances (``__dict__`` and ``__slots__``) and numpy arrays
    are followed once each (by identity); objects in ``exclude`` (e.g. the
    input array the index was built on) and modules, classes and functions are
    not counted. Views count their base once. Deterministic for a given
    structure, unlike allocator statistics. Used for the memory column of
    notebook 04.
    """
    seen = {id(x) for x in exclude}
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            base = o
            while isinstance(base.base, np.ndarray):
                base = base.base
            if base is not o:
                stack.append(base)
                continue
            total += o.nbytes if o.base is None else 0
            if o.dtype == object:
                stack.extend(o.ravel().tolist())
            continue
        if isinstance(o, (type, type(sys), type(deep_nbytes))) or callable(o) and not hasattr(o, "__dict__"):
            continue
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        else:
            d = getattr(o, "__dict__", None)
            if d is not None:
                stack.append(d)
            for cls in type(o).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    if isinstance(slot, str) and hasattr(o, slot):
                        stack.append(getattr(o, slot))
    return int(total)


class _Method:
    """A uniform wrapper: ``build(X)``, ``knn(Q, k) -> (D, I)``, counters."""

    family = "ours"
    exact = True
    approximate = False
    #: False when the library's structure (hence its distance count) changes
    #: from one process to the next; :func:`measure` then reports the count in
    #: a separate column.
    deterministic = True

    def __init__(self, name: str):
        self.name = name
        self._input = None

    def build(self, X):
        raise NotImplementedError

    def knn(self, Q, k):
        raise NotImplementedError

    def distances_per_query(self) -> float:
        """Mean distance evaluations per query of the last ``knn`` (NaN if unknown)."""
        return float("nan")

    def memory_bytes(self) -> int:
        return deep_nbytes(self._held(), exclude=[self._input])

    def _held(self):
        return self.__dict__


class _Ours(_Method):
    def __init__(self, name, factory):
        super().__init__(name)
        self.factory = factory

    def build(self, X):
        self._input = X
        self.idx = self.factory(X).build(X)

    def knn(self, Q, k):
        return self.idx.knn(Q, k)

    def distances_per_query(self):
        s = self.idx.last_stats
        return float(s.n_distances.mean()) if s is not None and s.n_distances.size else float("nan")

    def _held(self):
        return self.idx


def _bk_factory(X):
    if X.dtype == np.uint8:
        return cx.BKTree()
    rng = np.random.default_rng(1)
    sample = X[rng.choice(len(X), min(200, len(X)), replace=False)]
    med = float(np.median(cx.exact_distances(sample[:20], sample)))
    return cx.BKTree(bin_width=max(med, 1e-12) / 20)


class _FaissFlat(_Method):
    family = "FAISS"

    def build(self, X):
        import faiss

        self._input = X
        self.binary = X.dtype == np.uint8
        self.idx = faiss.IndexBinaryFlat(8 * X.shape[1]) if self.binary else faiss.IndexFlatL2(X.shape[1])
        self.idx.add(X if self.binary else np.ascontiguousarray(X, dtype=np.float32))

    def knn(self, Q, k):
        k = min(k, self.idx.ntotal)
        if self.binary:
            D, I = self.idx.search(np.ascontiguousarray(Q), k)
            return D.astype(np.int64), I
        D, I = self.idx.search(np.ascontiguousarray(Q, dtype=np.float32), k)
        return np.sqrt(np.maximum(D, 0)), I

    def distances_per_query(self):
        return float(self.idx.ntotal)

    def memory_bytes(self):
        import faiss

        ser = faiss.serialize_index_binary if self.binary else faiss.serialize_index
        return int(ser(self.idx).size)


class _FaissHNSW(_FaissFlat):
    exact = False
    approximate = True

    def __init__(self, name, M=32, ef_search=64):
        super().__init__(name)
        self.M, self.ef = M, ef_search

    def build(self, X):
        import faiss

        self._input = X
        self.binary = X.dtype == np.uint8
        if self.binary:
            self.idx = faiss.IndexBinaryHNSW(8 * X.shape[1], self.M)
            self.idx.add(X)
        else:
            self.idx = faiss.IndexHNSWFlat(X.shape[1], self.M)
            self.idx.add(np.ascontiguousarray(X, dtype=np.float32))
        self.idx.hnsw.efSearch = self.ef
        self._per_query = float("nan")

    def knn(self, Q, k):
        import faiss

        faiss.cvar.hnsw_stats.reset()
        out = super().knn(Q, k)
        self._per_query = faiss.cvar.hnsw_stats.ndis / max(1, len(Q))
        return out

    def distances_per_query(self):
        return self._per_query


class _BallTree(_Method):
    family = "scikit-learn"

    def build(self, X):
        from sklearn.neighbors import BallTree

        self._input = X
        self.bits = 8 * X.shape[1] if X.dtype == np.uint8 else None
        if self.bits:
            self.idx = BallTree(np.unpackbits(X, axis=1).astype(bool), metric="hamming")
        else:
            self.idx = BallTree(np.asarray(X, dtype=np.float64))

    def knn(self, Q, k):
        k = min(k, self.idx.data.shape[0])
        if self.bits:
            D, I = self.idx.query(np.unpackbits(Q, axis=1).astype(bool), k=k)
            return np.rint(D * self.bits).astype(np.int64), I
        return self.idx.query(np.asarray(Q, dtype=np.float64), k=k)

    def memory_bytes(self):
        return int(sum(a.nbytes for a in self.idx.get_arrays()[1:]))  # not the data copy


class _Counting:
    """A distance callback that counts its calls (for the PyPI peers)."""

    def __init__(self, X):
        self.calls = 0
        self.binary = X.dtype == np.uint8
        if self.binary:
            self.vals = cx._Hamming.to_ints(np.ascontiguousarray(X))
        else:
            self.vals = np.asarray(X, dtype=np.float64)

    def query_value(self, q):
        return cx._Hamming.to_ints(q[None])[0] if self.binary else np.asarray(q, dtype=np.float64)


def _fill(d_row, i_row, res):
    """Copy ``[(distance, index), ...]`` into a result row; missing items get inf / -1.

    PyPI ``vptree`` returns fewer than ``k`` items when ``k`` approaches ``N``
    (a bug of the package, seen with ``k = N``); the shortfall shows as lost
    recall instead of an exception.
    """
    d_row[:] = np.inf
    i_row[:] = -1
    d_row[:len(res)] = [r[0] for r in res]
    i_row[:len(res)] = [int(r[1]) for r in res]


class _PeerVPTree(_Method):
    """PyPI ``vptree``: the points are database indices; the query is a 1-tuple.

    ``vptree`` stores the points in numpy arrays (indices become ``int64``),
    so the callback tells the query (a tuple holding the vector or code) from a
    database index by its type.
    """

    family = "PyPI"

    def build(self, X):
        import vptree

        self._input = X
        cnt = self.counter = _Counting(X)
        vals = cnt.vals
        n = len(X)
        if cnt.binary:
            def dist(a, b):
                cnt.calls += 1
                va = a[0] if type(a) is tuple else vals[a]
                vb = b[0] if type(b) is tuple else vals[b]
                return (va ^ vb).bit_count()
        else:
            def dist(a, b):
                cnt.calls += 1
                diff = (a[0] if type(a) is tuple else vals[a]) - (b[0] if type(b) is tuple else vals[b])
                return math.sqrt(diff @ diff)
        self.n = n
        self.tree = vptree.VPTree(list(range(n)), dist)
        self._per_query = float("nan")

    def knn(self, Q, k):
        k = min(k, self.n)
        self.counter.calls = 0
        D = np.zeros((len(Q), k))
        I = np.zeros((len(Q), k), dtype=np.intp)
        for i, q in enumerate(Q):
            res = sorted(self.tree.get_n_nearest_neighbors((self.counter.query_value(q),), k))[:k]
            _fill(D[i], I[i], res)
        self._per_query = self.counter.calls / max(1, len(Q))
        return D, I

    def distances_per_query(self):
        return self._per_query

    def _held(self):
        return self.tree


class _PeerDMTree(_Method):
    """PyPI ``downward-mtree``: identifiers are database indices, values the vectors."""

    family = "PyPI"
    deterministic = False

    def __init__(self, name, inner_capacity=20, leaf_capacity=50):
        super().__init__(name)
        self.inner, self.leaf = inner_capacity, leaf_capacity

    def build(self, X):
        import dmtree

        self._input = X
        cnt = self.counter = _Counting(X)
        if cnt.binary:
            def dist(a, b):
                cnt.calls += 1
                return (a ^ b).bit_count()
        else:
            def dist(a, b):
                cnt.calls += 1
                diff = a - b
                return math.sqrt(diff @ diff)
        self.n = len(X)
        # dmtree shuffles with the global ``random`` module when it splits inner
        # nodes (seeded here, the caller's state restored), but it also iterates
        # over sets of objects hashed by id(), so its tree, and its distance
        # count, still vary between processes: see ``deterministic``
        state = random.getstate()
        random.seed(0)
        try:
            self.tree = dmtree.DMTree(dist, inner_node_capacity=self.inner, leaf_node_capacity=self.leaf)
            for i, v in enumerate(cnt.vals):
                self.tree.insert(i, v)
        finally:
            random.setstate(state)
        self._per_query = float("nan")

    def knn(self, Q, k):
        k = min(k, self.n)
        self.counter.calls = 0
        D = np.zeros((len(Q), k))
        I = np.zeros((len(Q), k), dtype=np.intp)
        for i, q in enumerate(Q):
            res = sorted((r.r, r.element.identifier) for r in self.tree.knn(self.counter.query_value(q), k))[:k]
            _fill(D[i], I[i], res)
        self._per_query = self.counter.calls / max(1, len(Q))
        return D, I

    def distances_per_query(self):
        return self._per_query

    def memory_bytes(self):
        return deep_nbytes(self.tree, exclude=[self._input, self.counter.vals])


def _module_available(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


_REQUIRES = {"FAISS flat": "faiss", "FAISS HNSW": "faiss", "sklearn BallTree": "sklearn",
             "PyPI vptree": "vptree", "PyPI downward-mtree": "dmtree"}


def available_methods() -> list[str]:
    """The :data:`METHODS` whose library imports here (ours always do)."""
    return [m for m in METHODS if m not in _REQUIRES or _module_available(_REQUIRES[m])]


def make_method(name: str):
    """A fresh wrapper for one of :data:`METHODS` (see the module docstring).

    The wrapper has ``build(X)``, ``knn(Q, k) -> (D, I)`` (distances as the
    library returns them: FAISS's squared L2 are square-rooted),
    ``distances_per_query()``, ``memory_bytes()`` and the attributes
    ``family``, ``exact`` and ``approximate``.
    """
    _check_choice("method", name, METHODS)
    if name in _REQUIRES and not _module_available(_REQUIRES[name]):
        raise ImportError(f"method {name!r} needs the package {_REQUIRES[name]!r}: "
                          "pip install -e '.[test]' installs it")
    factories = {
        "brute force": lambda: _Ours(name, lambda X: cx.BruteForceIndex()),
        "VP-tree": lambda: _Ours(name, lambda X: cx.VPTree()),
        "M-tree": lambda: _Ours(name, lambda X: cx.MTree()),
        "BK-tree": lambda: _Ours(name, _bk_factory),
        "FAISS flat": lambda: _FaissFlat(name),
        "FAISS HNSW": lambda: _FaissHNSW(name),
        "sklearn BallTree": lambda: _BallTree(name),
        "PyPI vptree": lambda: _PeerVPTree(name),
        "PyPI downward-mtree": lambda: _PeerDMTree(name),
    }
    return factories[name]()


# --------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------


def tie_aware_recall(D: np.ndarray, D_exact: np.ndarray, *, rtol: float = 1e-5) -> float:
    """Share of returned neighbours no farther than the exact ``k``-th distance.

    Counts an item as correct when its distance is within the exact ``k``-th
    distance of its query (so a different member of a tie is not a miss);
    ``rtol`` absorbs float32 libraries' rounding. Rows shorter than ``k``
    (fewer items returned) count the missing items as misses.
    """
    D = np.asarray(D, dtype=np.float64)
    E = np.asarray(D_exact, dtype=np.float64)
    if E.size == 0:
        return float("nan")
    kth = E[:, -1:]
    ok = D <= kth + rtol * np.maximum(kth, 1e-12)
    return float(ok.sum() / E.size)


def single_query_latency(fn: Callable, queries: Sequence, *, n: int) -> tuple[float, float]:
    """Median and 95th percentile (ms) of ``fn(q)`` over the first ``n`` queries.

    Every query is timed alone (``time.perf_counter``), which is what a user
    waiting for one result sees. Used by notebook 04 for index latency and for
    end-to-end pipeline latency (feature extraction + search).
    """
    times = []
    for q in list(queries)[:max(1, int(n))]:
        t = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t)
    times = 1e3 * np.asarray(times)
    return float(np.median(times)), float(np.percentile(times, 95))


def measure(method, X: np.ndarray, Q: np.ndarray, k: int, *, n_latency: int = 20,
            repeats: int = 1, exact: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Build ``method`` on ``X`` and query it with ``Q`` (notebook 04, benchmark).

    Parameters
    ----------
    method : str or wrapper
        A name from :data:`METHODS` or a :func:`make_method` wrapper.
    k : int
        Neighbours per query.
    n_latency : int, keyword-only
        Queries timed one by one (median and p95 latency).
    repeats : int, keyword-only
        Batched ``knn`` calls; the median is kept.
    exact : (D, I), optional, keyword-only
        The exact result (brute force) for recall and the bit-for-bit check.

    Returns
    -------
    dict
        ``method, family, approximate, build time (s), memory (bytes),
        batch time (ms/query), latency median (ms), latency p95 (ms),
        distances per query, recall, identical to brute force`` and ``D``,
        ``I`` (the batched result).
    """
    m = make_method(method) if isinstance(method, str) else method
    t = time.perf_counter()
    m.build(X)
    build_s = time.perf_counter() - t
    times = []
    for _ in range(max(1, int(repeats))):
        t = time.perf_counter()
        D, I = m.knn(Q, k)
        times.append(time.perf_counter() - t)
    dist = m.distances_per_query()
    varies = not m.deterministic
    med, p95 = single_query_latency(lambda q: m.knn(q[None], k), Q, n=n_latency)
    row = {"method": m.name, "family": m.family, "approximate": m.approximate,
           "build time (s)": build_s, "memory (bytes)": m.memory_bytes(),
           "batch time (ms/query)": 1e3 * float(np.median(times)) / max(1, len(Q)),
           "latency median (ms)": med, "latency p95 (ms)": p95,
           "distances per query": np.nan if varies else dist,
           "distance fraction": np.nan if varies else dist / len(X),
           "distances per query (varies between runs)": dist if varies else np.nan,
           "recall": float("nan"), "identical to brute force": None,
           "D": np.asarray(D), "I": np.asarray(I)}
    if exact is not None:
        row["recall"] = tie_aware_recall(D, exact[0])
        if m.family == "ours":
            row["identical to brute force"] = bool(np.array_equal(I, exact[1]) and np.array_equal(D, exact[0]))
    return row


def scaling_sweep(datasets: Mapping[str, tuple[np.ndarray, np.ndarray]], sizes: Sequence[int],
                  methods: Sequence[str], *, k: int, n_latency: int = 10,
                  max_n: Mapping[str, int] | None = None, info: Mapping[str, dict] | None = None,
                  progress: bool = True) -> pd.DataFrame:
    """Every method on nested databases of every size, for every data set (notebook 04).

    Parameters
    ----------
    datasets : mapping
        ``name -> (X_pool, Q)``; the database of size ``N`` is ``X_pool[:N]``
        (sizes above the pool are skipped), the queries are always ``Q``.
    sizes : sequence of int
    methods : sequence of str
        Names from :data:`METHODS`; libraries that are not installed are
        skipped (:func:`available_methods`), as are float-only methods on
        packed codes (``FAISS HNSW`` has a binary variant; all others accept
        both).
    k : int, keyword-only
    n_latency : int, keyword-only
        Queries timed one at a time per cell.
    max_n : mapping, optional, keyword-only
        Largest ``N`` per method (slow pure-Python builds); default no limit.
    info : mapping, optional, keyword-only
        Extra columns per data set (e.g. ``{"kind": ..., "dim": ...}``).

    Returns
    -------
    DataFrame
        One row per (data set, N, method) with the :func:`measure` columns
        (without ``D``/``I``), ``dataset``, ``N``, ``dim``, ``metric`` and the
        ``info`` columns. ``"brute force"`` is always run first (the exact
        reference for recall), whether or not it is in ``methods``.
    """
    from tqdm.auto import tqdm

    max_n = dict(max_n or {})
    avail = set(available_methods())
    wanted = [m for m in methods if m in avail and m != "brute force"]
    jobs = [(name, n) for name, (X, _) in datasets.items() for n in sizes if n <= len(X)]
    rows = []
    for name, n in tqdm(jobs, desc="sweep", disable=not progress):
        Xp, Q = datasets[name]
        X = np.ascontiguousarray(Xp[:n])
        base = {"dataset": name, "N": n, "dim": int(8 * X.shape[1]) if X.dtype == np.uint8 else int(X.shape[1]),
                "metric": "hamming" if X.dtype == np.uint8 else "euclidean", **dict((info or {}).get(name, {}))}
        ref = measure("brute force", X, Q, k, n_latency=n_latency)
        exact = (ref["D"], ref["I"])
        ref["recall"], ref["identical to brute force"] = 1.0, True
        rows.append({**base, **ref})
        for m in wanted:
            if n > max_n.get(m, n):
                continue
            rows.append({**base, **measure(m, X, Q, k, n_latency=n_latency, exact=exact)})
    frame = pd.DataFrame(rows)
    return frame.drop(columns=[c for c in ("D", "I") if c in frame.columns])


def add_ratios(frame: pd.DataFrame, *, reference: str, by: Sequence[str] = ("dataset", "N"),
               columns: Sequence[str] = ("batch time (ms/query)", "latency median (ms)")) -> pd.DataFrame:
    """Add ``<column> ratio to <reference>``: each timing over the reference's in the same cell.

    ``by`` names the columns that identify one cell (same data, same queries,
    same run). Rows whose cell has no ``reference`` row get NaN. Returns a copy.
    """
    out = frame.copy()
    ref = out.loc[out["method"] == reference, [*by, *columns]].drop_duplicates(list(by))
    merged = out[list(by)].merge(ref, on=list(by), how="left")
    for c in columns:
        label = c.split(" (")[0]
        out[f"{label} ratio to {reference}"] = out[c].to_numpy() / merged[c].to_numpy()
    return out


# --------------------------------------------------------------------------
# complexity
# --------------------------------------------------------------------------


def fit_loglog(frame: pd.DataFrame, *, x: str = "N", y: str = "distances per query",
               by: Sequence[str] = ("dataset", "method")) -> pd.DataFrame:
    """Least-squares slope of ``log y`` against ``log x`` per group (notebook 04).

    Groups with fewer than two distinct ``x`` or non-positive ``y`` are
    skipped. Returns ``by`` columns plus ``slope``, ``growth exponent``
    (``max(0, slope)``: the exponent of N in a big-O bound, which a cost that
    falls with N meets at 0, as O(1) is within O(log N)), ``intercept``
    (natural logs), ``r2``, ``points``, ``N min``, ``N max`` and ``verdict``
    (:func:`complexity_verdict`).
    """
    rows = []
    for key, g in frame.groupby(list(by), sort=False):
        g = g.loc[np.isfinite(g[y].astype(float)) & (g[y].astype(float) > 0)]
        if g[x].nunique() < 2:
            continue
        lx, ly = np.log(g[x].to_numpy(float)), np.log(g[y].to_numpy(float))
        slope, intercept = np.polyfit(lx, ly, 1)
        pred = slope * lx + intercept
        ss = float(((ly - ly.mean()) ** 2).sum())
        r2 = 1 - float(((ly - pred) ** 2).sum()) / ss if ss > 0 else 1.0
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), "slope": float(slope),
                     "growth exponent": max(0.0, float(slope)), "intercept": float(intercept),
                     "r2": r2, "points": len(g), "N min": int(g[x].min()), "N max": int(g[x].max()),
                     "verdict": complexity_verdict(slope)})
    return pd.DataFrame(rows)


def flat_comparison(X: np.ndarray, Q: np.ndarray, k: int, *, repeats: int = 3) -> dict:
    """Our brute force against FAISS's flat index on one whole batch (notebook 04, benchmark).

    ``repeats`` interleaved runs of ``BruteForceIndex.knn(Q, k)`` and
    ``IndexFlatL2.search`` (``IndexBinaryFlat`` for packed codes), both built
    once; returns the medians (``ours (s)``, ``FAISS flat (s)``), their
    ``time ratio`` (the target is <= 1.5) and the share of returned indices
    that agree (FAISS ranks float32 distances, so near-ties may differ).
    """
    if not _module_available("faiss"):
        raise ImportError("flat_comparison needs faiss")
    ours = make_method("brute force")
    flat = make_method("FAISS flat")
    ours.build(X)
    flat.build(X)
    to, tf = [], []
    for _ in range(max(1, int(repeats))):
        t = time.perf_counter()
        _, I = ours.knn(Q, k)
        to.append(time.perf_counter() - t)
        t = time.perf_counter()
        _, If = flat.knn(Q, k)
        tf.append(time.perf_counter() - t)
    return {"N": len(X), "queries": len(Q), "ours (s)": float(np.median(to)),
            "FAISS flat (s)": float(np.median(tf)), "time ratio": float(np.median(to) / np.median(tf)),
            "same indices": float((np.asarray(I) == np.asarray(If)).mean())}


def complexity_verdict(slope: float) -> str:
    """Read a log-log slope of distance evaluations against N.

    * ``slope <= LOG_SLOPE_MAX`` (0.2): **"O(log N)"**. A cost ``c log N`` has
      local slope ``1 / ln N`` (0.145 at N = 1,000, 0.087 at N = 100,000);
      ``a + c log N`` less still. A steeper slope over N >= 1,000 cannot come
      from a logarithm.
    * ``slope >= LINEAR_SLOPE_MIN`` (0.9): **"linear"**: the search computes a
      fixed share of all N distances, like brute force.
    * between: **"sublinear polynomial"** ``N^slope``: pruning works, but the
      cost grows as a power of N, not a logarithm.
    """
    if not np.isfinite(slope):
        return "undetermined"
    if slope <= LOG_SLOPE_MAX:
        return "O(log N)"
    if slope >= LINEAR_SLOPE_MIN:
        return "linear"
    return f"sublinear polynomial (N^{slope:.2f})"


# --------------------------------------------------------------------------
# Hamming range search (pybktree has nothing else)
# --------------------------------------------------------------------------


def hamming_range_comparison(X: np.ndarray, Q: np.ndarray, radius: int, *,
                             methods: Sequence[str] = ("brute force", "BK-tree", "VP-tree",
                                                       "FAISS flat", "PyPI pybktree")) -> pd.DataFrame:
    """Range queries on packed codes: ours against FAISS and PyPI ``pybktree`` (notebook 04).

    Every method answers ``all items within Hamming distance <= radius`` for
    each query of ``Q`` (FAISS's ``range_search`` keeps ``< r``, so it is asked
    for ``radius + 1``). Returns one row per method: ``build time (s)``,
    ``time (ms/query)``, ``distances per query`` (NaN for FAISS: it scans all
    N), ``results per query`` and ``same result as brute force``.
    """
    if X.dtype != np.uint8:
        raise TypeError("hamming_range_comparison needs packed uint8 codes")
    radius = _check_int("radius", radius, minimum=0)
    ref = cx.BruteForceIndex().build(X).range_query(Q, radius)
    ref_sets = [set(i.tolist()) for _, i in ref]
    rows = []
    for name in methods:
        if name == "FAISS flat" and not _module_available("faiss"):
            continue
        if name == "PyPI pybktree" and not _module_available("pybktree"):
            continue
        t0 = time.perf_counter()
        if name == "FAISS flat":
            import faiss

            fi = faiss.IndexBinaryFlat(8 * X.shape[1])
            fi.add(X)
            tb = time.perf_counter() - t0
            t0 = time.perf_counter()
            lims, _, ids = fi.range_search(np.ascontiguousarray(Q), radius + 1)
            tq = time.perf_counter() - t0
            got = [set(ids[lims[i]:lims[i + 1]].tolist()) for i in range(len(Q))]
            dist = float(len(X))
        elif name == "PyPI pybktree":
            import pybktree

            calls = [0]
            ints = cx._Hamming.to_ints(X)

            def hamming(a, b):
                calls[0] += 1
                return (a[0] ^ b[0]).bit_count()

            tree = pybktree.BKTree(hamming, [(c, i) for i, c in enumerate(ints)])
            tb = time.perf_counter() - t0
            calls[0] = 0
            qints = cx._Hamming.to_ints(Q)
            t0 = time.perf_counter()
            res = [tree.find((c, -1), radius) for c in qints]
            tq = time.perf_counter() - t0
            got = [{it[1] for _, it in r} for r in res]
            dist = calls[0] / max(1, len(Q))
        else:
            idx = make_method(name).factory(X).build(X)
            tb = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = idx.range_query(Q, radius)
            tq = time.perf_counter() - t0
            got = [set(i.tolist()) for _, i in res]
            dist = float(idx.last_stats.n_distances.mean())
        rows.append({"method": name, "N": len(X), "radius": radius, "build time (s)": tb,
                     "time (ms/query)": 1e3 * tq / max(1, len(Q)), "distances per query": dist,
                     "distance fraction": dist / len(X),
                     "results per query": float(np.mean([len(s) for s in ref_sets])),
                     "same result as brute force": got == ref_sets})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------
# paper 000 Table 2 / Table 4: whole retrieval pipelines
# --------------------------------------------------------------------------


def single_thread() -> None:
    """Run FAISS (OpenMP) and every BLAS on one thread (notebook 04, benchmark).

    Timing ratios then compare algorithms rather than thread pools, and
    FAISS's HNSW graph (built in parallel otherwise) is the same on every run.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    if _module_available("faiss"):
        import faiss

        faiss.omp_set_num_threads(1)


#: The pipelines of :func:`evaluate_pipelines`: name -> (feature source, index).
#: Feature sources: ``"autoencoder"`` (paper 000's pooling autoencoder, notebook
#: 02), ``"hash"`` (paper 000's hash layer on the autoencoder latents, notebook
#: 03), ``"backbone"`` (ImageNet CNN), ``"traditional"`` (colour + texture).
PIPELINES = {
    "autoencoder + brute force": ("autoencoder", "brute force"),
    "autoencoder + VP-tree": ("autoencoder", "VP-tree"),
    "autoencoder + M-tree": ("autoencoder", "M-tree"),
    "autoencoder + hash + Hamming brute force": ("hash", "brute force"),
    "autoencoder + hash + VP-tree (paper 000's system)": ("hash", "VP-tree"),
    "CNN backbone + brute force": ("backbone", "brute force"),
    "traditional colour/texture + brute force": ("traditional", "brute force"),
}


def prepare_pipelines(dataset: str, protocol: str, *, max_train: int, max_database: int,
                      max_queries: int, seed: int, ae_config, ae_train, ae_max_train: int,
                      ae_max_val: int, hash_bits: int, hash_epochs: int, backbone: str,
                      backbone_input: int, load_size: int = 32, progress: bool = True) -> dict:
    """Features of every pipeline source for one split (notebook 04).

    Reuses notebooks 02-03's code paths with their parameters, so the trained
    autoencoder comes from the cache: the split's query / database / train
    tables from :func:`cbirlib.pipelines.hashing_split`; the autoencoder
    trained by :func:`cbirlib.pipelines.train_on` on the dataset's retrieval
    protocol (:data:`cbirlib.pipelines.RETRIEVAL_PROTOCOLS`), its latents
    (cached here by the model's cache key and the images); paper 000's hash
    layer (:class:`cbirlib.hashing.DeepPairwiseHash`, kNN similarity, i.e.
    unsupervised) trained on the training latents; pooled ImageNet backbone
    features (:func:`cbirlib.pipelines.backbone_features`); hand-crafted colour
    and texture descriptors (:func:`cbirlib.descriptors.descriptor_features`).

    Returns
    -------
    dict
        ``tables`` (role -> DataFrame), ``labels`` (role -> array),
        ``features`` (source -> {"query", "database"}), ``query_images``
        (uint8 RGB at ``load_size``, for end-to-end timing), ``encoders``
        (source -> callable mapping a batch of query images to that source's
        features), ``ae_from_cache`` and ``dims`` (source -> dimension).
    """
    from . import backbones, descriptors, features, hashing, models, pipelines

    tabs = pipelines.hashing_split(dataset, protocol, max_train=max_train, max_database=max_database,
                                   max_queries=max_queries, seed=seed)
    labels = {role: t["label"].to_numpy() for role, t in tabs.items()}
    ae_data = pipelines.prepare_retrieval_data(dataset, size=ae_config.image_size, max_train=ae_max_train,
                                               max_val=ae_max_val, max_queries=0, seed=seed, progress=progress)
    ae = pipelines.train_on(ae_data, ae_config, train=ae_train, progress=progress)
    mode = pipelines.RETRIEVAL_PROTOCOLS[dataset]["mode"]

    def latents(role):
        imgs = features.load_images(dataset, tabs[role], size=ae_config.image_size, mode=mode, progress=progress)
        key = {"model": "autoencoder", "stage": "latent", "weights": ae.cache_key, "dataset": dataset,
               "images": features._table_key(tabs[role]), "size": ae_config.image_size, "mode": mode}
        return backbones.cached_features(key, lambda: models.encode(ae.model, imgs))

    ae_feats = {role: latents(role) for role in ("query", "database", "train")}
    hasher = hashing.DeepPairwiseHash(n_bits=hash_bits, seed=seed, epochs=hash_epochs, similarity="knn")
    hasher.fit(ae_feats["train"])
    bb = {role: pipelines.backbone_features(dataset, tabs[role], name=backbone, input_size=backbone_input,
                                            load_size=load_size, progress=progress)
          for role in ("query", "database")}
    trad = {role: descriptors.descriptor_features(dataset, tabs[role], size=load_size, progress=progress)
            for role in ("query", "database")}
    query_rgb = features.load_images(dataset, tabs["query"], size=load_size, mode="RGB", progress=progress)
    query_ae = features.load_images(dataset, tabs["query"], size=ae_config.image_size, mode=mode, progress=progress)
    bb_model = backbones.load_backbone(backbone, input_size=backbone_input, resize="squash")
    encoders = {
        "autoencoder": lambda i: models.encode(ae.model, query_ae[i]),
        "hash": lambda i: hasher.encode_packed(models.encode(ae.model, query_ae[i])),
        "backbone": lambda i: backbones.extract_features(bb_model, query_rgb[i], stage="penultimate",
                                                         progress=False),
        "traditional": lambda i: descriptors.describe(query_rgb[i]),
    }
    feats = {"autoencoder": {r: ae_feats[r] for r in ("query", "database")},
             "hash": {r: hasher.encode_packed(ae_feats[r]) for r in ("query", "database")},
             "backbone": bb, "traditional": trad}
    dims = {"autoencoder": ae_feats["query"].shape[1], "hash": hash_bits,
            "backbone": bb["query"].shape[1], "traditional": trad["query"].shape[1]}
    return {"dataset": dataset, "protocol": protocol, "tables": tabs, "labels": labels,
            "features": feats, "encoders": encoders, "ae_from_cache": ae.from_cache, "dims": dims,
            "hash_bits": hash_bits}


def evaluate_pipelines(data: Mapping, *, k: int, timing_queries: int,
                       pipelines: Mapping[str, tuple[str, str]] | None = None,
                       reference: str = "autoencoder + brute force") -> pd.DataFrame:
    """Paper 000's Table 2 metrics and timings for every pipeline (notebook 04).

    Retrieval scores come from exact rankings (the trees return exactly the
    brute-force neighbours, checked here on the top ``k`` of every query):
    float features through :func:`cbirlib.retrieval.evaluate_features`, codes
    through :func:`cbirlib.retrieval.evaluate_codes`. Columns:

    * ``mAP (%)``: whole ranking, all relevant images (codes: expected over
      tied Hamming distances);
    * ``Precision (%)``, ``Recall (%)``, ``F1-Score (%)``: at K = the number of
      relevant images (R-precision, where all three are equal);
    * ``Accuracy (%)``: top-1 retrieval accuracy (the nearest image has the
      query's class);
    * ``search latency (ms)`` (median, one query at a time, index only) and
      ``search latency p95 (ms)``; ``batch time (ms/query)``;
    * ``end-to-end latency (ms)``: query image -> features (-> code) -> index,
      one query at a time, median;
    * ``distances per query``; ``identical to brute force``;
    * ratios of the latencies to those of ``reference`` in the same run.
    """
    from . import retrieval

    pipelines = PIPELINES if pipelines is None else pipelines
    lab = data["labels"]
    rows, exact_cache, scores = [], {}, {}
    for name, (source, method) in pipelines.items():
        q, db = data["features"][source]["query"], data["features"][source]["database"]
        if source not in scores:
            if source == "hash":
                r = retrieval.evaluate_codes(q, db, lab["query"], lab["database"], n_bits=data["hash_bits"])
                scores[source] = (r["mAP"], r["R-precision"], r["P@1"])
            else:
                r = retrieval.evaluate_features(q, lab["query"], db, lab["database"], ks=(min(k, len(db)),))
                scores[source] = (r.map_all, r.r_precision, r.nn_purity)
            exact_cache[source] = cx.BruteForceIndex().build(db).knn(q, k)
        search = make_method(method)
        m = measure(search, db, q, k, n_latency=timing_queries, exact=exact_cache[source])
        encode = data["encoders"][source]
        e2e, _ = single_query_latency(lambda i: search.knn(np.asarray(encode(slice(i, i + 1))), k),
                                      range(len(q)), n=timing_queries)
        mAP, rprec, top1 = scores[source]
        rows.append({"pipeline": name, "features": source, "index": method, "dim": data["dims"][source],
                     "database": len(db), "queries": len(q),
                     "mAP (%)": 100 * mAP, "Precision (%)": 100 * rprec, "Recall (%)": 100 * rprec,
                     "F1-Score (%)": 100 * rprec, "Accuracy (%)": 100 * top1,
                     "search latency (ms)": m["latency median (ms)"],
                     "search latency p95 (ms)": m["latency p95 (ms)"],
                     "batch time (ms/query)": m["batch time (ms/query)"],
                     "end-to-end latency (ms)": e2e,
                     "distances per query": m["distances per query"],
                     "identical to brute force": m["identical to brute force"]})
    frame = pd.DataFrame(rows)
    ref = frame.set_index("pipeline").loc[reference]
    for c in ("search latency (ms)", "end-to-end latency (ms)"):
        frame[f"{c.split(' (')[0]} ratio to {reference}"] = frame[c] / ref[c]
    return frame


def precision_recall_points(data: Mapping, *, ks: Sequence[int]) -> pd.DataFrame:
    """Mean precision@K and recall@K of every feature source (notebook 04, Figs 5-6).

    Float features are ranked by Euclidean distance; hash codes by Hamming
    distance (computed as the squared Euclidean distance of the unpacked 0/1
    bits, which orders identically), ties in database order in both cases
    (:func:`cbirlib.retrieval.evaluate_features`). ``K`` above the database
    size is dropped. Returns ``source, K, precision, recall``.
    """
    from . import retrieval

    lab = data["labels"]
    rows = []
    for source, f in data["features"].items():
        q, db = f["query"], f["database"]
        if q.dtype == np.uint8:
            q = np.unpackbits(q, axis=1)[:, :data["hash_bits"]].astype(np.float32)
            db = np.unpackbits(db, axis=1)[:, :data["hash_bits"]].astype(np.float32)
        kk = sorted({int(x) for x in ks if int(x) <= len(db)})
        rep = retrieval.evaluate_features(q, lab["query"], db, lab["database"], ks=kk)
        rows.append(rep.at_k[["K", "precision", "recall"]].assign(source=source))
    return pd.concat(rows, ignore_index=True)[["source", "K", "precision", "recall"]]
