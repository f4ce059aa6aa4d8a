"""Tests for cbirlib.index: every index returns exactly the brute-force neighbours.

The reference is ``rank_by_distance(exact_distances(Q, X), k=k)`` from
:mod:`cbirlib.metrics` (stable ties: database index order), with the distances
taken from the same matrix, so trees, brute force and the metrics module agree
on one ordering, bit for bit.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cbirlib import index as ix
from cbirlib.index import BKTree, BruteForceIndex, MTree, SearchStats, VPTree, exact_distances
from cbirlib.metrics import rank_by_distance

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_indexes(X, *, small=False):
    """One of each index (small nodes when ``small``, to stress splitting)."""
    euclid = np.asarray(X).dtype != np.uint8
    leaf = 2 if small else 16
    cap = 3 if small else 8
    out = [
        BruteForceIndex(),
        BruteForceIndex(filter_dtype="float64", block_elems=64),
        VPTree(leaf_size=leaf),
        VPTree(leaf_size=1, vantage="random", seed=3),
        MTree(node_capacity=cap),
        BKTree(bin_width=0.25) if euclid else BKTree(),
    ]
    return [idx.build(X) for idx in out]


def reference_knn(Q, X, k):
    ref = exact_distances(Q, X)
    kk = min(k, ref.shape[1])
    rank = rank_by_distance(ref, k=kk)
    return np.take_along_axis(ref, rank, axis=1), rank


def reference_range(Q, X, radius):
    ref = exact_distances(Q, X)
    out = []
    for row in ref:
        hit = np.flatnonzero(row <= radius)
        hit = hit[np.argsort(row[hit], kind="stable")]
        out.append((row[hit], hit))
    return out


def assert_knn_exact(indexes, Q, X, k):
    D_ref, I_ref = reference_knn(Q, X, k)
    for idx in indexes:
        D, I = idx.knn(Q, k)
        name = type(idx).__name__
        assert I.dtype == np.intp and D.dtype == idx.distance_dtype, name
        np.testing.assert_array_equal(I, I_ref, err_msg=name)
        np.testing.assert_array_equal(D, D_ref, err_msg=name)
        st_ = idx.last_stats
        assert st_.operation == "knn" and st_.n_distances.shape == (len(Q),)
        assert (st_.n_distances >= 1).all() and (st_.n_distances <= len(X)).all(), name
        if isinstance(idx, BruteForceIndex):
            assert (st_.n_distances == len(X)).all()


def assert_range_exact(indexes, Q, X, radius):
    ref = reference_range(Q, X, radius)
    for idx in indexes:
        res = idx.range_query(Q, radius)
        name = type(idx).__name__
        assert len(res) == len(Q)
        for (d, i), (d_ref, i_ref) in zip(res, ref):
            assert i.dtype == np.intp and d.dtype == idx.distance_dtype, name
            np.testing.assert_array_equal(i, i_ref, err_msg=name)
            np.testing.assert_array_equal(d, d_ref, err_msg=name)
        counts = idx.last_stats.n_distances
        assert idx.last_stats.operation == "range"
        assert (counts >= 1).all() and (counts <= len(X)).all(), name


# --------------------------------------------------------------------------
# the canonical distance
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 3, 7, 8, 9, 31, 64, 129, 300, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_canonical_distance_does_not_depend_on_the_batch(dim, dtype):
    # the exactness contract rests on this: a pair's distance is the same bits
    # whether computed alone, in a slice, in a gathered subset or as pairs
    rng = np.random.default_rng(dim)
    X = (rng.standard_normal((257, dim)) * rng.choice([1e-3, 1.0, 1e3], size=(257, 1))).astype(dtype)
    q = rng.standard_normal(dim)
    rows = ix._Euclidean.rows
    full = rows(X, q)
    sub = rng.permutation(257)[:40]
    np.testing.assert_array_equal(rows(X[sub], q), full[sub])
    np.testing.assert_array_equal(rows(X[5:9], q), full[5:9])
    np.testing.assert_array_equal([ix._Euclidean.one(x, q) for x in X[:20]], full[:20])
    np.testing.assert_array_equal(ix._Euclidean.pairs(X[sub], np.tile(q, (40, 1))), full[sub])
    # float32 rows against a float32 row: still computed in float64
    np.testing.assert_array_equal(rows(X, X[3]), rows(X, X[3].astype(np.float64)))
    np.testing.assert_array_equal(ix._Euclidean.pairs(X[sub], X[sub[::-1]]),
                                  [rows(X[[a]], X[b].astype(np.float64))[0] for a, b in zip(sub, sub[::-1])])


def test_exact_distances_matches_numpy():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 5))
    Q = rng.standard_normal((4, 5))
    np.testing.assert_allclose(exact_distances(Q, X), np.linalg.norm(Q[:, None] - X[None], axis=2), rtol=1e-14)
    B = rng.integers(0, 256, size=(30, 3), dtype=np.uint8)
    ham = np.unpackbits(B[:4, None] ^ B[None], axis=2).sum(axis=2)
    np.testing.assert_array_equal(exact_distances(B[:4], B), ham)


# --------------------------------------------------------------------------
# property-based: every index == brute-force reference
# --------------------------------------------------------------------------


@st.composite
def grid_data(draw):
    """Small-integer coordinates: many exactly tied distances."""
    dim = draw(st.integers(1, 5))
    n = draw(st.integers(1, 60))
    nq = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    levels = draw(st.integers(1, 4))
    rng = np.random.default_rng(seed)
    X = rng.integers(0, levels, size=(n, dim)).astype(draw(st.sampled_from([np.float32, np.float64])))
    Q = rng.integers(0, levels, size=(nq, dim)).astype(np.float64)
    if draw(st.booleans()):
        Q = Q + rng.standard_normal(Q.shape) * 0.3
    return X, Q


@FAST
@given(data=grid_data(), k=st.integers(1, 70), small=st.booleans())
def test_knn_equals_brute_force_float(data, k, small):
    X, Q = data
    assert_knn_exact(make_indexes(X, small=small), Q, X, k)


@FAST
@given(data=grid_data(), pick=st.integers(0, 10**6), small=st.booleans())
def test_range_equals_brute_force_float(data, pick, small):
    X, Q = data
    ref = exact_distances(Q, X).ravel()
    radius = float(np.sort(ref)[pick % ref.size])  # a radius equal to some distance: boundary ties
    assert_range_exact(make_indexes(X, small=small), Q, X, radius)


@st.composite
def code_data(draw):
    n_bits = draw(st.integers(1, 70))
    n = draw(st.integers(1, 80))
    nq = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = draw(st.sampled_from([0.05, 0.5]))
    n_distinct = draw(st.integers(1, 20))
    pool = rng.random((n_distinct, n_bits)) < p
    bits = pool[rng.integers(0, n_distinct, n)]  # repeated codes
    qbits = rng.random((nq, n_bits)) < p
    return np.packbits(bits, axis=1), np.packbits(qbits, axis=1), n_bits


@FAST
@given(data=code_data(), k=st.integers(1, 90), radius=st.integers(0, 12), small=st.booleans())
def test_knn_and_range_equal_brute_force_hamming(data, k, radius, small):
    X, Q, n_bits = data
    trees = (BruteForceIndex(), VPTree(leaf_size=2 if small else 8), MTree(node_capacity=3 if small else 6), BKTree())
    indexes = [idx.build(X, n_bits=n_bits) for idx in trees]
    assert_knn_exact(indexes, Q, X, k)
    assert_range_exact(indexes, Q, X, radius)


# --------------------------------------------------------------------------
# seeded random data in several dimensions
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 8, 32, 100])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seeded_random_float(dim, dtype):
    rng = np.random.default_rng(dim)
    X = rng.standard_normal((400, dim)).astype(dtype)
    Q = np.vstack([rng.standard_normal((6, dim)), X[[0, 17, 399]]])  # some queries are database points
    indexes = make_indexes(X)
    assert_knn_exact(indexes, Q, X, 10)
    assert_knn_exact(indexes, Q, X, 1)
    r = float(np.median(exact_distances(Q[:1], X)))
    assert_range_exact(indexes, Q, X, r)


def test_queries_identical_to_database_points_find_themselves():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 6))
    for idx in make_indexes(X):
        D, I = idx.knn(X[:50], 1)
        np.testing.assert_array_equal(I[:, 0], np.arange(50))
        assert (D == 0).all()


@pytest.mark.parametrize(
    "db_dtype,q_dtype", [(np.float32, np.float64), (np.float64, np.float32), (np.float16, np.float64)]
)
def test_mixed_float_dtypes(db_dtype, q_dtype):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((250, 5)).astype(db_dtype)
    Q = rng.standard_normal((7, 5)).astype(q_dtype)
    indexes = make_indexes(X)
    assert_knn_exact(indexes, Q, X, 8)
    D1, I1 = indexes[0].knn(Q, 8)
    D2, I2 = indexes[0].knn(Q.astype(np.float64), 8)
    np.testing.assert_array_equal(I1, I2)
    np.testing.assert_array_equal(D1, D2)


def test_near_ties_beyond_float32_resolution_are_ordered_exactly():
    # distances that differ far below float32 resolution: the BLAS filter
    # cannot order them, the canonical recomputation must
    rng = np.random.default_rng(3)
    base = rng.standard_normal(16)
    X = base + rng.standard_normal((500, 16)) * 1e-9
    X = np.vstack([X, base + 1e-12, base - 1e-12, base])
    Q = np.vstack([base, base + 5e-10])
    assert_knn_exact(make_indexes(X), Q, X, 20)


def test_large_offset_features_stay_exact():
    rng = np.random.default_rng(4)
    X = 1e4 + rng.standard_normal((600, 12))
    Q = 1e4 + rng.standard_normal((5, 12))
    assert_knn_exact(make_indexes(X), Q, X, 15)
    assert_range_exact(make_indexes(X), Q, X, 3.5)


def test_extreme_queries_and_radii():
    rng = np.random.default_rng(17)
    X = rng.standard_normal((200, 3)).astype(np.float32)
    Q = np.array([[1e20, 0.0, 0.0], [0.0, -3e18, 1.0]])  # the float32 filter would overflow
    indexes = make_indexes(X)
    assert_knn_exact(indexes, Q, X, 5)
    assert_range_exact(indexes, Q, X, 1e21)
    B = np.packbits(rng.random((300, 64)) < 0.5, axis=1)
    codes = [idx.build(B) for idx in (BruteForceIndex(), VPTree(), MTree(), BKTree())]
    assert_range_exact(codes, B[:3], B, 1000)  # radius beyond the code length: everything
    assert all(len(i) == 300 for _, i in codes[0].range_query(B[:3], 1000))


def test_brute_force_many_blocks_and_groups():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((5000, 4)).astype(np.float32)
    Q = rng.standard_normal((37, 4))
    idx = [BruteForceIndex(block_elems=20000).build(X)]
    for k in (1, 3, 50, 400):
        assert_knn_exact(idx, Q, X, k)
    B = np.packbits(rng.random((5000, 130)) < 0.5, axis=1)  # 17 bytes: 3 words
    idx = [BruteForceIndex(block_elems=20000).build(B)]
    assert_knn_exact(idx, B[:9], B, 25)
    assert_range_exact(idx, B[:9], B, 55)


# --------------------------------------------------------------------------
# duplicates and degenerate data
# --------------------------------------------------------------------------


def test_many_identical_points_plus_a_few_others():
    rng = np.random.default_rng(6)
    X = np.vstack([np.tile([1.0, 2.0, 3.0, 4.0], (600, 1)), rng.standard_normal((8, 4))])
    X = X[rng.permutation(len(X))]
    Q = np.vstack([[1.0, 2.0, 3.0, 4.0], rng.standard_normal((3, 4)), [1.0, 2.0, 3.0, 4.5]])
    indexes = make_indexes(X) + [VPTree(leaf_size=1).build(X), MTree(node_capacity=2).build(X)]
    for k in (1, 10, 600, 700):
        assert_knn_exact(indexes, Q, X, k)
    assert_range_exact(indexes, Q, X, 0.0)
    assert_range_exact(indexes, Q, X, 0.5)


def test_duplicates_are_cheap_to_search():
    rng = np.random.default_rng(18)
    X = np.vstack([np.ones((600, 8)), rng.random((20, 8))])[rng.permutation(620)]
    q = np.ones((1, 8))
    for idx, limit in ((VPTree(), 5), (BKTree(bin_width=0.1), 1), (MTree(node_capacity=8), 100)):
        idx.build(X)
        D, I = idx.knn(q, 10)
        assert (D == 0).all() and I[0].tolist() == sorted(I[0].tolist())
        assert idx.last_stats.n_distances[0] <= limit, type(idx).__name__


def test_all_identical_dataset():
    X = np.full((500, 3), 7.0)
    Q = np.array([[7.0, 7.0, 7.0], [0.0, 0.0, 0.0]])
    indexes = make_indexes(X) + [VPTree(leaf_size=1).build(X), MTree(node_capacity=2).build(X)]
    assert_knn_exact(indexes, Q, X, 5)
    assert_knn_exact(indexes, Q, X, 501)
    assert_range_exact(indexes, Q, X, 0.0)
    B = np.zeros((700, 8), dtype=np.uint8)
    codes = [idx.build(B) for idx in (BruteForceIndex(), VPTree(leaf_size=1), MTree(node_capacity=2), BKTree())]
    assert_knn_exact(codes, B[:2], B, 10)
    assert codes[-1].n_nodes_ == 1  # one bucket


def test_equidistant_codes_do_not_recurse():
    # one-hot codes: every pair at Hamming distance 2, every vantage point degenerate
    bits = np.eye(64, dtype=bool)
    X = np.packbits(np.vstack([bits] * 3), axis=1)
    indexes = [idx.build(X) for idx in (BruteForceIndex(), VPTree(leaf_size=1), MTree(node_capacity=2), BKTree())]
    assert_knn_exact(indexes, X[:5], X, 7)


def test_single_point_database():
    X = np.array([[0.5, -1.0]])
    Q = np.array([[0.5, -1.0], [3.0, 3.0]])
    indexes = make_indexes(X)
    assert_knn_exact(indexes, Q, X, 1)
    assert_knn_exact(indexes, Q, X, 5)
    for idx in indexes:
        D, I = idx.knn(Q, 5)
        assert D.shape == I.shape == (2, 1)
        res = idx.range_query(Q, 1.0)
        assert res[0][1].tolist() == [0] and res[1][1].size == 0


# --------------------------------------------------------------------------
# API edges
# --------------------------------------------------------------------------


def test_k_larger_than_n_returns_everything_sorted():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((20, 3))
    for idx in make_indexes(X):
        D, I = idx.knn(X[:2], 100)
        assert D.shape == (2, 20)
        assert sorted(I[0].tolist()) == list(range(20))
        assert (np.diff(D, axis=1) >= 0).all()


@pytest.mark.parametrize("k", [0, -1, -10])
def test_k_not_positive_raises(k):
    idx = VPTree().build(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="k must be >= 1"):
        idx.knn(np.zeros((1, 2)), k)


@pytest.mark.parametrize("k", [1.5, True, "3", None])
def test_k_not_integer_raises(k):
    with pytest.raises(TypeError, match="k must be a positive integer"):
        BruteForceIndex().build(np.zeros((3, 2))).knn(np.zeros((1, 2)), k)


def test_empty_range_results_have_dtypes_and_shapes():
    X = np.arange(10, dtype=np.float64).reshape(5, 2)
    B = np.packbits(np.eye(16, dtype=bool), axis=1)
    for idx in make_indexes(X):
        (d, i), = idx.range_query(np.array([[100.0, 100.0]]), 1.0)
        assert d.shape == i.shape == (0,) and d.dtype == np.float64 and i.dtype == np.intp
    for idx in (BruteForceIndex(), VPTree(), MTree(), BKTree()):
        idx.build(B)
        (d, i), = idx.range_query(np.packbits(np.ones((1, 16), dtype=bool), axis=1), 3)
        assert d.shape == i.shape == (0,) and d.dtype == np.int64 and i.dtype == np.intp


def test_zero_queries():
    X = np.random.default_rng(0).standard_normal((10, 3))
    for idx in make_indexes(X):
        D, I = idx.knn(np.empty((0, 3)), 4)
        assert D.shape == I.shape == (0, 4)
        assert idx.range_query(np.empty((0, 3)), 1.0) == []


def test_bad_radius():
    idx = BruteForceIndex().build(np.zeros((3, 2)))
    for r in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="radius"):
            idx.range_query(np.zeros((1, 2)), r)


def test_input_validation():
    X = np.zeros((4, 3))
    with pytest.raises(RuntimeError, match="not built"):
        VPTree().knn(X, 1)
    with pytest.raises(ValueError, match="2-D"):
        BruteForceIndex().build(np.zeros(5))
    with pytest.raises(ValueError, match="2-D"):
        BruteForceIndex().build(X).knn(np.zeros(3), 1)
    with pytest.raises(ValueError, match="columns"):
        BruteForceIndex().build(X).knn(np.zeros((1, 4)), 1)
    with pytest.raises(ValueError, match="at least one"):
        BruteForceIndex().build(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="NaN"):
        VPTree().build(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN"):
        VPTree().build(X).knn(np.array([[np.inf, 0, 0]]), 1)
    with pytest.raises(TypeError, match="packbits"):
        BruteForceIndex().build(np.zeros((4, 8), dtype=bool))
    with pytest.raises(TypeError, match="infer the metric"):
        BruteForceIndex().build(np.zeros((4, 8), dtype=np.int64))
    with pytest.raises(TypeError, match="packed uint8"):
        BruteForceIndex().build(np.zeros((4, 1), dtype=np.uint8)).knn(np.zeros((1, 8)), 1)
    with pytest.raises(ValueError, match="metric"):
        VPTree(metric="cosine")
    with pytest.raises(ValueError, match="vantage"):
        VPTree(vantage="best")
    with pytest.raises(ValueError, match="leaf_size"):
        VPTree(leaf_size=0)
    with pytest.raises(ValueError, match="node_capacity"):
        MTree(node_capacity=1)
    with pytest.raises(ValueError, match="n_bits"):
        BruteForceIndex().build(X, n_bits=8)


def test_integer_features_with_explicit_euclidean_metric():
    rng = np.random.default_rng(8)
    X = rng.integers(0, 5, size=(100, 4))
    Q = rng.integers(0, 5, size=(3, 4))
    indexes = [cls(metric="euclidean").build(X) for cls in (BruteForceIndex, VPTree, MTree)]
    assert_knn_exact(indexes, Q.astype(np.float64), X.astype(np.float64), 9)
    assert indexes[0].metric == "euclidean"
    U = rng.integers(0, 256, size=(50, 2), dtype=np.uint8)  # uint8 histograms as features
    a = BruteForceIndex(metric="euclidean").build(U)
    D, _ = a.knn(U[:2].astype(np.float64), 1)
    assert a.metric == "euclidean" and (D == 0).all()


# --------------------------------------------------------------------------
# packed codes whose length is not a multiple of 8
# --------------------------------------------------------------------------


def test_code_length_not_multiple_of_8():
    rng = np.random.default_rng(9)
    bits = rng.random((200, 12)) < 0.5
    X = np.packbits(bits, axis=1)  # 2 bytes, last 4 bits zero
    Q = np.packbits(rng.random((5, 12)) < 0.5, axis=1)
    ham = (bits[None, :, :] != np.unpackbits(Q, axis=1, count=12)[:, None, :].astype(bool)).sum(axis=2)
    for idx in (BruteForceIndex(), VPTree(), MTree(), BKTree()):
        idx.build(X, n_bits=12)
        assert idx.dim == 12
        D, I = idx.knn(Q, 200)
        np.testing.assert_array_equal(np.take_along_axis(ham, I, axis=1), D)
    bad = X.copy()
    bad[0, 1] |= 0b0001  # a padding bit
    with pytest.raises(ValueError, match="padding bits"):
        BruteForceIndex().build(bad, n_bits=12)
    idx = BruteForceIndex().build(X, n_bits=12)
    with pytest.raises(ValueError, match="padding bits"):
        idx.knn(bad[:1], 1)
    with pytest.raises(ValueError, match="packed bytes"):
        BruteForceIndex().build(X, n_bits=20)
    with pytest.raises(ValueError, match="bytes per code"):
        idx.knn(np.zeros((1, 3), dtype=np.uint8), 1)
    assert BruteForceIndex().build(X).dim == 16  # without n_bits: 8 * bytes


# --------------------------------------------------------------------------
# BK-tree policy for float features
# --------------------------------------------------------------------------


def test_bktree_refuses_float_without_bin_width():
    bk = BKTree()
    with pytest.raises(ValueError, match="bin_width"):
        bk.build(np.zeros((5, 2)))
    assert not bk.is_built
    with pytest.raises(ValueError, match="bin_width"):
        BKTree(bin_width=0.5).build(np.zeros((5, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match="> 0"):
        BKTree(bin_width=0.0)


@pytest.mark.parametrize("bin_width", [1e-3, 0.1, 1.0, 100.0])
def test_bktree_quantised_float_is_exact_for_any_bin_width(bin_width):
    rng = np.random.default_rng(10)
    X = rng.standard_normal((300, 3))
    Q = rng.standard_normal((6, 3))
    idx = [BKTree(bin_width=bin_width).build(X)]
    assert_knn_exact(idx, Q, X, 12)
    assert_range_exact(idx, Q, X, 0.7)


# --------------------------------------------------------------------------
# distance counting and pruning
# --------------------------------------------------------------------------


def clustered(rng, n, dim, n_clusters=10, spread=0.01):
    centres = rng.random((n_clusters, dim))
    return centres[rng.integers(0, n_clusters, n)] + spread * rng.standard_normal((n, dim))


def test_trees_prune_on_low_dimensional_clustered_data():
    rng = np.random.default_rng(11)
    X = clustered(rng, 4000, 2)
    Q = clustered(rng, 20, 2)
    for idx in (VPTree(), MTree(), BKTree(bin_width=0.02)):
        idx.build(X)
        idx.knn(Q, 5)
        assert idx.last_stats.mean_fraction < 0.1, type(idx).__name__
        idx.range_query(Q, 0.005)
        assert idx.last_stats.mean_fraction < 0.1, type(idx).__name__
    B = np.packbits(rng.random((4000, 32)) < 0.5, axis=1)
    bk = BKTree().build(B)
    bk.range_query(B[:10], 2)
    assert bk.last_stats.mean_fraction < 0.2


def test_search_stats():
    X = np.random.default_rng(12).standard_normal((50, 2))
    idx = VPTree(leaf_size=4).build(X)
    assert idx.last_stats is None and idx.build_distances_ > 0
    idx.knn(X[:3], 2)
    s = idx.last_stats
    assert isinstance(s, SearchStats) and s.n_database == 50
    np.testing.assert_allclose(s.fraction, s.n_distances / 50)
    assert s.mean_fraction == pytest.approx(s.fraction.mean())
    assert (s.n_nodes_visited >= 1).all()
    bf = BruteForceIndex().build(X)
    bf.range_query(X[:3], 0.1)
    assert bf.last_stats.fraction.tolist() == [1.0, 1.0, 1.0]


def test_mtree_counts_each_point_at_most_once():
    # routing objects are database points that also sit in leaves; their
    # distance must be reused, so even a search that visits everything counts <= N
    rng = np.random.default_rng(13)
    X = rng.standard_normal((500, 40))
    idx = MTree(node_capacity=4).build(X)
    idx.knn(X[:5], 500)
    assert (idx.last_stats.n_distances <= 500).all()
    assert (idx.last_stats.n_distances == 500).any()


def test_builds_are_reproducible():
    X = np.random.default_rng(14).standard_normal((300, 5))
    a = VPTree(seed=1).build(X)
    b = VPTree(seed=1).build(X)
    assert a.mu_ == b.mu_
    assert np.array_equal(a._perm, b._perm)


def test_vp_split_follows_eq9():
    # inner subtree: d(x, v) < mu; outer: d(x, v) >= mu; check the root split
    rng = np.random.default_rng(15)
    X = rng.standard_normal((200, 3))
    t = VPTree(leaf_size=8).build(X)
    v = t._perm[t._vpos[0]]
    mu = t.mu_[0]
    ci, co = t._cin[0], t._cout[0]
    inner = t._perm[t._start[ci] : t._end[ci]]
    outer = t._perm[t._start[co] : t._end[co]]
    d = exact_distances(X[[v]], X)[0]
    assert (d[inner] < mu).all() and (d[outer] >= mu).all()
    assert abs(inner.size - outer.size) <= 1


# --------------------------------------------------------------------------
# slower, larger checks
# --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dim", [3, 16])
def test_larger_random_float(dim):
    rng = np.random.default_rng(dim)
    X = clustered(rng, 8000, dim, spread=0.05).astype(np.float32)
    Q = clustered(rng, 30, dim, spread=0.05)
    indexes = [idx.build(X) for idx in (BruteForceIndex(), VPTree(), MTree(), BKTree(bin_width=0.05))]
    assert_knn_exact(indexes, Q, X, 10)
    assert_knn_exact(indexes, Q, X, 200)
    assert_range_exact(indexes, Q, X, 0.1)


@pytest.mark.slow
def test_larger_hamming():
    rng = np.random.default_rng(16)
    protos = rng.random((10, 64)) < 0.5
    bits = protos[rng.integers(0, 10, 8000)] ^ (rng.random((8000, 64)) < 0.1)
    X = np.packbits(bits, axis=1)
    Q = X[rng.integers(0, 8000, 30)]
    indexes = [idx.build(X) for idx in (BruteForceIndex(), VPTree(), MTree(), BKTree())]
    assert_knn_exact(indexes, Q, X, 10)
    assert_range_exact(indexes, Q, X, 4)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=grid_data(), k=st.integers(1, 70))
def test_knn_equals_brute_force_float_more_examples(data, k):
    X, Q = data
    assume(len(X) > 1)
    assert_knn_exact(make_indexes(X, small=True), Q, X, k)


def test_visit_test_and_keep_mask_decide_like_brute_force_ties():
    # the shared pruning prologue of the trees, on hand-made states
    best = ix._KBest(2)
    assert ix._visit_test(best, 5.0, 0, False, 0.0) == ix._VISIT  # not full: visit everything
    best.push(1.0, 3)
    best.push(2.0, 7)  # full: k-th distance 2.0, held by index 7
    assert ix._visit_test(best, 2.5, 0, False, 0.1) == ix._STOP
    assert ix._visit_test(best, 2.05, 0, False, 0.1) == ix._VISIT  # within the rounding margin
    hb = ix._KBest(1)
    hb.push(3, 5)  # Hamming: k-th distance 3 at index 5
    assert ix._visit_test(hb, 3, 6, True, 0) == ix._SKIP  # only ties with larger indices below
    assert ix._visit_test(hb, 3, 4, True, 0) == ix._VISIT  # a smaller index could win the tie
    assert ix._visit_test(hb, 4, 0, True, 0) == ix._STOP
    keep = ix._keep_mask(hb, np.array([2, 3, 3, 4]), np.array([9, 4, 6, 0]), True, 0)
    assert keep.tolist() == [True, True, False, False]
    zb = ix._KBest(1)
    zb.push(0.0, 5)  # float, k-th distance 0: duplicates of the query, smaller indices only
    assert ix._keep_mask(zb, np.array([0.0, 0.0, 1e-20]), np.array([4, 6, 1]), False, 1e-15).tolist() == [True, False, True]
    assert ix._keep_mask(best, np.array([1.9, 2.05, 2.2]), np.array([0, 0, 0]), False, 0.1).tolist() == [True, True, False]


def test_500_duplicate_codes_with_ties_at_the_kth_distance():
    # a peer's VP-tree recurses without end on ~500 duplicates; ours must not, and ties
    # straddling the k-th distance must resolve by database index as in brute force
    rng = np.random.default_rng(19)
    base = rng.random(40) < 0.5
    near = base.copy()
    near[:2] ^= True  # two bits away
    bits = np.vstack([np.tile(base, (500, 1)), np.tile(near, (30, 1)), rng.random((70, 40)) < 0.5])
    X = np.packbits(bits[rng.permutation(len(bits))], axis=1)
    Q = np.packbits(np.vstack([base, near, rng.random((3, 40)) < 0.5]), axis=1)
    indexes = [idx.build(X, n_bits=40) for idx in (BruteForceIndex(), VPTree(leaf_size=1), VPTree(), MTree(node_capacity=2),
                                                  MTree(), BKTree())]
    for k in (1, 499, 500, 501, 530, 531, 600, 700):
        assert_knn_exact(indexes, Q, X, k)
    assert_range_exact(indexes, Q, X, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_brute_force_high_dimension_rescoring_per_query(dtype):
    # d >= 256: candidates are re-scored query by query; same bits as the reference
    rng = np.random.default_rng(20)
    base = rng.standard_normal(300)
    X = np.vstack([rng.standard_normal((400, 300)), base + 1e-9 * rng.standard_normal((30, 300)),
                   np.tile(base, (5, 1))]).astype(dtype)
    Q = np.vstack([base, rng.standard_normal((6, 300)), X[[3, 401]]])
    indexes = [BruteForceIndex().build(X), BruteForceIndex(block_elems=900).build(X),
               BruteForceIndex(filter_dtype="float64").build(X), VPTree(leaf_size=8).build(X)]
    for k in (1, 10, 40, 435):
        assert_knn_exact(indexes, Q, X, k)
    r = float(np.median(exact_distances(Q[1:2], X)))
    assert_range_exact(indexes, Q, X, r)
