"""Retrieval metrics: rankings, relevance, P@K / R@K / F1@K, AP and mAP@K, PR curves.

Every notebook that scores a retrieval run goes through this module, so that the
conventions below are chosen once, by name, and tested once:

==========  ==============================================================
notebook    functions it uses
==========  ==============================================================
02          autoencoder retrieval (papers 000 and 001):
            :func:`rank_by_distance`, :func:`relevance_matrix`,
            :func:`mean_average_precision`, :func:`precision_at_k`,
            :func:`recall_at_k`, :func:`f1_at_k`, :func:`r_precision`,
            :func:`retrieval_accuracy_at_k`, :func:`knn_vote`
03          hashing (paper 000): :func:`mean_average_precision_from_distances`
            (Hamming ties), :func:`precision_within_radius`,
            :func:`precision_recall_curve`, :func:`precision_at_ks`
04          index comparison (paper 000): :func:`rank_by_distance` (exact
            reference ranking), :func:`mean_average_precision`,
            :func:`precision_at_k`, :func:`recall_at_k`
05          inpainting robustness, Paris6k (paper 002):
            :func:`precision_at_k` (plain and ``capped``),
            :func:`remove_junk`, :func:`mean_average_precision`
06          EfficientNet blocks on Corel-1K (paper 003):
            :func:`mean_average_precision` (mAP, mAP@10/20/100, mAP@5),
            :func:`precision_at_k`, :func:`recall_at_k`
07          survey mAP@5000 / mAP@1000 / mAP@54000 / mAP@All replication:
            :func:`mean_average_precision_from_distances`, every
            ``normalize`` / ``empty`` / ``ties`` option
==========  ==============================================================

Conventions
-----------
A *relevance matrix* ``rel`` is a boolean array of shape ``(n_queries,
n_ranked)`` **in rank order**: ``rel[q, i]`` says whether the item ranked
``i + 1``-th for query ``q`` is relevant. It is what :func:`relevance_matrix`
returns when given a ``ranking``. ``n_relevant[q]`` is the number of relevant
items in the *whole database* (:func:`count_relevant`); when a function takes
``n_relevant=None`` it assumes ``rel`` ranks the whole database and uses
``rel.sum(axis=1)``. A cut-off ``k`` larger than ``n_ranked`` is clipped to
``n_ranked`` (a database of 40 images cannot return 100), everywhere in this
module, and the clipped value is the one divided by.

Relevance is label equality for single-label data (1-D label arrays) and
"shares at least one label" for multi-label data (2-D 0/1 arrays, NUS-WIDE and
MS-COCO in the hashing papers, DeepHash-pytorch's ``queryL @ retrievalL.T > 0``).

mAP@K: three normalisations and two policies for empty queries
----------------------------------------------------------------
With ``P@i`` the precision at rank ``i`` and ``rel_i`` the relevance of rank
``i``, the average precision of one query cut at ``K`` is
``AP@K = (1 / Z) * sum_{i <= K} rel_i * P@i``. The literature differs in ``Z``:

``normalize="retrieved"``
    ``Z`` = number of relevant items within the top ``K``. DeepHash-pytorch's
    ``CalcTopMap``, HashNet's and most deep-hashing papers' mAP@5000 (NUS-WIDE,
    MS-COCO) and mAP@1000 (ImageNet) follow this. It rewards a short list of
    hits as much as a long one.
``normalize="min_k_relevant"``
    ``Z = min(K, n_relevant)``: the best attainable number of hits in ``K``.
``normalize="all_relevant"``
    ``Z = n_relevant``: the TREC / information-retrieval definition. With
    ``K`` = all it equals :func:`sklearn.metrics.average_precision_score` on a
    tie-free ranking (tested).

A query is *empty* when it has no relevant item within the top ``K`` (for
``K`` = all: no relevant item in the database, revisitop's rule).
``empty="zero"`` counts its AP as 0 and keeps it in the mean; this is what
``CalcTopMap`` computes (it skips the query but still divides by the number of
queries), as do the many PyTorch ports of HashNet's evaluation that
``APx.append(0)``. ``empty="drop"`` leaves it out of the mean (HashNet's
original Caffe ``mean_average_precision``, and revisitop for queries without
positives); the per-query value is ``nan`` and :class:`MAPResult` reports
``n_dropped``. If every query is dropped the mean is ``nan`` (with a
``RuntimeWarning``), not an exception, so a sweep over settings runs to the end
and the ``nan`` shows in its table. Some code instead drops queries with no
relevant item *in the database* (or no label at all, NUS-WIDE) and keeps
zero-hit queries at 0: select those queries first (``count_relevant(...) > 0``)
and use ``empty="zero"``.

Two peer-code details that change numbers and that we do *not* copy:
DeepHash-pytorch sets ``topK = -1`` for "mAP@All" and then slices ``gnd[0:-1]``,
which silently drops the last database item; and it ranks with the unstable
``np.argsort``, so tied Hamming distances are ordered arbitrarily.

Ties
----
Hamming distances take few values, so many database items tie and the tie order
changes mAP. :func:`rank_by_distance` orders ties ``"stable"`` (database index
order) or ``"random"`` (seeded). :func:`mean_average_precision_from_distances`
adds ``ties="expected"``: the exact expectation of AP over uniformly random
orders within each group of equal distances (McSherry & Najork, ECIR 2008),
computed from per-query histograms without sorting. For a tie group at
positions ``s+1 .. s+n`` holding ``r`` relevant items, with ``R`` relevant items
ranked before it, the expected contribution of position ``s+t`` is
``(r/n) * (R + 1 + (t-1)(r-1)/(n-1)) / (s+t)``; summed over ``t = 1..m``
(``m = n``, or ``m = K - s`` when the cut falls inside the group) this is
``(r/n) * (m*b + (R + 1 - b*(s+1)) * (H(s+m) - H(s)))`` with
``b = (r-1)/(n-1)`` (0 for ``n = 1``) and ``H`` the harmonic numbers. For
``"all_relevant"`` and ``"min_k_relevant"`` the denominator is fixed, so the
expected AP is the expected sum over the denominator. For ``"retrieved"`` the
denominator ``R + j`` depends on the number ``j`` of relevant items of the
straddling group that land inside the cut; ``j`` is hypergeometric and, given
``j``, those items are uniformly placed among the ``m`` slots, so we sum over
``j`` exactly. See :func:`mean_average_precision_from_distances` for the one
case (``empty="drop"`` with tie-dependent emptiness) where the result is a
documented conditional expectation rather than the expectation of the mean.

"Accuracy" and "retrieval rate" in the papers
---------------------------------------------
Paper 000 (hybrid deep hashing + VP-tree) defines "Accuracy: The percentage of
correctly retrieved images relative to the total number of queries", i.e.
correctly retrieved images divided by the number of queries. That is a count of
one retrieved image per query: we adopt **top-1 retrieval accuracy**,
``retrieval_accuracy_at_k(rel, 1, definition=...)``, for which the definitions
"precision", "hit", "majority" and "knn" all coincide (1-NN accuracy).
Its "retrieval rate" is **recall**: the text says "a retrieval rate of 94.5%"
and Table 2 prints that 94.5 in its "Recall (%)" column; its eq. (11) is
``Recall = N_r / N_k`` with ``N_k`` "the total number of relevant images in the
database" (:func:`recall_at_k` with ``n_relevant`` from
:func:`count_relevant`). The paper does not give ``K``; its near-equal
precision, recall and F1 are what one gets at ``K = n_relevant`` (where
``P@K = R@K``, :func:`r_precision`), which notebook 02 should report beside
fixed ``K``.

Paper 001 (CNN autoencoder, medical) Table I reports "Accuracy", "Precision"
and "Recall" at 20 to 100 "Retrieved Images (IR)", with eq. (4)-(5)
``Precision = n / I_r`` and ``Recall = n / M`` ("M denotes relevant images
present in the database"). Accuracy differs from precision at the same IR
(98.34 vs 97.84 at IR = 20), so it is not P@IR; "hit" would be ~100% at that
precision; the text calls it "retrieval accuracy" alongside a training
"accuracy plot". We adopt ``definition="knn"``: **the plurality label of the
top-IR retrieved images equals the query's label** (kNN classification
accuracy with k = IR), averaged over queries. Its recall, taken literally
(``M`` = all relevant images in the database), cannot reach 98% with 20
retrieved images: the data set has about 50,000 images in 4 classes, so the
80% database holds ~10,000 relevant images per query. Notebook 02 should
report :func:`recall_at_k` as defined and, as a second reading, macro
precision and recall of the :func:`knn_vote` classifier (via scikit-learn),
and say which is which.

Capped precision (paper 002, notebook 05)
-----------------------------------------
``precision_at_k(rel, k, capped=True)`` (``capped="n_relevant"``) divides the
hits in the top ``k`` by ``min(k, n_relevant)``, so a query with 3 relevant
images can score 1 at ``k = 10``. revisitop's own ``compute_map`` caps
differently: it divides by ``min(k, rank of the last relevant image)``;
``capped="revisitop"`` reproduces that. Both give ``nan`` for queries without
relevant items (revisitop excludes them).

References
----------
.. [1] F. McSherry and M. Najork, "Computing information retrieval performance
   measures efficiently in the presence of tied scores", ECIR 2008.
.. [2] DeepHash-pytorch, ``utils/tools.py::CalcTopMap``.
.. [3] F. Radenovic et al., revisitop, ``python/evaluate.py::compute_map``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln

from ._checks import check_choice as _check_choice

__all__ = [
    "MAPResult",
    "PRCurve",
    "rank_by_distance",
    "relevance_matrix",
    "count_relevant",
    "remove_junk",
    "precision_at_k",
    "precision_at_ks",
    "recall_at_k",
    "f1_at_k",
    "r_precision",
    "average_precision",
    "mean_average_precision",
    "mean_average_precision_from_distances",
    "precision_recall_curve",
    "precision_within_radius",
    "retrieval_accuracy_at_k",
    "knn_vote",
]

_NORMALIZE = ("retrieved", "min_k_relevant", "all_relevant")
_EMPTY = ("zero", "drop")
_RANK_TIES = ("stable", "random")
_MAP_TIES = ("stable", "random", "expected")
_CAPPED = (False, True, "n_relevant", "revisitop")
_ACCURACY = ("precision", "hit", "majority", "knn")
_PR_MODES = ("ranks", "interpolated")

# Elements per block when a computation is split over queries: small enough to
# stay in cache for the histogram path, large enough to amortise the loop.
_BLOCK_ELEMS = 1 << 18


# --------------------------------------------------------------------------
# result containers
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class MAPResult:
    """Mean average precision with its per-query values and bookkeeping.

    Attributes
    ----------
    value : float
        The mean over the queries that were kept (``nan`` if none).
    per_query : ndarray of float, shape (n_queries,)
        AP of each query; ``nan`` for dropped queries.
    n_queries : int
        Number of queries evaluated.
    n_dropped : int
        Number of queries left out of the mean (``empty="drop"``).
    k : int
        The cut-off actually used (after clipping to the ranking length).
    normalize, empty : str
        The conventions used.
    ties : str or None
        Tie policy for distance-based entry points, else ``None``.
    n_tie_dependent_empty : int
        ``ties="expected"`` only: queries that are empty under some tie orders
        and not others (see :func:`mean_average_precision_from_distances`).

    Notes
    -----
    ``float(result)`` gives ``result.value``.
    """

    value: float
    per_query: np.ndarray
    n_queries: int
    n_dropped: int
    k: int
    normalize: str
    empty: str
    ties: str | None = None
    n_tie_dependent_empty: int = 0

    def __float__(self) -> float:
        return float(self.value)


@dataclass(frozen=True)
class PRCurve:
    """A precision-recall curve averaged over queries.

    Attributes
    ----------
    precision, recall : ndarray of float
        Mean precision and mean recall at each point.
    points : ndarray
        The rank cut-offs (``mode="ranks"``) or recall levels
        (``mode="interpolated"``) of each point.
    mode : str
        ``"ranks"`` or ``"interpolated"``.
    n_queries : int
        Queries averaged.
    n_dropped : int
        Queries left out because they have no relevant item (recall undefined).
    """

    precision: np.ndarray
    recall: np.ndarray
    points: np.ndarray
    mode: str
    n_queries: int
    n_dropped: int


# --------------------------------------------------------------------------
# private helpers: validation
# --------------------------------------------------------------------------


def _check_rel(rel, name="rel"):
    rel = np.asarray(rel)
    if rel.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (n_queries, n_ranked) array, got shape {rel.shape}; "
            f"for a single query pass {name}[np.newaxis, :]"
        )
    if rel.shape[0] == 0 or rel.shape[1] == 0:
        raise ValueError(f"{name} must have at least one query and one ranked item, got shape {rel.shape}")
    if rel.dtype != bool:
        if not (np.issubdtype(rel.dtype, np.integer) or np.issubdtype(rel.dtype, np.floating)):
            raise TypeError(f"{name} must be boolean or 0/1 numbers, got dtype {rel.dtype}")
        if not np.isin(rel, (0, 1)).all():
            raise ValueError(f"{name} must hold only 0/1 (or booleans)")
        rel = rel.astype(bool)
    return rel


def _check_k(k, n_ranked, name="k"):
    """Return ``k`` clipped to ``n_ranked``; ``None`` means all."""
    if k is None:
        return n_ranked
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer or None, got {k!r}")
    if k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}")
    return min(int(k), n_ranked)


def _check_ks(ks, n_ranked):
    arr = np.asarray(ks)
    if arr.ndim == 0:
        arr = arr[np.newaxis]
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"ks must be a non-empty 1-D sequence of integers, got shape {np.shape(ks)}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"ks must hold integers, got dtype {arr.dtype}")
    if (arr < 1).any():
        raise ValueError(f"every k must be >= 1, got {arr[arr < 1][0]}")
    return np.minimum(arr.astype(np.int64), n_ranked)


def _check_counts(values, n_queries, name):
    arr = np.asarray(values)
    if arr.shape != (n_queries,):
        raise ValueError(f"{name} must have shape ({n_queries},), one value per query, got {arr.shape}")
    if arr.dtype == bool:
        raise TypeError(f"{name} must hold integers, got booleans")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold whole numbers")
    if (arr < 0).any():
        raise ValueError(f"{name} must be >= 0")
    return arr.astype(np.int64)


def _check_n_relevant(n_relevant, rel):
    """Validate ``n_relevant`` against ``rel``; ``None`` means ``rel.sum(1)``."""
    seen = rel.sum(axis=1, dtype=np.int64)
    if n_relevant is None:
        return seen
    n_rel = _check_counts(n_relevant, rel.shape[0], "n_relevant")
    bad = np.flatnonzero(n_rel < seen)
    if bad.size:
        q = bad[0]
        raise ValueError(
            f"n_relevant[{q}] = {n_rel[q]} is smaller than the {seen[q]} relevant items seen in "
            f"rel[{q}]; n_relevant must count every relevant item in the database"
        )
    return n_rel


def _check_distances(distances):
    d = np.asarray(distances)
    if d.ndim != 2:
        raise ValueError(
            f"distances must be a 2-D (n_queries, n_database) array, got shape {d.shape}; "
            "for a single query pass distances[np.newaxis, :]"
        )
    if d.shape[0] == 0 or d.shape[1] == 0:
        raise ValueError(f"distances must have at least one query and one database item, got shape {d.shape}")
    if d.dtype == bool:
        d = d.view(np.uint8)
    elif not (np.issubdtype(d.dtype, np.integer) or np.issubdtype(d.dtype, np.floating)):
        raise TypeError(f"distances must be real numbers, got dtype {d.dtype}")
    if np.issubdtype(d.dtype, np.floating) and np.isnan(d).any():
        raise ValueError("distances contain NaN")
    return d


def _check_labels(query_labels, db_labels):
    """Return (query labels, database labels, is_multilabel)."""
    q = np.asarray(query_labels)
    db = np.asarray(db_labels)
    if q.ndim != db.ndim or q.ndim not in (1, 2):
        raise ValueError(
            "query_labels and db_labels must both be 1-D (single-label) or both 2-D 0/1 "
            f"(multi-label) arrays, got shapes {q.shape} and {db.shape}"
        )
    if q.shape[0] == 0 or db.shape[0] == 0:
        raise ValueError("query_labels and db_labels must not be empty")
    if q.ndim == 1:
        return q, db, False
    if q.shape[1] != db.shape[1]:
        raise ValueError(
            f"multi-label arrays must have the same number of labels, got {q.shape[1]} and {db.shape[1]}"
        )
    for name, arr in (("query_labels", q), ("db_labels", db)):
        if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"2-D {name} must be a 0/1 (or boolean) label-indicator matrix")
    return q.astype(np.float32), db.astype(np.float32), True


def _check_ranking(ranking, n_queries, n_db):
    r = np.asarray(ranking)
    if r.ndim != 2 or r.shape[0] != n_queries:
        raise ValueError(f"ranking must have shape ({n_queries}, k), got {r.shape}")
    if r.dtype == bool or not np.issubdtype(r.dtype, np.integer):
        raise TypeError(f"ranking must hold integer database indices, got dtype {r.dtype}")
    if r.size and (r.min() < 0 or r.max() >= n_db):
        raise ValueError(f"ranking holds indices outside 0..{n_db - 1}")
    return r


def _row_blocks(n_rows, n_cols, budget=_BLOCK_ELEMS):
    step = max(1, budget // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def _rng(seed):
    if seed is None:
        raise ValueError("ties='random' needs a seed (an int, SeedSequence or numpy Generator)")
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------
# private helpers: ranking
# --------------------------------------------------------------------------


def _as_small_int(d, max_levels=1 << 16):
    """Return ``d - d.min()`` as uint8/uint16 if ``d`` is integer-valued with a
    small range (so numpy's stable argsort uses radix sort), else ``None``."""
    if d.dtype == np.uint8:
        return d
    lo, hi = d.min(), d.max()
    if not (np.isfinite(lo) and np.isfinite(hi)) or float(hi) - float(lo) >= max_levels:
        return None
    if np.issubdtype(d.dtype, np.floating):
        for sl in _row_blocks(d.shape[0], d.shape[1], 1 << 20):
            block = d[sl]
            if not np.array_equal(block, np.floor(block)):
                return None
    out_type = np.uint8 if float(hi) - float(lo) < 256 else np.uint16
    if d.dtype == out_type:
        return d
    if lo >= 0 and float(hi) < np.iinfo(out_type).max:
        return d.astype(out_type)
    if np.issubdtype(d.dtype, np.integer):
        return (d.astype(np.int64) - int(lo)).astype(out_type)
    return (d - lo).astype(out_type)


def _stable_topk(block, kk):
    """Indices of the ``kk`` smallest values per row, ties in index order."""
    n = block.shape[1]
    if kk >= n or block.dtype.itemsize <= 2 and np.issubdtype(block.dtype, np.unsignedinteger):
        return np.argsort(block, axis=1, kind="stable")[:, :kk]
    part = np.argpartition(block, kk - 1, axis=1)
    thr = np.take_along_axis(block, part[:, kk - 1 : kk], axis=1)
    less = block < thr
    eq = block == thr
    need = kk - less.sum(axis=1)
    sel = less | (eq & (np.cumsum(eq, axis=1) <= need[:, None]))
    idx = np.nonzero(sel)[1].reshape(block.shape[0], kk)  # ascending index per row
    order = np.argsort(np.take_along_axis(block, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


def _iter_rankings(d, kk, ties, rng):
    """Yield (row slice, top-kk ranking of those rows); shared by the public
    ranking and mAP functions so that a seed gives the same ranking in both."""
    small = _as_small_int(d)
    keyed = d if small is None else small
    n_db = d.shape[1]
    for sl in _row_blocks(d.shape[0], n_db):
        block = keyed[sl]
        if ties == "random":
            perm = rng.permuted(np.broadcast_to(np.arange(n_db), block.shape), axis=1)
            idx = _stable_topk(np.take_along_axis(block, perm, axis=1), kk)
            yield sl, np.take_along_axis(perm, idx, axis=1)
        else:
            yield sl, _stable_topk(block, kk)


# --------------------------------------------------------------------------
# private helpers: AP
# --------------------------------------------------------------------------


def _ap_sums(rel):
    """Per row: (sum over relevant ranks i of P@i, number of relevant items)."""
    n_q = rel.shape[0]
    sums = np.zeros(n_q)
    hits = np.zeros(n_q, dtype=np.int64)
    for sl in _row_blocks(n_q, rel.shape[1], 1 << 22):
        rows, cols = np.nonzero(rel[sl])
        m = sl.stop - sl.start
        h = np.bincount(rows, minlength=m)
        starts = np.cumsum(h) - h
        nth_hit = np.arange(1, rows.size + 1) - starts[rows]
        sums[sl] = np.bincount(rows, weights=nth_hit / (cols + 1.0), minlength=m)
        hits[sl] = h
    return sums, hits


def _normalise_ap(sums, hits, kk, n_rel, normalize, empty):
    if normalize == "retrieved":
        den = hits
    elif normalize == "min_k_relevant":
        den = np.minimum(kk, n_rel)
    else:
        den = n_rel
    is_empty = hits == 0
    ap = np.divide(sums, den, out=np.zeros_like(sums), where=den > 0)
    ap[is_empty] = np.nan if empty == "drop" else 0.0
    return ap


def _summarise(per_query, *, kk, normalize, empty, ties=None, n_tie_dependent_empty=0):
    dropped = np.isnan(per_query)
    n_dropped = int(dropped.sum())
    if n_dropped == per_query.size:
        warnings.warn(
            "every query is empty (no relevant item in the top k) and empty='drop' left them all "
            "out; the mean is nan",
            RuntimeWarning,
            stacklevel=3,
        )
        value = float("nan")
    else:
        value = float(per_query[~dropped].mean())
    return MAPResult(
        value=value,
        per_query=per_query,
        n_queries=int(per_query.size),
        n_dropped=n_dropped,
        k=int(kk),
        normalize=normalize,
        empty=empty,
        ties=ties,
        n_tie_dependent_empty=int(n_tie_dependent_empty),
    )


def _harmonic_diff(a, b):
    """H(b) - H(a) for non-negative integer arrays ``a <= b`` (digamma form,
    accurate for differences far smaller than H itself)."""
    return digamma(np.asarray(b, dtype=np.float64) + 1.0) - digamma(np.asarray(a, dtype=np.float64) + 1.0)


def _lchoose(n, k):
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)


def _expected_ap_from_groups(tot, relc, kk, normalize):
    """Exact expected AP@kk under uniformly random orders within tie groups.

    ``tot[q, g]`` / ``relc[q, g]``: items / relevant items of query ``q`` in
    tie group ``g`` (groups in ascending distance order; empty groups allowed).
    Returns (E[AP * 1{non-empty}], P(non-empty)) per query.
    """
    n = tot.astype(np.float64)
    r = relc.astype(np.float64)
    s = np.cumsum(n, axis=1) - n  # items ranked before the group
    big_r = np.cumsum(r, axis=1) - r  # relevant items ranked before the group
    m = np.clip(kk - s, 0.0, n)  # items of the group inside the cut
    b = np.where(n > 1, (r - 1.0) / np.maximum(n - 1.0, 1.0), 0.0)
    active = (m > 0) & (r > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        contrib = np.where(
            active,
            (r / np.maximum(n, 1.0)) * (m * b + (big_r + 1.0 - b * (s + 1.0)) * _harmonic_diff(s, s + m)),
            0.0,
        )
    full = (m == n) & (n > 0)
    straddle = (m > 0) & (m < n)
    has_straddle = straddle.any(axis=1)
    g_str = np.argmax(straddle, axis=1)
    rows = np.arange(n.shape[0])
    hits_full = np.where(full, r, 0.0).sum(axis=1)  # relevant items in groups wholly inside the cut

    # probability that the query is non-empty (some relevant item in the cut)
    p_nonempty = (hits_full > 0).astype(np.float64)
    n_s, r_s, m_s = n[rows, g_str], r[rows, g_str], m[rows, g_str]
    maybe = has_straddle & (hits_full == 0) & (r_s > 0)
    if maybe.any():
        nn, rr, mm = n_s[maybe], r_s[maybe], m_s[maybe]
        p_empty = np.where(nn - rr >= mm, np.exp(_lchoose(nn - rr, mm) - _lchoose(nn, mm)), 0.0)
        p_nonempty[maybe] = 1.0 - p_empty

    n_rel = r.sum(axis=1)
    if normalize in ("all_relevant", "min_k_relevant"):
        den = n_rel if normalize == "all_relevant" else np.minimum(float(kk), n_rel)
        e_sum = contrib.sum(axis=1)
        e_ap = np.divide(e_sum, den, out=np.zeros_like(e_sum), where=den > 0)
        return e_ap, p_nonempty

    # normalize == "retrieved": the denominator (hits in the cut) is random when
    # a group straddles the cut; condition on j = its relevant items inside the cut.
    s_before = np.where(full, contrib, 0.0).sum(axis=1)
    e_ap = np.divide(s_before, hits_full, out=np.zeros_like(s_before), where=hits_full > 0)
    idx = np.flatnonzero(has_straddle & (r_s > 0))
    if idx.size:
        g = g_str[idx]
        pr = dict(
            n=n[idx, g], r=r[idx, g], m=m[idx, g], s=s[idx, g], R=big_r[idx, g], sb=s_before[idx]
        )
        jlo = np.maximum(0.0, pr["m"] - (pr["n"] - pr["r"]))
        jhi = np.minimum(pr["r"], pr["m"])
        width = (jhi - jlo + 1).astype(np.int64)
        order = np.argsort(width)  # group rows of similar width to keep padding small
        budget = 1 << 20
        start = 0
        while start < idx.size:
            stop = start + 1
            while stop < idx.size and (stop - start + 1) * int(width[order[stop]]) <= budget:
                stop += 1
            sel = order[start:stop]
            w = int(width[sel].max())
            nn, rr, mm, ss, RR, sb = (pr[key][sel][:, None] for key in ("n", "r", "m", "s", "R", "sb"))
            jj = jlo[sel][:, None] + np.arange(w)[None, :]
            valid = jj <= jhi[sel][:, None]
            jj = np.where(valid, jj, jlo[sel][:, None])
            logp = _lchoose(rr, jj) + _lchoose(nn - rr, mm - jj) - _lchoose(nn, mm)
            pmf = np.where(valid, np.exp(logp), 0.0)
            pmf /= pmf.sum(axis=1, keepdims=True)
            bj = np.where(mm > 1, (jj - 1.0) / np.maximum(mm - 1.0, 1.0), 0.0)
            s_str = np.where(
                jj > 0, (jj / mm) * (mm * bj + (RR + 1.0 - bj * (ss + 1.0)) * _harmonic_diff(ss, ss + mm)), 0.0
            )
            den = RR + jj
            ap_j = np.divide(sb + s_str, den, out=np.zeros_like(s_str), where=den > 0)
            e_ap[idx[sel]] = (pmf * ap_j).sum(axis=1)
            start = stop
    return e_ap, p_nonempty


# --------------------------------------------------------------------------
# ranking and relevance
# --------------------------------------------------------------------------


def rank_by_distance(distances, *, k=None, ties="stable", seed=None):
    """Rank database items by ascending distance, with an explicit tie order.

    Used by notebooks 02, 03, 04, 05, 06 and 07 (every ranking-based metric).

    Parameters
    ----------
    distances : (n_queries, n_database) array_like of real
        Query-to-database distances (smaller is more similar). Booleans and
        integers (Hamming distances) are accepted; NaN is rejected.
    k : int, optional, keyword-only
        Return only the top ``k`` items; ``None`` ranks the whole database.
        ``k > n_database`` is clipped to ``n_database``.
    ties : {"stable", "random"}, keyword-only
        ``"stable"``: equal distances keep database index order.
        ``"random"``: equal distances are ordered uniformly at random,
        reproducibly for a given ``seed`` (and input shape).
    seed : int, SeedSequence or numpy.random.Generator, optional, keyword-only
        Required for ``ties="random"``; ignored otherwise.

    Returns
    -------
    ranking : (n_queries, k) ndarray of intp
        ``ranking[q, i]`` is the database index ranked ``i + 1``-th for ``q``.

    Raises
    ------
    ValueError
        Bad shape, NaN, ``k < 1``, unknown ``ties``, or ``ties="random"``
        without a seed.

    Notes
    -----
    Integer-valued distances with fewer than 65,536 distinct levels (after
    subtracting the minimum), including float Hamming distances such as
    ``0.5 * (b - B1 @ B2.T)``, are cast to ``uint8`` / ``uint16`` so numpy's
    stable sort is a radix sort. Other distances use ``argpartition`` to find
    the top ``k`` and a stable sort of those ``k``; items tied with the
    ``k``-th distance are taken in index order. ``"random"`` draws one
    permutation of the database per query and stable-sorts the permuted
    distances, which orders each tie group uniformly at random.

    Examples
    --------
    >>> rank_by_distance([[2, 0, 1, 0]])
    array([[1, 3, 2, 0]])
    >>> rank_by_distance([[2, 0, 1, 0]], k=2)
    array([[1, 3]])
    """
    d = _check_distances(distances)
    kk = _check_k(k, d.shape[1])
    _check_choice("ties", ties, _RANK_TIES)
    rng = _rng(seed) if ties == "random" else None
    out = np.empty((d.shape[0], kk), dtype=np.intp)
    for sl, ranking in _iter_rankings(d, kk, ties, rng):
        out[sl] = ranking
    return out


def relevance_matrix(query_labels, db_labels, ranking=None):
    """Boolean relevance of database items to queries, optionally in rank order.

    Used by notebooks 02-07.

    Parameters
    ----------
    query_labels : (n_queries,) or (n_queries, n_labels) array_like
        1-D: one class label per query (single-label data; any comparable
        dtype). 2-D: a 0/1 label-indicator matrix (multi-label data).
    db_labels : (n_database,) or (n_database, n_labels) array_like
        Database labels, same kind as ``query_labels``.
    ranking : (n_queries, k) array_like of int, optional
        Database indices in rank order, e.g. from :func:`rank_by_distance`.

    Returns
    -------
    rel : ndarray of bool
        ``(n_queries, k)`` in rank order if ``ranking`` is given, else
        ``(n_queries, n_database)`` in database order. Single-label: relevant
        iff the labels are equal. Multi-label: relevant iff query and item
        share at least one label (as the NUS-WIDE / MS-COCO hashing papers).

    Raises
    ------
    ValueError
        Mismatched label kinds or label counts, non-0/1 indicator matrices, or
        a ``ranking`` of the wrong shape or with out-of-range indices.

    Examples
    --------
    >>> relevance_matrix([0, 1], [1, 0, 0], ranking=[[1, 2, 0], [0, 1, 2]])
    array([[ True,  True, False],
           [ True, False, False]])
    """
    q, db, multi = _check_labels(query_labels, db_labels)
    n_q, n_db = q.shape[0], db.shape[0]
    if ranking is not None:
        ranking = _check_ranking(ranking, n_q, n_db)
    if not multi:
        if ranking is None:
            return q[:, None] == db[None, :]
        return db[ranking] == q[:, None]
    out = np.empty((n_q, n_db if ranking is None else ranking.shape[1]), dtype=bool)
    for sl in _row_blocks(n_q, n_db, 1 << 22):
        shared = (q[sl] @ db.T) > 0
        out[sl] = shared if ranking is None else np.take_along_axis(shared, ranking[sl], axis=1)
    return out


def count_relevant(query_labels, db_labels):
    """Number of relevant database items for each query.

    Used by notebooks 02-07 for ``n_relevant`` (recall, mAP with
    ``normalize="all_relevant"`` or ``"min_k_relevant"``, capped precision).

    Parameters
    ----------
    query_labels, db_labels : array_like
        As in :func:`relevance_matrix`.

    Returns
    -------
    n_relevant : (n_queries,) ndarray of int64
    """
    q, db, multi = _check_labels(query_labels, db_labels)
    if not multi:
        values, counts = np.unique(db, return_counts=True)
        pos = np.clip(np.searchsorted(values, q), 0, values.size - 1)
        return np.where(values[pos] == q, counts[pos], 0).astype(np.int64)
    out = np.empty(q.shape[0], dtype=np.int64)
    for sl in _row_blocks(q.shape[0], db.shape[0], 1 << 22):
        out[sl] = ((q[sl] @ db.T) > 0).sum(axis=1)
    return out


def remove_junk(rel, junk):
    """Remove "junk" items (e.g. revisitop's ``junk`` list) from rankings.

    Used by notebook 05 (Paris6k, revisitop protocol).

    Parameters
    ----------
    rel, junk : (n_queries, n_ranked) array_like of bool
        Relevance and junk flags, both in rank order.

    Returns
    -------
    rel : (n_queries, n_ranked) ndarray of bool
        Each row with its junk positions removed (later items move up) and
        padded with ``False`` at the end, as revisitop shifts ranks.
    """
    rel = _check_rel(rel)
    junk = _check_rel(junk, "junk")
    if junk.shape != rel.shape:
        raise ValueError(f"junk must have the shape of rel {rel.shape}, got {junk.shape}")
    order = np.argsort(junk, axis=1, kind="stable")  # kept items first, in rank order
    out = np.take_along_axis(rel & ~junk, order, axis=1)
    return out


# --------------------------------------------------------------------------
# precision, recall, F1
# --------------------------------------------------------------------------


def precision_at_ks(rel, ks, *, n_relevant=None, capped=False):
    """Precision at several cut-offs for every query (a P@K curve).

    Used by notebooks 03 (P@K curves), 05 (top 1/5/10) and 06 (P@10/20/100).

    Parameters
    ----------
    rel : (n_queries, n_ranked) array_like of bool
        Relevance in rank order.
    ks : sequence of int
        Cut-offs, each >= 1; values above ``n_ranked`` are clipped.
    n_relevant : (n_queries,) array_like of int, optional, keyword-only
        Relevant items in the database per query; used only when ``capped``.
        ``None`` means ``rel.sum(axis=1)`` (``rel`` ranks the whole database).
    capped : {False, True, "n_relevant", "revisitop"}, keyword-only
        ``False``: hits / k. ``True`` or ``"n_relevant"``: hits /
        ``min(k, n_relevant)``. ``"revisitop"``: hits / ``min(k, rank of the
        last relevant item)``, as revisitop's ``compute_map``. Capped values
        are ``nan`` for queries with no relevant item.

    Returns
    -------
    precision : (n_queries, len(ks)) ndarray of float
        Average over axis 0 (``np.nanmean(..., axis=0)`` when capped) for the
        curve.
    """
    rel = _check_rel(rel)
    kks = _check_ks(ks, rel.shape[1])
    _check_choice("capped", capped, _CAPPED)
    kmax = int(kks.max())
    hits = np.cumsum(rel[:, :kmax], axis=1, dtype=np.int64)[:, kks - 1]
    if capped is False:
        return hits / kks[None, :].astype(np.float64)
    n_rel = _check_n_relevant(n_relevant, rel)[:, None]
    if capped is True or capped == "n_relevant":
        den = np.minimum(kks[None, :], n_rel)
    else:
        top = rel[:, :kmax]
        last = np.where(top.any(axis=1), kmax - np.argmax(top[:, ::-1], axis=1), 0)[:, None]
        den = np.where(hits == n_rel, last, kks[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        out = hits / den.astype(np.float64)
    out[np.broadcast_to(n_rel == 0, out.shape)] = np.nan
    return out


def precision_at_k(rel, k, *, n_relevant=None, capped=False):
    """Precision of the top ``k`` for every query.

    Used by notebooks 02, 04, 05 (plain and capped, paper 002 Table 2),
    06 (P@10/20/100). :func:`retrieval_accuracy_at_k` with
    ``definition="precision"`` is the same number.

    Parameters
    ----------
    rel : (n_queries, n_ranked) array_like of bool
        Relevance in rank order.
    k : int
        Cut-off (>= 1); ``k > n_ranked`` is clipped to ``n_ranked``.
    n_relevant, capped
        See :func:`precision_at_ks`. ``capped=True`` divides by
        ``min(k, n_relevant)``; ``capped="revisitop"`` by ``min(k, rank of the
        last relevant item)``.

    Returns
    -------
    precision : (n_queries,) ndarray of float

    Examples
    --------
    >>> rel = [[1, 0, 1, 0, 0]]
    >>> precision_at_k(rel, 2)
    array([0.5])
    >>> precision_at_k(rel, 5, capped=True)   # 2 hits / min(5, 2)
    array([1.])
    >>> precision_at_k(rel, 5, capped="revisitop")   # 2 hits / min(5, 3)
    array([0.66666667])
    """
    return precision_at_ks(rel, [k], n_relevant=n_relevant, capped=capped)[:, 0]


def recall_at_k(rel, k, *, n_relevant=None):
    """Recall of the top ``k`` for every query: hits / ``n_relevant``.

    Used by notebooks 02 (paper 000's "retrieval rate", paper 001's recall),
    04 and 06 (R@10/20/100).

    Parameters
    ----------
    rel : (n_queries, n_ranked) array_like of bool
        Relevance in rank order.
    k : int
        Cut-off (>= 1), clipped to ``n_ranked``.
    n_relevant : (n_queries,) array_like of int, optional, keyword-only
        Relevant items in the whole database; ``None`` means
        ``rel.sum(axis=1)``, correct only if ``rel`` ranks the whole database.

    Returns
    -------
    recall : (n_queries,) ndarray of float
        ``nan`` for queries with no relevant item.
    """
    rel = _check_rel(rel)
    kk = _check_k(k, rel.shape[1])
    n_rel = _check_n_relevant(n_relevant, rel)
    hits = rel[:, :kk].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_rel > 0, hits / np.maximum(n_rel, 1), np.nan)


def f1_at_k(rel, k, *, n_relevant=None):
    """Harmonic mean of :func:`precision_at_k` and :func:`recall_at_k`.

    Used by notebooks 02 and 04 (paper 000 Table 2 "F1-Score").

    Parameters
    ----------
    rel, k, n_relevant
        As in :func:`recall_at_k`.

    Returns
    -------
    f1 : (n_queries,) ndarray of float
        ``2 * hits / (k + n_relevant)``; 0 when nothing relevant is retrieved,
        ``nan`` for queries with no relevant item.
    """
    rel = _check_rel(rel)
    kk = _check_k(k, rel.shape[1])
    n_rel = _check_n_relevant(n_relevant, rel)
    hits = rel[:, :kk].sum(axis=1)
    return np.where(n_rel > 0, 2.0 * hits / (kk + n_rel), np.nan)


def r_precision(rel, *, n_relevant=None):
    """Precision at ``k = n_relevant`` (where precision equals recall).

    Used by notebook 02 (paper 000, whose precision, recall and F1 are nearly
    equal).

    Parameters
    ----------
    rel : (n_queries, n_ranked) array_like of bool
        Relevance in rank order.
    n_relevant : (n_queries,) array_like of int, optional, keyword-only
        As in :func:`recall_at_k`. If ``n_relevant > n_ranked`` the missing
        ranks count as not relevant.

    Returns
    -------
    r_precision : (n_queries,) ndarray of float
        ``nan`` for queries with no relevant item.
    """
    rel = _check_rel(rel)
    n_rel = _check_n_relevant(n_relevant, rel)
    cs = np.cumsum(rel, axis=1, dtype=np.int64)
    cut = np.clip(n_rel, 1, rel.shape[1]) - 1
    hits = cs[np.arange(rel.shape[0]), cut]
    return np.where(n_rel > 0, hits / np.maximum(n_rel, 1), np.nan)


# --------------------------------------------------------------------------
# average precision
# --------------------------------------------------------------------------


def average_precision(rel, *, normalize, k=None, n_relevant=None, empty="zero"):
    """Average precision of each query, cut at ``k``, with a named convention.

    Used by notebooks 02-07 (through :func:`mean_average_precision`).

    Parameters
    ----------
    rel : (n_queries, n_ranked) array_like of bool
        Relevance in rank order.
    normalize : {"retrieved", "min_k_relevant", "all_relevant"}, keyword-only
        Denominator of ``sum_{i<=k} rel_i * P@i``: the relevant items within
        the top ``k`` (DeepHash-pytorch ``CalcTopMap``), ``min(k,
        n_relevant)``, or ``n_relevant`` (TREC; equals scikit-learn's
        ``average_precision_score`` for ``k=None`` without ties). Required:
        the three differ by many points at ``k = 5000``.
    k : int, optional, keyword-only
        Cut-off; ``None`` is the whole ranking; larger values are clipped to
        ``n_ranked`` (and the clipped value is used by ``"min_k_relevant"``).
    n_relevant : (n_queries,) array_like of int, optional, keyword-only
        Relevant items in the database per query. ``None`` means
        ``rel.sum(axis=1)``, i.e. ``rel`` ranks the whole database. Must be at
        least the number of relevant items in ``rel``. Validated, but not
        needed, for ``"retrieved"``.
    empty : {"zero", "drop"}, keyword-only
        A query with no relevant item within the top ``k`` gets AP 0
        (``"zero"``) or ``nan`` (``"drop"``).

    Returns
    -------
    ap : (n_queries,) ndarray of float

    Raises
    ------
    ValueError
        Unknown option, ``k < 1``, bad shapes, or ``n_relevant`` smaller than
        the relevant items seen in ``rel``.

    Examples
    --------
    Ranking ``[R, N, R, N]`` with 3 relevant items in the database and
    ``k = 4``: ``P@1 = 1`` and ``P@3 = 2/3`` sum to ``5/3``.

    >>> rel = [[1, 0, 1, 0]]
    >>> average_precision(rel, k=4, normalize="retrieved")             # / 2
    array([0.83333333])
    >>> average_precision(rel, k=4, n_relevant=[3], normalize="all_relevant")  # / 3
    array([0.55555556])
    """
    rel = _check_rel(rel)
    _check_choice("normalize", normalize, _NORMALIZE)
    _check_choice("empty", empty, _EMPTY)
    kk = _check_k(k, rel.shape[1])
    n_rel = _check_n_relevant(n_relevant, rel)
    sums, hits = _ap_sums(rel[:, :kk])
    return _normalise_ap(sums, hits, kk, n_rel, normalize, empty)


def mean_average_precision(rel, *, normalize, k=None, n_relevant=None, empty="zero"):
    """Mean average precision (mAP@K) over queries, with a named convention.

    Used by notebooks 02, 04, 05, 06 (mAP, mAP@5/10/20/100) and 07.

    Parameters
    ----------
    rel, normalize, k, n_relevant, empty
        As in :func:`average_precision`.

    Returns
    -------
    result : MAPResult
        ``result.value`` (or ``float(result)``) is the mean over kept queries,
        ``result.per_query`` the AP values (``nan`` where dropped) and
        ``result.n_dropped`` the number of dropped queries. If every query is
        dropped the value is ``nan`` and a ``RuntimeWarning`` is issued.

    Examples
    --------
    Query 1 ranks ``[R, N, R]``, query 2 retrieves nothing relevant in its
    top 3:

    >>> rel = [[1, 0, 1], [0, 0, 0]]
    >>> res = mean_average_precision(rel, normalize="retrieved", empty="zero")
    >>> round(res.value, 4), res.n_dropped       # (1 + 2/3) / 2 / 2 queries
    (0.4167, 0)
    >>> res = mean_average_precision(rel, normalize="retrieved", empty="drop")
    >>> round(res.value, 4), res.n_dropped
    (0.8333, 1)
    """
    rel = _check_rel(rel)
    _check_choice("normalize", normalize, _NORMALIZE)
    _check_choice("empty", empty, _EMPTY)
    kk = _check_k(k, rel.shape[1])
    ap = average_precision(rel, k=kk, n_relevant=n_relevant, normalize=normalize, empty=empty)
    return _summarise(ap, kk=kk, normalize=normalize, empty=empty)


def mean_average_precision_from_distances(
    distances, query_labels, db_labels, *, normalize, k=None, empty="zero", ties="stable", seed=None
):
    """mAP@K straight from distances, with an explicit treatment of ties.

    Used by notebooks 03 (Hamming ranking) and 07 (survey mAP@5000, mAP@1000,
    mAP@54000, mAP@All), and by 02/04 for Euclidean distances.

    Parameters
    ----------
    distances : (n_queries, n_database) array_like of real
        Query-to-database distances, e.g. integer Hamming distances.
    query_labels, db_labels : array_like
        Single-label (1-D) or multi-label (2-D 0/1) labels; see
        :func:`relevance_matrix`.
    normalize : {"retrieved", "min_k_relevant", "all_relevant"}, keyword-only
        As in :func:`average_precision`.
    k : int, optional, keyword-only
        Cut-off (e.g. 5000, 1000); ``None`` for mAP@All; clipped to
        ``n_database``.
    empty : {"zero", "drop"}, keyword-only
        As in :func:`average_precision`.
    ties : {"stable", "random", "expected"}, keyword-only
        ``"stable"`` and ``"random"`` rank with :func:`rank_by_distance` (the
        same seed gives the same ranking there). ``"expected"`` returns, per
        query, the exact expected AP over uniformly random orders of every
        group of equal distances.
    seed : int, SeedSequence or Generator, optional, keyword-only
        Required for ``ties="random"``; ignored otherwise.

    Returns
    -------
    result : MAPResult
        With ``result.ties`` set, and for ``"expected"`` the count
        ``result.n_tie_dependent_empty``.

    Notes
    -----
    ``ties="expected"`` never sorts. Integer-valued distances with a small
    range (Hamming) are turned into per-query histograms of relevant and
    non-relevant items per distance value with one ``np.bincount``; other
    distances are sorted once per query to find their tie groups. From the
    histograms the expected AP follows in closed form (module docstring):
    exact for ``"all_relevant"`` and ``"min_k_relevant"`` including a tie
    group straddling ``k``; for ``"retrieved"`` exact by summing over the
    hypergeometric number of relevant items of the straddling group that fall
    inside the cut.

    Whether a query is *empty* (nothing relevant in the top ``k``) can itself
    depend on the tie order: when nothing relevant precedes a straddling group
    that holds relevant items. With ``empty="zero"`` this is harmless (the
    result is the exact expected mAP). With ``empty="drop"`` the exact
    expectation of a mean over a random set of queries does not decompose per
    query; we report, for such a query, its expected AP *given that it is not
    empty*, drop only queries that are empty under every order, and count the
    tie-dependent ones in ``result.n_tie_dependent_empty`` (0 means the result
    is exact).

    Examples
    --------
    Two database items tie at distance 0, one relevant: the relevant one is
    first in half of the orders (AP 1) and second in the other half (AP 1/2).

    >>> res = mean_average_precision_from_distances(
    ...     [[0, 0, 1]], [1], [0, 1, 0], normalize="all_relevant", ties="expected")
    >>> res.value
    0.75
    """
    d = _check_distances(distances)
    q, db, multi = _check_labels(query_labels, db_labels)
    _check_choice("normalize", normalize, _NORMALIZE)
    _check_choice("empty", empty, _EMPTY)
    _check_choice("ties", ties, _MAP_TIES)
    if d.shape != (q.shape[0], db.shape[0]):
        raise ValueError(
            f"distances must have shape (n_queries, n_database) = ({q.shape[0]}, {db.shape[0]}), got {d.shape}"
        )
    n_q, n_db = d.shape
    kk = _check_k(k, n_db)

    if ties in ("stable", "random"):
        rng = _rng(seed) if ties == "random" else None
        n_rel = count_relevant(query_labels, db_labels)
        ap = np.empty(n_q)
        for sl, ranking in _iter_rankings(d, kk, ties, rng):
            rel = _ranked_rel(q[sl], db, ranking, multi)
            sums, hits = _ap_sums(rel)
            ap[sl] = _normalise_ap(sums, hits, kk, n_rel[sl], normalize, empty)
        return _summarise(ap, kk=kk, normalize=normalize, empty=empty, ties=ties)

    small = _as_small_int(d)
    if small is not None and int(small.max()) + 1 > max(n_db, 256):
        small = None  # sparse levels: sorting each query's row is cheaper than the histogram
    e_ap = np.empty(n_q)
    p_nonempty = np.empty(n_q)
    if small is not None:
        n_levels = int(small.max()) + 1
        # outer blocks: histograms of many queries, scored together; inner blocks:
        # a few queries per bincount, so that the keys stay in cache
        for outer in _row_blocks(n_q, n_levels, 1 << 20):
            n_outer = outer.stop - outer.start
            counts = np.empty((n_outer, n_levels, 2), dtype=np.int64)
            for inner in _row_blocks(n_outer, n_db):
                sl = slice(outer.start + inner.start, outer.start + inner.stop)
                rows = inner.stop - inner.start
                key = small[sl].astype(np.intp)
                key <<= 1
                key += _full_rel(q[sl], db, multi)
                key += (np.arange(rows, dtype=np.intp) * (2 * n_levels))[:, None]
                counts[inner] = np.bincount(key.ravel(), minlength=rows * 2 * n_levels).reshape(rows, n_levels, 2)
            e_ap[outer], p_nonempty[outer] = _expected_ap_from_groups(
                counts.sum(axis=2), counts[:, :, 1], kk, normalize
            )
    else:
        for sl in _row_blocks(n_q, n_db):
            rel = _full_rel(q[sl], db, multi)
            rows = sl.stop - sl.start
            order = np.argsort(d[sl], axis=1)
            ds = np.take_along_axis(d[sl], order, axis=1)
            rs = np.take_along_axis(rel, order, axis=1)
            gid = np.zeros(ds.shape, dtype=np.intp)
            np.cumsum(ds[:, 1:] != ds[:, :-1], axis=1, out=gid[:, 1:])
            key = gid * 2 + rs + (np.arange(rows, dtype=np.intp) * (2 * n_db))[:, None]
            counts = np.bincount(key.ravel(), minlength=rows * 2 * n_db).reshape(rows, n_db, 2)
            e_ap[sl], p_nonempty[sl] = _expected_ap_from_groups(
                counts.sum(axis=2), counts[:, :, 1], kk, normalize
            )
    tie_dependent = int(((p_nonempty > 0) & (p_nonempty < 1)).sum())
    if empty == "zero":
        ap = e_ap
    else:
        ap = np.full(n_q, np.nan)
        ok = p_nonempty > 0
        ap[ok] = e_ap[ok] / p_nonempty[ok]
    return _summarise(
        ap, kk=kk, normalize=normalize, empty=empty, ties="expected", n_tie_dependent_empty=tie_dependent
    )


def _full_rel(q, db, multi):
    if not multi:
        return q[:, None] == db[None, :]
    return (q @ db.T) > 0


def _ranked_rel(q, db, ranking, multi):
    if not multi:
        return db[ranking] == q[:, None]
    return np.take_along_axis((q @ db.T) > 0, ranking, axis=1)


# --------------------------------------------------------------------------
# curves, radius precision, accuracy
# --------------------------------------------------------------------------


def precision_recall_curve(rel, n_relevant, *, mode="ranks", ranks=None, recall_levels=None):
    """Precision-recall curve averaged over queries, as in the hashing papers.

    Used by notebooks 03 (PR curves of Hamming ranking) and 02/04 (paper 000
    Fig. 5).

    Parameters
    ----------
    rel : (n_queries, n_ranked) array_like of bool
        Relevance in rank order.
    n_relevant : (n_queries,) array_like of int or None
        Relevant items in the database per query (``None``: ``rel`` ranks the
        whole database). Queries with none are left out (``n_dropped``).
    mode : {"ranks", "interpolated"}, keyword-only
        ``"ranks"``: mean precision and mean recall at each rank cut-off
        (every rank, or ``ranks``). ``"interpolated"``: mean interpolated
        precision ``max_{recall' >= level} precision`` at each recall level
        (the 11-point curve by default); a level a query never reaches within
        ``rel`` counts as precision 0; ``recall`` is then the levels.
    ranks : sequence of int, optional, keyword-only
        Cut-offs for ``mode="ranks"`` (clipped to ``n_ranked``); default
        ``1..n_ranked``.
    recall_levels : sequence of float, optional, keyword-only
        Levels in [0, 1] for ``mode="interpolated"``; default
        ``np.linspace(0, 1, 11)``.

    Returns
    -------
    curve : PRCurve
    """
    rel = _check_rel(rel)
    _check_choice("mode", mode, _PR_MODES)
    n_rel = _check_n_relevant(n_relevant, rel)
    keep = n_rel > 0
    n_dropped = int((~keep).sum())
    if not keep.any():
        raise ValueError("no query has a relevant item; the precision-recall curve is undefined")
    rel_k, n_rel_k = rel[keep], n_rel[keep]
    n_k, n_ranked = rel_k.shape
    if mode == "ranks":
        if ranks is not None and recall_levels is not None:
            raise ValueError("recall_levels is for mode='interpolated'")
        cut = np.arange(1, n_ranked + 1) if ranks is None else _check_ks(ranks, n_ranked)
        hits_sum_p = np.zeros(cut.size)
        hits_sum_r = np.zeros(cut.size)
        for sl in _row_blocks(n_k, n_ranked, 1 << 22):
            hits = np.cumsum(rel_k[sl], axis=1, dtype=np.int64)[:, cut - 1]
            hits_sum_p += hits.sum(axis=0)
            hits_sum_r += (hits / n_rel_k[sl, None]).sum(axis=0)
        return PRCurve(
            precision=hits_sum_p / cut / n_k,
            recall=hits_sum_r / n_k,
            points=cut,
            mode=mode,
            n_queries=int(rel.shape[0]),
            n_dropped=n_dropped,
        )
    if ranks is not None:
        raise ValueError("ranks is for mode='ranks'")
    levels = np.linspace(0.0, 1.0, 11) if recall_levels is None else np.asarray(recall_levels, dtype=np.float64)
    if levels.ndim != 1 or levels.size == 0 or (levels < 0).any() or (levels > 1).any():
        raise ValueError("recall_levels must be a non-empty 1-D sequence of values in [0, 1]")
    total = np.zeros(levels.size)
    pos = np.arange(1, n_ranked + 1)
    for sl in _row_blocks(n_k, n_ranked, 1 << 22):
        cs = np.cumsum(rel_k[sl], axis=1, dtype=np.int64)
        prec = cs / pos
        best_after = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
        best_after = np.concatenate([best_after, np.zeros((best_after.shape[0], 1))], axis=1)
        for j, level in enumerate(levels):
            # hits needed to reach the level, robust to 0.1 * 3 != 0.3
            need = np.ceil(level * n_rel_k[sl] - 1e-9)
            first = (cs < need[:, None]).sum(axis=1)  # cs is non-decreasing
            total[j] += best_after[np.arange(first.size), first].sum()
    return PRCurve(
        precision=total / n_k,
        recall=levels.copy(),
        points=levels.copy(),
        mode=mode,
        n_queries=int(rel.shape[0]),
        n_dropped=n_dropped,
    )


def precision_within_radius(distances, relevance, *, radius=2, empty="zero"):
    """Precision of the database items within a Hamming radius of each query.

    Used by notebook 03 (the hashing papers' "precision within Hamming radius
    2").

    Parameters
    ----------
    distances : (n_queries, n_database) array_like of real
        Query-to-database (Hamming) distances.
    relevance : (n_queries, n_database) array_like of bool
        Relevance in **database order**, e.g. ``relevance_matrix(q, db)``.
    radius : float, keyword-only
        Items with ``distance <= radius`` are retrieved.
    empty : {"zero", "drop"}, keyword-only
        Precision of a query with nothing within the radius: 0 (the
        hashing-paper convention) or ``nan`` (leave it out with
        ``np.nanmean``).

    Returns
    -------
    precision : (n_queries,) ndarray of float
    """
    d = _check_distances(distances)
    rel = _check_rel(relevance, "relevance")
    _check_choice("empty", empty, _EMPTY)
    if rel.shape != d.shape:
        raise ValueError(f"relevance must have the shape of distances {d.shape}, got {rel.shape}")
    if not np.isscalar(radius) or not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be a finite number >= 0, got {radius!r}")
    within = d <= radius
    count = within.sum(axis=1)
    hits = (within & rel).sum(axis=1)
    out = np.divide(hits, count, out=np.zeros(count.shape), where=count > 0)
    if empty == "drop":
        out[count == 0] = np.nan
    return out


def knn_vote(ranked_labels, *, k=None):
    """Plurality label of the top ``k`` retrieved items (kNN classification).

    Used by notebook 02 (paper 001 "accuracy"; with scikit-learn for the
    classification reading of its precision and recall).

    Parameters
    ----------
    ranked_labels : (n_queries, n_ranked) array_like
        Single labels of the retrieved items, in rank order
        (``db_labels[ranking]``).
    k : int, optional, keyword-only
        Voters; ``None`` for all; clipped to ``n_ranked``.

    Returns
    -------
    predicted : (n_queries,) ndarray
        The most frequent label; a tie goes to the tied label ranked first
        (the nearest neighbour among them).

    Examples
    --------
    >>> knn_vote([[3, 1, 1, 3, 2]], k=4)   # 3 and 1 tie; 3 is ranked first
    array([3])
    """
    lab = np.asarray(ranked_labels)
    if lab.ndim != 2 or 0 in lab.shape:
        raise ValueError(f"ranked_labels must be a non-empty 2-D (n_queries, n_ranked) array, got {lab.shape}")
    kk = _check_k(k, lab.shape[1])
    top = lab[:, :kk]
    values, codes = np.unique(top, return_inverse=True)
    codes = codes.reshape(top.shape)
    n_q, n_c = top.shape[0], values.size
    flat = codes + (np.arange(n_q) * n_c)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n_q * n_c).reshape(n_q, n_c)
    first = np.full(n_q * n_c, kk, dtype=np.int64)
    np.minimum.at(first, flat.ravel(), np.broadcast_to(np.arange(kk), top.shape).ravel())
    first = first.reshape(n_q, n_c)
    score = np.where(counts == counts.max(axis=1, keepdims=True), first, kk + 1)
    return values[np.argmin(score, axis=1)]


def retrieval_accuracy_at_k(rel, k, *, definition, query_labels=None, ranked_labels=None):
    """Per-query "retrieval accuracy" of the top ``k``, under a named definition.

    Used by notebook 02 (paper 000 "Accuracy": ``k=1``; paper 001 Table I
    "Accuracy": ``definition="knn"`` with ``k`` = 20..100 retrieved images).
    The module docstring explains which definition we adopt for which paper.

    Parameters
    ----------
    rel : (n_queries, n_ranked) array_like of bool, or None
        Relevance in rank order (unused, may be ``None``, for ``"knn"``).
    k : int
        Cut-off, >= 1, clipped to ``n_ranked``.
    definition : {"precision", "hit", "majority", "knn"}, keyword-only
        ``"precision"``: fraction of the top ``k`` that is relevant (P@k).
        ``"hit"``: 1 if at least one of the top ``k`` is relevant.
        ``"majority"``: 1 if more than half of the top ``k`` are relevant
        (works for multi-label data).
        ``"knn"``: 1 if the plurality label of the top ``k``
        (:func:`knn_vote`) equals the query label (kNN classification
        accuracy; single-label only; needs ``query_labels`` and
        ``ranked_labels``). For ``k = 1`` all four agree.
    query_labels : (n_queries,) array_like, optional, keyword-only
    ranked_labels : (n_queries, n_ranked) array_like, optional, keyword-only
        Labels for ``"knn"``.

    Returns
    -------
    accuracy : (n_queries,) ndarray of float
        Average it for the paper's percentage.
    """
    _check_choice("definition", definition, _ACCURACY)
    if definition == "knn":
        if query_labels is None or ranked_labels is None:
            raise ValueError("definition='knn' needs query_labels and ranked_labels")
        ql = np.asarray(query_labels)
        lab = np.asarray(ranked_labels)
        if ql.ndim != 1 or lab.ndim != 2 or lab.shape[0] != ql.shape[0]:
            raise ValueError(
                "definition='knn' needs 1-D query_labels (n_queries,) and 2-D ranked_labels "
                f"(n_queries, n_ranked), got {ql.shape} and {lab.shape}"
            )
        kk = _check_k(k, lab.shape[1])
        return (knn_vote(lab, k=kk) == ql).astype(np.float64)
    rel = _check_rel(rel)
    kk = _check_k(k, rel.shape[1])
    hits = rel[:, :kk].sum(axis=1)
    if definition == "precision":
        return hits / kk
    if definition == "hit":
        return (hits > 0).astype(np.float64)
    return (2 * hits > kk).astype(np.float64)
