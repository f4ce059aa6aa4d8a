"""Tests for cbirlib.indexbench: data, wrappers, sweeps, slopes and pipeline tables."""

import math

import numpy as np
import pandas as pd
import pytest

from cbirlib import indexbench as ib
from cbirlib.index import BruteForceIndex, exact_distances


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["uniform", "clustered"])
def test_synthetic_data_shapes_and_determinism(kind):
    X, Q = ib.synthetic_data(kind, 300, 7, n_queries=11, seed=3)
    assert X.shape == (300, 7) and Q.shape == (11, 7)
    assert X.dtype == Q.dtype == np.float32
    X2, Q2 = ib.synthetic_data(kind, 300, 7, n_queries=11, seed=3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(Q, Q2)
    assert not np.array_equal(X, ib.synthetic_data(kind, 300, 7, n_queries=11, seed=4)[0])
    if kind == "uniform":
        assert X.min() >= 0 and X.max() <= 1


def test_subspace_data_has_its_intrinsic_dimension():
    X, Q = ib.synthetic_data("subspace", 500, 40, n_queries=20, seed=0, intrinsic_dim=3)
    sv = np.linalg.svd(np.vstack([X, Q]).astype(np.float64), compute_uv=False)
    assert (sv[3:] < 1e-4 * sv[0]).all() and sv[2] > 0.1 * sv[0]
    # an orthonormal embedding keeps the distances of the 3-d cube: at most sqrt(3)
    assert exact_distances(Q, X).max() <= math.sqrt(3) + 1e-5
    with pytest.raises(ValueError, match="intrinsic_dim"):
        ib.synthetic_data("subspace", 10, 4, n_queries=1, seed=0, intrinsic_dim=5)
    with pytest.raises(ValueError, match="kind"):
        ib.synthetic_data("gaussian", 10, 4, n_queries=1, seed=0)


def test_log_sizes():
    assert ib.log_sizes(1000, 100000, 3) == [1000, 10000, 100000]
    s = ib.log_sizes(1000, 54000, 6)
    assert s[0] == 1000 and s[-1] == 54000 and s == sorted(set(s))
    assert ib.log_sizes(1000, 500, 3) == [500]  # n_min clipped to n_max
    assert ib.log_sizes(10, 20, 1) == [20]


def test_pca_truncate_full_rank_keeps_distances():
    rng = np.random.default_rng(0)
    X, Q = rng.standard_normal((200, 6)), rng.standard_normal((5, 6))
    out = ib.pca_truncate(X, Q, [2, 6, 50])
    assert out[2][0].shape == (200, 2) and out[2][1].shape == (5, 2)
    assert out[50][0].shape == (200, 6)  # clipped to the feature dimension
    np.testing.assert_allclose(exact_distances(out[6][1], out[6][0]), exact_distances(Q, X), rtol=1e-5, atol=1e-5)
    # the first component carries the most variance
    assert out[2][0][:, 0].var() >= out[2][0][:, 1].var()


# --------------------------------------------------------------------------
# slopes and verdicts
# --------------------------------------------------------------------------


def test_fit_loglog_recovers_exponents():
    N = np.array([1000, 3000, 10000, 30000, 100000])
    frame = pd.concat([
        pd.DataFrame({"dataset": "a", "method": "linear", "N": N, "distances per query": 0.3 * N}),
        pd.DataFrame({"dataset": "a", "method": "sqrt", "N": N, "distances per query": 2 * np.sqrt(N)}),
        pd.DataFrame({"dataset": "a", "method": "log", "N": N, "distances per query": 40 * np.log(N)}),
        pd.DataFrame({"dataset": "a", "method": "single", "N": [1000], "distances per query": [5.0]}),
    ])
    fit = ib.fit_loglog(frame).set_index("method")
    assert fit.loc["linear", "slope"] == pytest.approx(1.0)
    assert fit.loc["sqrt", "slope"] == pytest.approx(0.5)
    assert fit.loc["linear", "r2"] == pytest.approx(1.0)
    assert fit.loc["log", "slope"] < ib.LOG_SLOPE_MAX
    assert fit.loc["log", "verdict"] == "O(log N)"
    assert fit.loc["linear", "verdict"] == "linear"
    assert fit.loc["sqrt", "verdict"].startswith("sublinear polynomial")
    assert "single" not in fit.index  # one size: no slope
    assert fit.loc["sqrt", "growth exponent"] == pytest.approx(0.5)
    assert fit.loc["linear", "N min"] == 1000 and fit.loc["linear", "N max"] == 100000


def test_falling_cost_has_growth_exponent_zero():
    frame = pd.DataFrame({"dataset": "d", "method": "m", "N": [1000, 10000], "distances per query": [50.0, 20.0]})
    fit = ib.fit_loglog(frame).iloc[0]
    assert fit["slope"] < 0 and fit["growth exponent"] == 0.0 and fit["verdict"] == "O(log N)"


def test_flat_comparison():
    X, Q = ib.synthetic_data("uniform", 2000, 16, n_queries=50, seed=5)
    r = ib.flat_comparison(X, Q, 5, repeats=2)
    assert r["N"] == 2000 and r["queries"] == 50
    assert r["time ratio"] == pytest.approx(r["ours (s)"] / r["FAISS flat (s)"])
    assert r["same indices"] > 0.99


def test_log_n_has_slope_below_threshold_from_1000_on():
    # the justification of LOG_SLOPE_MAX: c log N has local slope 1 / ln N
    for n in (1000, 10**4, 10**5, 10**6):
        assert 1 / math.log(n) < ib.LOG_SLOPE_MAX
    assert ib.complexity_verdict(float("nan")) == "undetermined"
    assert ib.complexity_verdict(0.95) == "linear"


def test_tie_aware_recall():
    exact = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    assert ib.tie_aware_recall(exact, exact) == 1.0
    got = np.array([[0.0, 1.0, 3.0], [1.0, 1.0, 1.0]])  # one item beyond the 3rd distance
    assert ib.tie_aware_recall(got, exact) == pytest.approx(5 / 6)
    assert ib.tie_aware_recall(np.array([[0.0, 2.0000001]]), np.array([[0.0, 2.0]])) == 1.0  # float32 rounding


# --------------------------------------------------------------------------
# wrappers and measurement
# --------------------------------------------------------------------------


def test_deep_nbytes_counts_buffers_once_and_skips_excluded():
    a = np.zeros(1000, dtype=np.float64)
    assert ib.deep_nbytes(a) == 8000
    holder = {"x": a, "view": a[10:20], "again": [a, a]}
    n = ib.deep_nbytes(holder)
    assert 8000 < n < 8000 + 2000  # the buffer once, plus small containers
    assert ib.deep_nbytes(holder, exclude=[a]) < 2000
    assert ib.deep_nbytes([1.0, 2.0]) > ib.deep_nbytes([])


@pytest.mark.parametrize("codes", [False, True])
def test_every_available_method_answers_correctly(codes):
    rng = np.random.default_rng(1)
    if codes:
        X = np.packbits(rng.random((400, 32)) < 0.5, axis=1)
        Q = np.packbits(rng.random((6, 32)) < 0.5, axis=1)
    else:
        X, Q = ib.synthetic_data("clustered", 400, 5, n_queries=6, seed=1)
    bf = ib.measure("brute force", X, Q, 7, n_latency=2)
    exact = (bf["D"], bf["I"])
    assert bf["distances per query"] == 400 and bf["distance fraction"] == 1.0
    for name in ib.available_methods():
        r = ib.measure(name, X, Q, 7, n_latency=2, exact=exact)
        assert r["D"].shape == (6, 7), name
        assert r["build time (s)"] >= 0 and r["memory (bytes)"] > 0, name
        assert r["latency p95 (ms)"] >= r["latency median (ms)"] > 0, name
        if name == "FAISS HNSW":
            assert 0.5 <= r["recall"] <= 1.0  # approximate: recall measured, not assumed
            continue
        assert r["recall"] == 1.0, name  # exact methods (ties may pick other members)
        np.testing.assert_allclose(r["D"], exact[0], rtol=1e-5, atol=1e-5, err_msg=name)
        if r["family"] == "ours":
            assert r["identical to brute force"] is True, name
            assert 1 <= r["distances per query"] <= 400
        if name.startswith("PyPI"):  # the counting callback works
            assert np.nanmax([r["distances per query"], r["distances per query (varies between runs)"]]) > 0, name


def test_k_larger_than_n_in_wrappers():
    X, Q = ib.synthetic_data("uniform", 5, 3, n_queries=2, seed=0)
    for name in ib.available_methods():
        if name == "FAISS HNSW":
            continue
        m = ib.make_method(name)
        m.build(X)
        D, I = m.knn(Q, 10)
        assert np.asarray(I).shape == (2, 5), name
        if name == "PyPI vptree":  # the package loses items when k >= N; the wrapper pads them
            got = np.asarray(I)[0]
            assert set(got[got >= 0].tolist()) <= set(range(5)) and np.isinf(D[0][got < 0]).all()
            continue
        assert sorted(np.asarray(I)[0].tolist()) == list(range(5)), name


def test_make_method_rejects_unknown_names():
    with pytest.raises(ValueError, match="method"):
        ib.make_method("KD-tree")


def test_scaling_sweep_nested_sizes_limits_and_ratios():
    X, Q = ib.synthetic_data("clustered", 900, 3, n_queries=5, seed=2)
    info = {"c3": {"kind": "clustered"}}
    df = ib.scaling_sweep({"c3": (X, Q)}, [300, 900, 5000], ["VP-tree", "M-tree"], k=4, n_latency=2,
                          max_n={"M-tree": 300}, info=info, progress=False)
    assert set(df["N"]) == {300, 900}  # 5000 exceeds the pool
    assert df.loc[df["method"] == "M-tree", "N"].tolist() == [300]
    assert (df["kind"] == "clustered").all() and (df["dim"] == 3).all()
    assert df["identical to brute force"].all()
    bf = df.loc[df["method"] == "brute force"].set_index("N")["distances per query"]
    assert bf.to_dict() == {300: 300.0, 900: 900.0}
    out = ib.add_ratios(df, reference="brute force")
    ref = out.loc[out["method"] == "brute force"]
    np.testing.assert_allclose(ref["latency median ratio to brute force"], 1.0)
    np.testing.assert_allclose(ref["batch time ratio to brute force"], 1.0)
    vp = out.loc[(out["method"] == "VP-tree") & (out["N"] == 900)].iloc[0]
    assert vp["latency median ratio to brute force"] == pytest.approx(
        vp["latency median (ms)"] / ref.set_index("N").loc[900, "latency median (ms)"])


def test_hamming_range_comparison_agrees_with_brute_force():
    rng = np.random.default_rng(3)
    protos = rng.random((4, 24)) < 0.5
    X = np.packbits(protos[rng.integers(0, 4, 500)] ^ (rng.random((500, 24)) < 0.05), axis=1)
    Q = X[:5]
    table = ib.hamming_range_comparison(X, Q, 3)
    assert table["same result as brute force"].all()
    assert {"brute force", "BK-tree", "VP-tree"} <= set(table["method"])
    ref = BruteForceIndex().build(X).range_query(Q, 3)
    assert table["results per query"].iloc[0] == pytest.approx(np.mean([len(i) for _, i in ref]))
    with pytest.raises(TypeError, match="packed"):
        ib.hamming_range_comparison(X.astype(np.float32), Q.astype(np.float32), 3)


# --------------------------------------------------------------------------
# pipeline tables (fake features: no images, no training)
# --------------------------------------------------------------------------


def fake_pipeline_data(seed=0):
    rng = np.random.default_rng(seed)
    labels = {"query": rng.integers(0, 3, 12), "database": rng.integers(0, 3, 150)}
    centres = rng.standard_normal((3, 6)) * 3

    def feats(role, noise):
        return (centres[labels[role]] + noise * rng.standard_normal((len(labels[role]), 6))).astype(np.float32)

    f = {s: {"query": feats("query", n), "database": feats("database", n)}
         for s, n in (("autoencoder", 0.5), ("backbone", 2.0), ("traditional", 4.0))}
    f["hash"] = {r: np.packbits(v > 0, axis=1) for r, v in f["autoencoder"].items()}
    encoders = {s: (lambda i, s=s: f[s]["query"][i]) for s in f}
    return {"labels": labels, "features": f, "encoders": encoders, "hash_bits": 6,
            "dims": {"autoencoder": 6, "backbone": 6, "traditional": 6, "hash": 6}}


def test_evaluate_pipelines_scores_and_exactness():
    data = fake_pipeline_data()
    t = ib.evaluate_pipelines(data, k=5, timing_queries=3).set_index("pipeline")
    assert list(t.index) == list(ib.PIPELINES)
    assert t["identical to brute force"].all()
    # an exact index changes time, not accuracy
    for col in ("mAP (%)", "Precision (%)", "Accuracy (%)"):
        assert t.loc["autoencoder + VP-tree", col] == t.loc["autoencoder + brute force", col]
        assert t.loc["autoencoder + M-tree", col] == t.loc["autoencoder + brute force", col]
    row = t.loc["autoencoder + brute force"]
    assert row["Precision (%)"] == row["Recall (%)"] == row["F1-Score (%)"]  # K = R
    assert row["search latency ratio to autoencoder + brute force"] == 1.0
    assert t.loc["CNN backbone + brute force", "distances per query"] == 150
    # well-separated classes: the autoencoder source is the cleanest
    assert t.loc["autoencoder + brute force", "mAP (%)"] > t.loc["traditional colour/texture + brute force", "mAP (%)"]
    assert (t["end-to-end latency (ms)"] > 0).all()


def test_precision_recall_points():
    data = fake_pipeline_data(1)
    pr = ib.precision_recall_points(data, ks=[1, 5, 50, 1000])
    assert set(pr["source"]) == {"autoencoder", "backbone", "traditional", "hash"}
    assert set(pr["K"]) == {1, 5, 50}  # K above the database size is dropped
    rec = pr.loc[pr["source"] == "autoencoder"].sort_values("K")["recall"].to_numpy()
    assert (np.diff(rec) >= 0).all()  # recall grows with K


def test_nondeterministic_peer_counts_go_to_their_own_column():
    if "PyPI downward-mtree" not in ib.available_methods():
        pytest.skip("downward-mtree not installed")
    X, Q = ib.synthetic_data("uniform", 600, 16, n_queries=5, seed=6)
    r = ib.measure("PyPI downward-mtree", X, Q, 5, n_latency=1)
    assert np.isnan(r["distances per query"]) and np.isnan(r["distance fraction"])
    assert r["distances per query (varies between runs)"] > 0
    r = ib.measure("VP-tree", X, Q, 5, n_latency=1)
    assert r["distances per query"] > 0 and np.isnan(r["distances per query (varies between runs)"])
