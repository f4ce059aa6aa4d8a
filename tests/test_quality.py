"""Tests for cbirlib.quality: PSNR / SSIM identities, FSIM properties and peer agreement.

No published per-image FSIM value for a freely available image pair is known
to us, so FSIM is held against (a) its defining properties (identity,
symmetry, bounds, monotonic decrease under noise and blur, scale handling) and
(b) ``piq.fsim`` (piq 0.8.0, a PyTorch port of the authors' ``FeatureSIM.m``)
when piq is installed; piq is not a project dependency and that test skips
without it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import data, filters
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cbirlib import quality as Q


@pytest.fixture(scope="module")
def camera():
    return data.camera()  # 512 x 512 uint8, bundled with scikit-image


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()  # 512 x 512 x 3 uint8, bundled with scikit-image


def add_noise(img, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.float64) + rng.normal(0.0, sigma, img.shape), 0, 255)


def blur(img, sigma):
    return filters.gaussian(img.astype(np.float64), sigma=sigma, preserve_range=True,
                            channel_axis=-1 if img.ndim == 3 else None)


# --------------------------------------------------------------------------
# PSNR
# --------------------------------------------------------------------------


def test_psnr_identical_is_inf_and_cap(camera):
    assert Q.psnr(camera, camera) == math.inf
    assert Q.psnr(camera, camera, max_psnr=100.0) == 100.0
    assert Q.psnr(camera, camera.astype(np.float32)) == math.inf


def test_psnr_constant_offset_hand_computed(camera):
    ref = np.clip(camera, 0, 245).astype(np.uint8)
    test = (ref.astype(np.int16) + 10).astype(np.uint8)  # no uint8 wrap-around: computed in float64
    expected = 10 * math.log10(255**2 / 100)  # = 20 log10(255) - 20 = 28.1308...
    assert Q.psnr(ref, test) == pytest.approx(expected, abs=1e-12)
    assert Q.psnr(test, ref) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(28.130803608679106, abs=1e-12)
    # the same images on a [0, 1] scale
    assert Q.psnr(ref / 255, test / 255, data_range=1) == pytest.approx(expected, abs=1e-9)


def test_psnr_matches_skimage(camera, astronaut):
    noisy = add_noise(camera, 12)
    assert Q.psnr(camera, noisy) == pytest.approx(peak_signal_noise_ratio(camera.astype(float), noisy,
                                                                          data_range=255), rel=1e-12)
    noisy = add_noise(astronaut, 7)
    assert Q.psnr(astronaut, noisy) == pytest.approx(peak_signal_noise_ratio(astronaut.astype(float), noisy,
                                                                             data_range=255), rel=1e-12)


def test_psnr_where_scores_only_selected_pixels(camera):
    ref = np.clip(camera, 0, 245).astype(np.float64)
    test = ref + 10
    where = np.zeros(ref.shape, bool)
    where[100:200, 50:300] = True
    test[~where] = 0  # wildly wrong outside: ignored
    assert Q.psnr(ref, test, where=where) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-12)
    with pytest.raises(TypeError):
        Q.psnr(ref, test, where=where.astype(int))
    with pytest.raises(ValueError):
        Q.psnr(ref, test, where=np.zeros(ref.shape, bool))


# --------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------


def test_ssim_identical_is_one(camera, astronaut):
    assert Q.ssim(camera, camera) == pytest.approx(1.0, abs=1e-12)
    assert Q.ssim(astronaut, astronaut) == pytest.approx(1.0, abs=1e-12)
    f = astronaut / 255.0
    assert Q.ssim(f, f, data_range=1) == pytest.approx(1.0, abs=1e-12)


def test_ssim_symmetric_and_bounded(camera, astronaut):
    for ref, test in ((camera, add_noise(camera, 20)), (astronaut, blur(astronaut, 2))):
        a, b = Q.ssim(ref, test), Q.ssim(test, ref)
        assert a == pytest.approx(b, abs=1e-12)
        assert 0 < a < 1


def test_ssim_uses_wang_settings(camera, astronaut):
    noisy = add_noise(camera, 15)
    expected = structural_similarity(camera.astype(float), noisy, data_range=255, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert Q.ssim(camera, noisy) == pytest.approx(expected, abs=1e-12)
    # scikit-image's own defaults (7 x 7 uniform window, sample covariance) differ
    default = structural_similarity(camera.astype(float), noisy, data_range=255)
    assert abs(Q.ssim(camera, noisy) - default) > 1e-4
    noisy = add_noise(astronaut, 15)
    expected = structural_similarity(astronaut.astype(float), noisy, data_range=255, channel_axis=-1,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert Q.ssim(astronaut, noisy) == pytest.approx(expected, abs=1e-12)
    # the mean of the per-channel SSIMs
    per_channel = [Q.ssim(astronaut[..., c], noisy[..., c]) for c in range(3)]
    assert Q.ssim(astronaut, noisy) == pytest.approx(np.mean(per_channel), abs=1e-12)


def test_ssim_uint8_and_float_agree(camera):
    noisy = np.rint(add_noise(camera, 10)).astype(np.uint8)
    assert Q.ssim(camera, noisy) == pytest.approx(Q.ssim(camera / 255, noisy / 255, data_range=1), abs=1e-10)


def test_ssim_where(camera):
    noisy = add_noise(camera, 15)
    everywhere = np.ones(camera.shape, bool)
    assert Q.ssim(camera, noisy, where=everywhere) == pytest.approx(Q.ssim(camera, noisy), abs=1e-12)
    where = np.zeros(camera.shape, bool)
    where[100:200, 100:200] = True
    # changing pixels farther than the window radius (5) from the region does not matter
    other = noisy.copy()
    other[300:, :] = 0
    assert Q.ssim(camera, other, where=where) == pytest.approx(Q.ssim(camera, noisy, where=where), abs=1e-12)
    assert Q.ssim(camera, other) != pytest.approx(Q.ssim(camera, noisy), abs=1e-3)


# --------------------------------------------------------------------------
# FSIM: implementation details
# --------------------------------------------------------------------------


def test_downsample_factor_uses_matlab_rounding():
    assert Q.fsim_downsample_factor(100, 100) == 1
    assert Q.fsim_downsample_factor(383, 1000) == 1
    assert Q.fsim_downsample_factor(384, 512) == 2
    assert Q.fsim_downsample_factor(512, 512) == 2
    assert Q.fsim_downsample_factor(640, 900) == 3  # round(2.5) = 3 in MATLAB, 2 in Python
    assert Q.fsim_downsample_factor(768, 1024) == 3  # Paris6k
    assert Q.fsim_downsample_factor(1152, 1200) == 5


def test_conv2_same_matches_matlab_even_kernel():
    a = np.arange(1.0, 10.0).reshape(3, 3)
    # MATLAB: conv2([1 2 3; 4 5 6; 7 8 9], ones(2), 'same')
    assert Q._conv2_same(a, np.ones((2, 2))).tolist() == [[12, 16, 9], [24, 28, 15], [15, 17, 9]]
    # odd kernels are centred; conv2 flips the kernel (convolution, not correlation)
    k = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0]], float)  # picks the right neighbour after the flip
    assert Q._conv2_same(a, k).tolist() == [[2, 3, 0], [5, 6, 0], [8, 9, 0]]


@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("shape", [(768, 1024), (31, 29), (12, 18)])
def test_block_downsample_equals_conv2_then_subsample(factor, shape):
    a = np.random.default_rng(0).random(shape)
    fast, ref = Q._downsample(a, factor), Q._downsample_reference(a, factor)
    assert fast.shape == ref.shape == (-(-shape[0] // factor), -(-shape[1] // factor))
    assert np.allclose(fast, ref, rtol=0, atol=1e-12)


def test_phase_congruency_edges_and_invariance():
    # a bright square plus mild noise: without any noise the threshold, taken
    # from the median response, is ~0 and even filter tails in flat areas score
    # high (phase congruency is dimensionless)
    img = np.zeros((128, 128))
    img[40:88, 40:88] = 100.0
    img += np.random.default_rng(0).normal(0.0, 2.0, img.shape)
    pc = Q.phase_congruency(img)
    assert pc.shape == img.shape and pc.min() >= 0 and pc.max() <= 1
    assert pc[48:80, 39:41].min() > 0.5  # the left edge of the square
    assert pc[0:16, 0:16].mean() < 0.1  # flat background far from it
    assert pc[56:72, 56:72].mean() < 0.3  # flat inside
    # contrast invariant: the noise threshold scales with the amplitude (only
    # MATLAB's epsilon = 1e-4 breaks the invariance, slightly)
    assert np.allclose(Q.phase_congruency(3 * img + 7), pc, atol=1e-3)
    assert not Q.phase_congruency(np.full((32, 32), 5.0)).any()


# --------------------------------------------------------------------------
# FSIM: properties
# --------------------------------------------------------------------------


def test_fsim_identity(camera, astronaut):
    assert Q.fsim(camera, camera) == pytest.approx(1.0, abs=1e-12)
    assert Q.fsim(astronaut, astronaut) == pytest.approx(1.0, abs=1e-12)
    assert Q.fsim(astronaut, astronaut, chromatic=True) == pytest.approx(1.0, abs=1e-12)
    crop = camera[:200, :300]
    assert Q.fsim(crop, crop) == pytest.approx(1.0, abs=1e-12)


def test_fsim_bounds_symmetry_and_scale(camera):
    noisy = add_noise(camera, 15)
    a = Q.fsim(camera, noisy)
    assert 0 < a < 1
    assert Q.fsim(noisy, camera) == pytest.approx(a, abs=1e-12)
    assert Q.fsim(camera / 255, noisy / 255, data_range=1) == pytest.approx(a, abs=1e-10)
    assert Q.fsim(camera.astype(np.float32), noisy) == pytest.approx(a, abs=1e-12)
    assert Q.fsim(camera[..., None], noisy[..., None]) == pytest.approx(a, abs=1e-12)
    # grey images: FSIMc = FSIM, as in FeatureSIM.m
    assert Q.fsim(camera, noisy, chromatic=True) == a
    # turning the automatic downsampling off changes the number
    assert abs(Q.fsim(camera, noisy, downsample=False) - a) > 1e-3


def test_fsim_masked_and_constant_images(camera):
    from cbirlib.masks import apply_mask, fringe_mask

    prev = 1.0
    for f in (0.5, 2, 6):
        destroyed = apply_mask(camera, fringe_mask(*camera.shape, frequency=f))
        value = Q.fsim(camera, destroyed)
        assert 0 < value < 1
        prev = value
    assert prev < 0.9
    const = np.full((40, 40), 100.0)
    assert math.isnan(Q.fsim(const, const))


@pytest.mark.slow
def test_fsim_decreases_with_noise_and_blur(camera, astronaut):
    noise = [Q.fsim(camera, add_noise(camera, s)) for s in (2, 5, 10, 20, 40)]
    assert all(1 > a > b > 0 for a, b in zip(noise, noise[1:])), noise
    blurred = [Q.fsim(camera, blur(camera, s)) for s in (0.5, 1, 2, 4)]
    assert all(1 > a > b > 0 for a, b in zip(blurred, blurred[1:])), blurred
    colour = [Q.fsim(astronaut, add_noise(astronaut, s), chromatic=True) for s in (5, 15, 40)]
    assert all(1 > a > b > 0 for a, b in zip(colour, colour[1:])), colour
    # SSIM and PSNR agree on the ordering
    ssims = [Q.ssim(camera, add_noise(camera, s)) for s in (2, 5, 10, 20, 40)]
    assert all(a > b for a, b in zip(ssims, ssims[1:]))


# --------------------------------------------------------------------------
# FSIM: agreement with piq (optional)
# --------------------------------------------------------------------------


def _piq_fsim(piq, torch, ref, test, chromatic):
    def t(a):
        a = np.asarray(a, dtype=np.float64)
        a = a if a.ndim == 3 else a[..., None]
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]

    return float(piq.fsim(t(ref), t(test), data_range=255.0, chromatic=chromatic))


@pytest.mark.slow
def test_fsim_agrees_with_piq(camera, astronaut):
    """piq 0.8.0 measured: |diff| <= 5.4e-6 (FSIM) at F <= 2, 3.7e-4 (FSIMc).

    Also measured outside this test (full 512 x 512 camera / astronaut, F = 2,
    Gaussian noise 5-40 and blur 0.5-4): FSIM |diff| <= 1.5e-5, FSIMc <= 5e-5;
    768 x 1024 (F = 3): ~2e-4.

    piq on CPU takes 1-5 s per pair, so the cases are small crops.

    The residual comes mostly from piq's transposed frequency grid (see the
    module docstring); for F = 3 (e.g. 768 x 1024) piq's avg_pool windows sit
    one pixel off and the difference grows to ~2e-4, so only F <= 2 is held
    to the tight tolerance here.
    """
    piq = pytest.importorskip("piq")
    torch = pytest.importorskip("torch")
    cam384, cam160, cam_odd = camera[:384, 64:448], camera[150:310, 200:360], camera[60:211, 150:250]
    ast160 = astronaut[180:340, 180:340]
    cases = [
        (cam384, add_noise(cam384, 10), False),  # F = 2 (384 / 256 = 1.5 rounds up)
        (cam160, add_noise(cam160, 15), False),  # F = 1
        (cam_odd, blur(cam_odd, 1.5), False),  # odd x even size (151 x 100), F = 1
        (ast160, add_noise(ast160, 30), True),  # FSIMc
    ]
    diffs, theirs = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 10x faster for these small tensors on a busy 2-core machine
    try:
        for ref, test, chromatic in cases:
            theirs.append(_piq_fsim(piq, torch, ref, test, chromatic))
            diffs.append(abs(Q.fsim(ref, test, chromatic=chromatic) - theirs[-1]))
    finally:
        torch.set_num_threads(threads)
    assert max(diffs[:3]) < 5e-5, diffs  # FSIM: measured 1.6e-6, 5.4e-6, 1.3e-6
    # FSIMc: measured 3.7e-4, almost all from real((S_I S_Q) ** 0.03) (MATLAB)
    # versus piq's |S_I S_Q| ** 0.03 where the noisy chroma flips sign
    assert diffs[3] < 1e-3, diffs
    # transposing the images gives piq's filter grid: agreement tightens
    ref, test = cases[1][0], cases[1][1]
    assert abs(Q.fsim(ref.T, test.T) - theirs[1]) < min(1e-5, diffs[1])


# --------------------------------------------------------------------------
# convenience and validation
# --------------------------------------------------------------------------


def test_quality_scores(camera):
    noisy = add_noise(camera, 10)
    scores = Q.quality_scores(camera, noisy)
    assert set(scores) == {"ssim", "fsim", "psnr"}
    assert scores["ssim"] == Q.ssim(camera, noisy)
    assert scores["fsim"] == Q.fsim(camera, noisy)
    assert scores["psnr"] == Q.psnr(camera, noisy)
    assert Q.quality_scores(camera, camera, max_psnr=100)["psnr"] == 100


def test_validation(camera, astronaut):
    with pytest.raises(ValueError, match="same shape"):
        Q.psnr(camera, camera[:-1])
    with pytest.raises(TypeError):
        Q.ssim(camera > 5, camera > 5)
    with pytest.raises(ValueError):
        Q.fsim(camera, camera, data_range=0)
    with pytest.raises(ValueError, match="3 channels"):
        Q.fsim(np.zeros((32, 32, 4)), np.zeros((32, 32, 4)))
    with pytest.raises(TypeError):
        Q.fsim(camera, camera, 255)  # keyword-only
