"""Hand-crafted descriptors: hand-computed cases, brute force and invariances."""

import numpy as np
import pytest

from cbirlib import descriptors as D


def _brute_autocorrelogram(labels, n_colors, k):
    h, w = labels.shape
    same, total = np.zeros(n_colors), np.zeros(n_colors)
    for y in range(h):
        for x in range(w):
            for yy in range(h):
                for xx in range(w):
                    if max(abs(yy - y), abs(xx - x)) == k:
                        c = labels[y, x]
                        total[c] += 1
                        same[c] += labels[yy, xx] == c
    return np.divide(same, total, out=np.zeros(n_colors), where=total > 0)


def test_autocorrelogram_hand_computed_two_columns():
    img = np.zeros((2, 2, 3), np.uint8)
    img[:, 1] = 255
    gamma = D.color_autocorrelogram(img, distances=(1,))
    # each pixel has 3 neighbours at distance 1, of which exactly 1 shares its colour
    assert gamma[0] == pytest.approx(1 / 3) and gamma[63] == pytest.approx(1 / 3)
    assert np.count_nonzero(gamma) == 2


def test_autocorrelogram_uniform_image_is_one_for_its_colour_only():
    img = np.full((9, 7, 3), 200, np.uint8)
    gamma = D.color_autocorrelogram(img).reshape(4, 64)
    c = D.quantize_colors(img)[0, 0]
    assert np.all(gamma[:, c] == 1.0)
    assert np.count_nonzero(gamma) == 4


def test_autocorrelogram_matches_brute_force_and_is_rotation_invariant():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(9, 8, 3), dtype=np.uint8)
    img = (img // 128) * 255                        # 8 distinct colours, many pairs
    labels = D.quantize_colors(img, bins=(2, 2, 2))
    ours = D.color_autocorrelogram(img, bins=(2, 2, 2), distances=(1, 2, 5)).reshape(3, 8)
    for row, k in zip(ours, (1, 2, 5)):
        np.testing.assert_allclose(row, _brute_autocorrelogram(labels, 8, k))
    rotated = D.color_autocorrelogram(np.rot90(img), bins=(2, 2, 2), distances=(1, 2, 5))
    np.testing.assert_allclose(rotated, ours.ravel())
    assert ((0 <= ours) & (ours <= 1)).all()


def test_autocorrelogram_distance_beyond_image_gives_zero():
    img = np.zeros((3, 3, 3), np.uint8)
    assert not D.color_autocorrelogram(img, distances=(5,)).any()
    with pytest.raises(ValueError, match="positive"):
        D.color_autocorrelogram(img, distances=(0,))


def test_histogram_sums_to_one_and_counts_bins():
    img = np.zeros((4, 4, 3), np.uint8)
    img[:2] = (255, 0, 0)
    hist = D.color_histogram(img, bins=(2, 2, 2), space="rgb")
    assert hist.sum() == pytest.approx(1.0)
    assert hist[0] == 0.5 and hist[4] == 0.5        # black -> 0; red -> 1*4 + 0 + 0


def test_quantize_rejects_bad_arguments():
    with pytest.raises(ValueError, match="three"):
        D.quantize_colors(np.zeros((2, 2, 3), np.uint8), bins=(4, 4))
    with pytest.raises(ValueError, match="space"):
        D.quantize_colors(np.zeros((2, 2, 3), np.uint8), space="lab")
    with pytest.raises(ValueError, match="RGB"):
        D.quantize_colors(np.zeros((2, 2, 4), np.uint8))


def test_gabor_flat_image_has_no_energy_and_stripes_peak_at_their_frequency():
    assert np.allclose(D.gabor_features(np.full((64, 64, 3), 90, np.uint8)), 0)
    x = np.arange(96)
    stripes = (127.5 + 127.5 * np.cos(2 * np.pi * 0.2 * x))[None, :].repeat(96, 0)
    img = np.repeat(stripes[..., None], 3, axis=2).astype(np.uint8)
    means = D.gabor_features(img)[0::2].reshape(4, 6)      # scales x orientations
    scale, orient = np.unravel_index(np.argmax(means), means.shape)
    assert D._GABOR_FREQUENCIES[scale] == 0.2
    assert orient == 0          # theta = 0: the kernel oscillates along x, like the stripes


def test_glcm_of_flat_image():
    feats = D.glcm_features(np.full((16, 16, 3), 77, np.uint8)).reshape(5, -1)
    contrast, homogeneity, energy, correlation, entropy = feats
    assert np.all(contrast == 0) and np.all(homogeneity == 1) and np.all(energy == 1)
    assert np.all(entropy == 0) and np.isfinite(correlation).all()


def test_describe_blocks_have_unit_norm_in_the_stated_order():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    dims = D.descriptor_dims(("gabor", "histogram"))
    feats = D.describe(images, kinds=("gabor", "histogram"))
    assert feats.shape == (3, dims["gabor"] + dims["histogram"]) and feats.dtype == np.float32
    g, h = feats[:, :dims["gabor"]], feats[:, dims["gabor"]:]
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(h, axis=1), 1, rtol=1e-5)
    hist = D.color_histogram(images[0])
    np.testing.assert_allclose(h[0], hist / np.linalg.norm(hist), rtol=1e-5)
    raw = D.describe(images, kinds="histogram", block_norm="none")
    np.testing.assert_allclose(raw.sum(axis=1), 1, rtol=1e-5)
    assert D.descriptor_dims() == {"histogram": 72, "autocorrelogram": 256, "gabor": 48,
                                   "glcm": 60}


def test_describe_rejects_unknown_kind_and_empty_batch():
    with pytest.raises(ValueError, match="unknown descriptor"):
        D.describe(np.zeros((1, 8, 8, 3), np.uint8), kinds=("sift",))
    with pytest.raises(ValueError, match="non-empty"):
        D.describe(np.zeros((0, 8, 8, 3), np.uint8))


def test_gabor_shared_fft_equals_per_kernel_convolution():
    from scipy.signal import fftconvolve

    img = np.random.default_rng(2).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    grey = D._grey(img)
    grey = grey - grey.mean()
    expected = []
    for kernel in D.gabor_bank():
        ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
        padded = np.pad(grey, ((ph, ph), (pw, pw)), mode="symmetric")
        mag = np.abs(fftconvolve(padded, kernel, mode="valid"))
        expected += [mag.mean(), mag.std()]
    np.testing.assert_allclose(D.gabor_features(img), expected, atol=1e-12)


def test_descriptor_features_of_a_split_are_cached(tmp_path, monkeypatch):
    from cbirlib import datasets

    monkeypatch.setenv("CBIR_CACHE", str(tmp_path / "cache"))
    table = datasets.load_index("digits", progress=False).head(6)
    first = D.descriptor_features("digits", table, size=16, kinds=("histogram", "glcm"),
                                  progress=False)
    assert first.shape == (6, 72 + 60)
    monkeypatch.setattr(D, "describe", lambda *a, **k: pytest.fail("cache miss"))
    np.testing.assert_array_equal(
        D.descriptor_features("digits", table, size=16, kinds=("histogram", "glcm"),
                              progress=False), first)
