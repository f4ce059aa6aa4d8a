"""Hand-crafted colour and texture descriptors ("traditional CBIR" features).

Paper 002 (notebook 05) describes query images by a colour autocorrelogram
(Huang et al., CVPR 1997) and Gabor texture energies, concatenated with deep
features; paper 000 (notebook 04) compares against "traditional CBIR" built on
colour histograms and grey-level co-occurrence (GLCM) texture statistics. This
module computes all four on uint8 RGB images and concatenates them with a
stated normalisation:

========================  ==========================================================
``"histogram"``           joint colour histogram (HSV, 8x3x3 bins by default), L1 = 1
``"autocorrelogram"``     P(pixel at chessboard distance k has the same quantised
                          colour | pixel has colour c), 64 RGB colours x k in 1,3,5,7
``"gabor"``               mean and standard deviation of the Gabor magnitude, 4 scales
                          x 6 orientations (Manjunath & Ma 1996 layout)
``"glcm"``                contrast, homogeneity, energy, correlation and entropy of the
                          grey-level co-occurrence matrix at 4 angles x 3 distances
========================  ==========================================================

:func:`describe` stacks the chosen descriptors for a batch of images; each
block is standardised to unit L2 norm per image (``block_norm="l2"``) so that
every descriptor weighs the same in a Euclidean ranking whatever its length.
:func:`descriptor_features` caches the result for a split's images.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "DESCRIPTORS",
    "quantize_colors",
    "color_histogram",
    "color_autocorrelogram",
    "gabor_bank",
    "gabor_features",
    "glcm_features",
    "describe",
    "descriptor_dims",
    "descriptor_features",
]

#: Descriptor names accepted by :func:`describe`, in their default order.
DESCRIPTORS = ("histogram", "autocorrelogram", "gabor", "glcm")

_AUTO_BINS = (4, 4, 4)
_AUTO_DISTANCES = (1, 3, 5, 7)
_HIST_BINS = (8, 3, 3)
_GABOR_FREQUENCIES = (0.05, 0.1, 0.2, 0.4)
_GABOR_ORIENTATIONS = 6
_GLCM_DISTANCES = (1, 2, 4)
_GLCM_LEVELS = 32


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) RGB or (h, w) grey image, got shape {image.shape}")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and image.max() <= 1.0:
            image = np.round(image * 255.0)
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image


def _grey(image: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma in [0, 1] (as ``PIL.Image.convert("L")``/255)."""
    rgb = _as_rgb(image).astype(np.float64)
    return (rgb @ np.array([0.299, 0.587, 0.114])) / 255.0


def quantize_colors(image: np.ndarray, *, bins: Sequence[int] = _AUTO_BINS,
                    space: str = "rgb") -> np.ndarray:
    """Quantise every pixel to one of ``prod(bins)`` colours (uniform bins per channel).

    Used by :func:`color_histogram` and :func:`color_autocorrelogram` (notebooks
    04 and 05).

    Parameters
    ----------
    image : ndarray
        ``(h, w, 3)`` uint8 RGB (floats in [0, 1] and grey images are accepted).
    bins : sequence of 3 int, keyword-only
        Bins per channel.
    space : {"rgb", "hsv"}, keyword-only
        Colour space the bins are uniform in.

    Returns
    -------
    ndarray of int64, shape (h, w)
        Colour index ``i0 * b1 * b2 + i1 * b2 + i2``.
    """
    if len(bins) != 3 or min(bins) < 1:
        raise ValueError(f"bins must be three positive integers, got {bins!r}")
    rgb = _as_rgb(image)
    if space == "rgb":
        channels = rgb.astype(np.float64) / 256.0           # [0, 1)
    elif space == "hsv":
        from skimage.color import rgb2hsv
        channels = np.clip(rgb2hsv(rgb), 0.0, 1.0 - 1e-12)
    else:
        raise ValueError(f"space must be 'rgb' or 'hsv', got {space!r}")
    idx = np.zeros(rgb.shape[:2], dtype=np.int64)
    for c, b in enumerate(bins):
        idx = idx * b + np.minimum((channels[..., c] * b).astype(np.int64), b - 1)
    return idx


def color_histogram(image: np.ndarray, *, bins: Sequence[int] = _HIST_BINS,
                    space: str = "hsv") -> np.ndarray:
    """Joint colour histogram, normalised to sum 1 (notebook 04's traditional baseline).

    Parameters
    ----------
    image : ndarray
        ``(h, w, 3)`` uint8 RGB.
    bins, space : keyword-only
        As in :func:`quantize_colors`; default HSV with 8 hue x 3 saturation x
        3 value bins (72 values).

    Returns
    -------
    ndarray of float64, shape (prod(bins),)
    """
    labels = quantize_colors(image, bins=bins, space=space)
    hist = np.bincount(labels.ravel(), minlength=int(np.prod(bins))).astype(np.float64)
    return hist / max(hist.sum(), 1.0)


def _ring_offsets(k: int) -> list[tuple[int, int]]:
    """All (dy, dx) with max(|dy|, |dx|) == k: the 8k pixels at chessboard distance k."""
    return [(dy, dx) for dy in range(-k, k + 1) for dx in range(-k, k + 1)
            if max(abs(dy), abs(dx)) == k]


def color_autocorrelogram(image: np.ndarray, *, bins: Sequence[int] = _AUTO_BINS,
                          distances: Sequence[int] = _AUTO_DISTANCES,
                          space: str = "rgb") -> np.ndarray:
    """Colour autocorrelogram of Huang et al. (1997), paper 002's colour feature.

    For colour ``c`` and distance ``k``, the value is the probability that a
    pixel at chessboard (L-infinity) distance exactly ``k`` from a pixel of
    colour ``c`` also has colour ``c``, counted over all such pixel pairs that
    lie inside the image (no padding). Colours absent from the image get 0.
    Used by notebook 05 (and notebook 04's traditional baseline).

    Parameters
    ----------
    image : ndarray
        ``(h, w, 3)`` uint8 RGB.
    bins : sequence of 3 int, keyword-only
        Colour quantisation (default 4x4x4 = 64 RGB colours).
    distances : sequence of int, keyword-only
        Distances ``k`` (default 1, 3, 5, 7 as in Huang et al.).
    space : {"rgb", "hsv"}, keyword-only

    Returns
    -------
    ndarray of float64, shape (len(distances) * prod(bins),)
        Distance-major: the first ``prod(bins)`` values are for ``distances[0]``.

    Examples
    --------
    A 2x2 image with a left column of one colour and a right column of another:
    each pixel has 3 neighbours at distance 1, one of its own colour.

    >>> img = np.zeros((2, 2, 3), np.uint8); img[:, 1] = 255
    >>> gamma = color_autocorrelogram(img, distances=(1,))
    >>> float(gamma[0]), float(gamma[63])
    (0.3333333333333333, 0.3333333333333333)
    """
    if not distances or min(distances) < 1:
        raise ValueError(f"distances must be positive integers, got {distances!r}")
    labels = quantize_colors(image, bins=bins, space=space)
    n_colors = int(np.prod(bins))
    h, w = labels.shape
    out = np.zeros((len(distances), n_colors))
    for i, k in enumerate(distances):
        same = np.zeros(n_colors)
        total = np.zeros(n_colors)
        for dy, dx in _ring_offsets(int(k)):
            if abs(dy) >= h or abs(dx) >= w:
                continue
            a = labels[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
            b = labels[max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
            total += np.bincount(a.ravel(), minlength=n_colors)
            same += np.bincount(a[a == b], minlength=n_colors)
        out[i] = np.divide(same, total, out=np.zeros(n_colors), where=total > 0)
    return out.ravel()


def gabor_bank(*, frequencies: Sequence[float] = _GABOR_FREQUENCIES,
               orientations: int = _GABOR_ORIENTATIONS, bandwidth: float = 1.0) -> list:
    """Complex Gabor kernels (``skimage.filters.gabor_kernel``), scale-major.

    Frequencies are in cycles per pixel of the working image; orientations are
    ``pi * j / orientations``. Used by :func:`gabor_features`.
    """
    from skimage.filters import gabor_kernel

    if orientations < 1 or not frequencies:
        raise ValueError("need at least one frequency and one orientation")
    return [gabor_kernel(f, theta=np.pi * j / orientations, bandwidth=bandwidth)
            for f in frequencies for j in range(orientations)]


@functools.lru_cache(maxsize=8)
def _gabor_spectra(shape: tuple[int, int], frequencies: tuple[float, ...],
                   orientations: int) -> tuple[int, tuple[int, int], np.ndarray, np.ndarray]:
    """Pad width, FFT size, kernel spectra and kernel centres for images of ``shape``."""
    from scipy import fft

    bank = gabor_bank(frequencies=frequencies, orientations=orientations)
    pad = max(max(k.shape) // 2 for k in bank)
    kmax = max(max(k.shape) for k in bank)
    size = tuple(fft.next_fast_len(n + 2 * pad + kmax - 1) for n in shape)
    spectra = np.stack([fft.fft2(k, s=size) for k in bank])
    centres = np.array([(k.shape[0] // 2, k.shape[1] // 2) for k in bank])
    return pad, size, spectra, centres


def gabor_features(image: np.ndarray, *, frequencies: Sequence[float] = _GABOR_FREQUENCIES,
                   orientations: int = _GABOR_ORIENTATIONS) -> np.ndarray:
    """Gabor texture energies: mean and std of |response| per filter (paper 002's texture).

    The grey image (luma in [0, 1], mean removed) is padded symmetrically and
    convolved with each complex kernel of :func:`gabor_bank` by FFT (one
    forward transform per image, kernel spectra cached per image shape); the
    magnitude's mean and standard deviation over the image are reported per
    filter, as in Manjunath & Ma (1996). Used by notebooks 04 and 05.

    Returns
    -------
    ndarray of float64, shape (2 * len(frequencies) * orientations,)
        ``[mean_0, std_0, mean_1, std_1, ...]`` in :func:`gabor_bank` order.
    """
    from scipy import fft

    grey = _grey(image)
    grey = grey - grey.mean()                   # remove DC: energies measure texture only
    h, w = grey.shape
    pad, size, spectra, centres = _gabor_spectra((h, w), tuple(float(f) for f in frequencies),
                                                 int(orientations))
    padded = np.pad(grey, pad, mode="symmetric")
    full = fft.ifft2(fft.fft2(padded, s=size)[None] * spectra, axes=(-2, -1))
    feats = []
    for response, (cy, cx) in zip(full, centres):
        mag = np.abs(response[pad + cy:pad + cy + h, pad + cx:pad + cx + w])
        feats += [mag.mean(), mag.std()]
    return np.asarray(feats)


def glcm_features(image: np.ndarray, *, distances: Sequence[int] = _GLCM_DISTANCES,
                  levels: int = _GLCM_LEVELS) -> np.ndarray:
    """GLCM texture statistics (paper 000's eq. 1 entropy and Haralick's usual four).

    The grey image is quantised to ``levels`` grey levels; a symmetric,
    normalised co-occurrence matrix (``skimage.feature.graycomatrix``) at angles
    0, 45, 90, 135 degrees and each distance gives contrast, homogeneity,
    energy, correlation and entropy ``-sum P log2 P``. Used by notebook 04.

    Returns
    -------
    ndarray of float64, shape (5 * 4 * len(distances),)
    """
    from skimage.feature import graycomatrix, graycoprops

    grey = np.minimum((_grey(image) * levels).astype(np.uint8), levels - 1)
    angles = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    glcm = graycomatrix(grey, distances=list(distances), angles=angles, levels=levels,
                        symmetric=True, normed=True)
    props = [graycoprops(glcm, p) for p in ("contrast", "homogeneity", "energy", "correlation")]
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(glcm > 0, np.log2(glcm), 0.0)
    props.append(-(glcm * logp).sum(axis=(0, 1)))
    return np.nan_to_num(np.stack(props)).ravel()   # correlation is NaN on flat images


_FUNCTIONS = {"histogram": color_histogram, "autocorrelogram": color_autocorrelogram,
              "gabor": gabor_features, "glcm": glcm_features}


def _check_kinds(kinds: Sequence[str] | str) -> tuple[str, ...]:
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown = [k for k in kinds if k not in _FUNCTIONS]
    if not kinds or unknown:
        raise ValueError(f"unknown descriptor(s) {unknown or kinds!r}; choose from {DESCRIPTORS}")
    return kinds


def descriptor_dims(kinds: Sequence[str] | str = DESCRIPTORS) -> dict[str, int]:
    """Length of each descriptor with default settings, e.g. ``{"gabor": 48}``."""
    probe = np.zeros((16, 16, 3), np.uint8)
    return {k: len(_FUNCTIONS[k](probe)) for k in _check_kinds(kinds)}


def describe(images: np.ndarray, *, kinds: Sequence[str] | str = DESCRIPTORS,
             block_norm: str = "l2", progress: bool = False) -> np.ndarray:
    """Concatenated hand-crafted descriptors of a batch of images (notebooks 04, 05).

    Parameters
    ----------
    images : ndarray
        ``(n, h, w, 3)`` uint8 RGB (or ``(n, h, w)`` grey).
    kinds : str or sequence of str, keyword-only
        Names from :data:`DESCRIPTORS`, concatenated in the given order.
    block_norm : {"l2", "none"}, keyword-only
        ``"l2"`` scales each descriptor block of each image to unit L2 norm
        (zero blocks stay zero), so blocks weigh equally in Euclidean ranking.
    progress : bool, keyword-only
        Show a tqdm bar.

    Returns
    -------
    ndarray of float32, shape (n, sum of block lengths)
    """
    from tqdm.auto import tqdm

    kinds = _check_kinds(kinds)
    if block_norm not in ("l2", "none"):
        raise ValueError(f"block_norm must be 'l2' or 'none', got {block_norm!r}")
    images = np.asarray(images)
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(f"expected a non-empty batch (n, h, w[, 3]), got shape {images.shape}")
    rows = []
    for image in tqdm(images, desc="descriptors", disable=not progress, mininterval=2):
        blocks = []
        for kind in kinds:
            vec = _FUNCTIONS[kind](image)
            if block_norm == "l2":
                norm = np.linalg.norm(vec)
                vec = vec / norm if norm > 0 else vec
            blocks.append(vec)
        rows.append(np.concatenate(blocks))
    return np.asarray(rows, dtype=np.float32)


def descriptor_features(dataset: str, table: pd.DataFrame, *, size: int,
                        kinds: Sequence[str] | str = DESCRIPTORS, block_norm: str = "l2",
                        progress: bool = True) -> np.ndarray:
    """:func:`describe` of a split's images loaded as RGB at ``size`` px, cached.

    Images come from :func:`cbirlib.features.load_images`; the result is cached
    under ``cache_dir("features")`` keyed by the image checksum, the kinds, the
    normalisation and this module's default settings. Used by notebooks 04, 05.
    """
    from . import backbones, features
    from ._io import sha256_bytes

    kinds = _check_kinds(kinds)
    images = features.load_images(dataset, table, size=size, mode="RGB", progress=progress)
    key = {"model": "descriptors", "stage": "+".join(kinds), "dataset": dataset,
           "images": sha256_bytes(np.ascontiguousarray(images).tobytes()),
           "block_norm": block_norm, "version": 1,
           "settings": {"auto_bins": _AUTO_BINS, "auto_distances": _AUTO_DISTANCES,
                        "hist_bins": _HIST_BINS, "gabor": _GABOR_FREQUENCIES,
                        "orientations": _GABOR_ORIENTATIONS, "glcm": _GLCM_DISTANCES,
                        "levels": _GLCM_LEVELS}}
    return backbones.cached_features(key, lambda: describe(
        images, kinds=kinds, block_norm=block_norm, progress=progress))
