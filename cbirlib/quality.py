"""Full-reference image quality: PSNR, SSIM and FSIM / FSIMc (paper 002, notebook 05).

Paper 002 scores its inpainted queries against the originals with SSIM [1]_,
FSIM [2]_ and PSNR (its Table 1, mean +- std over 300 Paris6k images per fringe
frequency). It does not say which implementation or settings it used. This
module fixes them, by name, once:

==================  ==========================================================
function            definition
==================  ==========================================================
:func:`psnr`        ``10 log10(data_range**2 / MSE)``, MSE over all pixels and
                    channels (scikit-image's ``peak_signal_noise_ratio``)
:func:`ssim`        Wang et al. 2004: 11 x 11 Gaussian window, sigma 1.5,
                    K1 = 0.01, K2 = 0.03, population covariances, mean of the
                    SSIM map without a 5-pixel border, per channel then
                    averaged (scikit-image's ``structural_similarity``)
:func:`fsim`        Zhang et al. 2011, a line-by-line port of the authors'
                    ``FeatureSIM.m`` (FSIM, and FSIMc with ``chromatic=True``)
:func:`phase_congruency`
                    the ``phasecong2`` inside ``FeatureSIM.m`` (Kovesi)
:func:`quality_scores`
                    the three numbers of Table 1 for one image pair
==================  ==========================================================

Conventions
-----------
*Images* are numpy arrays of shape ``(H, W)`` (grey) or ``(H, W, 3)`` (RGB,
channels last), any real dtype; both images of a pair have the same shape.
Everything is computed in float64. ``data_range`` is the span of the pixel
scale: 255 for uint8 (and for floats on a 0-255 scale), 1 for floats in
[0, 1]. It is never guessed from the dtype: pass ``data_range=1`` with [0, 1]
floats, or every score is wrong. FSIM's constants (T1 = 0.85 is scale-free,
T2 = 160, T3 = T4 = 200 are for 0-255) are applied after rescaling the images
to 0-255 with ``255 / data_range``, as ``FeatureSIM.m`` expects.

Identical images give ``psnr = inf`` (``max_psnr`` caps it, e.g. at 100 dB,
for tables that must stay finite), ``ssim = 1`` and ``fsim = 1``.

Evaluating on the missing region only
-------------------------------------
:func:`psnr` and :func:`ssim` take ``where``, a boolean ``(H, W)`` array of the
pixels to score; pass ``where=~mask`` (see :mod:`cbirlib.masks`: ``True`` =
kept) to score only the inpainted pixels. PSNR then uses the MSE over those
pixels (all channels). SSIM averages the full SSIM map (computed on the whole
image, so windows straddle the hole's boundary) over those pixels, excluding
the same 5-pixel border that the unmasked mean excludes. The paper scores
whole images; ``where=None`` (default) does that. FSIM has no such option: its
pooling weights pixels by phase congruency, and a restricted FSIM is not a
published measure.

FSIM: what ``FeatureSIM.m`` does, step by step
-----------------------------------------------
1. RGB images: ``Y = 0.299 R + 0.587 G + 0.114 B``,
   ``I = 0.596 R - 0.274 G - 0.322 B``, ``Q = 0.211 R - 0.523 G + 0.312 B``
   (the authors' rounded YIQ coefficients). Grey images: ``Y`` is the image
   and FSIMc equals FSIM (``I = Q = 1``).
2. Downsampling: ``F = max(1, round(min(H, W) / 256))`` with MATLAB's
   ``round`` (halves away from zero: min side 640 gives F = 3, where Python's
   ``round`` would give 2). Each channel is convolved with an ``F x F``
   averaging kernel, ``conv2(..., 'same')`` (zero padding; for even ``F`` the
   window covers rows ``i - F/2 + 1 .. i + F/2``), then every ``F``-th row and
   column is kept, starting with the first: ``1:F:end``.
3. Phase congruency ``PC`` of each ``Y`` with ``phasecong2`` (below).
4. Gradient magnitude ``G = sqrt(Gx**2 + Gy**2)`` with the Scharr kernels
   ``[3 0 -3; 10 0 -10; 3 0 -3] / 16`` and its transpose, ``conv2(..., 'same')``
   (zero padding, so the image border shows as an edge, as in the original).
5. ``S_PC = (2 PC1 PC2 + T1) / (PC1**2 + PC2**2 + T1)``, T1 = 0.85;
   ``S_G = (2 G1 G2 + T2) / (G1**2 + G2**2 + T2)``, T2 = 160;
   ``PC_m = max(PC1, PC2)``;
   ``FSIM = sum(S_PC * S_G * PC_m) / sum(PC_m)``.
6. FSIMc: ``S_I``, ``S_Q`` likewise with T3 = T4 = 200 and
   ``FSIMc = sum(S_PC * S_G * real((S_I * S_Q) ** lambda) * PC_m) / sum(PC_m)``,
   lambda = 0.03; the real part of the complex power, as MATLAB computes it
   when ``S_I * S_Q < 0``.

``phasecong2`` (Kovesi, as embedded in ``FeatureSIM.m``): log-Gabor filters in
the Fourier domain, 4 scales (wavelengths 6, 12, 24, 48 pixels: minimum
wavelength 6, multiplier 2), ``sigmaOnf = 0.55``, 4 orientations (0, 45, 90,
135 degrees) with angular Gaussians of ``sigma = pi / 4 / 1.2``, all multiplied
by a Butterworth low-pass (cut-off 0.45, order 15), on MATLAB's frequency grid
(``[-N/2, N/2 - 1] / N`` for even ``N``, ``[-(N-1)/2, (N-1)/2] / (N - 1)`` for
odd). Per orientation: the even/odd responses ``EO`` of each scale, the mean
phase vector ``(sum E, sum O) / (|.| + 1e-4)``, the energy
``sum_s (E MeanE + O MeanO - |E MeanO - O MeanE|)``, a noise threshold from the
smallest scale (``median |EO_1|**2 / -log(0.5)`` divided by the filter's
``sum |filter|**2``, propagated through the spatial filters' ``sum A_i**2`` and
``sum A_i A_j`` to a Rayleigh mean ``+ k = 2`` standard deviations, divided by
the empirical 1.7), energy ``max(E - T, 0)``; then
``PC = sum_o Energy_o / sum_o sum_s |EO|``.

Differences from other FSIM ports
----------------------------------
``piq.fsim`` (PyTorch, piq 0.8.0) follows the same code, but:

* it pools with ``avg_pool2d(F)`` (windows ``[kF, kF + F)``): the same as
  ``FeatureSIM.m`` for F <= 2 (up to an odd last row or column, which piq
  drops), one pixel off-centre for F = 3 and 4 (Paris6k's 1024 x 768 images
  have F = 3: FSIM differs by about 2e-4);
* it picks ``F`` with Python's ``round``, which rounds halves to even: a short
  side of 640 (2.5) gives F = 2 instead of MATLAB's 3, 1152 gives 4 instead of
  5 (FSIM then differs a lot: 0.915 vs 0.839 on a noisy 640 x 700 pair);
* ``1e-16`` instead of ``1e-4`` in the mean phase vector, the lower middle
  value as the median, ``eps`` added to the PC numerator and denominator,
  slightly different YIQ coefficients (0.5959, -0.2746, ...) and
  ``|S_I S_Q| ** lambda`` instead of the real part (together below 1e-5 for
  FSIM; the real-part rule alone moves FSIMc by up to ~4e-4 on strongly noisy
  colour images, where the noisy chroma changes sign);
* its frequency grid is the transpose of MATLAB's, which mirrors the filter
  orientations; on even sizes the Nyquist row and column are one-sided (and
  the low-pass still passes ~4% there), so this changes FSIM by ~1e-5 (most of
  the measured difference at F <= 2; transposing the images removes it);
* it defaults to ``data_range=1`` and ``chromatic=True``.

``tests/test_quality.py`` measures the agreement when ``piq`` is installed (it
is not a dependency of the project).

References
----------
.. [1] Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality
   assessment: from error visibility to structural similarity", IEEE TIP
   13(4), 600-612, 2004.
.. [2] L. Zhang, L. Zhang, X. Mou, D. Zhang, "FSIM: a feature similarity index
   for image quality assessment", IEEE TIP 20(8), 2378-2386, 2011; MATLAB code
   ``FeatureSIM.m`` (2010) from the authors' page.
.. [3] P. Kovesi, "Image features from phase congruency", Videre 1(3), 1999;
   ``phasecong2.m``.
"""

from __future__ import annotations

import functools
import math
from numbers import Real

import numpy as np
from scipy import fft as sfft
from scipy import signal

__all__ = [
    "psnr",
    "ssim",
    "fsim",
    "phase_congruency",
    "fsim_downsample_factor",
    "quality_scores",
]

# FeatureSIM.m constants
_T1, _T2, _T3, _T4, _LAMBDA = 0.85, 160.0, 200.0, 200.0, 0.03
_SCHARR_X = np.array([[3.0, 0.0, -3.0], [10.0, 0.0, -10.0], [3.0, 0.0, -3.0]]) / 16.0
_SCHARR_Y = np.array([[3.0, 10.0, 3.0], [0.0, 0.0, 0.0], [-3.0, -10.0, -3.0]]) / 16.0
_YIQ = np.array([[0.299, 0.587, 0.114],
                 [0.596, -0.274, -0.322],
                 [0.211, -0.523, 0.312]])


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def _check_pair(reference, test):
    ref = np.asarray(reference)
    tst = np.asarray(test)
    for name, a in (("reference", ref), ("test", tst)):
        if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise TypeError(f"{name} must have an integer or floating dtype, got {a.dtype}")
        if a.ndim not in (2, 3):
            raise ValueError(f"{name} must have shape (H, W) or (H, W, C), got {a.shape}")
    if ref.shape != tst.shape:
        raise ValueError(f"reference and test must have the same shape, got {ref.shape} and {tst.shape}")
    ref = ref.astype(np.float64, copy=False)
    tst = tst.astype(np.float64, copy=False)
    if not (np.isfinite(ref).all() and np.isfinite(tst).all()):
        raise ValueError("images must be finite")
    return ref, tst


def _check_data_range(data_range):
    if isinstance(data_range, (bool, np.bool_)) or not isinstance(data_range, (Real, np.integer, np.floating)):
        raise TypeError(f"data_range must be a positive number, got {data_range!r}")
    data_range = float(data_range)
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be positive and finite, got {data_range}")
    return data_range


def _check_where(where, shape):
    if where is None:
        return None
    where = np.asarray(where)
    if where.dtype != bool:
        raise TypeError(f"where must be a boolean (H, W) array of the pixels to score, got dtype {where.dtype}")
    if where.shape != tuple(shape[:2]):
        raise ValueError(f"where shape {where.shape} does not match the image shape {tuple(shape[:2])}")
    if not where.any():
        raise ValueError("where selects no pixel")
    return where


# --------------------------------------------------------------------------
# PSNR and SSIM (scikit-image)
# --------------------------------------------------------------------------


def psnr(reference: np.ndarray, test: np.ndarray, *, data_range: float = 255, max_psnr: float | None = None,
         where: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB.

    Parameters
    ----------
    reference, test : ndarray, shape (H, W) or (H, W, C)
        The original and the distorted / reconstructed image; any real dtype.
    data_range : float, default 255, keyword-only
        Span of the pixel scale (255 for uint8, 1 for floats in [0, 1]).
    max_psnr : float, optional
        Cap on the result. Identical images have MSE 0 and PSNR ``inf``;
        with a cap they score ``max_psnr`` (and so does any pair above it).
    where : ndarray of bool, shape (H, W), optional
        Pixels to score (e.g. ``~mask``: the inpainted ones); default all.

    Returns
    -------
    float
        ``10 * log10(data_range**2 / MSE)`` with the MSE over the selected
        pixels and all channels, as
        :func:`skimage.metrics.peak_signal_noise_ratio` (same value for
        ``where=None``; tested). Not the Y-channel PSNR of the
        super-resolution literature.
    """
    ref, tst = _check_pair(reference, test)
    data_range = _check_data_range(data_range)
    where = _check_where(where, ref.shape)
    if where is None:
        from skimage.metrics import mean_squared_error

        mse = float(mean_squared_error(ref, tst))
    else:
        mse = float(np.mean((ref[where] - tst[where]) ** 2))
    value = math.inf if mse == 0.0 else 10.0 * math.log10(data_range**2 / mse)
    if max_psnr is not None:
        value = min(value, float(max_psnr))
    return value


def _ssim_pad(gaussian_weights, sigma, win_size):
    if win_size is not None:
        return (int(win_size) - 1) // 2
    if gaussian_weights:
        return int(3.5 * sigma + 0.5)
    return 3


def ssim(reference: np.ndarray, test: np.ndarray, *, data_range: float = 255, channel_axis: int | None = -1,
         gaussian_weights: bool = True, sigma: float = 1.5, use_sample_covariance: bool = False,
         win_size: int | None = None, where: np.ndarray | None = None) -> float:
    """Structural similarity (Wang et al. 2004) via scikit-image.

    Parameters
    ----------
    reference, test : ndarray, shape (H, W) or (H, W, C)
        Any real dtype (computed in float64).
    data_range : float, default 255, keyword-only
        Span of the pixel scale; ``C1 = (0.01 data_range)**2``,
        ``C2 = (0.03 data_range)**2``.
    channel_axis : int or None, default -1
        Channel axis of 3-D images: SSIM is computed per channel and the
        channel means averaged. Ignored for 2-D images. ``None`` with a 3-D
        image computes a volumetric SSIM (rarely what one wants).
    gaussian_weights : bool, default True
        Gaussian window (Wang et al.'s setting); ``False`` gives a uniform
        ``7 x 7`` window (scikit-image's own default).
    sigma : float, default 1.5
        Standard deviation of the Gaussian window; truncated at 3.5 sigma,
        i.e. an 11 x 11 window for 1.5.
    use_sample_covariance : bool, default False
        ``False`` = population (biased) variances and covariance, as Wang et
        al.; scikit-image's default is ``True``.
    win_size : int, optional
        Window side; by default 11 for the Gaussian window, 7 for the uniform.
    where : ndarray of bool, shape (H, W), optional
        Average the SSIM map only over these pixels (e.g. ``~mask``); the map
        is computed on the whole image, and the border of ``(win_size - 1) / 2``
        pixels is excluded as for the plain mean.

    Returns
    -------
    float
        Mean SSIM; 1 for identical images.

    Notes
    -----
    Equals ``skimage.metrics.structural_similarity(reference, test,
    data_range=data_range, channel_axis=..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)`` (tested). Wang's own ``ssim.m`` (2009)
    additionally downsamples by ``round(min(H, W) / 256)`` first, and MATLAB's
    built-in ``ssim`` pads instead of cropping; neither is done here.
    """
    from skimage.metrics import structural_similarity

    ref, tst = _check_pair(reference, test)
    data_range = _check_data_range(data_range)
    where = _check_where(where, ref.shape)
    axis = channel_axis if ref.ndim == 3 else None
    kwargs = dict(data_range=data_range, channel_axis=axis, gaussian_weights=bool(gaussian_weights),
                  sigma=float(sigma), use_sample_covariance=bool(use_sample_covariance), win_size=win_size)
    if where is None:
        return float(structural_similarity(ref, tst, **kwargs))
    if ref.ndim == 3 and axis is None:
        raise ValueError("where needs a 2-D image or a channel axis")
    _, smap = structural_similarity(ref, tst, full=True, **kwargs)
    if smap.ndim == 3:
        smap = np.moveaxis(smap, axis, -1).mean(axis=-1)
    pad = _ssim_pad(gaussian_weights, sigma, win_size)
    interior = np.zeros(smap.shape, dtype=bool)
    interior[pad:smap.shape[0] - pad, pad:smap.shape[1] - pad] = True
    sel = where & interior
    if not sel.any():
        raise ValueError(f"where selects no pixel outside the {pad}-pixel border")
    return float(smap[sel].mean(dtype=np.float64))


# --------------------------------------------------------------------------
# FSIM
# --------------------------------------------------------------------------


def _matlab_range(n):
    """MATLAB ``xrange`` of phasecong2: normalised frequencies, 0 at the centre."""
    if n % 2:
        return np.arange(-(n - 1) / 2, (n - 1) / 2 + 1) / (n - 1) if n > 1 else np.zeros(1)
    return np.arange(-n / 2, n / 2) / n


@functools.lru_cache(maxsize=8)
def _filter_bank(rows, cols, nscale, norient, min_wavelength, mult, sigma_onf, d_theta_on_sigma):
    """Log-Gabor filters and the shape-only terms of phasecong2's noise model."""
    x, y = np.meshgrid(_matlab_range(cols), _matlab_range(rows))
    radius0 = np.sqrt(x**2 + y**2)
    theta = np.fft.ifftshift(np.arctan2(-y, x))
    radius = np.fft.ifftshift(radius0)
    radius[0, 0] = 1.0
    sintheta, costheta = np.sin(theta), np.cos(theta)
    lp = np.fft.ifftshift(1.0 / (1.0 + (radius0 / 0.45) ** (2 * 15)))
    log_gabor = []
    for s in range(nscale):
        fo = 1.0 / (min_wavelength * mult**s)
        g = np.exp(-(np.log(radius / fo)) ** 2 / (2 * math.log(sigma_onf) ** 2)) * lp
        g[0, 0] = 0.0
        log_gabor.append(g)
    theta_sigma = math.pi / norient / d_theta_on_sigma
    filters = np.empty((norient, nscale, rows, cols))
    for o in range(norient):
        angl = o * math.pi / norient
        ds = sintheta * math.cos(angl) - costheta * math.sin(angl)
        dc = costheta * math.cos(angl) + sintheta * math.sin(angl)
        spread = np.exp(-np.abs(np.arctan2(ds, dc)) ** 2 / (2 * theta_sigma**2))
        for s in range(nscale):
            filters[o, s] = log_gabor[s] * spread
    ifft_filt = np.real(sfft.ifft2(filters, axes=(-2, -1))) * math.sqrt(rows * cols)
    em_n = (filters[:, 0] ** 2).sum(axis=(-2, -1))
    sum_an2 = (ifft_filt**2).sum(axis=(1, 2, 3))
    sum_aiaj = np.zeros(norient)
    for si in range(nscale - 1):
        for sj in range(si + 1, nscale):
            sum_aiaj += (ifft_filt[:, si] * ifft_filt[:, sj]).sum(axis=(-2, -1))
    filters.setflags(write=False)
    return filters, em_n, sum_an2, sum_aiaj


def phase_congruency(image: np.ndarray, *, nscale: int = 4, norient: int = 4, min_wavelength: float = 6,
                     mult: float = 2, sigma_onf: float = 0.55, d_theta_on_sigma: float = 1.2, k: float = 2.0,
                     epsilon: float = 1e-4) -> np.ndarray:
    """Phase congruency map, a port of the ``phasecong2`` inside ``FeatureSIM.m``.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Grey image (any scale; phase congruency is contrast invariant up to the
        noise threshold).
    nscale, norient, min_wavelength, mult, sigma_onf, d_theta_on_sigma, k : keyword-only
        Kovesi's parameters; the defaults are ``FeatureSIM.m``'s (4 scales, 4
        orientations, minimum wavelength 6, multiplier 2, sigmaOnf 0.55,
        dThetaOnSigma 1.2, k = 2).
    epsilon : float, default 1e-4
        Added to the norm of the mean phase vector (MATLAB's ``epsilon``).

    Returns
    -------
    ndarray of float64, shape (H, W)
        ``PC = sum_o max(Energy_o - T_o, 0) / sum_o sum_s A_so`` in [0, 1];
        0 where the filters have no response at all (MATLAB gives NaN there).

    Notes
    -----
    See the module docstring for the steps. The filters depend only on the
    image shape and are cached for the last 8 shapes.
    """
    im = np.asarray(image, dtype=np.float64)
    if im.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {im.shape}")
    rows, cols = im.shape
    filters, em_n, sum_an2, sum_aiaj = _filter_bank(rows, cols, int(nscale), int(norient), float(min_wavelength),
                                                     float(mult), float(sigma_onf), float(d_theta_on_sigma))
    imagefft = sfft.fft2(im)
    energy_all = np.zeros((rows, cols))
    an_all = np.zeros((rows, cols))
    for o in range(norient):
        eo = sfft.ifft2(imagefft[np.newaxis] * filters[o], axes=(-2, -1), overwrite_x=True)
        an = np.abs(eo)
        sum_eo = eo.sum(axis=0)  # sum E + i sum O
        mean_eo = sum_eo / (np.abs(sum_eo) + epsilon)  # MeanE + i MeanO
        # E MeanE + O MeanO = Re(eo conj(mean)); E MeanO - O MeanE = -Im(eo conj(mean))
        z = eo * np.conj(mean_eo)
        energy = (z.real - np.abs(z.imag)).sum(axis=0)
        median_e2n = np.median(an[0] ** 2)
        mean_e2n = -median_e2n / math.log(0.5)
        noise_power = mean_e2n / em_n[o]
        est_noise_energy2 = 2 * noise_power * sum_an2[o] + 4 * noise_power * sum_aiaj[o]
        tau = math.sqrt(max(est_noise_energy2, 0.0) / 2)
        threshold = (tau * math.sqrt(math.pi / 2) + k * math.sqrt((2 - math.pi / 2) * tau**2)) / 1.7
        energy_all += np.maximum(energy - threshold, 0.0)
        an_all += an.sum(axis=0)
    pc = np.zeros((rows, cols))
    np.divide(energy_all, an_all, out=pc, where=an_all > 0)
    return pc


def fsim_downsample_factor(height: int, width: int) -> int:
    """``FeatureSIM.m``'s ``F = max(1, round(min(H, W) / 256))``, MATLAB rounding.

    MATLAB rounds halves away from zero: a 640-pixel short side gives 3 (Python's
    ``round(2.5)`` is 2).
    """
    return max(1, int(math.floor(min(int(height), int(width)) / 256 + 0.5)))


def _conv2_same(a, kernel):
    """MATLAB ``conv2(a, kernel, 'same')``: zero padding, central part of 'full'."""
    kr, kc = kernel.shape
    full = signal.convolve2d(a, kernel, mode="full")
    r0, c0 = kr // 2, kc // 2
    return full[r0:r0 + a.shape[0], c0:c0 + a.shape[1]]


def _downsample(channel, factor):
    """``ave = conv2(channel, ones(F) / F**2, 'same'); ave(1:F:end, 1:F:end)``.

    The windows of the kept pixels tile the (zero-padded) image without
    overlap: output ``i`` averages rows ``i*F - (F-1)//2 .. i*F + F//2``. So
    block sums give the same numbers as the full convolution, without computing
    the discarded pixels (tested against :func:`_conv2_same`).
    """
    if factor == 1:
        return channel
    rows, cols = channel.shape
    top = (factor - 1) // 2
    n_r, n_c = -(-rows // factor), -(-cols // factor)
    padded = np.zeros((n_r * factor, n_c * factor))
    used_r = min(rows, n_r * factor - top)
    used_c = min(cols, n_c * factor - top)
    padded[top:top + used_r, top:top + used_c] = channel[:used_r, :used_c]
    return padded.reshape(n_r, factor, n_c, factor).sum(axis=(1, 3)) / factor**2


def _downsample_reference(channel, factor):
    """Literal ``conv2(..., 'same')`` then ``1:F:end`` (kept for the tests)."""
    if factor == 1:
        return channel
    ave = _conv2_same(channel, np.full((factor, factor), 1.0 / factor**2))
    return ave[::factor, ::factor]


def _similarity(a, b, constant):
    return (2 * a * b + constant) / (a**2 + b**2 + constant)


def fsim(reference: np.ndarray, test: np.ndarray, *, data_range: float = 255, chromatic: bool = False,
         downsample: bool = True) -> float:
    """Feature similarity index FSIM (or FSIMc), after ``FeatureSIM.m``.

    Parameters
    ----------
    reference, test : ndarray, shape (H, W) or (H, W, 3)
        Grey or RGB images of the same shape, any real dtype. ``(H, W, 1)`` is
        treated as grey.
    data_range : float, default 255, keyword-only
        Span of the pixel scale; the images are rescaled to 0-255 (by
        ``255 / data_range``) before the authors' constants apply.
    chromatic : bool, default False
        ``False``: FSIM on the luminance ``Y`` (the first output of
        ``FeatureSIM.m``). ``True``: FSIMc, which also compares the I and Q
        chrominance; for grey images it equals FSIM, as in ``FeatureSIM.m``.
    downsample : bool, default True
        Apply ``FeatureSIM.m``'s automatic downsampling by
        :func:`fsim_downsample_factor`. Turn off only to study its effect.

    Returns
    -------
    float
        ``sum(S_PC * S_G [* S_C] * PC_m) / sum(PC_m)``: 1 for identical
        images, in (0, 1] for the distortions of notebook 05 (it can exceed 1
        in contrived cases, e.g. a test image with more contrast than the
        reference). ``nan`` when neither image has any phase congruency
        (e.g. two constant images), where MATLAB divides 0 by 0 too.

    Notes
    -----
    The steps, constants and the known differences from ``piq.fsim`` are in the
    module docstring. The phase congruency filters are cached per image shape,
    so scoring many images of one size costs about 16 + 32 FFTs per pair.
    """
    ref, tst = _check_pair(reference, test)
    data_range = _check_data_range(data_range)
    if ref.ndim == 3 and ref.shape[2] == 1:
        ref, tst = ref[..., 0], tst[..., 0]
    if ref.ndim == 3 and ref.shape[2] != 3:
        raise ValueError(f"colour images must have 3 channels (RGB, channels last), got shape {ref.shape}")
    scale = 255.0 / data_range
    ref, tst = ref * scale, tst * scale
    rows, cols = ref.shape[:2]
    factor = fsim_downsample_factor(rows, cols) if downsample else 1

    if ref.ndim == 3:
        yiq1 = ref @ _YIQ.T
        yiq2 = tst @ _YIQ.T
        y1, y2 = yiq1[..., 0], yiq2[..., 0]
    else:
        y1, y2 = ref, tst
    y1, y2 = _downsample(y1, factor), _downsample(y2, factor)

    pc1, pc2 = phase_congruency(y1), phase_congruency(y2)
    g1 = np.hypot(_conv2_same(y1, _SCHARR_X), _conv2_same(y1, _SCHARR_Y))
    g2 = np.hypot(_conv2_same(y2, _SCHARR_X), _conv2_same(y2, _SCHARR_Y))

    pc_m = np.maximum(pc1, pc2)
    sim = _similarity(pc1, pc2, _T1) * _similarity(g1, g2, _T2)
    if chromatic and ref.ndim == 3:
        i1, i2 = _downsample(yiq1[..., 1], factor), _downsample(yiq2[..., 1], factor)
        q1, q2 = _downsample(yiq1[..., 2], factor), _downsample(yiq2[..., 2], factor)
        siq = _similarity(i1, i2, _T3) * _similarity(q1, q2, _T4)
        sim = sim * np.real(np.power(siq.astype(np.complex128), _LAMBDA))
    denom = pc_m.sum()
    if denom == 0:
        return math.nan
    return float((sim * pc_m).sum() / denom)


def quality_scores(reference: np.ndarray, test: np.ndarray, *, data_range: float = 255, chromatic: bool = False,
                   max_psnr: float | None = None) -> dict[str, float]:
    """SSIM, FSIM and PSNR of one pair, with this module's defaults (Table 1 of paper 002).

    Parameters
    ----------
    reference, test : ndarray, shape (H, W) or (H, W, 3)
        Original and reconstructed image.
    data_range : float, default 255, keyword-only
        Span of the pixel scale.
    chromatic : bool, default False
        Report FSIMc instead of FSIM (the key stays ``"fsim"``; paper 002 does
        not say which it used).
    max_psnr : float, optional
        Cap passed to :func:`psnr`.

    Returns
    -------
    dict
        ``{"ssim": ..., "fsim": ..., "psnr": ...}``.
    """
    return {
        "ssim": ssim(reference, test, data_range=data_range),
        "fsim": fsim(reference, test, data_range=data_range, chromatic=chromatic),
        "psnr": psnr(reference, test, data_range=data_range, max_psnr=max_psnr),
    }
