"""Exact nearest-neighbour search: brute force, VP-tree, M-tree and BK-tree.

Notebook 04 (index comparison, paper 000) builds every index in this module on
the same features and hash codes and compares build time, query time and the
number of distance computations per query (as a fraction of the database size,
against ``N`` and the dimension). Notebooks 02 and 03 use
:class:`BruteForceIndex` for brute-force retrieval: Euclidean search on
autoencoder features (papers 000 and 001) and Hamming search on packed hash
codes (paper 000, the survey's hashing tables).

==========  ==============================================================
notebook    what it uses
==========  ==============================================================
02          :class:`BruteForceIndex` (Euclidean top-``k`` on latent
            features), :func:`exact_distances`
03          :class:`BruteForceIndex` on packed codes (Hamming top-``k`` and
            radius search), :func:`exact_distances`
04          every index: :class:`BruteForceIndex`, :class:`VPTree`,
            :class:`MTree`, :class:`BKTree`; :class:`SearchStats` for the
            distance-computation plots
==========  ==============================================================

One interface
-------------
Every index is an :class:`Index`: ``index.build(X)`` then
``index.knn(Q, k) -> (distances, indices)`` and
``index.range_query(Q, radius) -> [(distances, indices), ...]``, for a batch of
queries (a 2-D array, one query per row). After every search
``index.last_stats`` is a :class:`SearchStats` holding the number of
point-to-point distance evaluations each query needed (``N`` for brute force).

The metric follows the data (``metric="auto"``): floating-point vectors are
compared with the Euclidean distance; ``uint8`` arrays are packed binary codes
(``numpy.packbits(bits, axis=1)``) compared with the Hamming distance. Bit
lengths that are not a multiple of 8: ``packbits`` pads the last byte with zero
bits, which add nothing to a Hamming distance as long as database and queries
are padded alike; pass ``build(X, n_bits=...)`` to have the padding bits checked
(a non-zero padding bit raises ``ValueError``). Unpacked 0/1 or boolean arrays are
refused with a hint to pack them. Distances are returned as ``float64``
(Euclidean) or ``int64`` (Hamming); indices as ``intp``.

Exactness contract
------------------
All indexes return *exactly* the same neighbours, in the same order, with the
same distances, bit for bit:

* results are sorted by ``(distance, database index)``: ties are broken by
  database index, as :func:`cbirlib.metrics.rank_by_distance` does with
  ``ties="stable"`` (so ``rank_by_distance(exact_distances(Q, X), k=k)`` equals
  the ``indices`` of every index's ``knn(Q, k)``, tested);
* ``k > N`` returns all ``N`` items; a range query returns every item with
  ``distance <= radius``;
* every distance that is reported, or compared with another reported distance,
  is computed by one *canonical* function: for Euclidean data
  ``sqrt(sum((x - q) ** 2))`` in ``float64`` (``float32`` data are cast to
  ``float64``, which is exact), the sum taken by numpy along the last axis of a
  C-contiguous array. Its value for a pair does not depend on which other rows
  are in the same call (numpy's pairwise summation runs row by row; a test
  checks this on the installed numpy, so a numpy that changed it would be
  caught). Queries are cast to ``float64`` first, so a ``float32`` query and
  its ``float64`` copy give the same results. Hamming distances are integers
  and exact.

Brute force uses BLAS to *filter* and the canonical function to *decide*: in
``float32`` (by default) it computes ``||x - c||^2 - 2 (q - c).(x - c)`` for all
items (``c`` the database mean, which keeps the numbers small), and a rigorous
worst-case bound on the error of that expansion,
``W = K (||q - c|| + max ||x - c||)^2`` with
``K = (4 d + 44) u_f + (4 d + 40) u_64`` (``u_f`` the unit roundoff of the
filter precision), tells which items can still be among the ``k`` nearest (or
within the radius). ``K`` covers the dot-product error ``gamma_(d+1)`` of any
summation order (BLAS blocking, FMA), the rounding of the centred vectors to
the filter precision and the rounding of the canonical distance, with a factor
of about 2 to spare. Only the surviving items are re-scored with the canonical
function and ranked: the expanded form alone can reorder near-ties (and does,
tested with points 1e-12 apart); the recomputation cannot. Queries so far away
that the filter could overflow are scored exactly against every item.

The trees compute only canonical distances. Their pruning tests use the
triangle inequality on computed values, so they keep a safety margin
``eps = (8 d + 64) u (||q - c|| + 2 max ||x - c||)`` (about ``1e-13`` relative)
that covers the rounding of the distances involved: a subtree is skipped only
if its lower bound exceeds the current ``k``-th distance by more than ``eps``.
With integer (Hamming) distances there is no margin; instead a subtree whose
lower bound *equals* the current ``k``-th distance is still searched if it holds
a database index smaller than the current ``k``-th index (each node knows the
smallest index below it), so ties resolve exactly as in brute force.

The indexes
-----------
:class:`BruteForceIndex`
    Vectorised scan: BLAS (``sgemm``) for Euclidean data, ``numpy.bitwise_count``
    on 64-bit words for codes; the top ``k`` per query from a two-level
    selection (minimum of groups of items, then only the groups whose minimum
    can matter), no full sort. 1 distance evaluation per item.
:class:`VPTree`
    Vantage-point tree (Yianilos 1993; Uhlmann's metric tree) with the split of
    paper 000 eq. (9): with vantage point ``v`` and threshold radius ``mu``,
    ``d(x, v) < mu`` goes to the *inner* subtree and ``d(x, v) >= mu`` to the
    *outer* subtree. ``mu`` is the median of the distances to ``v`` (see
    :class:`VPTree` for ties). Vantage points are chosen by a named policy:
    ``"random"`` or ``"max_spread"`` (Yianilos' sampling heuristic: the
    candidate whose distances to a sample have the largest spread about their
    median). Leaves hold up to ``leaf_size`` points, scored with one vectorised
    call; every child stores the exact range ``[lo, hi]`` of distances of its
    points to the parent's vantage point, and leaf points also keep their own
    distance to it, so single points can be skipped before any computation.
:class:`MTree`
    M-tree (Ciaccia, Patella & Zezula, VLDB 1997) built by *incremental
    insertion* in database order, ``ChooseSubtree`` as in the paper, node
    capacity ``node_capacity``, split policy **mM_RAD promotion with
    generalized-hyperplane partition** (ties alternate between the two new
    nodes, so a node of identical points splits in halves). Search uses the
    covering radii (re-computed exactly after construction: the maximum
    canonical distance from each routing object to its subtree) and
    parent-distance pruning, vectorised within each node.
:class:`BKTree`
    Burkhard-Keller tree for integer metrics (Hamming on packed codes):
    children keyed by integer distance, identical codes share one node (a
    bucket of database indices), search prunes a child keyed ``t`` unless
    ``|d(q, node) - t| <= r``. Euclidean data are refused unless ``bin_width``
    is given: distances are then quantised into integer bins
    ``floor(d / bin_width)`` for the keys, and the search uses the exact
    distance range stored per child, so it stays exact.

Distance counting
-----------------
``last_stats.n_distances[i]`` counts the query-to-database-item distance
evaluations of query ``i``: vantage points, routing objects, BK-tree nodes and
leaf points that survive pruning. Each database item is evaluated at most once
per query (an M-tree routing object is a database item that also sits in a
leaf below it; its distance is reused, not recomputed), so
``1 <= n_distances <= N``. A group of identical vectors stored together (a
BK-tree node, a VP-tree leaf of duplicates) is evaluated once for all its
members. Searches are best-first; among subtrees with equal lower bounds the
one holding the smallest database index goes first, so that ties at the
``k``-th distance (duplicates, Hamming) settle early and the rest is pruned.
Distances computed while building are in ``build_distances_``.

Paper 000 claims
----------------
Paper 000 states that VP-tree search takes ``O(log N)`` time (its eq. 2) and
reports 12.3 ms per query. An exact VP-tree visits ``O(log N)`` nodes only when
the intrinsic dimension of the data is low; on high-dimensional features the
pruning fails and almost all ``N`` distances are computed, one node at a time,
which is slower than one vectorised scan. Notebook 04 measures the fraction of
``N`` evaluated against ``N`` and the dimension, rather than assuming either.
The paper's complexity statements are not consistent (its Section E gives
``O(N log N)`` both for the Euclidean scan and for VP-tree search, and
``O(log N)`` two sentences later; eqs. 3-4 give M-tree and BK-tree costs in
terms of the dimension ``d`` and call them construction times), and the
12.3 ms comes without ``N``, hardware or batch size, so only measured ratios
(tree vs brute force on the same machine) are comparable.

References
----------
.. [1] P. N. Yianilos, "Data structures and algorithms for nearest neighbor
   search in general metric spaces", SODA 1993.
.. [2] P. Ciaccia, M. Patella, P. Zezula, "M-tree: an efficient access method
   for similarity search in metric spaces", VLDB 1997.
.. [3] W. A. Burkhard, R. M. Keller, "Some approaches to best-match file
   searching", CACM 16(4), 1973.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from bisect import bisect_left, bisect_right
from heapq import heappop, heappush, heapreplace

import numpy as np

from ._checks import check_choice as _check_choice
from ._checks import check_int as _check_int

__all__ = [
    "SearchStats",
    "Index",
    "BruteForceIndex",
    "VPTree",
    "MTree",
    "BKTree",
    "exact_distances",
]

_METRICS = ("auto", "euclidean", "hamming")
_VP_POLICIES = ("max_spread", "random")
_FILTER_DTYPES = ("float32", "float64")
_U64 = float(np.finfo(np.float64).eps) / 2  # unit roundoff of float64
_U32 = float(np.finfo(np.float32).eps) / 2
_NO_INDEX = np.iinfo(np.int64).max  # "no k-th item yet" in tie comparisons
_F64 = np.dtype(np.float64)
_mul, _add_reduce, _sqrt = np.multiply, np.add.reduce, np.sqrt
# Elements of a (queries x database) block in brute force; 2**24 float32 = 64 MiB.
_BLOCK_ELEMS = 1 << 24
# Elements (pairs x dimension) re-scored per chunk by the canonical function.
_EXACT_CHUNK = 1 << 21
# From this dimension on, brute force re-scores its candidates query by query.
_PER_QUERY_DIM = 256


# --------------------------------------------------------------------------
# results and statistics
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchStats:
    """Distance evaluations of the last search of an index.

    Notebook 04 plots ``fraction`` against ``N`` and the dimension.

    Attributes
    ----------
    n_distances : ndarray of int64, shape (n_queries,)
        Query-to-database-item distance evaluations per query; ``N`` for
        brute force, between 1 and ``N`` for the trees.
    n_database : int
        ``N``, the number of database items.
    operation : str
        ``"knn"`` or ``"range"``.
    n_nodes_visited : ndarray of int64, shape (n_queries,)
        Tree nodes expanded per query (0 for brute force).
    """

    n_distances: np.ndarray
    n_database: int
    operation: str
    n_nodes_visited: np.ndarray

    @property
    def fraction(self) -> np.ndarray:
        """``n_distances / n_database`` per query."""
        return self.n_distances / self.n_database

    @property
    def mean_fraction(self) -> float:
        """Mean of :attr:`fraction` over the queries (``nan`` for none)."""
        return float(self.fraction.mean()) if self.n_distances.size else float("nan")


# --------------------------------------------------------------------------
# private helpers: validation
# --------------------------------------------------------------------------


def _check_k(k, n):
    """Return ``min(k, n)``; ``k`` must be an integer >= 1."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be a positive integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return min(int(k), n)


def _check_radius(radius):
    if isinstance(radius, (bool, np.bool_)) or not isinstance(radius, (int, float, np.integer, np.floating)):
        raise TypeError(f"radius must be a real number, got {radius!r}")
    radius = float(radius)
    if not math.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be a finite number >= 0, got {radius}")
    return radius


def _as_2d(name, X):
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (one vector per row), got shape {X.shape}; "
            f"for a single vector pass {name}[np.newaxis, :]"
        )
    if X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column, got shape {X.shape}")
    return X


def _resolve_metric(metric, X):
    _check_choice("metric", metric, _METRICS)
    if X.dtype == bool:
        raise TypeError(
            "boolean arrays are ambiguous: pack binary codes with np.packbits(codes, axis=1) "
            "(Hamming), or cast features to float (Euclidean)"
        )
    if metric == "auto":
        if X.dtype == np.uint8:
            return "hamming"
        if np.issubdtype(X.dtype, np.floating):
            return "euclidean"
        raise TypeError(
            f"cannot infer the metric from dtype {X.dtype}: pass float vectors (Euclidean), "
            "uint8 codes from np.packbits (Hamming), or metric='euclidean' to treat integers as features"
        )
    if metric == "hamming" and X.dtype != np.uint8:
        raise TypeError(
            f"metric='hamming' needs packed uint8 codes (np.packbits(bits, axis=1)), got dtype {X.dtype}"
        )
    if metric == "euclidean" and not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise TypeError(f"metric='euclidean' needs real numbers, got dtype {X.dtype}")
    return metric


# --------------------------------------------------------------------------
# private helpers: metric spaces (stored data + the canonical distance)
# --------------------------------------------------------------------------


class _Euclidean:
    """Float vectors; canonical distance ``sqrt(sum((x - q)**2))`` in float64."""

    name = "euclidean"
    integer = False
    dtype = np.float64

    def __init__(self, X):
        if X.dtype == np.float32 or X.dtype == np.float64:
            data = np.ascontiguousarray(X)
        elif X.dtype == np.float16 or (np.issubdtype(X.dtype, np.integer) and X.dtype.itemsize <= 2):
            data = np.ascontiguousarray(X, dtype=np.float32)  # exact
        else:
            data = np.ascontiguousarray(X, dtype=np.float64)
        if not np.isfinite(data).all():
            raise ValueError("X contains NaN or infinite values")
        self.data = data
        self.dim = data.shape[1]
        self.center = data.mean(axis=0, dtype=np.float64)
        cn = _row_norms(data, self.center)
        self.radius = float(cn.max()) * (1 + 1e-12)  # max ||x - c||
        self.rel = (8 * self.dim + 64) * _U64

    def prep_queries(self, Q):
        Q = _as_2d("Q", Q)
        if Q.shape[1] != self.dim:
            raise ValueError(f"Q has {Q.shape[1]} columns, the index has dimension {self.dim}")
        if Q.dtype == bool or not (np.issubdtype(Q.dtype, np.floating) or np.issubdtype(Q.dtype, np.integer)):
            raise TypeError(f"Euclidean queries must be real numbers, got dtype {Q.dtype}")
        Q = np.ascontiguousarray(Q, dtype=np.float64)
        if not np.isfinite(Q).all():
            raise ValueError("Q contains NaN or infinite values")
        return Q

    def eps(self, Q):
        """Per-query absolute margin for pruning tests (see module docstring)."""
        return self.rel * (_row_norms(Q, self.center) + 2 * self.radius) + 1e-300

    @staticmethod
    def rows(A, q):
        """Canonical distances from every row of ``A`` to ``q``."""
        if q.dtype != _F64:
            q = q.astype(_F64)  # float32 - float64 is computed in float64: exact cast
        diff = A - q
        _mul(diff, diff, out=diff)
        s = _add_reduce(diff, 1)  # pairwise summation along each row
        return _sqrt(s, out=s)

    @staticmethod
    def pairs(A, B):
        """Canonical distances between ``A[i]`` and ``B[i]`` (same row count)."""
        diff = np.subtract(A, B, dtype=_F64)
        _mul(diff, diff, out=diff)
        s = _add_reduce(diff, 1)
        return _sqrt(s, out=s)

    @staticmethod
    def one(a, q):
        """``rows(a[np.newaxis], q)[0]`` as a Python float (same bits, tested)."""
        if q.dtype != _F64:
            q = q.astype(_F64)
        diff = a - q
        _mul(diff, diff, out=diff)
        return math.sqrt(_add_reduce(diff))

    def to_ints(self, rows):  # pragma: no cover - Hamming only
        raise NotImplementedError


class _Hamming:
    """Packed binary codes stored as 64-bit words; distance = popcount(x ^ q)."""

    name = "hamming"
    integer = True
    dtype = np.int64

    def __init__(self, X, n_bits):
        n, nbytes = X.shape
        if n_bits is None:
            n_bits = 8 * nbytes
        else:
            n_bits = _check_int("n_bits", n_bits, minimum=1)
            if (n_bits + 7) // 8 != nbytes:
                raise ValueError(
                    f"n_bits={n_bits} needs {(n_bits + 7) // 8} packed bytes per code, X has {nbytes}"
                )
        self.n_bits = n_bits
        self.n_bytes = nbytes
        self.dim = n_bits
        self.words = (nbytes + 7) // 8
        self._pad_mask = np.uint8((1 << (8 * nbytes - n_bits)) - 1)  # trailing pad bits of the last byte
        self._check_padding("X", X)
        self.data = self._to_words(X)
        self.rel = 0.0

    def _check_padding(self, name, X):
        if self._pad_mask and X.shape[0] and (X[:, -1] & self._pad_mask).any():
            raise ValueError(
                f"{name} has non-zero padding bits beyond n_bits={self.n_bits}: the codes were not "
                "packed with np.packbits from arrays of that many bits"
            )

    def _to_words(self, X):
        buf = np.zeros((X.shape[0], 8 * self.words), dtype=np.uint8)
        buf[:, : self.n_bytes] = X
        return np.ascontiguousarray(buf.view("<u8"))

    def prep_queries(self, Q):
        Q = _as_2d("Q", Q)
        if Q.dtype != np.uint8:
            raise TypeError(f"Hamming queries must be packed uint8 codes like the database, got dtype {Q.dtype}")
        if Q.shape[1] != self.n_bytes:
            raise ValueError(f"Q has {Q.shape[1]} bytes per code, the index has {self.n_bytes}")
        self._check_padding("Q", Q)
        return self._to_words(Q)

    def eps(self, Q):
        return np.zeros(Q.shape[0])

    @staticmethod
    def rows(A, q):
        c = np.bitwise_count(A ^ q)
        if c.shape[1] == 1:
            return c[:, 0].astype(np.int64)
        return c.sum(axis=1, dtype=np.int64)

    pairs = rows  # A ^ B broadcasts row by row as well

    @staticmethod
    def one(a, q):
        return int(np.bitwise_count(a ^ q).sum())

    @staticmethod
    def to_ints(rows):
        """Codes as Python ints, for ``int.bit_count`` on single pairs."""
        return [int.from_bytes(r.tobytes(), "little") for r in rows]


def _row_norms(A, c):
    out = np.empty(A.shape[0])
    step = max(1, _EXACT_CHUNK // max(1, A.shape[1]))
    for s in range(0, A.shape[0], step):
        diff = A[s : s + step] - c
        np.multiply(diff, diff, out=diff)
        out[s : s + step] = np.sqrt(diff.sum(axis=1))
    return out


def _make_space(X, metric, n_bits):
    X = _as_2d("X", X)
    if X.shape[0] == 0:
        raise ValueError("X must hold at least one vector")
    metric = _resolve_metric(metric, X)
    if metric == "hamming":
        return _Hamming(X, n_bits)
    if n_bits is not None:
        raise ValueError("n_bits is for packed binary codes (metric='hamming')")
    return _Euclidean(X)


def exact_distances(Q, X, *, metric="auto", n_bits=None):
    """All query-to-database distances, computed by the canonical function.

    Used by notebooks 02-04 as the reference that every index must reproduce;
    ``rank_by_distance(exact_distances(Q, X), k=k)`` (from
    :mod:`cbirlib.metrics`) equals the indices returned by ``knn(Q, k)`` of
    every index in this module.

    Parameters
    ----------
    Q : (n_queries, d) array_like
        Queries: float vectors, or packed ``uint8`` codes.
    X : (n_database, d) array_like
        Database, same kind as ``Q``.
    metric : {"auto", "euclidean", "hamming"}, keyword-only
        ``"auto"``: ``uint8`` -> Hamming, floating point -> Euclidean.
    n_bits : int, optional, keyword-only
        Code length in bits for packed codes; padding bits are checked.

    Returns
    -------
    distances : (n_queries, n_database) ndarray
        ``float64`` Euclidean or ``int64`` Hamming distances.

    Notes
    -----
    A reference, not a fast path: it costs ``n_queries * N * d`` float64
    operations with no BLAS. For fast exact search use
    :class:`BruteForceIndex`.
    """
    space = _make_space(X, metric, n_bits)
    Qp = space.prep_queries(Q)
    out = np.empty((Qp.shape[0], space.data.shape[0]), dtype=space.dtype)
    for i in range(Qp.shape[0]):
        out[i] = space.rows(space.data, Qp[i])
    return out


# --------------------------------------------------------------------------
# the interface
# --------------------------------------------------------------------------


class Index(abc.ABC):
    """Common interface of the exact nearest-neighbour indexes.

    Used by notebook 04 (index comparison) and notebooks 02/03 (through
    :class:`BruteForceIndex`). See the module docstring for the exactness
    contract shared by all subclasses.

    Parameters
    ----------
    metric : {"auto", "euclidean", "hamming"}, keyword-only
        ``"auto"`` infers it from the data at :meth:`build`: ``uint8`` ->
        packed codes, Hamming; floating point -> Euclidean.

    Attributes
    ----------
    last_stats : SearchStats or None
        Distance evaluations of the most recent :meth:`knn` or
        :meth:`range_query`.
    build_distances_ : int
        Distance evaluations made by :meth:`build`.
    """

    def __init__(self, *, metric="auto"):
        _check_choice("metric", metric, _METRICS)
        self._metric_option = metric
        self._space = None
        self.last_stats = None
        self.build_distances_ = 0

    # -- properties ---------------------------------------------------------

    @property
    def is_built(self) -> bool:
        """Whether :meth:`build` has been called."""
        return self._space is not None

    @property
    def metric(self) -> str:
        """``"euclidean"`` or ``"hamming"`` (after :meth:`build`)."""
        return self._require().name

    @property
    def n_database(self) -> int:
        """Number of indexed items ``N``."""
        return int(self._require().data.shape[0])

    @property
    def dim(self) -> int:
        """Vector dimension, or code length in bits."""
        return int(self._require().dim)

    @property
    def distance_dtype(self):
        """``float64`` (Euclidean) or ``int64`` (Hamming)."""
        return np.dtype(self._require().dtype)

    def _require(self):
        if self._space is None:
            raise RuntimeError(f"{type(self).__name__} is not built: call build(X) first")
        return self._space

    def __repr__(self):
        state = f"N={self.n_database}, metric={self.metric!r}" if self.is_built else "not built"
        return f"{type(self).__name__}({state})"

    # -- public API ---------------------------------------------------------

    def build(self, X, *, n_bits=None):
        """Index the rows of ``X``.

        Parameters
        ----------
        X : (N, d) array_like
            Float vectors (Euclidean; ``float32`` and ``float64`` are kept,
            ``float16`` and small integers become ``float32``) or packed
            ``uint8`` binary codes (Hamming). NaN and infinity are refused.
        n_bits : int, optional, keyword-only
            Code length of packed codes when it is not ``8 * X.shape[1]``;
            the padding bits of the last byte must then be zero, in the
            database and in every query.

        Returns
        -------
        self
        """
        self._space = _make_space(X, self._metric_option, n_bits)
        self.last_stats = None
        self.build_distances_ = 0
        try:
            self._build()
        except BaseException:
            self._space = None  # a failed build leaves the index unbuilt
            raise
        return self

    def knn(self, Q, k):
        """Exact ``k`` nearest neighbours of each query.

        Parameters
        ----------
        Q : (n_queries, d) array_like
            Queries of the same kind as the database (float vectors of any
            float dtype for Euclidean indexes; packed ``uint8`` codes for
            Hamming ones).
        k : int
            Neighbours per query, >= 1; ``k > N`` returns all ``N``.

        Returns
        -------
        distances : (n_queries, min(k, N)) ndarray of float64 or int64
        indices : (n_queries, min(k, N)) ndarray of intp
            Sorted by ``(distance, database index)``.
        """
        space = self._require()
        kk = _check_k(k, self.n_database)
        Qp = space.prep_queries(Q)
        D, I, counts, visits = self._knn(Qp, kk)
        self.last_stats = SearchStats(counts, self.n_database, "knn", visits)
        return D, I

    def range_query(self, Q, radius):
        """All database items within ``radius`` of each query.

        Parameters
        ----------
        Q : (n_queries, d) array_like
            Queries, as for :meth:`knn`.
        radius : float
            Items with ``distance <= radius`` are returned; finite, >= 0.

        Returns
        -------
        results : list of (distances, indices)
            One pair of 1-D arrays per query, sorted by ``(distance, index)``;
            empty arrays (of the right dtypes) when nothing is within range.
        """
        space = self._require()
        r = _check_radius(radius)
        Qp = space.prep_queries(Q)
        out, counts, visits = self._range(Qp, r)
        self.last_stats = SearchStats(counts, self.n_database, "range", visits)
        return out

    # -- to implement -------------------------------------------------------

    @abc.abstractmethod
    def _build(self):
        """Build from ``self._space``."""

    @abc.abstractmethod
    def _knn(self, Qp, k):
        """Return ``(D, I, n_distances, n_nodes_visited)``."""

    @abc.abstractmethod
    def _range(self, Qp, radius):
        """Return ``(results, n_distances, n_nodes_visited)``."""


def _empty_result(space):
    return np.empty(0, dtype=space.dtype), np.empty(0, dtype=np.intp)


def _split_sorted(rows, dist, cols, n_rows, space):
    """Per-row ``(distances, indices)`` sorted by (distance, index)."""
    order = np.lexsort((cols, dist, rows))
    rows, dist, cols = rows[order], dist[order], cols[order]
    bounds = np.searchsorted(rows, np.arange(n_rows + 1))
    dist = dist.astype(space.dtype, copy=False)
    cols = cols.astype(np.intp, copy=False)
    return [(dist[bounds[i] : bounds[i + 1]], cols[bounds[i] : bounds[i + 1]]) for i in range(n_rows)]


def _top_k_sorted(rows, dist, cols, n_rows, k, space):
    """First ``k`` per row by (distance, index); every row must have >= k candidates."""
    order = np.lexsort((cols, dist, rows))
    starts = np.searchsorted(rows[order], np.arange(n_rows))
    take = order[(starts[:, None] + np.arange(k)).ravel()]
    D = dist[take].reshape(n_rows, k).astype(space.dtype, copy=False)
    I = cols[take].reshape(n_rows, k).astype(np.intp)
    return D, I


# --------------------------------------------------------------------------
# brute force
# --------------------------------------------------------------------------


class BruteForceIndex(Index):
    """Vectorised exhaustive search (the reference every tree must match).

    Used by notebooks 02 (Euclidean retrieval on autoencoder features), 03
    (Hamming ranking and radius search on packed hash codes) and 04 (the
    baseline of the index comparison, ``n_distances == N``).

    Parameters
    ----------
    metric : {"auto", "euclidean", "hamming"}, keyword-only
        See :class:`Index`.
    filter_dtype : {"float32", "float64"}, keyword-only
        Precision of the BLAS filtering pass for Euclidean data. ``float32``
        (default, as FAISS ``IndexFlatL2``) is about twice as fast; results
        are the same either way, because the candidates that survive the
        filter's error bound are re-scored with the canonical ``float64``
        distance.
    block_elems : int, keyword-only
        Size (queries x database) of the distance block held in memory.

    Notes
    -----
    Euclidean: per block of queries, one matrix product gives
    ``a = ||x - c||^2 - 2 (q - c).(x - c)`` (``||q - c||^2`` omitted: it is
    constant per query). The database is split into ``g`` interleaved groups
    of items; the ``k``-th smallest group minimum ``t`` is an upper bound on
    the ``k``-th smallest ``a`` (``k`` distinct groups each hold an item at or
    below it). Items with ``a <= t + 2 W`` (``W`` the worst-case error bound
    of ``a``, see the module docstring) are re-scored canonically and ranked
    by ``(distance, index)``; only groups whose minimum passes are looked at.
    Hamming: the same selection on exact integer popcounts, no margin.
    """

    def __init__(self, *, metric="auto", filter_dtype="float32", block_elems=_BLOCK_ELEMS):
        super().__init__(metric=metric)
        _check_choice("filter_dtype", filter_dtype, _FILTER_DTYPES)
        self.filter_dtype = filter_dtype
        self.block_elems = _check_int("block_elems", block_elems, minimum=1)

    def _build(self):
        sp = self._space
        n = sp.data.shape[0]
        self._n = n
        self._np = -(-n // 32) * 32  # padded width: every group size 1..32 divides it
        if sp.integer:
            self._word_cols = [np.ascontiguousarray(sp.data[:, w]) for w in range(sp.words)]
            # padding columns get the dtype's maximum, which exceeds every distance
            self._acc = np.uint8 if sp.n_bits < 255 else (np.uint16 if sp.n_bits < 65535 else np.uint32)
            return
        fdt = np.dtype(self.filter_dtype)
        if fdt == np.float32 and sp.radius > 1e15:  # float32 would overflow in ||x||^2
            fdt = np.dtype(np.float64)
        self._fdt = fdt
        # the filter is used while (||q - c|| + R)^2 stays far from overflow
        self._filter_max_norm = math.sqrt(float(np.finfo(fdt).max)) / 64
        if sp.radius >= self._filter_max_norm:  # pragma: no cover - absurd magnitudes
            self._filter_max_norm = -1.0
        u = _U32 if fdt == np.float32 else _U64
        d = sp.dim
        # error-bound factor K of a (the factor 2 of "2 W" is applied at use)
        self._K = (4 * (d + 1) + 40) * u + (4 * d + 40) * _U64
        xa = np.zeros((self._np, d + 1), dtype=fdt)
        xa[n:, d] = np.finfo(fdt).max / 4  # padding rows: a is huge, never selected
        step = max(1, _EXACT_CHUNK // (d + 1))
        for s in range(0, n, step):
            e = min(s + step, n)
            cf = (sp.data[s:e] - sp.center).astype(fdt)
            c64 = cf.astype(np.float64)
            xa[s:e, :d] = cf
            xa[s:e, :d] *= -2  # exact (power of two)
            xa[s:e, d] = np.einsum("ij,ij->i", c64, c64)
        self._xaug_t = xa.T  # rows of xa: [-2 (x - c), ||x - c||^2]; one product gives a

    # -- blocks of filter values ------------------------------------------

    def _groups(self, k):
        """Group size ``bs`` (power of two <= 32) leaving >= 16 k groups."""
        bs = 1
        while bs < 32 and self._np // (2 * bs) >= 16 * k:
            bs *= 2
        return bs, self._np // bs

    def _block_rows(self):
        return max(1, min(4096, self.block_elems // self._np))

    def _euclid_block(self, Qc):
        """``a`` for a block of centred queries (padded columns are huge)."""
        d = self._space.dim
        qa = np.ones((Qc.shape[0], d + 1), dtype=self._fdt)
        qa[:, :d] = Qc
        return qa @ self._xaug_t

    def _hamming_block(self, Qw):
        """Popcount distances of a block of queries, in cache-sized tiles."""
        n = self._n
        m = Qw.shape[0]
        D = np.empty((m, self._np), dtype=self._acc)
        D[:, n:] = np.iinfo(self._acc).max
        T = max(1, (1 << 16) // n)
        tmp = np.empty((min(T, m), n), dtype=np.uint64)
        cnt = np.empty((min(T, m), n), dtype=np.uint8) if len(self._word_cols) > 1 else None
        for s in range(0, m, T):
            e = min(s + T, m)
            t = tmp[: e - s]
            for w, col in enumerate(self._word_cols):
                np.bitwise_xor(Qw[s:e, w : w + 1], col[None, :], out=t)
                if w == 0:
                    if self._acc == np.uint8:
                        np.bitwise_count(t, out=D[s:e, :n])
                    else:
                        D[s:e, :n] = np.bitwise_count(t)
                else:
                    c = cnt[: e - s]
                    np.bitwise_count(t, out=c)
                    D[s:e, :n] += c
        return D

    @staticmethod
    def _group_min(G, bs, nb):
        if bs == 1:
            return G
        return np.minimum.reduce(G.reshape(G.shape[0], bs, nb), axis=1)

    @staticmethod
    def _candidates(G, gmin, bs, nb, thresh, n):
        """(row, col, value) of entries with ``G[row, col] <= thresh[row]``.

        Column ``col = g + nb * j`` (j < bs) is in group ``g``; only groups
        whose minimum is within the threshold are inspected.
        """
        gr, gg = np.nonzero(gmin <= thresh[:, None])
        if bs == 1:
            r, c, v = gr, gg, G[gr, gg]
        else:
            cols = gg[:, None] + nb * np.arange(bs)
            vals = G[gr[:, None], cols]
            a, j = np.nonzero(vals <= thresh[gr][:, None])
            r, c, v = gr[a], cols[a, j], vals[a, j]
        if c.size and c.max() >= n:  # padding columns (only for absurd thresholds)
            keep = c < n
            r, c, v = r[keep], c[keep], v[keep]
        return r, c, v

    def _exact(self, qrows, cols, Qp):
        """Canonical distances for candidate pairs (chunked).

        In high dimension (``d >= _PER_QUERY_DIM``) with few candidates per
        query, gathering a ``float64`` copy of the query for every pair costs
        more memory traffic than the arithmetic: candidates are then scored
        query by query against the query row itself (``rows``, the same bits
        as ``pairs``, tested).
        """
        sp = self._space
        out = np.empty(qrows.size, dtype=np.float64)
        if sp.dim >= _PER_QUERY_DIM and qrows.size:
            order = np.argsort(qrows, kind="stable")
            sq = qrows[order]
            bounds = np.flatnonzero(np.diff(sq)) + 1
            starts = np.concatenate(([0], bounds))
            ends = np.concatenate((bounds, [sq.size]))
            for a, b in zip(starts.tolist(), ends.tolist()):
                sel = order[a:b]
                out[sel] = sp.rows(sp.data[cols[sel]], Qp[sq[a]])
            return out
        step = max(1, _EXACT_CHUNK // sp.dim)
        for s in range(0, qrows.size, step):
            out[s : s + step] = sp.pairs(sp.data[cols[s : s + step]], Qp[qrows[s : s + step]])
        return out

    def _centred(self, Qb):
        c = Qb - self._space.center
        qn = np.sqrt(np.einsum("ij,ij->i", c, c))
        return c.astype(self._fdt), qn

    # -- searches -----------------------------------------------------------

    def _knn(self, Qp, k):
        sp = self._space
        nq, n = Qp.shape[0], self._n
        bs, nb = self._groups(k)
        D = np.empty((nq, k), dtype=sp.dtype)
        I = np.empty((nq, k), dtype=np.intp)
        step = self._block_rows()
        for s in range(0, nq, step):
            Qb = Qp[s : s + step]
            m = Qb.shape[0]
            if sp.integer:
                G = self._hamming_block(Qb)
                gmin = self._group_min(G, bs, nb)
                t = np.partition(gmin, k - 1, axis=1)[:, k - 1].astype(np.int64)
                r, c, v = self._candidates(G, gmin, bs, nb, t, n)
                D[s : s + m], I[s : s + m] = _top_k_sorted(r, v.astype(np.int64), c, m, k, sp)
                continue
            Qc, qn = self._centred(Qb)
            if qn.max() >= self._filter_max_norm:  # the filter could overflow: score everything
                r, c = np.divmod(np.arange(m * n), n)
                D[s : s + m], I[s : s + m] = _top_k_sorted(r, self._exact(r, c, Qb), c, m, k, sp)
                continue
            G = self._euclid_block(Qc)
            gmin = self._group_min(G, bs, nb)
            t = np.partition(gmin, k - 1, axis=1)[:, k - 1].astype(np.float64)
            W = self._K * (qn + sp.radius) ** 2
            thresh = t + 2 * W + np.abs(t) * 4 * _U64
            r, c, _ = self._candidates(G, gmin, bs, nb, thresh, n)
            exact = self._exact(r, c, Qb)
            D[s : s + m], I[s : s + m] = _top_k_sorted(r, exact, c, m, k, sp)
        counts = np.full(nq, n, dtype=np.int64)
        return D, I, counts, np.zeros(nq, dtype=np.int64)

    def _range(self, Qp, radius):
        sp = self._space
        nq, n = Qp.shape[0], self._n
        bs, nb = self._groups(1)
        out = []
        step = self._block_rows()
        for s in range(0, nq, step):
            Qb = Qp[s : s + step]
            m = Qb.shape[0]
            if sp.integer:
                G = self._hamming_block(Qb)
                lim = np.full(m, min(math.floor(radius), sp.n_bits), dtype=np.int64)
                r, c, v = self._candidates(G, self._group_min(G, bs, nb), bs, nb, lim, n)
                out.extend(_split_sorted(r, v.astype(np.int64), c, m, sp))
                continue
            Qc, qn = self._centred(Qb)
            if qn.max() >= self._filter_max_norm:  # the filter could overflow: score everything
                r, c = np.divmod(np.arange(m * n), n)
                exact = self._exact(r, c, Qb)
                keep = exact <= radius
                out.extend(_split_sorted(r[keep], exact[keep], c[keep], m, sp))
                continue
            G = self._euclid_block(Qc)
            W = self._K * (qn + sp.radius) ** 2
            thresh = radius * radius * (1 + 8 * _U64) - qn * qn * (1 - 4 * _U64) + 2 * W
            r, c, _ = self._candidates(G, self._group_min(G, bs, nb), bs, nb, thresh, n)
            exact = self._exact(r, c, Qb)
            keep = exact <= radius
            out.extend(_split_sorted(r[keep], exact[keep], c[keep], m, sp))
        counts = np.full(nq, n, dtype=np.int64)
        return out, counts, np.zeros(nq, dtype=np.int64)


# --------------------------------------------------------------------------
# trees: shared search machinery
# --------------------------------------------------------------------------


class _KBest:
    """The ``k`` best ``(distance, index)`` pairs so far (a max-heap)."""

    __slots__ = ("k", "heap", "tau", "tidx", "full")

    def __init__(self, k):
        self.k = k
        self.heap = []
        self.tau = math.inf
        self.tidx = _NO_INDEX
        self.full = False

    def push_many(self, dists, ids):
        """Offer arrays of candidates."""
        if self.full:
            sel = (dists <= self.tau).nonzero()[0]
            if sel.size < dists.size:
                if sel.size == 0:
                    return
                dists, ids = dists[sel], ids[sel]
        heap = self.heap
        for dd, ii in zip(dists.tolist(), ids.tolist()):
            if not self.full:
                heappush(heap, (-dd, -ii))
                if len(heap) == self.k:
                    self.full = True
                    self.tau, self.tidx = -heap[0][0], -heap[0][1]
            elif dd < self.tau or (dd == self.tau and ii < self.tidx):
                heapreplace(heap, (-dd, -ii))
                self.tau, self.tidx = -heap[0][0], -heap[0][1]

    def push(self, dd, ii):
        if not self.full:
            heappush(self.heap, (-dd, -ii))
            if len(self.heap) == self.k:
                self.full = True
                self.tau, self.tidx = -self.heap[0][0], -self.heap[0][1]
        elif dd < self.tau or (dd == self.tau and ii < self.tidx):
            heapreplace(self.heap, (-dd, -ii))
            self.tau, self.tidx = -self.heap[0][0], -self.heap[0][1]

    def result(self):
        items = sorted((-a, -b) for a, b in self.heap)
        return [a for a, _ in items], [b for _, b in items]


class _RangeSink:
    """Stands in for :class:`_KBest` in range search: ``tau`` is the radius.

    ``tidx`` is larger than any index, so the tie rule of the integer metric
    keeps everything at distance ``<= tau``.
    """

    __slots__ = ("tau", "tidx", "full", "arrays", "singles", "dtype")

    def __init__(self, radius, dtype):
        self.tau = radius
        self.tidx = _NO_INDEX
        self.full = True
        self.arrays = []
        self.singles = []
        self.dtype = dtype

    def push_many(self, dists, ids):
        m = dists <= self.tau
        if m.any():
            self.arrays.append((dists[m], ids[m]))

    def push(self, dd, ii):
        if dd <= self.tau:
            self.singles.append((dd, ii))

    def result(self):
        parts_d = [a for a, _ in self.arrays]
        parts_i = [b for _, b in self.arrays]
        if self.singles:
            parts_d.append(np.asarray([a for a, _ in self.singles], dtype=self.dtype))
            parts_i.append(np.asarray([b for _, b in self.singles], dtype=np.intp))
        if not parts_d:
            return np.empty(0, dtype=self.dtype), np.empty(0, dtype=np.intp)
        d = np.concatenate(parts_d).astype(self.dtype, copy=False)
        i = np.concatenate(parts_i).astype(np.intp, copy=False)
        order = np.lexsort((i, d))
        return d[order], i[order]


# Results of _visit_test: search the node, skip it, or stop the best-first loop.
_VISIT, _SKIP, _STOP = 0, 1, 2


def _visit_test(best, lb, mid, integer, margin):
    """Prologue of every best-first tree loop: may a node with lower bound ``lb`` hold a result?

    ``mid`` is the smallest database index below the node. Returns
    :data:`_STOP` when ``lb`` exceeds the current ``k``-th distance by more
    than ``margin`` (the queue is ordered by lower bound, so nothing later can
    enter either), :data:`_SKIP` when the node can only hold ties at the
    ``k``-th distance with larger database indices (which lose the tie), else
    :data:`_VISIT`. Shared by :class:`VPTree`, :class:`MTree` and
    :class:`BKTree` (popping a node and pushing a child use the same test).
    """
    if not best.full:
        return _VISIT
    tau = best.tau
    if lb > tau + margin:
        return _STOP
    if mid >= best.tidx and (lb == tau if integer else tau == 0):
        return _SKIP
    return _VISIT


def _keep_mask(best, lbp, ids, integer, eps):
    """Which items with triangle-inequality lower bounds ``lbp`` can still enter ``best``.

    ``ids`` are their database indices (or the smallest index below each
    entry). Integer metrics keep a bound equal to the ``k``-th distance only
    for smaller indices; Euclidean ones keep everything within ``eps`` of it
    (a ``k``-th distance of 0 means duplicates of the query: only smaller
    indices can enter). Used in the leaves and routing entries of
    :class:`VPTree` and :class:`MTree`.
    """
    tau = best.tau
    if integer:
        return (lbp < tau) | ((lbp == tau) & (ids < best.tidx))
    if tau == 0:
        return (lbp <= eps) & (ids < best.tidx)
    return lbp <= tau + eps


class _TreeIndex(Index):
    """Per-query search loop shared by the trees.

    ``_search(q, qint, eps, best)`` offers candidates to ``best`` (a
    :class:`_KBest` for knn, a :class:`_RangeSink` for range queries) and
    prunes with ``best.tau`` / ``best.tidx``; it returns
    ``(n_distances, n_nodes_visited)``.
    """

    def _knn(self, Qp, k):
        sp = self._space
        nq = Qp.shape[0]
        D = np.empty((nq, k), dtype=sp.dtype)
        I = np.empty((nq, k), dtype=np.intp)
        counts = np.zeros(nq, dtype=np.int64)
        visits = np.zeros(nq, dtype=np.int64)
        eps = sp.eps(Qp).tolist()
        qints = sp.to_ints(Qp) if sp.integer else [None] * nq
        for i in range(nq):
            best = _KBest(k)
            counts[i], visits[i] = self._search(Qp[i], qints[i], eps[i], best)
            D[i], I[i] = best.result()
        return D, I, counts, visits

    def _range(self, Qp, radius):
        sp = self._space
        nq = Qp.shape[0]
        counts = np.zeros(nq, dtype=np.int64)
        visits = np.zeros(nq, dtype=np.int64)
        eps = sp.eps(Qp).tolist()
        qints = sp.to_ints(Qp) if sp.integer else [None] * nq
        out = []
        for i in range(nq):
            sink = _RangeSink(radius, sp.dtype)
            counts[i], visits[i] = self._search(Qp[i], qints[i], eps[i], sink)
            out.append(sink.result())
        return out, counts, visits

    @abc.abstractmethod
    def _search(self, q, qint, eps, best):
        """Search one query (see the class docstring)."""


# --------------------------------------------------------------------------
# VP-tree
# --------------------------------------------------------------------------


class VPTree(_TreeIndex):
    """Vantage-point tree with bucketed leaves (paper 000 eq. 9).

    Used by notebook 04 (index comparison).

    Parameters
    ----------
    leaf_size : int, keyword-only
        Maximum points per leaf (>= 1); a leaf is scored with one vectorised
        call. A leaf can be larger only when its points cannot be split (all
        identical, or all equidistant from every vantage point tried).
    vantage : {"max_spread", "random"}, keyword-only
        Vantage point policy. ``"random"``: a uniformly random point of the
        node. ``"max_spread"``: ``n_candidates`` random candidates, each scored
        by the spread (mean squared deviation from the median) of its
        distances to ``n_samples`` random points of the node; the largest
        spread wins (Yianilos 1993).
    n_candidates, n_samples : int, keyword-only
        Sample sizes of ``"max_spread"``.
    seed : int, keyword-only
        Seed of the random choices (the tree is reproducible).
    metric : {"auto", "euclidean", "hamming"}, keyword-only

    Notes
    -----
    Split (eq. 9 of paper 000, with the strict inequality on the inner side):
    ``d(x, v) < mu`` -> inner, ``d(x, v) >= mu`` -> outer, ``mu`` the median
    of the node's distances to ``v`` (the upper median: the value at position
    ``n // 2`` of the sorted distances, so distinct distances split
    ``n // 2`` / ``n - n // 2``). With ties at the median (frequent with
    Hamming distances) ``mu`` is moved to the next distinct distance when that
    balances better, and never so that one side is empty. When every point is
    at the same distance from ``v`` another vantage point is tried (3 tries);
    points at distance 0 from ``v`` are duplicates of it and the node becomes
    one leaf (a bucket), so many identical points never cause deep or endless
    recursion; such a leaf is scored with one distance evaluation. Building
    and searching use explicit stacks, not recursion.

    Search is best-first on the lower bound
    ``max(lo - d(q, v), d(q, v) - hi, 0)`` of each child, where ``[lo, hi]``
    is the exact range of ``d(x, v)`` in the child (tighter than ``mu``).
    In a leaf, a point ``x`` is skipped without evaluation when
    ``|d(q, v) - d(x, v)|`` (``v`` the parent's vantage point, ``d(x, v)``
    stored at build) already exceeds the current ``k``-th distance.

    Attributes
    ----------
    mu_ : list
        Threshold radius of each internal node (None for leaves).
    n_nodes_ : int
        Nodes, internal and leaves.
    build_distances_ : int
        Distance evaluations made while building.
    """

    def __init__(self, *, leaf_size=64, vantage="max_spread", n_candidates=5, n_samples=64, seed=0,
                 metric="auto"):
        super().__init__(metric=metric)
        self.leaf_size = _check_int("leaf_size", leaf_size, minimum=1)
        _check_choice("vantage", vantage, _VP_POLICIES)
        self.vantage = vantage
        self.n_candidates = _check_int("n_candidates", n_candidates, minimum=1)
        self.n_samples = _check_int("n_samples", n_samples, minimum=1)
        self.seed = seed

    # -- build --------------------------------------------------------------

    def _choose_vp(self, ids, rng):
        """Position (in ``ids``) of the vantage point."""
        n = ids.size
        if self.vantage == "random" or n <= 2:
            return int(rng.integers(n))
        sp = self._space
        cand = rng.choice(n, size=min(self.n_candidates, n), replace=False)
        samp = rng.choice(n, size=min(self.n_samples, n), replace=False)
        X = sp.data
        ci = np.repeat(ids[cand], samp.size)
        si = np.tile(ids[samp], cand.size)
        d = sp.pairs(X[ci], X[si]).astype(np.float64).reshape(cand.size, samp.size)
        self.build_distances_ += d.size
        med = np.median(d, axis=1, keepdims=True)
        spread = ((d - med) ** 2).mean(axis=1)
        return int(cand[int(np.argmax(spread))])

    def _build(self):
        sp = self._space
        X = sp.data
        n = X.shape[0]
        rng = np.random.default_rng(self.seed)
        perm = np.empty(n, dtype=np.intp)
        pd = np.full(n, np.nan)  # distance of a leaf point to its parent's vantage point
        # node fields (lists for fast scalar access during search)
        leaf, start, end, vpos = [], [], [], []
        child_in, child_out, lo_in, hi_in, lo_out, hi_out, mu = [], [], [], [], [], [], []

        def new_node():
            for lst in (leaf, start, end, vpos, child_in, child_out, lo_in, hi_in, lo_out, hi_out, mu):
                lst.append(None)
            return len(leaf) - 1

        bucket = set()  # leaves of identical points, scored with one distance
        pos = 0
        root = new_node()
        stack = [(root, np.arange(n, dtype=np.intp), None)]
        while stack:
            node, ids, dpar = stack.pop()
            split = None
            if ids.size > self.leaf_size:
                split = self._split(ids, rng)
            if split is None or isinstance(split, str):
                leaf[node] = True
                if split == "duplicates":
                    bucket.add(node)
                    order = np.argsort(ids, kind="stable")
                    ids = ids[order]
                    if dpar is not None:
                        dpar = dpar[order]
                start[node] = pos
                perm[pos : pos + ids.size] = ids
                if dpar is not None:
                    pd[pos : pos + ids.size] = dpar
                pos += ids.size
                end[node] = pos
                continue
            v, mu_v, inner, d_in, outer, d_out = split
            leaf[node] = False
            start[node] = pos
            vpos[node] = pos
            perm[pos] = v
            pos += 1
            end[node] = pos + inner.size + outer.size
            mu[node] = mu_v
            ci, co = new_node(), new_node()
            child_in[node], child_out[node] = ci, co
            lo_in[node], hi_in[node] = float(d_in.min()), float(d_in.max())
            lo_out[node], hi_out[node] = float(d_out.min()), float(d_out.max())
            stack.append((co, outer, d_out))  # inner popped first: pre-order layout
            stack.append((ci, inner, d_in))

        self._perm = perm
        self._Xp = np.ascontiguousarray(X[perm])
        self._pd = pd if not sp.integer else np.where(np.isnan(pd), -1, pd).astype(np.int64)
        self._leaf, self._start, self._end, self._vpos = leaf, start, end, vpos
        self._cin, self._cout = child_in, child_out
        self._lo_in, self._hi_in, self._lo_out, self._hi_out = lo_in, hi_in, lo_out, hi_out
        if sp.integer:
            for lst in (self._lo_in, self._hi_in, self._lo_out, self._hi_out):
                lst[:] = [None if x is None else int(x) for x in lst]
        self.mu_ = mu
        # smallest database index below each node (tie-aware pruning)
        self._minid = [int(perm[s:e].min()) for s, e in zip(start, end)]
        self._bucket = [node in bucket for node in range(len(leaf))]
        self._perm_list = perm.tolist()
        self._vp_int = {}
        if sp.integer:
            vp_positions = [p for p in vpos if p is not None] + [start[b] for b in sorted(bucket)]
            ints = sp.to_ints(self._Xp[vp_positions]) if vp_positions else []
            self._vp_int = dict(zip(vp_positions, ints))
        self.n_nodes_ = len(leaf)

    def _split(self, ids, rng):
        """Return ``(v, mu, inner, d_inner, outer, d_outer)``; None or "duplicates" for a leaf."""
        sp = self._space
        X = sp.data
        for _ in range(3):
            j = self._choose_vp(ids, rng)
            v = ids[j]
            rest = np.delete(ids, j)
            d = sp.rows(X[rest], X[v])
            self.build_distances_ += rest.size
            ds = np.sort(d)
            if ds[0] == ds[-1]:
                if ds[0] == 0:
                    return "duplicates"  # all identical to v: one bucket leaf
                continue  # equidistant: try another vantage point
            n = ds.size
            med = ds[n // 2]
            lo_cnt = int(np.searchsorted(ds, med, "left"))  # inner size with mu = med
            hi_cnt = int(np.searchsorted(ds, med, "right"))  # inner size with mu = next value
            options = []
            if lo_cnt > 0:
                options.append((abs(lo_cnt - n / 2), med))
            if hi_cnt < n:
                options.append((abs(hi_cnt - n / 2), ds[hi_cnt]))
            mu = min(options, key=lambda o: o[0])[1]
            m_in = d < mu  # paper 000 eq. (9)
            return v, mu, rest[m_in], d[m_in], rest[~m_in], d[~m_in]
        return None

    # -- search -------------------------------------------------------------

    def _search(self, q, qint, eps, best):
        integer = self._space.integer
        Xp, perm, pdall = self._Xp, self._perm, self._pd
        leaf, start, end, vpos = self._leaf, self._start, self._end, self._vpos
        cin, cout = self._cin, self._cout
        lo_in, hi_in, lo_out, hi_out = self._lo_in, self._hi_in, self._lo_out, self._hi_out
        minid, perm_list, vp_int, bucket = self._minid, self._perm_list, self._vp_int, self._bucket
        rows, one = self._space.rows, self._space.one
        margin = 0 if integer else eps
        count = visits = 0
        pq = [(0, 0, 0, None)]  # (lower bound, smallest index below, node, d(q, parent's vantage point))
        while pq:
            lb, _, node, dpar = heappop(pq)
            test = _visit_test(best, lb, minid[node], integer, margin)
            if test:
                if test == _STOP:
                    break  # the queue is ordered by lower bound
                continue  # only ties with larger indices below
            visits += 1
            if leaf[node]:
                s, e = start[node], end[node]
                if bucket[node]:  # identical points: one evaluation for all
                    count += 1
                    d0 = (qint ^ vp_int[s]).bit_count() if integer else one(Xp[s], q)
                    best.push_many(np.full(e - s, d0, dtype=self._space.dtype), perm[s:e])
                    continue
                if dpar is not None and best.full:
                    keep = _keep_mask(best, np.abs(pdall[s:e] - dpar), perm[s:e], integer, eps)
                    sel = keep.nonzero()[0]
                    if sel.size == 0:
                        continue
                    if sel.size < e - s:
                        sel += s
                        count += sel.size
                        best.push_many(rows(Xp[sel], q), perm[sel])
                        continue
                count += e - s
                best.push_many(rows(Xp[s:e], q), perm[s:e])
                continue
            p = vpos[node]
            dv = (qint ^ vp_int[p]).bit_count() if integer else one(Xp[p], q)
            count += 1
            best.push(dv, perm_list[p])
            for child, lo, hi in ((cin[node], lo_in[node], hi_in[node]), (cout[node], lo_out[node], hi_out[node])):
                lbc = lo - dv if lo - dv > dv - hi else dv - hi
                if lbc < lb:
                    lbc = lb
                mc = minid[child]
                if _visit_test(best, lbc, mc, integer, margin):
                    continue
                heappush(pq, (lbc, mc, child, dv))
        return count, visits


# --------------------------------------------------------------------------
# M-tree
# --------------------------------------------------------------------------


class _MNode:
    """A node of the M-tree under construction."""

    __slots__ = ("leaf", "objs", "radii", "children", "parent", "cvec")

    def __init__(self, leaf, parent=None):
        self.leaf = leaf
        self.objs = []  # point ids (leaf) or routing-object ids (internal)
        self.radii = None  # covering radii, float64 array (internal)
        self.children = []  # child nodes (internal)
        self.parent = parent
        self.cvec = None  # cached vectors of the routing objects (internal)


class MTree(_TreeIndex):
    """M-tree with routing objects, covering radii and parent-distance pruning.

    Used by notebook 04 (index comparison).

    Parameters
    ----------
    node_capacity : int, keyword-only
        Maximum entries per node (>= 2); a node that overflows is split.
    metric : {"auto", "euclidean", "hamming"}, keyword-only

    Notes
    -----
    Construction is **incremental insertion** in database order (Ciaccia,
    Patella & Zezula 1997). ``ChooseSubtree``: among the routing objects whose
    covering radius already contains the new point, the nearest; otherwise
    the one whose radius grows least, and that radius is enlarged. Split
    policy **mM_RAD + generalized hyperplane**: every pair of entries is tried
    as the two promoted routing objects, each entry goes to the nearer of the
    two (equidistant entries alternate, which splits a node of duplicates in
    halves), and the pair with the smallest larger covering radius wins.
    ``ChooseSubtree`` breaks ties between equally near routing objects in
    favour of the child with fewest entries, so that inserting many identical
    points keeps the tree shallow.

    After insertion the tree is frozen for search: points are laid out leaf by
    leaf, every covering radius is recomputed as the exact maximum canonical
    distance from the routing object to the points of its subtree (tighter
    than the insertion-time bounds ``d + r``), and parent distances are
    recomputed canonically. Search is best-first on
    ``max(d(q, O) - r(O), 0)``; before computing ``d(q, O)`` an entry is
    skipped if ``|d(q, P) - d(O, P)| - r(O)`` already exceeds the current
    ``k``-th distance (``P`` the parent routing object). A routing object is a
    database point that also sits in a leaf below it: its distance is reused
    there, not recomputed or counted twice.

    Attributes
    ----------
    n_nodes_ : int
        Nodes, internal and leaves.
    height_ : int
        Levels (1 for a single leaf).
    build_distances_ : int
        Distance evaluations made while building (insertion, splits, and the
        exact radii and parent distances of the frozen tree).
    """

    def __init__(self, *, node_capacity=64, metric="auto"):
        super().__init__(metric=metric)
        self.node_capacity = _check_int("node_capacity", node_capacity, minimum=2)

    # -- build --------------------------------------------------------------

    def _build(self):
        sp = self._space
        X = sp.data
        n = X.shape[0]
        cap = self.node_capacity
        rows = sp.rows
        root = _MNode(True)
        self._root_dyn = root
        n_dist = 0
        for p in range(n):
            node = root
            xp = X[p]
            while not node.leaf:
                cv = node.cvec
                if cv is None:
                    cv = node.cvec = X[node.objs]
                d = rows(cv, xp)
                n_dist += d.size
                r = node.radii
                dd = np.where(d <= r, d, np.inf)
                j = int(dd.argmin())
                if dd[j] == np.inf:  # no covering ball holds p: enlarge the least
                    j = int((d - r).argmin())
                    r[j] = d[j]
                elif np.count_nonzero(dd == dd[j]) > 1:  # e.g. duplicates: least-filled child
                    tied = (dd == dd[j]).nonzero()[0].tolist()
                    j = min(tied, key=lambda t: len(node.children[t].objs))
                node = node.children[j]
            node.objs.append(p)
            while node is not None and len(node.objs) > cap:
                node = self._split_node(node)
            root = self._root_dyn
        self.build_distances_ += n_dist
        self._freeze(root)
        del self._root_dyn

    def _split_node(self, node):
        """mM_RAD promotion + generalized hyperplane; return the parent to re-check."""
        sp = self._space
        X = sp.data
        objs = np.asarray(node.objs, dtype=np.intp)
        m = objs.size
        re = node.radii.astype(np.float64) if not node.leaf else np.zeros(m)
        V = X[objs]
        ii, jj = np.triu_indices(m, 1)
        D = np.zeros((m, m))
        D[ii, jj] = sp.pairs(V[ii], V[jj])
        D[jj, ii] = D[ii, jj]
        self.build_distances_ += ii.size
        pi, pj = ii, jj
        Di, Dj = D[pi], D[pj]
        to_i = Di < Dj
        tie = Di == Dj
        ar = np.arange(pi.size)
        tie[ar, pi] = tie[ar, pj] = False
        to_i |= tie & (np.cumsum(tie, axis=1) % 2 == 1)  # equidistant entries alternate
        to_i[ar, pi] = True
        to_i[ar, pj] = False
        ri = np.where(to_i, Di + re, -np.inf).max(axis=1)
        rj = np.where(~to_i, Dj + re, -np.inf).max(axis=1)
        b = int(np.argmin(np.maximum(ri, rj)))
        a_mask = to_i[b]
        o1, o2 = int(objs[pi[b]]), int(objs[pj[b]])
        r1, r2 = float(ri[b]), float(rj[b])
        n2 = _MNode(node.leaf)
        sel1, sel2 = a_mask.nonzero()[0], (~a_mask).nonzero()[0]
        old_objs, old_children = node.objs, node.children
        node.objs = [old_objs[t] for t in sel1.tolist()]
        n2.objs = [old_objs[t] for t in sel2.tolist()]
        if not node.leaf:
            old_r = node.radii
            node.radii, n2.radii = old_r[sel1], old_r[sel2]
            node.cvec, n2.cvec = None, None
            node.children = [old_children[t] for t in sel1.tolist()]
            n2.children = [old_children[t] for t in sel2.tolist()]
            for c in n2.children:
                c.parent = n2
        parent = node.parent
        if parent is None:
            new_root = _MNode(False)
            new_root.objs = [o1, o2]
            new_root.radii = np.array([r1, r2])
            new_root.children = [node, n2]
            node.parent = n2.parent = new_root
            self._root_dyn = new_root
            return None
        j = next(t for t, c in enumerate(parent.children) if c is node)
        parent.objs[j] = o1
        parent.objs.append(o2)
        parent.radii[j] = r1
        parent.radii = np.append(parent.radii, r2)
        parent.children.append(n2)
        parent.cvec = None
        n2.parent = parent
        return parent

    def _freeze(self, root):
        """Lay out the tree in flat arrays with exact radii and parent distances."""
        sp = self._space
        X = sp.data
        # pre-order list of (node, path): path = routing objects from the root down
        order = []
        stack = [(root, ())]
        while stack:
            node, path = stack.pop()
            order.append((node, path))
            if not node.leaf:
                for o, c in zip(reversed(node.objs), reversed(node.children)):
                    stack.append((c, path + (o,)))
        nid = {id(node): t for t, (node, _) in enumerate(order)}
        n_nodes = len(order)
        size = [0] * n_nodes
        for t in range(n_nodes - 1, -1, -1):
            node = order[t][0]
            size[t] = len(node.objs) if node.leaf else sum(size[nid[id(c)]] for c in node.children)
        start = [0] * n_nodes
        for t, (node, _) in enumerate(order):
            if not node.leaf:
                s = start[t]
                for c in node.children:
                    start[nid[id(c)]] = s
                    s += size[nid[id(c)]]
        perm = np.empty(X.shape[0], dtype=np.intp)
        for t, (node, _) in enumerate(order):
            if node.leaf:
                perm[start[t] : start[t] + size[t]] = node.objs
        Xp = np.ascontiguousarray(X[perm])
        leaf = [node.leaf for node, _ in order]
        end = [start[t] + size[t] for t in range(n_nodes)]
        minid = [int(perm[start[t] : end[t]].min()) for t in range(n_nodes)]
        ent_lo = [0] * n_nodes
        ent_hi = [0] * n_nodes
        e_center, e_child, e_radius, e_pd, e_reuse = [], [], [], [], []
        pd = np.zeros(X.shape[0], dtype=sp.dtype)
        reuse = np.full(X.shape[0], -1, dtype=np.int64)
        for t, (node, path) in enumerate(order):
            center = path[-1] if path else -1
            # depth of each ancestor-or-self routing object (its distance is known)
            pos_of = {o: depth for depth, o in enumerate(path)}
            if node.leaf:
                s, e = start[t], end[t]
                if center >= 0:
                    pd[s:e] = sp.rows(Xp[s:e], X[center])
                    self.build_distances_ += e - s
                for off, p in enumerate(node.objs):
                    if p in pos_of:
                        reuse[s + off] = pos_of[p]
                continue
            ent_lo[t] = len(e_center)
            objs = np.asarray(node.objs, dtype=np.intp)
            if center >= 0:
                e_pd.extend(sp.rows(X[objs], X[center]).tolist())
                self.build_distances_ += objs.size
            else:
                e_pd.extend([0] * objs.size)
            for o, c in zip(node.objs, node.children):
                ct = nid[id(c)]
                e_radius.append(sp.rows(Xp[start[ct] : end[ct]], X[o]).max().item())
                self.build_distances_ += end[ct] - start[ct]
                e_center.append(o)
                e_child.append(ct)
                e_reuse.append(pos_of.get(o, -1))
            ent_hi[t] = len(e_center)
        self._pd = pd
        self._perm = perm
        self._Xp = Xp
        self._leaf, self._start, self._end, self._minid = leaf, start, end, minid
        self._ent_lo, self._ent_hi = ent_lo, ent_hi
        ec = np.asarray(e_center, dtype=np.intp)
        self._Cv = np.ascontiguousarray(X[ec])
        self._e_child = e_child
        self._e_radius = np.asarray(e_radius, dtype=sp.dtype)
        self._e_pd = np.asarray(e_pd, dtype=sp.dtype)
        self._e_reuse = np.asarray(e_reuse, dtype=np.int64)
        self._e_minid = np.asarray([minid[c] for c in e_child], dtype=np.int64)
        self._reuse = reuse
        self.n_nodes_ = n_nodes
        self.height_ = 1 + max(len(path) for _, path in order)

    # -- search -------------------------------------------------------------

    def _search(self, q, qint, eps, best):
        sp = self._space
        integer = sp.integer
        rows = sp.rows
        Xp, perm, pdall, reuse_all = self._Xp, self._perm, self._pd, self._reuse
        Cv, e_child, e_rad, e_pd, e_reuse, e_minid = (
            self._Cv, self._e_child, self._e_radius, self._e_pd, self._e_reuse, self._e_minid)
        leaf, start, end, minid = self._leaf, self._start, self._end, self._minid
        ent_lo, ent_hi = self._ent_lo, self._ent_hi
        margin = 0 if integer else eps
        count = visits = 0
        pq = [(0, 0, 0, ())]  # (lower bound, smallest index below, node, distances to routing objects above)
        while pq:
            lb, _, node, path = heappop(pq)
            test = _visit_test(best, lb, minid[node], integer, margin)
            if test:
                if test == _STOP:
                    break  # the queue is ordered by lower bound
                continue  # only ties with larger indices below
            visits += 1
            dpar = path[-1] if path else None
            if leaf[node]:
                s, e = start[node], end[node]
                ids = perm[s:e]
                if dpar is not None and best.full:
                    keep = _keep_mask(best, np.abs(pdall[s:e] - dpar), ids, integer, eps)
                else:
                    keep = np.ones(e - s, dtype=bool)
                ru = reuse_all[s:e]
                comp = (keep & (ru < 0)).nonzero()[0]
                if comp.size:
                    count += comp.size
                    best.push_many(rows(Xp[comp + s], q), ids[comp])
                for t in (keep & (ru >= 0)).nonzero()[0].tolist():
                    best.push(path[ru[t]], int(ids[t]))  # a routing object above: distance known
                continue
            a, b = ent_lo[node], ent_hi[node]
            rad = e_rad[a:b]
            if dpar is not None and best.full:
                keep = _keep_mask(best, np.abs(e_pd[a:b] - dpar) - rad, e_minid[a:b], integer, eps)
            else:
                keep = np.ones(b - a, dtype=bool)
            ru = e_reuse[a:b]
            comp = (keep & (ru < 0)).nonzero()[0]
            dist = np.zeros(b - a, dtype=sp.dtype)
            if comp.size:
                dist[comp] = rows(Cv[comp + a], q)
                count += comp.size
            for t in (keep & (ru >= 0)).nonzero()[0].tolist():
                dist[t] = path[ru[t]]
            lbs = (dist - rad).tolist()
            dl = dist.tolist()
            for t in keep.nonzero()[0].tolist():
                lbc = lbs[t]
                if lbc < lb:
                    lbc = lb
                mc = e_minid[a + t]
                if _visit_test(best, lbc, mc, integer, margin):
                    continue
                heappush(pq, (lbc, mc, e_child[a + t], path + (dl[t],)))
        return count, visits


# --------------------------------------------------------------------------
# BK-tree
# --------------------------------------------------------------------------


class BKTree(_TreeIndex):
    """Burkhard-Keller tree: children keyed by integer distance.

    Used by notebook 04 (index comparison, mainly on packed hash codes).

    Parameters
    ----------
    bin_width : float, optional, keyword-only
        Hamming codes: leave ``None`` (keys are the exact integer distances).
        Euclidean data: required, else ``build`` raises ``ValueError``; the
        key of a child is ``floor(d(x, node) / bin_width)``.
    metric : {"auto", "euclidean", "hamming"}, keyword-only

    Notes
    -----
    The tree is the one obtained by inserting the distinct vectors one by
    one in order of first occurrence (it is built top-down in bulk, with one
    vectorised distance call per node: the same tree). All database items
    equal to a node's vector share that node (a bucket), so repeated codes
    neither deepen the tree nor cost extra distance evaluations.

    Search (best-first) prunes a child keyed ``t`` when the triangle-inequality
    bound ``|d(q, node) - t|`` exceeds the current ``k``-th distance (or the
    radius). For Euclidean data the exact range ``[lo, hi]`` of ``d(x, node)``
    in each child is stored at build, and the bound
    ``max(lo - d(q, node), d(q, node) - hi)`` is used instead, so quantising
    the keys loses no result: the search stays exact for any ``bin_width``
    (which only changes the shape, hence the speed, of the tree). Each node
    is one distance evaluation in pure Python (``int.bit_count`` for codes),
    so the BK-tree is fast only when the radius (or the ``k``-th distance) is
    small compared with the code length.

    Attributes
    ----------
    n_nodes_ : int
        Nodes, i.e. distinct vectors.
    build_distances_ : int
        Distance evaluations made while building.
    """

    def __init__(self, *, bin_width=None, metric="auto"):
        super().__init__(metric=metric)
        if bin_width is not None:
            bin_width = _check_radius(bin_width)
            if bin_width <= 0:
                raise ValueError("bin_width must be > 0")
        self.bin_width = bin_width

    def _build(self):
        sp = self._space
        X = sp.data
        if not sp.integer and self.bin_width is None:
            raise ValueError(
                "BKTree needs an integer metric: build it on packed binary codes (Hamming), or pass "
                "bin_width=w to key children by floor(distance / w) (search stays exact); for float "
                "features VPTree or MTree avoid the quantisation"
            )
        if sp.integer and self.bin_width not in (None, 1, 1.0):
            raise ValueError("bin_width is for Euclidean data; Hamming keys are exact distances")
        # distinct vectors in order of first occurrence, with their buckets
        _, first, inverse = np.unique(X, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        rank = np.empty(first.size, dtype=np.intp)
        order = np.argsort(first)
        rank[order] = np.arange(first.size)
        uid = rank[inverse]  # distinct id of each item, numbered by first occurrence
        U = np.ascontiguousarray(X[first[order]])
        by = np.argsort(uid, kind="stable")
        bounds = np.searchsorted(uid[by], np.arange(first.size + 1))
        buckets = [by[bounds[u] : bounds[u + 1]] for u in range(first.size)]
        nu = U.shape[0]
        # nodes are distinct vectors; node id = distinct id
        children = [[] for _ in range(nu)]  # lists of (key, lo, hi, child)
        stack = [(0, np.arange(1, nu, dtype=np.intp))]
        w = self.bin_width
        while stack:
            node, members = stack.pop()
            if members.size == 0:
                continue
            d = sp.rows(U[members], U[node])
            self.build_distances_ += members.size
            keys = d if sp.integer else np.floor(d / w).astype(np.int64)
            srt = np.argsort(keys, kind="stable")
            ks = keys[srt]
            cuts = np.flatnonzero(np.diff(ks)) + 1
            for grp in np.split(srt, cuts):
                gm = members[grp]  # increasing: members are kept in first-occurrence order
                gd = d[grp]
                child = int(gm[0])
                children[node].append((int(keys[grp[0]]), gd.min().item(), gd.max().item(), child))
                stack.append((child, gm[1:]))
        minid = [int(b[0]) for b in buckets]
        # subtree minima: children have larger distinct ids than their parent
        for u in range(nu - 1, -1, -1):
            for _, _, _, c in children[u]:
                if minid[c] < minid[u]:
                    minid[u] = minid[c]
        self._U = U
        self._buckets = [b.astype(np.intp) for b in buckets]
        self._bucket_lists = [b.tolist() for b in buckets]
        self._children = children
        self._child_keys = [[c[0] for c in ch] for ch in children]  # ascending
        self._child_ids = [[c[3] for c in ch] for ch in children]
        self._minid = minid
        self._uints = sp.to_ints(U) if sp.integer else None
        self.n_nodes_ = nu

    def _search(self, q, qint, eps, best):
        if isinstance(best, _RangeSink):
            return self._range_search(q, qint, eps, best)
        integer = self._space.integer
        U, uints = self._U, self._uints
        children, minid, buckets, bucket_lists = self._children, self._minid, self._buckets, self._bucket_lists
        one = self._space.one
        margin = 0 if integer else eps
        count = 0
        pq = [(0, 0, 0)]  # (lower bound, smallest index below, node)
        while pq:
            lb, _, node = heappop(pq)
            test = _visit_test(best, lb, minid[node], integer, margin)
            if test:
                if test == _STOP:
                    break  # the queue is ordered by lower bound
                continue  # only ties with larger indices below
            d = (qint ^ uints[node]).bit_count() if integer else one(U[node], q)
            count += 1
            bucket = bucket_lists[node]
            if len(bucket) == 1:
                best.push(d, bucket[0])
            else:
                best.push_many(np.full(len(bucket), d, dtype=self._space.dtype), buckets[node])
            for _, lo, hi, child in children[node]:
                lbc = lo - d if lo - d > d - hi else d - hi
                if lbc < lb:
                    lbc = lb
                mc = minid[child]
                if _visit_test(best, lbc, mc, integer, margin):
                    continue
                heappush(pq, (lbc, mc, child))
        return count, count

    def _range_search(self, q, qint, eps, sink):
        """Range search: depth-first, children selected by key with bisection."""
        integer = self._space.integer
        U, uints, one = self._U, self._uints, self._space.one
        children, child_keys, child_ids = self._children, self._child_keys, self._child_ids
        bucket_lists = self._bucket_lists
        r = sink.tau
        singles = sink.singles
        count = 0
        stack = [0]
        while stack:
            node = stack.pop()
            d = (qint ^ uints[node]).bit_count() if integer else one(U[node], q)
            count += 1
            if d <= r:
                singles.extend((d, i) for i in bucket_lists[node])
            keys = child_keys[node]
            if not keys:
                continue
            if integer:  # keys are the exact distances to the node
                stack.extend(child_ids[node][bisect_left(keys, d - r) : bisect_right(keys, d + r)])
            else:
                for _, lo, hi, child in children[node]:
                    if lo - d <= r + eps and d - hi <= r + eps:
                        stack.append(child)
        return count, count
