"""Tests for cbirlib.hashing: codes, Hamming search, hash layer and loss, baselines, bad input."""

from __future__ import annotations

import doctest
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cbirlib import hashing as H
from cbirlib import metrics as M

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def naive_hamming(a, b):
    """Differing bits of two unpacked code matrices, by brute force."""
    return np.array([[np.count_nonzero(x != y) for y in b] for x in a])


def random_codes(rng, n, n_bits):
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=(n, n_bits))


def clusters(*, n_per=60, n_classes=5, d=32, sep=3.0, noise=1.0, offset=1.0, seed=0):
    """Gaussian classes, interleaved into a database (even rows) and queries (odd rows)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d)) * sep
    y = np.repeat(np.arange(n_classes), 2 * n_per)
    X = centres[y] + rng.normal(size=(y.size, d)) * noise + offset  # offset: like non-negative CNN features
    return X[::2], y[::2], X[1::2], y[1::2]


def hamming_map(model, Xdb, ydb, Xq, yq):
    d = H.hamming_distances(model.encode_packed(Xq), model.encode_packed(Xdb))
    return M.mean_average_precision_from_distances(d, yq, ydb, normalize="all_relevant", ties="expected").value


# --------------------------------------------------------------------------
# packing
# --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 12),
    n_bits=st.integers(1, 140),
    convention=st.sampled_from(["pm1", "01", "bool"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_pack_unpack_round_trip(n, n_bits, convention, seed):
    bits = np.random.default_rng(seed).integers(0, 2, size=(n, n_bits))
    codes = {"pm1": (2 * bits - 1).astype(np.int8), "01": bits.astype(np.uint8), "bool": bits.astype(bool)}[convention]
    packed = H.pack_codes(codes)
    assert packed.dtype == np.uint8
    assert packed.shape == (n, math.ceil(n_bits / 8)) == (n, H.storage_bytes_per_image(n_bits))
    np.testing.assert_array_equal(H.unpack_codes(packed, n_bits), 2 * bits - 1)
    np.testing.assert_array_equal(H.unpack_codes(packed, n_bits, values="01"), bits)
    pad = 8 * packed.shape[1] - n_bits
    assert not (packed[:, -1] & ((1 << pad) - 1)).any()  # padding bits are zero


def test_pack_codes_is_big_endian():
    # bit j -> bit 7 - j % 8 of byte j // 8; 9 bits pad 7 zero bits
    np.testing.assert_array_equal(H.pack_codes([[1, -1, -1, -1, -1, -1, -1, 1, 1]]), [[0b10000001, 0b10000000]])
    np.testing.assert_array_equal(H.pack_codes(np.array([[0, 1, 0, 0, 0, 0, 0, 0]])), [[64]])


@pytest.mark.parametrize(
    "bad, exc",
    [
        ([[1, 2]], ValueError),
        ([[1, 0, -1]], ValueError),  # mixes the two conventions
        ([[0.5, 1.0]], ValueError),
        ([[np.nan, 1.0]], ValueError),
        ([1, -1, 1], ValueError),  # 1-D
        (np.zeros((0, 8)), ValueError),
        ([["a", "b"]], TypeError),
    ],
)
def test_pack_codes_rejects(bad, exc):
    with pytest.raises(exc):
        H.pack_codes(bad)


def test_unpack_codes_checks_length_and_padding():
    packed = H.pack_codes(np.ones((2, 12), dtype=np.int8))
    with pytest.raises(ValueError, match="bytes"):
        H.unpack_codes(packed, 20)
    corrupt = packed.copy()
    corrupt[0, -1] |= 1  # a padding bit
    with pytest.raises(ValueError, match="padding"):
        H.unpack_codes(corrupt, 12)
    with pytest.raises(TypeError):
        H.unpack_codes(packed.astype(np.int16), 12)


def test_docstring_examples():
    result = doctest.testmod(H, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0


def test_binarize_maps_zero_to_plus_one():
    np.testing.assert_array_equal(H.binarize([[-1e-300, 0.0, -0.0, 3.0, -np.inf, np.inf]]), [[-1, 1, 1, 1, -1, 1]])
    assert H.binarize([[0]]).dtype == np.int8
    with pytest.raises(ValueError, match="NaN"):
        H.binarize([[np.nan]])


def test_storage():
    assert [H.storage_bytes_per_image(b) for b in (1, 8, 12, 16, 48, 64, 65)] == [1, 1, 2, 2, 6, 8, 9]
    s = H.storage_comparison(64, 1280, n_images=59000)
    assert s["float_bytes_per_image"] == 1280 * 4 and s["code_bytes_per_image"] == 8
    assert s["compression_ratio"] == 640.0 and s["code_bytes_total"] == 8 * 59000
    assert H.storage_comparison(48, 10, float_bytes=8)["compression_ratio"] == 80 / 6


# --------------------------------------------------------------------------
# Hamming distances
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n_bits", [16, 32, 48, 64, 1, 7, 13, 24, 40, 63, 65, 100, 128, 129, 256, 300])
@pytest.mark.parametrize("method", ["auto", "bitwise_count", "lut"])
def test_popcount_matches_naive_hamming(n_bits, method):
    rng = np.random.default_rng(n_bits)
    a, b = random_codes(rng, 17, n_bits), random_codes(rng, 23, n_bits)
    b[:3] = a[:3]  # some zero distances
    b[3] = -a[3]  # one maximal distance
    d = H.hamming_distances(H.pack_codes(a), H.pack_codes(b), method=method)
    np.testing.assert_array_equal(d, naive_hamming(a, b))
    assert d.dtype == (np.uint8 if 8 * math.ceil(n_bits / 8) <= 255 else np.uint16)


def test_hamming_blocks_cover_large_databases(monkeypatch):
    # force many small blocks and multi-word codes
    monkeypatch.setattr(H, "_BLOCK_BYTES", 64)
    rng = np.random.default_rng(0)
    a, b = random_codes(rng, 9, 150), random_codes(rng, 31, 150)
    np.testing.assert_array_equal(H.hamming_distances(H.pack_codes(a), H.pack_codes(b)), naive_hamming(a, b))


@settings(max_examples=40, deadline=None)
@given(n_bits=st.integers(1, 70), seed=st.integers(0, 2**32 - 1))
def test_zero_padding_never_changes_distances(n_bits, seed):
    rng = np.random.default_rng(seed)
    a, b = random_codes(rng, 4, n_bits), random_codes(rng, 5, n_bits)
    extra = 8 - n_bits % 8 if n_bits % 8 else 8
    pad = -np.ones((1, extra), dtype=np.int8)  # explicit zero bits appended to every code
    d = H.hamming_distances(H.pack_codes(a), H.pack_codes(b))
    d_padded = H.hamming_distances(
        H.pack_codes(np.hstack([a, np.repeat(pad, 4, 0)])), H.pack_codes(np.hstack([b, np.repeat(pad, 5, 0)]))
    )
    np.testing.assert_array_equal(d, d_padded)


@pytest.mark.parametrize(
    "q, x, exc",
    [
        (np.zeros((2, 8), np.uint8), np.zeros((3, 4), np.uint8), ValueError),
        (np.zeros((2, 8), np.int64), np.zeros((3, 8), np.int64), TypeError),
        (np.zeros(8, np.uint8), np.zeros((3, 8), np.uint8), ValueError),
        (np.zeros((0, 8), np.uint8), np.zeros((3, 8), np.uint8), ValueError),
    ],
)
def test_hamming_distances_validation(q, x, exc):
    with pytest.raises(exc):
        H.hamming_distances(q, x)
    with pytest.raises(ValueError, match="method"):
        H.hamming_distances(np.zeros((1, 1), np.uint8), np.zeros((1, 1), np.uint8), method="fast")


# --------------------------------------------------------------------------
# top-k and ties (delegated to metrics.rank_by_distance)
# --------------------------------------------------------------------------


def test_hamming_topk_stable_equals_rank_by_distance():
    rng = np.random.default_rng(1)
    q, x = random_codes(rng, 40, 12), random_codes(rng, 500, 12)  # 12 bits: many ties
    qp, xp = H.pack_codes(q), H.pack_codes(x)
    full = H.hamming_distances(qp, xp)
    for k in (1, 10, 499, 500, 10_000):
        d, idx = H.hamming_topk(qp, xp, k)
        ref = M.rank_by_distance(full, k=k)
        np.testing.assert_array_equal(idx, ref)
        np.testing.assert_array_equal(d, np.take_along_axis(full, ref, axis=1))
        assert (np.diff(d.astype(int), axis=1) >= 0).all()


def test_duplicate_codes_tie_in_index_order():
    x = np.tile(np.array([[1, -1, 1, 1, -1, -1, 1, -1]], dtype=np.int8), (20, 1))
    x[[3, 11]] = -x[[3, 11]]  # two far items
    d, idx = H.hamming_topk(H.pack_codes(x[:1]), H.pack_codes(x), 18)
    np.testing.assert_array_equal(idx[0], [i for i in range(20) if i not in (3, 11)])
    assert (d == 0).all()


def test_hamming_topk_random_ties_reproducible_and_equal_to_metrics(monkeypatch):
    rng = np.random.default_rng(2)
    q, x = random_codes(rng, 30, 8), random_codes(rng, 400, 8)
    qp, xp = H.pack_codes(q), H.pack_codes(x)
    with pytest.raises(ValueError, match="seed"):
        H.hamming_topk(qp, xp, 5, ties="random")
    d1, i1 = H.hamming_topk(qp, xp, 50, ties="random", seed=7)
    d2, i2 = H.hamming_topk(qp, xp, 50, ties="random", seed=7)
    _, i3 = H.hamming_topk(qp, xp, 50, ties="random", seed=8)
    np.testing.assert_array_equal(i1, i2)
    assert not np.array_equal(i1, i3)
    np.testing.assert_array_equal(d1, np.sort(H.hamming_distances(qp, xp), axis=1)[:, :50])
    # blocks of queries share one Generator: same result as ranking the full matrix at once
    monkeypatch.setattr(H, "_TOPK_BLOCK_ELEMS", 400 * 7)
    _, i4 = H.hamming_topk(qp, xp, 50, ties="random", seed=7)
    np.testing.assert_array_equal(i4, M.rank_by_distance(H.hamming_distances(qp, xp), k=50, ties="random", seed=7))


# --------------------------------------------------------------------------
# collapse report
# --------------------------------------------------------------------------


def test_collapse_report_extremes():
    same = np.ones((50, 16), dtype=np.int8)
    r = H.collapse_report(same)
    assert (r.n_distinct, r.distinct_fraction, r.largest_bucket_fraction) == (1, 1 / 50, 1.0)
    assert r.mean_bit_entropy == 0.0 and r.n_constant_bits == 16 and math.isnan(r.mean_abs_correlation)
    np.testing.assert_array_equal(r.bit_mean, 1.0)
    every = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.uint8)  # all 8-bit codes once
    r = H.collapse_report(every)
    assert r.n_distinct == 256 and r.largest_bucket_fraction == 1 / 256
    np.testing.assert_allclose(r.bit_entropy, 1.0)
    np.testing.assert_allclose(r.bit_mean, 0.0)
    assert r.mean_abs_correlation < 1e-12
    assert set(r.summary()) >= {"n_distinct", "mean_bit_entropy", "n_constant_bits", "mean_abs_relaxed"}
    assert math.isnan(r.mean_abs_relaxed)
    assert H.collapse_report(same, relaxed=np.full((50, 16), -0.25)).mean_abs_relaxed == 0.25
    with pytest.raises(ValueError, match="shape"):
        H.collapse_report(same, relaxed=np.zeros((50, 15)))


# --------------------------------------------------------------------------
# the hash objective (eq. 6 and the extra terms)
# --------------------------------------------------------------------------


def test_hash_objective_terms_on_binary_codes():
    rng = np.random.default_rng(3)
    b = random_codes(rng, 12, 16)
    u = torch.tensor(b, dtype=torch.float64)
    y = rng.integers(0, 3, size=12)
    S = torch.tensor(y[:, None] == y[None, :])
    ham = naive_hamming(b, b) / 16.0
    iu = np.triu_indices(12, 1)
    s, dist = (y[:, None] == y[None, :])[iu].astype(float), ham[iu]
    lit = H.hash_objective(u, S, pairwise="literal")
    assert lit["pair"].item() == pytest.approx(np.mean(s * dist))
    assert lit["quantization"].item() == pytest.approx(0.0)  # binary codes: no quantisation error
    assert lit["balance"].item() == pytest.approx(np.sum(b.mean(0) ** 2) / 16)
    con = H.hash_objective(u, S, pairwise="contrastive", margin=0.5)
    assert con["pair"].item() == pytest.approx(np.mean(s * dist + (1 - s) * np.maximum(0, 0.5 - dist)))
    theta = 0.5 * (b @ b.T)[iu]
    lik = H.hash_objective(u, S, pairwise="likelihood")
    assert lik["pair"].item() == pytest.approx(np.mean(np.logaddexp(0, theta) - s * theta) / 16)
    w = H.hash_objective(u, S, pairwise="literal", alpha=2.0, beta=3.0, gamma=5.0)
    expected = w["pair"] + 2 * w["quantization"] + 3 * w["balance"] + 5 * w["decorrelation"]
    assert w["total"].item() == pytest.approx(expected.item())
    with pytest.raises(ValueError):
        H.hash_objective(u, S, pairwise="dsh")
    with pytest.raises(ValueError):
        H.hash_objective(u, S, alpha=-1.0)


def test_hash_layer_relaxation_and_sign_policy():
    layer = H.HashLayer(4, 3)
    with torch.no_grad():
        layer.linear.weight.zero_()
        layer.linear.bias.copy_(torch.tensor([0.0, -1.0, 2.0]))
    f = torch.randn(5, 4)
    torch.testing.assert_close(layer(f), torch.tanh(torch.tensor([0.0, -1.0, 2.0])).expand(5, 3))
    assert layer.encode(f).tolist() == [[1, -1, 1]] * 5  # sign(0) = +1


# --------------------------------------------------------------------------
# paper 000's hash layer: training, quality, collapse
# --------------------------------------------------------------------------


@pytest.mark.parametrize("pairwise", ["contrastive", "likelihood"])
def test_hash_layer_learns_separable_classes(pairwise):
    Xdb, ydb, Xq, yq = clusters()
    model = H.DeepPairwiseHash(n_bits=16, seed=0, pairwise=pairwise, epochs=20, batch_size=150, lr=2e-2)
    model.fit(Xdb, ydb)
    hist = model.history_
    assert set(hist) == {"pair", "quantization", "balance", "decorrelation", "total"}
    assert len(hist["total"]) == 20
    assert hist["total"][-1] < 0.7 * hist["total"][0]
    assert hist["pair"][-1] < hist["pair"][0]
    rng = np.random.default_rng(0)
    rand = M.mean_average_precision_from_distances(
        H.hamming_distances(H.pack_codes(random_codes(rng, len(yq), 16)), H.pack_codes(random_codes(rng, len(ydb), 16))),
        yq, ydb, normalize="all_relevant", ties="expected",
    ).value
    learned = hamming_map(model, Xdb, ydb, Xq, yq)
    assert rand < 0.35 and learned > 0.9
    codes = model.encode(Xq)
    assert codes.dtype == np.int8 and set(np.unique(codes)) <= {-1, 1}
    np.testing.assert_array_equal(model.encode_packed(Xq), H.pack_codes(codes))


def test_unsupervised_knn_similarity_beats_random_codes():
    Xdb, ydb, Xq, yq = clusters(seed=1)
    model = H.DeepPairwiseHash(n_bits=16, seed=0, similarity="knn", n_neighbors=5, epochs=10, batch_size=100, lr=2e-2)
    model.fit(Xdb)  # no labels
    assert model.history_["total"][-1] < model.history_["total"][0]
    assert hamming_map(model, Xdb, ydb, Xq, yq) > 0.6


def _collapse(report):
    return report.n_distinct <= 2 and report.mean_bit_entropy < 0.1


def _reports(model, X):
    return H.collapse_report(model.encode(X), relaxed=np.tanh(model.project(X)))


def test_eq6_literal_collapses_without_extra_terms():
    # overlapping classes: eq. (6) as printed (no dissimilar-pair term) pulls every code together
    Xdb, ydb, _, _ = clusters(n_per=40, n_classes=8, d=32, sep=0.3)
    common = dict(n_bits=16, seed=0, pairwise="literal", epochs=20, batch_size=160, lr=2e-2)
    # without weight decay: one code for everything
    bare = H.DeepPairwiseHash(alpha=0.0, beta=0.0, weight_decay=0.0, **common).fit(Xdb, ydb)
    kept = H.DeepPairwiseHash(alpha=0.1, beta=0.1, weight_decay=0.0, **common).fit(Xdb, ydb)
    r_bare, r_kept = _reports(bare, Xdb), _reports(kept, Xdb)
    assert _collapse(r_bare), r_bare
    assert not _collapse(r_kept)
    assert r_kept.mean_bit_entropy > 0.8 and r_kept.distinct_fraction > 0.5, r_kept
    # with weight decay (the default): the relaxed codes collapse onto 0 instead
    bare = H.DeepPairwiseHash(alpha=0.0, beta=0.0, **common).fit(Xdb, ydb)
    kept = H.DeepPairwiseHash(alpha=0.1, beta=0.1, **common).fit(Xdb, ydb)
    r_bare, r_kept = _reports(bare, Xdb), _reports(kept, Xdb)
    assert r_bare.mean_abs_relaxed < 0.1 and bare.history_["quantization"][-1] > 0.8, r_bare
    assert r_kept.mean_abs_relaxed > 0.25 and kept.history_["quantization"][-1] < 0.6, r_kept


def test_all_similar_pairs_collapse_without_extra_terms():
    # every pair similar (cosine threshold -1): even the contrastive loss has no negatives
    Xdb, ydb, Xq, yq = clusters()
    common = dict(n_bits=16, seed=0, pairwise="contrastive", similarity="cosine", cosine_threshold=-1.0,
                  epochs=30, batch_size=150, lr=2e-2, weight_decay=0.0)
    bare = H.DeepPairwiseHash(alpha=0.0, beta=0.0, **common).fit(Xdb)
    kept = H.DeepPairwiseHash(alpha=1.0, beta=1.0, **common).fit(Xdb)
    r_bare, r_kept = H.collapse_report(bare.encode(Xdb)), H.collapse_report(kept.encode(Xdb))
    assert _collapse(r_bare), r_bare
    assert r_kept.n_distinct >= 4 and r_kept.mean_bit_entropy > 0.8, r_kept
    assert hamming_map(kept, Xdb, ydb, Xq, yq) > hamming_map(bare, Xdb, ydb, Xq, yq)


def test_deep_pairwise_hash_needs_labels_for_label_similarity():
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match="labels"):
        H.DeepPairwiseHash(n_bits=4).fit(X)
    with pytest.raises(ValueError, match="labels"):
        H.DeepPairwiseHash(n_bits=4, epochs=1).fit(X, np.zeros(19))
    multi = (np.random.default_rng(1).random((20, 3)) < 0.5).astype(int)
    H.DeepPairwiseHash(n_bits=4, epochs=1).fit(X, multi)  # multi-label: share one label


# --------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------


def test_itq_quantization_loss_non_increasing():
    X = np.random.default_rng(4).normal(size=(400, 24)) @ np.random.default_rng(5).normal(size=(24, 24))
    itq = H.ITQ(n_bits=12, seed=0, n_iter=40).fit(X)
    loss = itq.quantization_loss_
    assert loss.shape == (41,)
    assert (np.diff(loss) <= 1e-9 * loss[0]).all()
    assert loss[-1] < loss[0]
    R = itq.rotation_
    np.testing.assert_allclose(R @ R.T, np.eye(12), atol=1e-10)
    # ITQ's codes quantise the PCA projections better than PCAH's (rotation 0 is the identity)
    V = (X - itq.mean_) @ itq.components_
    pcah = np.sum((H.binarize(V) - V) ** 2) / len(X)
    assert loss[-1] < pcah


def test_lsh_hamming_tracks_angle():
    # centre=False: P(bit differs) = angle / pi; monotone on a toy case
    angles = np.deg2rad([5, 20, 45, 70, 90, 120, 150, 175])
    d = 6
    x0 = np.zeros((1, d))
    x0[0, 0] = 1.0
    ys = np.zeros((angles.size, d))
    ys[:, 0], ys[:, 1] = np.cos(angles), np.sin(angles)
    lsh = H.LSH(n_bits=2048, seed=0, center=False).fit(np.vstack([x0, ys]))
    ham = H.hamming_distances(lsh.encode_packed(x0), lsh.encode_packed(ys))[0] / 2048
    assert (np.diff(ham) > 0).all()
    np.testing.assert_allclose(ham, angles / np.pi, atol=0.04)


@pytest.mark.parametrize("cls", [H.LSH, H.PCAHash, H.ITQ])
def test_baseline_interface(cls):
    Xdb, ydb, Xq, yq = clusters(seed=2)
    model = cls(n_bits=16, seed=0).fit(Xdb)
    codes = model.encode(Xq)
    assert codes.shape == (len(Xq), 16) and codes.dtype == np.int8
    assert set(np.unique(codes)) <= {-1, 1}
    np.testing.assert_array_equal(model.encode_packed(Xq), H.pack_codes(codes))
    # random codes score about 0.21 here; PCAH spends 12 of its 16 bits on noise directions (about 0.44)
    assert hamming_map(model, Xdb, ydb, Xq, yq) > 0.35
    with pytest.raises(ValueError, match="features"):
        model.encode(Xq[:, :5])
    with pytest.raises(TypeError):
        cls(16)  # n_bits is keyword-only
    with pytest.raises(RuntimeError, match="fit"):
        cls(n_bits=4).encode(Xq)


def test_binary_autoencoder():
    Xdb, ydb, Xq, yq = clusters(seed=3)
    model = H.BinaryAutoencoder(n_bits=16, seed=0, hidden=(64,), epochs=15, batch_size=64, lr=3e-3).fit(Xdb)
    rec = model.history_["reconstruction"]
    assert rec[-1] < rec[0]
    assert hamming_map(model, Xdb, ydb, Xq, yq) > 0.5
    assert model.encode(Xq).dtype == np.int8


def test_pca_methods_reject_more_bits_than_dimensions():
    X = np.random.default_rng(0).normal(size=(50, 8))
    for cls in (H.PCAHash, H.ITQ):
        with pytest.raises(ValueError, match="n_bits <= "):
            cls(n_bits=9).fit(X)
    assert H.LSH(n_bits=64).fit(X).encode(X).shape == (50, 64)  # LSH may use more bits than dimensions


# --------------------------------------------------------------------------
# seeds
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: H.LSH(n_bits=16, seed=seed),
        lambda seed: H.ITQ(n_bits=16, seed=seed, n_iter=5),
        lambda seed: H.BinaryAutoencoder(n_bits=16, seed=seed, hidden=(32,), epochs=2),
        lambda seed: H.DeepPairwiseHash(n_bits=16, seed=seed, epochs=2),
    ],
    ids=["LSH", "ITQ", "BinaryAutoencoder", "DeepPairwiseHash"],
)
def test_seeds_reproducible(make):
    Xdb, ydb, Xq, _ = clusters(seed=4, sep=0.5)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    a = make(0).fit(Xdb, ydb).encode(Xq)
    b = make(0).fit(Xdb, ydb).encode(Xq)
    c = make(1).fit(Xdb, ydb).encode(Xq)
    assert torch.equal(state, torch.get_rng_state())  # the global torch RNG is left alone
    assert torch.get_num_threads() == threads  # and so is torch's thread count
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pcah_is_deterministic():
    Xdb, ydb, Xq, _ = clusters(seed=5)
    np.testing.assert_array_equal(
        H.PCAHash(n_bits=8, seed=0).fit(Xdb).encode(Xq), H.PCAHash(n_bits=8, seed=1).fit(Xdb).encode(Xq)
    )


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------

ALL = [
    lambda: H.LSH(n_bits=8),
    lambda: H.PCAHash(n_bits=8),
    lambda: H.ITQ(n_bits=8, n_iter=5),
    lambda: H.BinaryAutoencoder(n_bits=8, hidden=(16,), epochs=1),
    lambda: H.DeepPairwiseHash(n_bits=8, epochs=1, similarity="cosine"),
]
ALL_IDS = ["LSH", "PCAHash", "ITQ", "BinaryAutoencoder", "DeepPairwiseHash"]


@pytest.mark.parametrize("make", ALL, ids=ALL_IDS)
def test_all_zero_features(make):
    X = np.zeros((30, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero / invalid-value warnings either
        model = make().fit(X)
        proj = model.project(X)
        codes = model.encode(X)
    assert np.isfinite(proj).all()
    assert set(np.unique(codes)) <= {-1, 1}
    if not isinstance(model, (H.BinaryAutoencoder, H.DeepPairwiseHash)):  # biases may be non-zero there
        assert (codes == 1).all()  # all projections are 0, and sign(0) = +1
    assert H.collapse_report(codes).n_distinct == 1


@pytest.mark.parametrize("cls", [H.PCAHash, H.ITQ])
def test_zero_variance_dimension(cls):
    X = np.random.default_rng(6).normal(size=(100, 10))
    X[:, 3] = 5.0  # constant column
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = cls(n_bits=10).fit(X)  # uses the zero-variance direction too
        proj = model.project(X)
    assert np.isfinite(proj).all()
    assert np.isfinite(model.components_).all()
    assert model.explained_variance_[-1] == pytest.approx(0.0, abs=1e-12)


def test_fewer_samples_than_dimensions():
    X = np.random.default_rng(7).normal(size=(5, 20))
    for cls in (H.PCAHash, H.ITQ):
        model = cls(n_bits=12).fit(X)
        assert np.isfinite(model.project(X)).all()
        np.testing.assert_allclose(model.components_.T @ model.components_, np.eye(12), atol=1e-10)


@pytest.mark.parametrize("make", ALL, ids=ALL_IDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_rejected(make, bad):
    X = np.random.default_rng(8).normal(size=(20, 8))
    Xbad = X.copy()
    Xbad[4, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        make().fit(Xbad)
    model = make().fit(X)
    with pytest.raises(ValueError, match="NaN or inf"):
        model.encode(Xbad)


def test_option_validation():
    with pytest.raises(ValueError):
        H.LSH(n_bits=0)
    with pytest.raises(TypeError):
        H.LSH(n_bits=8.0)
    with pytest.raises(ValueError):
        H.DeepPairwiseHash(n_bits=8, similarity="graph")
    with pytest.raises(ValueError):
        H.DeepPairwiseHash(n_bits=8, pairwise="triplet")
    with pytest.raises(ValueError):
        H.DeepPairwiseHash(n_bits=8, beta=-0.1)
    with pytest.raises(ValueError):
        H.LSH(n_bits=8).fit(np.zeros(8))
