"""Tests for cbirlib.metrics: hand-computed cases, peer agreement, ties, validation."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import average_precision_score

from cbirlib import metrics as M

NORMALIZE = ("retrieved", "min_k_relevant", "all_relevant")


# --------------------------------------------------------------------------
# naive references (one query at a time, plain Python)
# --------------------------------------------------------------------------


def naive_ap(rel_row, k, n_rel, normalize):
    """AP@k of one ranked 0/1 list; None when nothing relevant is in the top k."""
    k = min(k, len(rel_row))
    hits, total = 0, 0.0
    for i in range(k):
        if rel_row[i]:
            hits += 1
            total += hits / (i + 1)
    if hits == 0:
        return None
    z = {"retrieved": hits, "min_k_relevant": min(k, n_rel), "all_relevant": n_rel}[normalize]
    return total / z


def brute_force_expected_ap(dist_row, rel_row, k, normalize):
    """Mean AP@k over every order of the tie groups (all permutations).

    Returns (mean AP with empty -> 0, mean AP over non-empty orders or None,
    fraction of orders that are non-empty).
    """
    dist_row = np.asarray(dist_row)
    rel_row = np.asarray(rel_row, dtype=bool)
    n_rel = int(rel_row.sum())
    groups = [np.flatnonzero(dist_row == v) for v in np.unique(dist_row)]
    values = []
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = np.concatenate([np.array(p, dtype=int) for p in perms])
        values.append(naive_ap(rel_row[order], k, n_rel, normalize))
    zero = np.mean([0.0 if v is None else v for v in values])
    kept = [v for v in values if v is not None]
    return zero, (np.mean(kept) if kept else None), len(kept) / len(values)


# --------------------------------------------------------------------------
# ranking
# --------------------------------------------------------------------------


def test_rank_stable_hand():
    d = np.array([[3, 1, 2, 1, 0, 1]])
    # distance 0: item 4; distance 1: items 1, 3, 5 (index order); 2: item 2; 3: item 0
    np.testing.assert_array_equal(M.rank_by_distance(d), [[4, 1, 3, 5, 2, 0]])
    np.testing.assert_array_equal(M.rank_by_distance(d, k=3), [[4, 1, 3]])
    # the same with float distances (general argpartition path)
    np.testing.assert_array_equal(M.rank_by_distance(d + 0.5, k=3), [[4, 1, 3]])
    np.testing.assert_array_equal(M.rank_by_distance(d.astype(float) * 1.1, k=3), [[4, 1, 3]])


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float64, np.float32, np.int16])
@pytest.mark.parametrize("scale", [1.0, 0.37])
def test_rank_stable_matches_lexsort(dtype, scale):
    rng = np.random.default_rng(0)
    d = rng.integers(-3 if dtype in (np.int64, np.int16) else 0, 6, size=(7, 300))
    d = (d * scale).astype(dtype) if np.issubdtype(dtype, np.floating) else d.astype(dtype)
    idx = np.arange(d.shape[1])
    ref = np.stack([np.lexsort((idx, row)) for row in d])
    for k in (None, 1, 17, 150, 300, 1000):
        got = M.rank_by_distance(d, k=k)
        kk = 300 if k is None else min(k, 300)
        np.testing.assert_array_equal(got, ref[:, :kk])
        assert got.dtype == np.intp


def test_rank_random_reproducible_and_varies():
    rng = np.random.default_rng(1)
    d = rng.integers(0, 3, size=(4, 60))
    a = M.rank_by_distance(d, ties="random", seed=7)
    b = M.rank_by_distance(d, ties="random", seed=7)
    c = M.rank_by_distance(d, ties="random", seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for r in (a, c):
        # still a ranking by distance: every row a permutation, distances non-decreasing
        np.testing.assert_array_equal(np.sort(r, axis=1), np.tile(np.arange(60), (4, 1)))
        assert (np.diff(np.take_along_axis(d, r, axis=1), axis=1) >= 0).all()
    # top-k with random ties equals the head of the full random ranking
    np.testing.assert_array_equal(M.rank_by_distance(d, k=10, ties="random", seed=7), a[:, :10])
    # float distances too (argpartition path)
    f = d * 0.3
    fa = M.rank_by_distance(f, k=25, ties="random", seed=3)
    assert (np.diff(np.take_along_axis(f, fa, axis=1), axis=1) >= 0).all()
    np.testing.assert_array_equal(fa, M.rank_by_distance(f, k=25, ties="random", seed=3))


def test_rank_random_is_uniform_within_ties():
    # one tie group of three: each item should lead about a third of the time
    d = np.zeros((1, 3))
    firsts = [M.rank_by_distance(d, ties="random", seed=s)[0, 0] for s in range(600)]
    counts = np.bincount(firsts, minlength=3)
    assert counts.min() > 150, counts


def test_rank_validation():
    with pytest.raises(ValueError, match="seed"):
        M.rank_by_distance([[0, 1]], ties="random")
    with pytest.raises(ValueError, match="ties"):
        M.rank_by_distance([[0, 1]], ties="expected")
    with pytest.raises(ValueError, match=">= 1"):
        M.rank_by_distance([[0, 1]], k=0)
    with pytest.raises(TypeError):
        M.rank_by_distance([[0, 1]], k=2.0)
    with pytest.raises(ValueError, match="2-D"):
        M.rank_by_distance([0, 1])
    with pytest.raises(ValueError, match="NaN"):
        M.rank_by_distance([[0.0, np.nan]])
    # k > n_database is clipped
    assert M.rank_by_distance([[1, 0]], k=10).shape == (1, 2)


# --------------------------------------------------------------------------
# relevance
# --------------------------------------------------------------------------


def test_relevance_single_label():
    q = np.array([0, 2])
    db = np.array([2, 0, 0, 1])
    np.testing.assert_array_equal(
        M.relevance_matrix(q, db), [[False, True, True, False], [True, False, False, False]]
    )
    ranking = np.array([[3, 1, 0], [0, 2, 1]])
    np.testing.assert_array_equal(
        M.relevance_matrix(q, db, ranking), [[False, True, False], [True, False, False]]
    )
    np.testing.assert_array_equal(M.count_relevant(q, db), [2, 1])
    np.testing.assert_array_equal(M.count_relevant([5, 1], db), [0, 1])
    # string labels work too
    np.testing.assert_array_equal(M.count_relevant(["a", "b"], ["b", "b", "c"]), [0, 2])


def test_relevance_multi_label():
    q = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]])
    db = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 1]])
    # shares >= 1 label
    expected = np.array(
        [[True, False, False, True], [True, True, False, True], [False, False, False, False]]
    )
    np.testing.assert_array_equal(M.relevance_matrix(q, db), expected)
    ranking = np.array([[3, 2], [1, 2], [0, 1]])
    np.testing.assert_array_equal(M.relevance_matrix(q, db, ranking), np.take_along_axis(expected, ranking, 1))
    np.testing.assert_array_equal(M.count_relevant(q, db), [2, 3, 0])
    np.testing.assert_array_equal(M.count_relevant(q.astype(bool), db.astype(bool)), [2, 3, 0])


def test_relevance_validation():
    with pytest.raises(ValueError, match="both"):
        M.relevance_matrix([0, 1], [[0, 1]])
    with pytest.raises(ValueError, match="number of labels"):
        M.relevance_matrix([[0, 1]], [[0, 1, 1]])
    with pytest.raises(ValueError, match="0/1"):
        M.relevance_matrix([[0, 2]], [[0, 1]])
    with pytest.raises(ValueError, match="shape"):
        M.relevance_matrix([0, 1], [0, 1], ranking=[[0, 1]])
    with pytest.raises(ValueError, match="outside"):
        M.relevance_matrix([0], [0, 1], ranking=[[0, 2]])
    with pytest.raises(TypeError):
        M.relevance_matrix([0], [0, 1], ranking=[[0.0, 1.0]])


# --------------------------------------------------------------------------
# precision, recall, F1
# --------------------------------------------------------------------------

# query 0: R N R N N R, 4 relevant in the database (one never ranked)
# query 1: N N N N N N, 2 relevant in the database
# query 2: R R N N N N, 2 relevant
REL = np.array(
    [
        [1, 0, 1, 0, 0, 1],
        [0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
    ],
    dtype=bool,
)
NREL = np.array([4, 2, 2])


def test_precision_recall_f1_hand():
    # P@3: 2/3, 0/3, 2/3
    np.testing.assert_allclose(M.precision_at_k(REL, 3), [2 / 3, 0, 2 / 3])
    # R@3: 2/4, 0/2, 2/2
    np.testing.assert_allclose(M.recall_at_k(REL, 3, n_relevant=NREL), [0.5, 0, 1])
    # F1@3 = 2PR/(P+R): q0 2*(2/3)(1/2)/(2/3+1/2) = 4/7; q1 0; q2 2*(2/3)(1)/(5/3) = 4/5
    np.testing.assert_allclose(M.f1_at_k(REL, 3, n_relevant=NREL), [4 / 7, 0, 0.8])
    # k beyond the ranking is clipped to 6: P@6 = 3/6, 0, 2/6
    np.testing.assert_allclose(M.precision_at_k(REL, 100), [0.5, 0, 1 / 3])
    np.testing.assert_allclose(M.recall_at_k(REL, 100, n_relevant=NREL), [0.75, 0, 1])
    # P@ks matrix equals the single-k calls
    ks = [1, 2, 3, 6, 9]
    pk = M.precision_at_ks(REL, ks)
    for j, k in enumerate(ks):
        np.testing.assert_allclose(pk[:, j], M.precision_at_k(REL, k))
    # R-precision: q0 P@4 = 2/4; q1 P@2 = 0; q2 P@2 = 1
    np.testing.assert_allclose(M.r_precision(REL, n_relevant=NREL), [0.5, 0, 1])


def test_capped_precision_hand():
    # capped="n_relevant": hits / min(k, n_relevant)
    # k=5: q0 2/min(5,4)=1/2; q1 0/2=0; q2 2/min(5,2)=1
    np.testing.assert_allclose(M.precision_at_k(REL, 5, n_relevant=NREL, capped=True), [0.5, 0, 1])
    np.testing.assert_allclose(
        M.precision_at_k(REL, 5, n_relevant=NREL, capped="n_relevant"), [0.5, 0, 1]
    )
    # capped="revisitop": hits / min(k, rank of last relevant); revisitop treats the
    # full ranking: here the rankings are full (n_relevant = row sums).
    rel = np.array([[1, 0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 1]], dtype=bool)
    # q0: positives at ranks 1, 3; k=5 -> kq = min(3, 5) = 3 -> 2/3; k=2 -> kq=2 -> 1/2
    # q1: positives at ranks 2, 7; k=5 -> kq = 5 -> 1/5
    np.testing.assert_allclose(M.precision_at_k(rel, 5, capped="revisitop"), [2 / 3, 1 / 5])
    np.testing.assert_allclose(M.precision_at_k(rel, 2, capped="revisitop"), [1 / 2, 1 / 2])
    # capped n_relevant: q0 2/min(5,2) = 1, q1 1/min(5,2) = 1/2
    np.testing.assert_allclose(M.precision_at_k(rel, 5, capped=True), [1, 0.5])
    # queries with no relevant item: nan
    assert np.isnan(M.precision_at_k([[0, 0]], 1, capped=True)[0])
    assert np.isnan(M.precision_at_k([[0, 0]], 1, capped="revisitop")[0])
    # uncapped precision never needs n_relevant and is never nan
    assert M.precision_at_k([[0, 0]], 1)[0] == 0


def test_revisitop_capped_matches_reference_loop():
    rng = np.random.default_rng(5)
    rel = rng.random((30, 40)) < 0.15
    for kappa in (1, 5, 10, 40):
        got = M.precision_at_k(rel, kappa, capped="revisitop")
        for q in range(30):
            pos = np.flatnonzero(rel[q]) + 1
            if pos.size == 0:
                assert np.isnan(got[q])
                continue
            kq = min(pos.max(), kappa)  # revisitop compute_map
            assert got[q] == pytest.approx((pos <= kq).sum() / kq)


def test_recall_f1_no_relevant_is_nan():
    assert np.isnan(M.recall_at_k([[0, 0]], 1, n_relevant=[0])[0])
    assert np.isnan(M.f1_at_k([[0, 0]], 1, n_relevant=[0])[0])
    assert np.isnan(M.r_precision([[0, 0]])[0])


def test_metric_validation():
    with pytest.raises(ValueError, match="smaller than"):
        M.recall_at_k(REL, 3, n_relevant=[2, 2, 2])  # q0 has 3 relevant in rel
    with pytest.raises(ValueError, match="shape"):
        M.recall_at_k(REL, 3, n_relevant=[4, 2])
    with pytest.raises(ValueError, match=">= 1"):
        M.precision_at_k(REL, 0)
    with pytest.raises(ValueError, match="2-D"):
        M.precision_at_k([1, 0, 1], 2)
    with pytest.raises(ValueError, match="0/1"):
        M.precision_at_k([[1, 2]], 1)
    with pytest.raises(ValueError, match="capped"):
        M.precision_at_k(REL, 1, capped="yes")
    with pytest.raises(ValueError, match="normalize"):
        M.average_precision(REL, normalize="trec")
    with pytest.raises(ValueError, match="empty"):
        M.mean_average_precision(REL, normalize="retrieved", empty="skip")
    with pytest.raises(ValueError, match=">= 0"):
        M.average_precision(REL, normalize="all_relevant", n_relevant=[-1, 2, 2])
    with pytest.raises(TypeError):
        M.average_precision(REL, normalize="all_relevant", k="5")
    with pytest.raises(TypeError):
        M.average_precision(REL)  # normalize is required


# --------------------------------------------------------------------------
# AP and mAP@K: hand-computed cases for each convention
# --------------------------------------------------------------------------


def test_ap_hand_each_normalize():
    # query 0 ranks R N R N N R (n_relevant 4), cut at K = 5:
    # relevant at ranks 1 and 3 -> precision sum = 1/1 + 2/3 = 5/3
    #   retrieved      : / 2 hits             = 5/6
    #   min_k_relevant : / min(5, 4) = 4       = 5/12
    #   all_relevant   : / 4                   = 5/12
    # query 2 ranks R R N N N N (n_relevant 2): sum = 1 + 1 = 2
    #   retrieved 2/2 = 1, min_k 2/min(5,2) = 1, all 2/2 = 1
    # query 1 has nothing in the top 5 -> empty
    cases = {
        "retrieved": [5 / 6, 0, 1],
        "min_k_relevant": [5 / 12, 0, 1],
        "all_relevant": [5 / 12, 0, 1],
    }
    for normalize, want in cases.items():
        got = M.average_precision(REL, k=5, n_relevant=NREL, normalize=normalize)
        np.testing.assert_allclose(got, want)
    # K = 2: query 0 has rank 1 only: sum = 1
    #   retrieved 1/1 = 1, min_k 1/min(2, 4) = 1/2, all 1/4
    np.testing.assert_allclose(M.average_precision(REL[:1], k=2, n_relevant=NREL[:1], normalize="retrieved"), [1])
    np.testing.assert_allclose(
        M.average_precision(REL[:1], k=2, n_relevant=NREL[:1], normalize="min_k_relevant"), [0.5]
    )
    np.testing.assert_allclose(
        M.average_precision(REL[:1], k=2, n_relevant=NREL[:1], normalize="all_relevant"), [0.25]
    )
    # K = all (6): query 0 adds rank 6 with 3 hits: sum = 1 + 2/3 + 3/6 = 13/6
    #   retrieved 13/18, min_k 13/6/min(6,4) = 13/24, all 13/24
    np.testing.assert_allclose(M.average_precision(REL[:1], n_relevant=[4], normalize="retrieved"), [13 / 18])
    np.testing.assert_allclose(M.average_precision(REL[:1], n_relevant=[4], normalize="all_relevant"), [13 / 24])
    # where min(K, n_relevant) = K differs from n_relevant: R R N with 5 relevant, K=3:
    # sum = 2; min_k 2/3, all 2/5, retrieved 2/2
    r = np.array([[1, 1, 0]])
    assert M.average_precision(r, k=3, n_relevant=[5], normalize="min_k_relevant")[0] == pytest.approx(2 / 3)
    assert M.average_precision(r, k=3, n_relevant=[5], normalize="all_relevant")[0] == pytest.approx(2 / 5)
    assert M.average_precision(r, k=3, n_relevant=[5], normalize="retrieved")[0] == pytest.approx(1)


def test_map_empty_policies():
    # K = 5, retrieved: APs 5/6, (empty), 1
    zero = M.mean_average_precision(REL, k=5, n_relevant=NREL, normalize="retrieved", empty="zero")
    # zero: (5/6 + 0 + 1) / 3 = 11/18
    assert zero.value == pytest.approx(11 / 18)
    assert zero.n_dropped == 0 and zero.n_queries == 3 and zero.k == 5
    assert float(zero) == zero.value
    drop = M.mean_average_precision(REL, k=5, n_relevant=NREL, normalize="retrieved", empty="drop")
    # drop: (5/6 + 1) / 2 = 11/12
    assert drop.value == pytest.approx(11 / 12)
    assert drop.n_dropped == 1
    assert np.isnan(drop.per_query[1])
    # all_relevant, zero: (5/12 + 0 + 1) / 3 = 17/36; drop: (5/12 + 1)/2 = 17/24
    assert M.mean_average_precision(REL, k=5, n_relevant=NREL, normalize="all_relevant").value == pytest.approx(
        17 / 36
    )
    assert M.mean_average_precision(
        REL, k=5, n_relevant=NREL, normalize="all_relevant", empty="drop"
    ).value == pytest.approx(17 / 24)


def test_map_all_dropped_is_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="every query"):
        res = M.mean_average_precision([[0, 0], [0, 0]], normalize="retrieved", empty="drop")
    assert math.isnan(res.value) and res.n_dropped == 2
    # with "zero" the same queries give 0 without warning
    assert M.mean_average_precision([[0, 0], [0, 0]], normalize="retrieved").value == 0


def test_map_k_larger_than_ranking_is_clipped():
    a = M.mean_average_precision(REL, k=1000, n_relevant=NREL, normalize="min_k_relevant")
    b = M.mean_average_precision(REL, k=6, n_relevant=NREL, normalize="min_k_relevant")
    assert a.value == b.value and a.k == 6


@settings(max_examples=40, deadline=None)
@given(
    rel=hnp.arrays(bool, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12)),
    k=st.integers(1, 15),
    extra=st.integers(0, 3),
    normalize=st.sampled_from(NORMALIZE),
    empty=st.sampled_from(("zero", "drop")),
)
def test_ap_matches_naive_reference(rel, k, extra, normalize, empty):
    n_rel = rel.sum(axis=1) + extra  # some relevant items were never ranked
    got = M.average_precision(rel, k=k, n_relevant=n_rel, normalize=normalize, empty=empty)
    for q in range(rel.shape[0]):
        want = naive_ap(rel[q], k, n_rel[q], normalize)
        if want is None:
            assert (np.isnan(got[q]) if empty == "drop" else got[q] == 0)
        else:
            assert got[q] == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_all_relevant_full_ranking_equals_sklearn():
    rng = np.random.default_rng(11)
    for _ in range(25):
        n = int(rng.integers(2, 200))
        y = rng.random(n) < rng.uniform(0.05, 0.6)
        if not y.any():
            y[rng.integers(n)] = True
        scores = rng.permutation(n).astype(float)  # no ties
        order = np.argsort(-scores)
        ap = M.average_precision(y[order][None, :], normalize="all_relevant")[0]
        assert ap == pytest.approx(average_precision_score(y, scores), rel=1e-12)
        # and through distances (= -score) with every tie policy
        for ties in ("stable", "expected"):
            res = M.mean_average_precision_from_distances(
                -scores[None, :], [1], y.astype(int), normalize="all_relevant", ties=ties
            )
            assert res.value == pytest.approx(ap, rel=1e-12)


# --------------------------------------------------------------------------
# distance-based mAP and ties
# --------------------------------------------------------------------------


def _tiny_cases():
    # hand-picked: group straddling K, relevant before it or not, singletons
    yield np.array([[0, 1, 1, 1, 2, 2]]), np.array([[1, 0, 1, 1, 0, 1]])
    yield np.array([[1, 1, 1, 1, 0, 2]]), np.array([[1, 0, 0, 1, 0, 1]])
    yield np.array([[0, 0, 0, 0, 0, 0]]), np.array([[0, 1, 0, 0, 1, 0]])
    rng = np.random.default_rng(2024)
    for _ in range(6):
        n = int(rng.integers(3, 7))
        yield rng.integers(0, 3, size=(1, n)), (rng.random((1, n)) < 0.45).astype(int)


@pytest.mark.parametrize("normalize", NORMALIZE)
def test_expected_ties_equal_brute_force(normalize):
    for dist, relrow in _tiny_cases():
        n = dist.shape[1]
        labels = relrow[0]  # query label 1, database labels 1 (relevant) / 0
        for k in range(1, n + 1):
            zero, cond, p_nonempty = brute_force_expected_ap(dist[0], labels, k, normalize)
            res = M.mean_average_precision_from_distances(
                dist, [1], labels, k=k, normalize=normalize, empty="zero", ties="expected"
            )
            assert res.value == pytest.approx(zero, rel=1e-12, abs=1e-14), (dist, labels, k)
            with warnings.catch_warnings():
                # a query empty under every order is dropped: the mean is nan, with a warning
                warnings.simplefilter("ignore" if cond is None else "error", RuntimeWarning)
                res = M.mean_average_precision_from_distances(
                    dist, [1], labels, k=k, normalize=normalize, empty="drop", ties="expected"
                )
            if cond is None:
                assert res.n_dropped == 1
            else:
                # documented: expected AP given that the query is not empty
                assert res.per_query[0] == pytest.approx(cond, rel=1e-12, abs=1e-14)
            assert res.n_tie_dependent_empty == int(0 < p_nonempty < 1)


def test_expected_ties_hand_straddle():
    # distances 0 | 1 1 1 | 2 ; relevance R | R N N | N ; K = 2 (cut inside the middle group)
    # position 1 is relevant: contributes 1/1.
    # position 2 is the first of the tie group (s=1, n=3, r=1, R=1): P(rel) = 1/3, and if
    # relevant P@2 = 2/2 -> expected contribution (1/3) * (1 + 1 + 0) / 2 = 1/3.
    #   min_k_relevant: Z = min(2, 2) = 2 -> (1 + 1/3) / 2 = 2/3
    #   all_relevant:   Z = 2           -> 2/3
    #   retrieved: with prob 1/3 hits=2, AP = (1 + 1)/2 = 1; with prob 2/3 hits=1, AP = 1
    #              -> 1
    d = np.array([[0, 1, 1, 1, 2]])
    db = np.array([1, 1, 0, 0, 0])
    for normalize, want in (("min_k_relevant", 2 / 3), ("all_relevant", 2 / 3), ("retrieved", 1.0)):
        res = M.mean_average_precision_from_distances(d, [1], db, k=2, normalize=normalize, ties="expected")
        assert res.value == pytest.approx(want)
    # the first group is the tie: 1 1 1 | 0  with relevance N R N | R, K = 2, retrieved
    # j = relevant of the tie group within the first 2 of its 3 slots: P(j=1) = 2/3, P(j=0) = 1/3.
    # given j=1 the relevant item is at position 1 or 2 equally: AP = 1 or 1/2 -> 3/4.
    # E[AP] (empty -> 0) = 2/3 * 3/4 = 1/2; given non-empty = 3/4
    d = np.array([[1, 1, 1, 2]])
    db = np.array([0, 1, 0, 1])
    res = M.mean_average_precision_from_distances(d, [1], db, k=2, normalize="retrieved", ties="expected")
    assert res.value == pytest.approx(0.5)
    res = M.mean_average_precision_from_distances(
        d, [1], db, k=2, normalize="retrieved", ties="expected", empty="drop"
    )
    assert res.value == pytest.approx(0.75) and res.n_tie_dependent_empty == 1 and res.n_dropped == 0


@settings(max_examples=25, deadline=None)
@given(
    data=st.data(),
    n_db=st.integers(1, 6),
    n_q=st.integers(1, 4),
    normalize=st.sampled_from(NORMALIZE),
)
def test_expected_ties_brute_force_many_queries(data, n_db, n_q, normalize):
    # several queries at once, so that straddling groups of different widths are
    # scored in one vectorised batch
    d = data.draw(hnp.arrays(np.int64, (n_q, n_db), elements=st.integers(0, 2)))
    db_labels = data.draw(hnp.arrays(np.int64, n_db, elements=st.integers(0, 2)))
    q_labels = data.draw(hnp.arrays(np.int64, n_q, elements=st.integers(0, 2)))
    k = data.draw(st.integers(1, n_db + 1))
    res = M.mean_average_precision_from_distances(
        d, q_labels, db_labels, k=k, normalize=normalize, ties="expected"
    )
    for q in range(n_q):
        zero, _, _ = brute_force_expected_ap(d[q], db_labels == q_labels[q], k, normalize)
        assert res.per_query[q] == pytest.approx(zero, rel=1e-12, abs=1e-14)


def test_expected_close_to_random_average():
    rng = np.random.default_rng(3)
    d = rng.integers(0, 5, size=(3, 40))
    qlab = rng.integers(0, 3, size=3)
    dblab = rng.integers(0, 3, size=40)
    for normalize in NORMALIZE:
        exp = M.mean_average_precision_from_distances(
            d, qlab, dblab, k=12, normalize=normalize, ties="expected"
        ).per_query
        draws = np.stack(
            [
                M.mean_average_precision_from_distances(
                    d, qlab, dblab, k=12, normalize=normalize, ties="random", seed=s
                ).per_query
                for s in range(400)
            ]
        )
        np.testing.assert_allclose(draws.mean(axis=0), exp, atol=0.03)


def test_expected_integer_and_float_paths_agree():
    # integer Hamming levels use histograms; scaled floats use the sorted-groups path
    rng = np.random.default_rng(4)
    d = rng.integers(0, 9, size=(6, 80))
    qlab = rng.integers(0, 4, size=6)
    dblab = rng.integers(0, 4, size=80)
    for normalize in NORMALIZE:
        for k in (None, 1, 7, 33, 80, 500):
            a = M.mean_average_precision_from_distances(d, qlab, dblab, k=k, normalize=normalize, ties="expected")
            b = M.mean_average_precision_from_distances(
                d * 0.731 + 0.1, qlab, dblab, k=k, normalize=normalize, ties="expected"
            )
            np.testing.assert_allclose(a.per_query, b.per_query, rtol=1e-12, atol=1e-15)


def test_stable_and_random_equal_ranking_pipeline():
    rng = np.random.default_rng(6)
    d = rng.integers(0, 6, size=(5, 50))
    qlab = rng.integers(0, 3, size=5)
    dblab = rng.integers(0, 3, size=50)
    n_rel = M.count_relevant(qlab, dblab)
    for ties, seed in (("stable", None), ("random", 9)):
        for k in (None, 10):
            ranking = M.rank_by_distance(d, k=k, ties=ties, seed=seed)
            rel = M.relevance_matrix(qlab, dblab, ranking)
            for normalize in NORMALIZE:
                want = M.mean_average_precision(rel, k=k, n_relevant=n_rel, normalize=normalize)
                got = M.mean_average_precision_from_distances(
                    d, qlab, dblab, k=k, normalize=normalize, ties=ties, seed=seed
                )
                np.testing.assert_allclose(got.per_query, want.per_query)
                assert got.ties == ties
    # random ties differ across seeds, and are reproducible
    a = M.mean_average_precision_from_distances(d, qlab, dblab, k=10, normalize="retrieved", ties="random", seed=1)
    b = M.mean_average_precision_from_distances(d, qlab, dblab, k=10, normalize="retrieved", ties="random", seed=1)
    c = M.mean_average_precision_from_distances(d, qlab, dblab, k=10, normalize="retrieved", ties="random", seed=2)
    assert a.value == b.value and a.value != c.value


def test_stable_ties_use_index_order():
    # all distances tie: stable ranks in index order, so AP depends on where the
    # relevant items sit in the database: R at index 2 and 3 -> 1/3 + 2/4
    d = np.zeros((1, 4), dtype=int)
    res = M.mean_average_precision_from_distances(d, [1], [0, 0, 1, 1], normalize="all_relevant", ties="stable")
    assert res.value == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_multilabel_from_distances():
    q = np.array([[1, 0, 1], [0, 1, 0]])
    db = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    d = np.array([[2, 0, 1, 1], [0, 1, 1, 2]])
    # query 0 relevant = {0, 2, 3}; stable ranking 1, 2, 3, 0 -> N R R R: (1/2 + 2/3 + 3/4) / 3
    # query 1 relevant = {1, 3}; ranking 0, 1, 2, 3 -> N R N R: (1/2 + 2/4) / 2
    res = M.mean_average_precision_from_distances(d, q, db, normalize="all_relevant", ties="stable")
    np.testing.assert_allclose(res.per_query, [(1 / 2 + 2 / 3 + 3 / 4) / 3, (1 / 2 + 2 / 4) / 2])
    # expected ties: query 1 has a tie {1, 2} at distance 1 with one relevant: ranks 2-3
    # E = (1/2) * (1/2 + 2/4) + (1/2) * (1/3 + 2/4) over 2 relevant -> ((1 + 5/6) / 2) / 2
    res = M.mean_average_precision_from_distances(d, q, db, normalize="all_relevant", ties="expected")
    assert res.per_query[1] == pytest.approx((1 + 5 / 6) / 2 / 2)


def test_from_distances_validation():
    with pytest.raises(ValueError, match="shape"):
        M.mean_average_precision_from_distances([[0, 1]], [1], [1, 0, 1], normalize="retrieved")
    with pytest.raises(ValueError, match="seed"):
        M.mean_average_precision_from_distances([[0, 1]], [1], [1, 0], normalize="retrieved", ties="random")
    with pytest.raises(ValueError, match="ties"):
        M.mean_average_precision_from_distances([[0, 1]], [1], [1, 0], normalize="retrieved", ties="mean")
    with pytest.raises(ValueError, match=">= 1"):
        M.mean_average_precision_from_distances([[0, 1]], [1], [1, 0], normalize="retrieved", k=0)
    # k > n_database is clipped
    res = M.mean_average_precision_from_distances([[0, 1]], [1], [0, 1], normalize="retrieved", k=50)
    assert res.k == 2 and res.value == pytest.approx(0.5)


# --------------------------------------------------------------------------
# curves, radius precision, accuracy, junk
# --------------------------------------------------------------------------


def test_precision_recall_curve_ranks_hand():
    # q0: R N R N (2 relevant); q2: N N N N with 0 relevant -> dropped; q1: N R N N (1 relevant)
    rel = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
    curve = M.precision_recall_curve(rel, None, mode="ranks")
    # precision at ranks 1..4: q0 1, 1/2, 2/3, 2/4; q1 0, 1/2, 1/3, 1/4
    np.testing.assert_allclose(curve.precision, [(1 + 0) / 2, 0.5, 0.5, 3 / 8])
    # recall: q0 1/2, 1/2, 1, 1; q1 0, 1, 1, 1
    np.testing.assert_allclose(curve.recall, [0.25, 0.75, 1, 1])
    assert curve.n_dropped == 1 and curve.n_queries == 3
    np.testing.assert_array_equal(curve.points, [1, 2, 3, 4])
    sub = M.precision_recall_curve(rel, None, mode="ranks", ranks=[2, 4, 10])
    np.testing.assert_allclose(sub.precision, [0.5, 3 / 8, 3 / 8])


def test_precision_recall_curve_interpolated_hand():
    # one query: R N R N N, 3 relevant in the database (one never retrieved)
    # (recall, precision) by rank: (1/3, 1), (1/3, 1/2), (2/3, 2/3), (2/3, 1/2), (2/3, 2/5)
    # interpolated at levels 0, .1, ..., 1: max precision at recall >= level
    #   levels 0 .. 0.3 -> 1 (rank 1 has recall 1/3 >= 0.3); 0.4 .. 0.6 -> 2/3; 0.7 .. 1 -> 0
    curve = M.precision_recall_curve([[1, 0, 1, 0, 0]], [3], mode="interpolated")
    want = [1, 1, 1, 1, 2 / 3, 2 / 3, 2 / 3, 0, 0, 0, 0]
    np.testing.assert_allclose(curve.precision, want)
    np.testing.assert_allclose(curve.recall, np.linspace(0, 1, 11))
    # recall level exactly reached at 0.3 * 10 (floating 0.30000000000000004)
    curve = M.precision_recall_curve([[1, 1, 1, 0]], [10], mode="interpolated", recall_levels=[0.3])
    np.testing.assert_allclose(curve.precision, [1.0])
    with pytest.raises(ValueError, match="mode"):
        M.precision_recall_curve([[1]], None, mode="11pt")


def test_precision_within_radius_hand():
    d = np.array([[0, 1, 2, 3, 5], [4, 4, 3, 9, 7]])
    rel = np.array([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=bool)
    # q0 within radius 2: items 0, 1, 2 -> 2 relevant of 3; q1 nothing within radius 2
    np.testing.assert_allclose(M.precision_within_radius(d, rel), [2 / 3, 0])
    got = M.precision_within_radius(d, rel, empty="drop")
    assert got[0] == pytest.approx(2 / 3) and np.isnan(got[1])
    np.testing.assert_allclose(M.precision_within_radius(d, rel, radius=3), [3 / 4, 1])
    with pytest.raises(ValueError, match="shape"):
        M.precision_within_radius(d, rel[:, :3])
    with pytest.raises(ValueError, match="radius"):
        M.precision_within_radius(d, rel, radius=-1)


def test_retrieval_accuracy_definitions():
    rel = np.array([[0, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 0, 1]], dtype=bool)
    # top 4: hits 2, 1, 0, 3
    np.testing.assert_allclose(M.retrieval_accuracy_at_k(rel, 4, definition="precision"), [0.5, 0.25, 0, 0.75])
    np.testing.assert_allclose(M.retrieval_accuracy_at_k(rel, 4, definition="hit"), [1, 1, 0, 1])
    # strict majority: hits > 4/2
    np.testing.assert_allclose(M.retrieval_accuracy_at_k(rel, 4, definition="majority"), [0, 0, 0, 1])
    # k = 1: all definitions agree
    for definition in ("precision", "hit", "majority"):
        np.testing.assert_allclose(M.retrieval_accuracy_at_k(rel, 1, definition=definition), [0, 1, 0, 1])
    # kNN plurality: query 7, neighbours 3 7 7 3 5 -> top 4 tie 3/7, 3 ranked first -> wrong;
    # top 3 -> 7 wins -> right
    ql = np.array([7])
    lab = np.array([[3, 7, 7, 3, 5]])
    assert M.retrieval_accuracy_at_k(None, 4, definition="knn", query_labels=ql, ranked_labels=lab)[0] == 0
    assert M.retrieval_accuracy_at_k(None, 3, definition="knn", query_labels=ql, ranked_labels=lab)[0] == 1
    # plurality without majority: labels 2 2 1 0 4 -> 2 wins with 2 of 5
    np.testing.assert_array_equal(M.knn_vote([[2, 2, 1, 0, 4], [1, 0, 0, 1, 1]]), [2, 1])
    np.testing.assert_array_equal(M.knn_vote([[1, 0, 0, 1, 1]], k=2), [1])  # tie 1/0 -> rank 1 wins
    with pytest.raises(ValueError, match="knn"):
        M.retrieval_accuracy_at_k(rel, 3, definition="knn")
    with pytest.raises(ValueError, match="definition"):
        M.retrieval_accuracy_at_k(rel, 3, definition="top1")


def test_remove_junk():
    rel = np.array([[1, 0, 0, 1, 0]], dtype=bool)
    junk = np.array([[0, 1, 0, 0, 0]], dtype=bool)
    # remove rank 2: R N R N + padding
    np.testing.assert_array_equal(M.remove_junk(rel, junk), [[True, False, True, False, False]])
    with pytest.raises(ValueError, match="shape"):
        M.remove_junk(rel, junk[:, :3])


def test_public_api_listed():
    for name in M.__all__:
        assert hasattr(M, name)
        assert getattr(M, name).__doc__
