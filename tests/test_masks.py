"""Tests for cbirlib.masks: fringe geometry and polarity, random masks, apply_mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbirlib import masks as K

SIZES = (96, 256, 512, 768, 1024)


# --------------------------------------------------------------------------
# polarity and the definition
# --------------------------------------------------------------------------


def test_polarity_true_is_kept():
    m = K.fringe_mask(4, 16, frequency=1)
    assert m.dtype == bool and m.shape == (4, 16)
    # the pattern starts with a kept (bright) fringe at the left edge ...
    assert m[:, 0].all() and m[:, -1].all()
    # ... and the dark fringe, centred on the middle of the image, is missing
    assert not m[:, 7].any() and not m[:, 8].any()
    assert K.masked_fraction(m) == pytest.approx(float((~m).mean()))
    assert K.masked_fraction(m) == 0.5


def test_masked_fraction_counts_false():
    m = np.ones((2, 5), dtype=bool)
    m[0, :2] = False
    assert K.masked_fraction(m) == 0.2
    assert K.masked_fraction(np.ones((3, 3), bool)) == 0.0
    assert K.masked_fraction(np.zeros((3, 3), bool)) == 1.0
    with pytest.raises(TypeError, match="boolean"):
        K.masked_fraction(np.ones((3, 3), np.uint8))


def test_half_hertz_hides_exactly_one_half():
    for w in SIZES:
        m = K.fringe_mask(8, w, frequency=0.5, duty_cycle=0.5)
        assert K.masked_fraction(m) == 0.5
        assert m[:, : w // 2].all() and not m[:, w // 2:].any()  # right half missing
    m = K.fringe_mask(10, 6, frequency=0.5, orientation_deg=90)
    assert m[:5].all() and not m[5:].any()  # bottom half missing


def test_definition_against_formula():
    h, w, f, d, p = 7, 50, 2.3, 0.37, 0.123
    m = K.fringe_mask(h, w, frequency=f, duty_cycle=d, phase=p)
    s = f * (np.arange(w) + 0.5) / w + p
    missing = np.abs(s - np.floor(s) - 0.5) < d / 2
    assert np.array_equal(m, np.broadcast_to(~missing, (h, w)))


def test_docstring_examples():
    assert K.fringe_mask(1, 8, frequency=1).astype(int).tolist() == [[1, 1, 0, 0, 0, 0, 1, 1]]
    assert K.fringe_mask(1, 8, frequency=2).astype(int).tolist() == [[1, 0, 0, 1, 1, 0, 0, 1]]


def test_module_doctests():
    import doctest

    result = doctest.testmod(K, verbose=False)
    assert result.attempted >= 5 and result.failed == 0


def test_half_and_one_hertz_differ():
    assert not np.array_equal(K.fringe_mask(64, 64, frequency=0.5), K.fringe_mask(64, 64, frequency=1))


# --------------------------------------------------------------------------
# masked fraction vs frequency and duty cycle
# --------------------------------------------------------------------------


@pytest.mark.parametrize("width", SIZES)
def test_paper_frequencies_hide_half_at_duty_half(width):
    for f in K.PAPER_FREQUENCIES:
        assert K.masked_fraction(K.fringe_mask(3, width, frequency=f)) == 0.5
        assert K.masked_fraction(K.fringe_mask(width, 3, frequency=f, orientation_deg=90)) == 0.5


@settings(max_examples=150, deadline=None)
@given(width=st.integers(16, 700), f=st.integers(1, 8), d=st.floats(0.0, 1.0), p=st.floats(-2, 2))
def test_integer_frequency_fraction_equals_duty(width, f, d, p):
    m = K.fringe_mask(1, width, frequency=f, duty_cycle=d, phase=p)
    # f whole periods fit across the width: only the pixels at the 2f stripe
    # edges are in doubt
    assert abs(K.masked_fraction(m) - d) <= (f + 1) / width + 1e-12


def test_duty_cycle_extremes_and_monotonicity():
    assert K.masked_fraction(K.fringe_mask(16, 16, frequency=3, duty_cycle=0.0)) == 0.0
    assert K.masked_fraction(K.fringe_mask(16, 16, frequency=3, duty_cycle=1.0)) == 1.0
    fracs = [K.masked_fraction(K.fringe_mask(64, 256, frequency=4, duty_cycle=d)) for d in np.linspace(0, 1, 11)]
    assert all(a <= b for a, b in zip(fracs, fracs[1:]))
    prev = K.fringe_mask(64, 256, frequency=4, duty_cycle=0.2)
    more = K.fringe_mask(64, 256, frequency=4, duty_cycle=0.6)
    assert not (~prev & more).any()  # a wider duty cycle only adds missing pixels


def test_stripe_count_and_period():
    for f in (1, 2, 3, 4, 5, 6):
        table = K.mask_table([f], 32, 600)
        assert table.loc[0, "n_missing_regions"] == f
        assert table.loc[0, "period_px"] == pytest.approx(600 / f)
    assert K.mask_table([0.5], 32, 600).loc[0, "n_missing_regions"] == 1
    assert K.mask_table([1.5], 32, 600).loc[0, "n_missing_regions"] == 2


# --------------------------------------------------------------------------
# orientation and phase
# --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 200), f=st.sampled_from(K.PAPER_FREQUENCIES), d=st.floats(0, 1), p=st.floats(-1, 1))
def test_90_degrees_is_transpose_on_square(n, f, d, p):
    m0 = K.fringe_mask(n, n, frequency=f, duty_cycle=d, phase=p)
    m90 = K.fringe_mask(n, n, frequency=f, duty_cycle=d, phase=p, orientation_deg=90)
    assert np.array_equal(m90, m0.T)


def test_180_degrees_mirrors_and_360_is_identity():
    m0 = K.fringe_mask(20, 64, frequency=1.5, duty_cycle=0.3, phase=0.1)
    assert np.array_equal(K.fringe_mask(20, 64, frequency=1.5, duty_cycle=0.3, phase=0.1, orientation_deg=180),
                          m0[:, ::-1])
    assert np.array_equal(K.fringe_mask(20, 64, frequency=1.5, duty_cycle=0.3, phase=0.1, orientation_deg=360), m0)


def test_rectangular_90_degrees_counts_cycles_on_height():
    m = K.fringe_mask(300, 40, frequency=3, orientation_deg=90)
    assert (m == m[:, :1]).all()  # horizontal stripes: constant along rows
    assert K.mask_table([3], 300, 40, orientation_deg=90).loc[0, "n_missing_regions"] == 3
    assert K.fringe_extent(300, 40, 90) == 300 and K.fringe_extent(300, 40, 0) == 40


def test_oblique_extent_and_stripes():
    assert K.fringe_extent(100, 100, 45) == pytest.approx(100 * math.sqrt(2))
    assert K.fringe_extent(30, 40, 30) == pytest.approx(40 * math.cos(math.pi / 6) + 30 * 0.5)
    m = K.fringe_mask(128, 128, frequency=6, orientation_deg=45)
    # stripes at 45 degrees: constant along the anti-diagonals (x + y constant)
    i, j = np.indices(m.shape)
    for k in (60, 127, 200):
        assert len(set(m[(i + j) == k].tolist())) == 1
    assert abs(K.masked_fraction(m) - 0.5) < 0.02


def test_phase_shift_moves_stripes():
    w, f = 240, 2
    m0 = K.fringe_mask(5, w, frequency=f, duty_cycle=0.4)
    m1 = K.fringe_mask(5, w, frequency=f, duty_cycle=0.4, phase=0.25)
    shift = int(0.25 * w / f)  # 30 pixels towards -x
    assert np.array_equal(m1[:, : w - shift], m0[:, shift:])
    assert not np.array_equal(m1, m0)
    # half a period swaps missing and kept stripes at duty cycle 0.5
    assert np.array_equal(K.fringe_mask(5, w, frequency=3, phase=0.5), ~K.fringe_mask(5, w, frequency=3))
    # a whole period changes nothing
    assert np.array_equal(K.fringe_mask(5, w, frequency=3, phase=1.0), K.fringe_mask(5, w, frequency=3))


def test_intensity_threshold_equals_mask():
    for f, d, p, t in ((2.3, 0.37, 0.123, 0), (6, 0.5, 0.0123, 90), (1.5, 0.8, -0.3, 30)):
        m = K.fringe_mask(50, 70, frequency=f, duty_cycle=d, phase=p, orientation_deg=t)
        intensity = K.fringe_intensity(50, 70, frequency=f, phase=p, orientation_deg=t)
        assert intensity.min() >= 0 and intensity.max() <= 1
        assert np.array_equal(m, intensity >= math.sin(math.pi * d / 2) ** 2)


def test_fringe_validation():
    with pytest.raises(ValueError):
        K.fringe_mask(10, 10, frequency=0)
    with pytest.raises(ValueError):
        K.fringe_mask(10, 10, frequency=1, duty_cycle=1.5)
    with pytest.raises(TypeError):
        K.fringe_mask(10.0, 10, frequency=1)
    with pytest.raises(ValueError):
        K.fringe_mask(10, 10, frequency=float("nan"))
    with pytest.raises(TypeError):
        K.fringe_mask(10, 10, 1)  # keyword-only


def test_mask_table():
    table = K.mask_table(K.PAPER_FREQUENCIES, 768, 1024)
    assert list(table.columns) == ["frequency_hz", "extent_px", "period_px", "missing_stripe_px",
                                   "n_missing_regions", "n_missing_pixels", "masked_fraction"]
    assert table["frequency_hz"].tolist() == list(K.PAPER_FREQUENCIES)
    assert (table["masked_fraction"] == 0.5).all()
    assert (table["n_missing_pixels"] == 768 * 1024 // 2).all()
    t2 = K.mask_table([1, 3], 64, 80, duty_cycle=0.3, orientation_deg=20, phase=0.2)
    for row in t2.itertuples():
        m = K.fringe_mask(64, 80, frequency=row.frequency_hz, duty_cycle=0.3, orientation_deg=20, phase=0.2)
        assert row.masked_fraction == K.masked_fraction(m)
        assert row.missing_stripe_px == pytest.approx(0.3 * row.period_px)


# --------------------------------------------------------------------------
# random masks
# --------------------------------------------------------------------------


def test_free_form_deterministic_per_seed():
    a = K.random_free_form_mask(256, 256, rng=np.random.default_rng(7))
    b = K.random_free_form_mask(256, 256, rng=np.random.default_rng(7))
    c = K.random_free_form_mask(256, 256, rng=np.random.default_rng(8))
    assert a.dtype == bool and a.shape == (256, 256)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(K.random_free_form_mask(64, 80, rng=3), K.random_free_form_mask(64, 80, rng=3))


def test_free_form_does_not_touch_global_rng():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    K.random_free_form_mask(64, 64, rng=1)
    assert np.random.random() == expected


def test_free_form_strokes_are_plausible():
    fracs = []
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = K.random_free_form_mask(256, 256, rng=rng)
        fracs.append(K.masked_fraction(m))
    fracs = np.array(fracs)
    assert (fracs > 0).all() and (fracs < 0.9).all()
    # DeepFill v2's defaults hide on average roughly 10-40% of a 256 x 256 image
    assert 0.05 < fracs.mean() < 0.5


def test_free_form_brush_width_bounds_single_stroke():
    # one stroke of one segment with a fixed width: a capsule whose thickness
    # is the brush width
    m = K.random_free_form_mask(200, 200, rng=5, max_strokes=1, min_vertices=1, max_vertices=1,
                                min_width=10, max_width=10.5)
    missing = ~m
    assert missing.any()
    from scipy import ndimage

    assert ndimage.label(missing)[1] == 1
    # a disc of diameter 10 fits inside, one of diameter 14 does not
    dist = ndimage.distance_transform_edt(missing)
    assert 4 <= dist.max() <= 7


def test_box_mask():
    m = K.random_box_mask(50, 60, rng=2, box_height=10, box_width=(5, 20))
    missing = ~m
    rows, cols = np.nonzero(missing)
    h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert h == 10 and 5 <= w <= 20 and missing.sum() == h * w
    assert np.array_equal(m, K.random_box_mask(50, 60, rng=2, box_height=10, box_width=(5, 20)))
    full = K.random_box_mask(8, 8, rng=0, box_height=8, box_width=8)
    assert not full.any()
    with pytest.raises(ValueError):
        K.random_box_mask(8, 8, rng=0, box_height=9, box_width=1)


# --------------------------------------------------------------------------
# apply_mask
# --------------------------------------------------------------------------


@pytest.fixture()
def rgb():
    return np.random.default_rng(0).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)


def test_apply_mask_zero_is_product(rgb):
    m = K.fringe_mask(12, 16, frequency=2)
    out = K.apply_mask(rgb, m)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert np.array_equal(out, rgb * m[..., None])
    assert np.array_equal(out[m], rgb[m])
    grey = rgb[..., 0].astype(np.float32)
    assert np.array_equal(K.apply_mask(grey, m), grey * m)
    assert rgb[~m].any()  # the input is not modified in place
    assert not np.shares_memory(out, rgb)


def test_apply_mask_mean_and_values(rgb):
    m = K.fringe_mask(12, 16, frequency=2)
    out = K.apply_mask(rgb, m, fill="mean")
    expected = np.rint(rgb[m].astype(float).mean(axis=0)).astype(np.uint8)
    assert (out[~m] == expected).all()
    f = rgb.astype(np.float64) / 255
    outf = K.apply_mask(f, m, fill="mean")
    assert np.allclose(outf[~m], f[m].mean(axis=0))
    assert (K.apply_mask(rgb, m, fill=127.6)[~m] == 128).all()
    assert (K.apply_mask(rgb, m, fill=(1, 2, 3))[~m] == [1, 2, 3]).all()
    assert (K.apply_mask(f, m, fill=0.25)[~m] == 0.25).all()


def test_apply_mask_validation(rgb):
    m = K.fringe_mask(12, 16, frequency=2)
    with pytest.raises(TypeError, match="boolean"):
        K.apply_mask(rgb, m.astype(np.uint8))
    with pytest.raises(ValueError, match="shape"):
        K.apply_mask(rgb, m[:-1])
    with pytest.raises(ValueError, match="fit"):
        K.apply_mask(rgb, m, fill=300)
    with pytest.raises(ValueError):
        K.apply_mask(rgb, m, fill=(1, 2))
    with pytest.raises(ValueError):
        K.apply_mask(rgb, m, fill="median")
    with pytest.raises(ValueError, match="kept"):
        K.apply_mask(rgb, np.zeros((12, 16), bool), fill="mean")
