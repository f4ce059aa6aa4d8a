"""Euclidean retrieval and its evaluation on hand-checked cases."""

import numpy as np
import pytest

from cbirlib import features, retrieval


def test_euclidean_search_matches_naive_and_breaks_ties_by_index():
    rng = np.random.default_rng(0)
    db = rng.normal(size=(50, 6)).astype(np.float32)
    db[10] = db[3]                           # exact duplicate: tie, index 3 first
    q = np.vstack([db[3], rng.normal(size=(4, 6))]).astype(np.float32)
    dist, idx = retrieval.euclidean_search(q, db, k=7)
    naive = np.sqrt(((q[:, None, :].astype(np.float64) - db[None]) ** 2).sum(-1))
    order = np.argsort(naive, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_allclose(dist, np.take_along_axis(naive, order, 1), atol=1e-5)
    assert list(idx[0, :2]) == [3, 10]
    assert retrieval.euclidean_search(q, db, k=500)[1].shape == (5, 50)


def test_evaluate_hand_checked():
    # 1-D features; database: labels A A B B at positions 0, 1, 10, 11
    db = np.array([[0.0], [1.0], [10.0], [11.0]], np.float32)
    dbl = np.array([0, 0, 1, 1])
    q = np.array([[0.4], [10.6]], np.float32)
    ql = np.array([0, 0])                       # the second query is "wrong": its neighbours are B
    rep = retrieval.evaluate_features(q, ql, db, dbl, ks=(1, 2))
    # query 1: ranking 0,1,10,11 -> rel 1,1,0,0 -> P@1 1, P@2 1, AP 1
    # query 2: ranking 11,10,1,0 (|10.6-11|=.4 < |10.6-10|=.6) -> rel 0,0,1,1
    #          P@1 0, P@2 0, AP = (1/3 + 2/4) / 2 = 5/12
    at = rep.at_k.set_index("K")
    assert at.loc[1, "precision"] == pytest.approx(0.5)
    assert at.loc[2, "precision"] == pytest.approx(0.5)
    assert at.loc[2, "recall"] == pytest.approx(0.5)        # (2/2 + 0/2) / 2
    assert at.loc[2, "accuracy"] == pytest.approx(0.5)      # majority label of top 2
    assert rep.map_all == pytest.approx((1 + 5 / 12) / 2)
    assert at.loc[2, "map_at_k"] == pytest.approx(0.5)      # query 2 has no hit in top 2 -> 0
    assert rep.nn_purity == pytest.approx(0.5)
    assert rep.r_precision == pytest.approx(0.5)     # R = 2: top 2 all relevant (1), none (0)
    assert rep.summary()["precision@2"] == pytest.approx(0.5)


def test_evaluate_blocks_do_not_change_results():
    rng = np.random.default_rng(1)
    db, q = rng.normal(size=(300, 5)), rng.normal(size=(41, 5))
    dbl, ql = rng.integers(0, 3, 300), rng.integers(0, 3, 41)
    a = retrieval.evaluate_features(q, ql, db, dbl, ks=(5, 10), block=7)
    b = retrieval.evaluate_features(q, ql, db, dbl, ks=(5, 10))
    assert a.map_all == pytest.approx(b.map_all)
    np.testing.assert_allclose(a.at_k.to_numpy(), b.at_k.to_numpy())


def test_evaluate_bad_input():
    db = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="single class"):
        retrieval.evaluate_features(db, [0] * 4, db, [0] * 4, ks=(1,))
    bad = db.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        retrieval.evaluate_features(bad, [0, 1, 0, 1], db, [0, 1, 0, 1], ks=(1,))
    with pytest.raises(ValueError, match="exceeds"):
        retrieval.evaluate_features(db, [0, 1, 0, 1], db, [0, 1, 0, 1], ks=(5,))


def test_time_queries_reports_ms():
    rng = np.random.default_rng(2)
    t = retrieval.time_queries(rng.normal(size=(5, 4)), rng.normal(size=(20, 4)), k=3, n_single=3,
                               repeats=1)
    assert t["single_ms"] > 0 and t["batched_ms"] > 0 and t["n_database"] == 20


def test_feature_index_roundtrip(tmp_path):
    feats = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    written = features.write_feature_index(tmp_path / "idx", ["a.png", "b.png", "c.png"], feats,
                                           [0, 1, 1])
    for path in written.values():
        files, back, labels = features.read_feature_index(path)
        assert files == ["a.png", "b.png", "c.png"] and list(labels) == [0, 1, 1]
        np.testing.assert_allclose(back, feats, atol=1e-6)
    import json
    record = json.loads(written["json"].read_text())[1]
    assert set(record) == {"file", "feature", "label"}
    with pytest.raises(ValueError, match="same length"):
        features.write_feature_index(tmp_path / "x", ["a"], feats, [0, 1, 1])


def test_load_images_mixed_sizes_and_modes(tmp_path, monkeypatch):
    from PIL import Image
    import pandas as pd
    from cbirlib import splits

    monkeypatch.setenv("CBIR_CACHE", str(tmp_path / "cache"))
    Image.fromarray(np.full((10, 20), 100, np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.full((30, 30, 3), 200, np.uint8)).save(tmp_path / "rgb.png")
    monkeypatch.setattr(splits, "image_file", lambda dataset, p: tmp_path / p)
    table = pd.DataFrame({"path": ["grey.png", "rgb.png"]})
    grey = features.load_images("toy", table, size=8, mode="L", progress=False)
    assert grey.shape == (2, 8, 8) and grey.dtype == np.uint8
    assert grey[0, 4, 4] == 100 and grey[1, 4, 4] == 200
    rgb = features.load_images("toy", table, size=8, mode="RGB", progress=False)
    assert rgb.shape == (2, 8, 8, 3)
    again = features.load_images("toy", table, size=8, mode="L", progress=False)
    np.testing.assert_array_equal(again, grey)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    from cbirlib.datasets import ImageReadError
    with pytest.raises(ImageReadError, match="broken.png"):
        features.load_images("toy", pd.DataFrame({"path": ["broken.png"]}), size=8, progress=False)


def test_hamming_pr_by_radius_hand_case():
    # one query, distances 0,1,1,2 to items with relevance 1,0,1,0 (2 bits)
    d = np.array([[0, 1, 1, 2]], np.uint8)
    pr = retrieval.hamming_pr_by_radius(d, [7], [7, 3, 7, 3], n_bits=2)
    np.testing.assert_allclose(pr["precision"], [1.0, 2 / 3, 0.5])
    np.testing.assert_allclose(pr["recall"], [0.5, 1.0, 1.0])
    # a query with nothing within radius 0 gets precision 0 there
    pr = retrieval.hamming_pr_by_radius(np.array([[1, 2]], np.uint8), [1], [1, 0], n_bits=2)
    assert pr["precision"].iloc[0] == 0 and pr["precision"].iloc[1] == 1


def test_evaluate_codes_perfect_and_random_codes():
    from cbirlib import hashing

    rng = np.random.default_rng(0)
    db_labels = np.repeat(np.arange(4), 50)
    q_labels = np.repeat(np.arange(4), 5)
    proto = rng.integers(0, 2, (4, 32))
    perfect = retrieval.evaluate_codes(hashing.pack_codes(proto[q_labels]), hashing.pack_codes(proto[db_labels]),
                                       q_labels, db_labels, n_bits=32, ks=(1, 10))
    assert perfect["mAP"] == pytest.approx(1.0) and perfect["P@1"] == 1.0
    assert perfect["R-precision"] == pytest.approx(1.0) and perfect["P@r<=2"] == pytest.approx(1.0)
    noise = retrieval.evaluate_codes(hashing.pack_codes(rng.integers(0, 2, (20, 32))),
                                     hashing.pack_codes(rng.integers(0, 2, (200, 32))),
                                     q_labels, db_labels, n_bits=32, ks=(1, 10))
    assert noise["mAP"] < 0.45
    assert list(noise["pk"]["K"]) == [1, 10]
