"""Binary masks for images with missing regions (paper 002, notebook 05).

Paper 002 (Taheri, Rahbar, Beheshtifard) destroys query images with
*fringe-pattern* binary masks at 0.5, 1, 1.5, 2, 3, 4, 5 and 6 "Hz", reconstructs
them with a two-stage inpainting network trained on free-form masks, and reports
SSIM / FSIM / PSNR (Table 1) and retrieval precision (Table 2) per frequency.
This module makes those masks, once, by name:

==============================  ==================================================
function                        use in notebook 05
==============================  ==================================================
:func:`fringe_mask`             the query destruction masks of Tables 1-2
:func:`fringe_intensity`        the two-beam fringe intensity behind them (figures)
:func:`fringe_extent`           the extent, in pixels, the frequency is counted on
:func:`masked_fraction`         the share of missing pixels of any mask
:func:`mask_table`              masked fraction per frequency (reported beside
                                Table 1)
:func:`random_free_form_mask`   DeepFill v2 brush strokes, to train the inpainter
:func:`random_box_mask`         one rectangular hole (a baseline / sanity check)
:func:`apply_mask`              the destroyed image ``x * M`` (or another fill)
==============================  ==================================================

Polarity
--------
**Every mask in this module is a boolean array with ``True`` = pixel kept
(known) and ``False`` = pixel missing (to be inpainted).** This is the ``M`` of
the paper's masked input (its description of the two-stage network: the
image and the binary mask are combined by element-wise multiplication, so the
mask is 1 where the image survives). The missing region is ``missing = ~mask`` and
:func:`masked_fraction` returns the *missing* share, ``(~mask).mean()``.
Functions that take a mask require ``dtype=bool``, so a 0/255 PNG or a
"1 = hole" convention from another code base cannot slip in unnoticed: convert
it explicitly (``mask = png == 255`` or ``mask = ~hole``).

The fringe pattern: what "Hz" means
-----------------------------------
The paper's eq. 12 was lost in text extraction. Its prose names "the wavelength",
"the separation between the plane and the slots" and "the distance between the
slots": the fringe spacing of Young's double slit, ``beta = lambda * L / d``.
The two-beam interference intensity across the screen is
``I(u) = cos^2(pi * u / beta)``: parallel, equally spaced stripes. The paper
never says in what unit its 0.5-6 "Hz" are; the only reading that makes 0.5 Hz
a sensible (coarsest) setting is a spatial frequency **in cycles per image**:
``frequency`` stripe periods (one missing stripe plus one kept stripe) across
the image, i.e. a period of ``extent / frequency`` pixels. We adopt it and keep
the duty cycle (the missing share of a period, not stated in the paper) a
parameter, 0.5 by default.

Geometry (all in pixel units, pixel ``(i, j)`` = row ``i``, column ``j``, its
centre at ``x = j + 0.5``, ``y = i + 0.5``; rows grow downwards):

* the *normal* of the stripes points at ``orientation_deg`` from the +x axis
  (columns, rightwards) towards the +y axis (rows, downwards), i.e. clockwise
  on screen; ``n = (cos t, sin t)`` in ``(x, y)``. ``orientation_deg=0`` gives
  vertical stripes (the pattern varies along a row), ``90`` horizontal stripes,
  and on a square image the 90-degree mask is the transpose of the 0-degree one;
* the **extent** is the length of the image's projection on ``n``,
  ``E = W |cos t| + H |sin t|`` (:func:`fringe_extent`): the width for vertical
  stripes, the height for horizontal ones, and for oblique stripes the distance
  between the two image corners that are extreme along ``n``;
* ``v = (x - W/2) cos t + (y - H/2) sin t + E/2`` is the distance of the pixel
  centre along ``n`` from the image edge (corner) where the pattern starts: the
  left edge at 0 degrees, the top edge at 90, the top-left corner at 45. ``v``
  runs over ``(0, E)``, so exactly ``frequency`` periods fit across the image
  along ``n`` at every orientation;
* the fringe phase is ``s = frequency * v / E + phase`` (``phase`` in cycles,
  not radians). The pattern starts with a *bright* (kept) fringe centred on
  ``s = 0``; *dark* fringes, centred on ``s = k + 1/2``, are the missing
  stripes, ``duty_cycle`` (in cycles) wide:

      missing  <=>  |frac(s) - 1/2| < duty_cycle / 2
      mask = ~missing                                          (True = kept)

  which is the same as thresholding the interference intensity
  ``I = cos(pi s)**2`` (:func:`fringe_intensity`): kept where
  ``I >= sin(pi * duty_cycle / 2)**2`` (0.5 for the default duty cycle), up to
  pixel centres exactly on a stripe edge. So :func:`fringe_intensity` is the
  "sinusoidal" fringe and :func:`fringe_mask` its binarisation.

Consequences, all tested:

* ``frequency=0.5``: half a period across the image. With ``duty_cycle=0.5``
  and ``phase=0`` the far half (the right half at 0 degrees, the bottom half at
  90) is missing and the near half is kept, exactly (example in
  :func:`fringe_mask`). ``frequency=1`` hides the middle half and keeps a
  quarter at each edge, so 0.5 Hz and 1 Hz differ.
* For any ``frequency`` that is a multiple of 0.5 and ``duty_cycle=0.5``,
  ``phase=0``, the missing fraction is exactly 1/2 in the continuum (a
  half-period ends with half a bright and half a dark fringe); on pixels it is
  1/2 up to discretisation, and exactly 1/2 for all eight paper frequencies on
  widths (heights at 90 degrees) of 96, 256, 512, 768 and 1024 pixels. For
  other duty cycles and integer frequencies the fraction is ``duty_cycle`` up
  to discretisation (at most about ``(frequency + 1) / E`` away); for other
  non-integer frequencies it depends on ``phase``. Oblique orientations do not
  keep the fraction at ``duty_cycle``: the image's projection on ``n`` is not
  uniform (at 45 degrees on a square, 1 Hz hides the central band, about 75%
  of the pixels). :func:`mask_table` reports the fraction actually obtained.
* ``phase`` moves the stripes by ``phase * E / frequency`` pixels towards
  ``-n`` (leftwards at 0 degrees); ``phase=0.5`` with ``duty_cycle=0.5`` swaps
  missing and kept stripes; ``orientation_deg=180`` mirrors the 0-degree mask
  left-right.

Free-form training masks
------------------------
The inpainting network of paper 002 (Ma et al., IJCAI 2019, "coarse-to-fine
with region-wise convolutions and non-local correlation") is trained on
irregular holes. :func:`random_free_form_mask` follows the brush-stroke
generator of DeepFill v2 (Yu et al., ICCV 2019, Algorithm 1 and its released
``brush_stroke_mask``): each stroke is a polyline of random vertices whose turn
angles alternate around ``2 pi / 5``, with segment lengths drawn around a
quarter of the image diagonal, drawn with a random brush width, with discs at
the joints. Everything is drawn from the numpy ``Generator`` it is given, so
the mask is a pure function of the seed. The released DeepFill v2 code also
"randomly flips" the mask, but discards the result of ``Image.transpose``, so
the flips never happen; we draw none either.

References
----------
.. [1] Taheri, Rahbar, Beheshtifard, "Image retrieval with missing regions by
   reconstructing and concatenating content and semantic features" (paper 002).
.. [2] J. Yu, Z. Lin, J. Yang, X. Shen, X. Lu, T. Huang, "Free-form image
   inpainting with gated convolution", ICCV 2019 (DeepFill v2).
.. [3] Y. Ma, X. Liu, S. Bai, L. Wang, D. He, A. Liu, "Coarse-to-fine image
   inpainting via region-wise convolutions and non-local correlation", IJCAI
   2019.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Sequence

import numpy as np

__all__ = [
    "PAPER_FREQUENCIES",
    "fringe_extent",
    "fringe_mask",
    "fringe_intensity",
    "masked_fraction",
    "mask_table",
    "random_free_form_mask",
    "random_box_mask",
    "apply_mask",
]

#: The fringe frequencies of paper 002, Tables 1 and 2, in cycles per image.
PAPER_FREQUENCIES: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0)

_FILLS = ("zero", "mean")


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------


def _check_size(height, width):
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be a positive integer, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    return int(height), int(width)


def _check_real(name, value, *, low=None, high=None, low_open=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def _check_mask(mask, name="mask"):
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(
            f"{name} must be a boolean array (True = pixel kept, False = missing), got dtype "
            f"{mask.dtype}; convert explicitly, e.g. mask = png == 255 or mask = ~hole"
        )
    return mask


def _direction(orientation_deg):
    """Unit normal ``(cos t, sin t)``, exact for multiples of 90 degrees."""
    t = _check_real("orientation_deg", orientation_deg)
    quarter = t / 90.0
    if quarter == round(quarter):
        return {0: (1.0, 0.0), 1: (0.0, 1.0), 2: (-1.0, 0.0), 3: (0.0, -1.0)}[int(round(quarter)) % 4]
    rad = math.radians(t)
    return math.cos(rad), math.sin(rad)


def _normal_coordinate(height, width, orientation_deg):
    """``v`` (H, W): distance along the normal from the starting edge; and ``E``."""
    c, s = _direction(orientation_deg)
    extent = width * abs(c) + height * abs(s)
    x = np.arange(width, dtype=np.float64) + 0.5 - width / 2.0
    y = np.arange(height, dtype=np.float64) + 0.5 - height / 2.0
    v = (c * x[np.newaxis, :] + s * y[:, np.newaxis]) + extent / 2.0
    return v, extent


def _cycles(height, width, frequency, orientation_deg, phase):
    """Fringe phase ``s`` in cycles, shape (H, W)."""
    height, width = _check_size(height, width)
    frequency = _check_real("frequency", frequency, low=0.0, low_open=True)
    phase = _check_real("phase", phase)
    v, extent = _normal_coordinate(height, width, orientation_deg)
    return frequency * v / extent + phase


# --------------------------------------------------------------------------
# fringe masks
# --------------------------------------------------------------------------


def fringe_extent(height: int, width: int, orientation_deg: float = 0.0) -> float:
    """Length, in pixels, over which a fringe frequency is counted.

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    orientation_deg : float, default 0
        Direction of the stripes' normal, in degrees from the +x (column) axis
        towards the +y (row, downwards) axis.

    Returns
    -------
    float
        ``width * |cos t| + height * |sin t|``: the length of the image's
        projection on the normal. ``width`` at 0 degrees (vertical stripes),
        ``height`` at 90 degrees (horizontal stripes).
    """
    height, width = _check_size(height, width)
    c, s = _direction(orientation_deg)
    return width * abs(c) + height * abs(s)


def fringe_mask(height: int, width: int, *, frequency: float, duty_cycle: float = 0.5,
                orientation_deg: float = 0.0, phase: float = 0.0) -> np.ndarray:
    """Square-wave fringe mask: parallel missing stripes, ``True`` = pixel kept.

    Parameters
    ----------
    height, width : int
        Mask size in pixels.
    frequency : float, keyword-only
        Stripe periods across the image ("Hz" in paper 002 = cycles per
        image), counted along the stripes' normal over
        :func:`fringe_extent`. Must be > 0. The period is
        ``extent / frequency`` pixels.
    duty_cycle : float, default 0.5
        Missing share of each period, in [0, 1]. 0 keeps everything, 1 hides
        everything.
    orientation_deg : float, default 0
        Direction of the stripes' *normal* (the direction the pattern varies
        along), in degrees from the +x axis (columns) towards the +y axis
        (rows, downwards). 0 = vertical stripes, 90 = horizontal stripes.
    phase : float, default 0
        Shift of the pattern in cycles (1 = a whole period). Increasing it moves
        the stripes by ``phase * extent / frequency`` pixels towards the
        negative normal (leftwards at 0 degrees).

    Returns
    -------
    ndarray of bool, shape (height, width)
        ``True`` where the pixel is kept (known), ``False`` where it is
        missing. With ``s = frequency * v / extent + phase`` and ``v`` the
        distance of the pixel centre along the normal from the edge where the
        pattern starts (the left edge at 0 degrees, the top edge at 90; see the
        module docstring), a pixel is missing where
        ``|frac(s) - 1/2| < duty_cycle / 2``: the missing stripes are centred on
        the dark fringes ``s = k + 1/2`` and the pattern starts (``s = 0``) in
        the middle of a kept stripe.

    See Also
    --------
    masked_fraction : the missing share, ``(~mask).mean()``.
    fringe_intensity : the sinusoidal fringe this mask binarises.

    Examples
    --------
    Half a cycle across the image with duty cycle 0.5 hides one half of it
    (the right half at 0 degrees, the bottom half at 90 degrees):

    >>> m = fringe_mask(2, 8, frequency=0.5)
    >>> m.astype(int)
    array([[1, 1, 1, 1, 0, 0, 0, 0],
           [1, 1, 1, 1, 0, 0, 0, 0]])
    >>> masked_fraction(m)
    0.5
    >>> fringe_mask(4, 2, frequency=0.5, orientation_deg=90).astype(int).T
    array([[1, 1, 0, 0],
           [1, 1, 0, 0]])

    One cycle hides the middle half; two cycles, two stripes:

    >>> fringe_mask(1, 8, frequency=1).astype(int)
    array([[1, 1, 0, 0, 0, 0, 1, 1]])
    >>> fringe_mask(1, 8, frequency=2).astype(int)
    array([[1, 0, 0, 1, 1, 0, 0, 1]])
    """
    duty_cycle = _check_real("duty_cycle", duty_cycle, low=0.0, high=1.0)
    s = _cycles(height, width, frequency, orientation_deg, phase)
    if duty_cycle == 1.0:
        return np.zeros(s.shape, dtype=bool)
    return np.abs((s - np.floor(s)) - 0.5) >= duty_cycle / 2.0


def fringe_intensity(height: int, width: int, *, frequency: float, orientation_deg: float = 0.0,
                     phase: float = 0.0) -> np.ndarray:
    """Two-beam (Young double-slit) fringe intensity, ``cos^2`` of the phase.

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    frequency, orientation_deg, phase
        As in :func:`fringe_mask`: ``frequency`` bright fringes per
        :func:`fringe_extent`, ``phase`` in cycles.

    Returns
    -------
    ndarray of float64, shape (height, width), values in [0, 1]
        ``cos(pi * s)**2`` with ``s = frequency * v / extent + phase`` as in
        :func:`fringe_mask`; bright fringes (1) where ``s`` is an integer, so
        with ``phase=0`` a bright fringe is centred on the starting edge.

    Notes
    -----
    With the fringe spacing of Young's double slit, ``beta = lambda L / d``,
    written as ``extent / frequency`` pixels, this is the intensity behind
    paper 002's eq. 12. Its binarisation is :func:`fringe_mask`::

        fringe_mask(h, w, frequency=f, duty_cycle=d, phase=p)
        == (fringe_intensity(h, w, frequency=f, phase=p) >= sin(pi * d / 2) ** 2)

    except for pixel centres that fall exactly on a stripe edge.
    """
    s = _cycles(height, width, frequency, orientation_deg, phase)
    return np.cos(np.pi * s) ** 2


def masked_fraction(mask: np.ndarray) -> float:
    """Share of *missing* pixels of a mask (``True`` = kept).

    Parameters
    ----------
    mask : array_like of bool
        Any shape; ``False`` marks a missing pixel.

    Returns
    -------
    float
        ``(~mask).mean()``, in [0, 1].
    """
    mask = _check_mask(mask)
    if mask.size == 0:
        raise ValueError("mask is empty")
    return float(np.count_nonzero(~mask)) / mask.size


def mask_table(frequencies: Sequence[float] = PAPER_FREQUENCIES, height: int = 256, width: int = 256, *,
               duty_cycle: float = 0.5, orientation_deg: float = 0.0, phase: float = 0.0):
    """Missing fraction and stripe geometry of fringe masks, one row per frequency.

    Parameters
    ----------
    frequencies : sequence of float, default :data:`PAPER_FREQUENCIES`
        Frequencies in cycles per image, in the order the rows should have.
    height, width : int, default 256
        Mask size in pixels.
    duty_cycle, orientation_deg, phase : float, keyword-only
        As in :func:`fringe_mask`.

    Returns
    -------
    pandas.DataFrame
        Columns ``frequency_hz``, ``extent_px`` (:func:`fringe_extent`),
        ``period_px`` (``extent / frequency``), ``missing_stripe_px``
        (``duty_cycle * period``, the nominal width of one missing stripe along
        the normal), ``n_missing_regions`` (8-connected missing regions, i.e.
        stripes or stripe pieces), ``n_missing_pixels`` and ``masked_fraction``.
    """
    import pandas as pd
    from scipy import ndimage

    height, width = _check_size(height, width)
    extent = fringe_extent(height, width, orientation_deg)
    rows = []
    for f in frequencies:
        m = fringe_mask(height, width, frequency=f, duty_cycle=duty_cycle,
                        orientation_deg=orientation_deg, phase=phase)
        _, n_regions = ndimage.label(~m, structure=np.ones((3, 3), dtype=bool))
        period = extent / float(f)
        rows.append({
            "frequency_hz": float(f),
            "extent_px": extent,
            "period_px": period,
            "missing_stripe_px": duty_cycle * period,
            "n_missing_regions": int(n_regions),
            "n_missing_pixels": int(np.count_nonzero(~m)),
            "masked_fraction": masked_fraction(m),
        })
    return pd.DataFrame(rows, columns=["frequency_hz", "extent_px", "period_px", "missing_stripe_px",
                                       "n_missing_regions", "n_missing_pixels", "masked_fraction"])


# --------------------------------------------------------------------------
# random masks (training)
# --------------------------------------------------------------------------


def _as_generator(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, (int, np.integer)):
        raise TypeError(f"rng must be a numpy.random.Generator or an integer seed, got {rng!r}")
    return np.random.default_rng(int(rng))


def _draw_capsule(missing, p0, p1, radius):
    """Set to True the pixels whose centre is within ``radius`` of segment p0-p1.

    Points are ``(x, y)`` in pixel-index units (pixel ``(i, j)`` has its centre
    at ``x = j``, ``y = i``). The rounded ends make the discs at the joints.
    """
    height, width = missing.shape
    (x0, y0), (x1, y1) = p0, p1
    j_lo = max(int(math.floor(min(x0, x1) - radius)), 0)
    j_hi = min(int(math.ceil(max(x0, x1) + radius)), width - 1)
    i_lo = max(int(math.floor(min(y0, y1) - radius)), 0)
    i_hi = min(int(math.ceil(max(y0, y1) + radius)), height - 1)
    if j_lo > j_hi or i_lo > i_hi:
        return
    xs = np.arange(j_lo, j_hi + 1, dtype=np.float64)[np.newaxis, :]
    ys = np.arange(i_lo, i_hi + 1, dtype=np.float64)[:, np.newaxis]
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    if length2 == 0.0:
        t = 0.0
    else:
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0.0, 1.0)
    d2 = (xs - (x0 + t * dx)) ** 2 + (ys - (y0 + t * dy)) ** 2
    missing[i_lo:i_hi + 1, j_lo:j_hi + 1] |= d2 <= radius * radius


def random_free_form_mask(height: int, width: int, *, rng, max_strokes: int = 3, min_vertices: int = 4,
                          max_vertices: int = 11, min_width: float = 12.0, max_width: float = 40.0,
                          mean_angle: float = 2 * math.pi / 5, angle_range: float = 2 * math.pi / 15,
                          average_radius: float | None = None) -> np.ndarray:
    """Free-form brush-stroke mask (DeepFill v2 style), ``True`` = pixel kept.

    Parameters
    ----------
    height, width : int
        Mask size in pixels.
    rng : numpy.random.Generator or int, keyword-only
        Source of randomness (an int is a seed for
        :func:`numpy.random.default_rng`). The mask is a deterministic function
        of the generator state; the global numpy RNG is not touched.
    max_strokes : int, default 3
        The number of strokes is uniform in ``1 .. max_strokes``.
    min_vertices, max_vertices : int, default 4 and 11
        Each stroke has a number of segments uniform in
        ``min_vertices .. max_vertices`` (inclusive; DeepFill v2's
        ``randint(4, 12)``).
    min_width, max_width : float, default 12 and 40
        Brush width in pixels, uniform in ``[min_width, max_width)`` per stroke
        and truncated to an integer (DeepFill v2's defaults for 256 x 256
        images; scale them for other sizes).
    mean_angle, angle_range : float, default 2 pi / 5 and 2 pi / 15
        Turn angles: per stroke ``angle_min = mean_angle - U(0, angle_range)``
        and ``angle_max = mean_angle + U(0, angle_range)``; segment ``i`` heads
        at ``U(angle_min, angle_max)``, mirrored to ``2 pi - angle`` for even
        ``i``, so strokes zig-zag.
    average_radius : float, optional
        Mean segment length; default ``sqrt(height**2 + width**2) / 8``. Each
        length is ``clip(Normal(average_radius, average_radius // 2), 0,
        2 * average_radius)``.

    Returns
    -------
    ndarray of bool, shape (height, width)
        ``False`` under the strokes (missing), ``True`` elsewhere.

    Notes
    -----
    The first vertex of a stroke is uniform over the image; later vertices are
    clipped to the image (as in DeepFill v2, which also rounds them to
    integers). A stroke covers every pixel whose centre lies within half the
    brush width of one of its segments, which includes the discs at the
    vertices that DeepFill v2 draws separately. DeepFill v2's flips are not
    applied (its released code discards them; see the module docstring).
    """
    height, width = _check_size(height, width)
    gen = _as_generator(rng)
    for name, value in (("max_strokes", max_strokes), ("min_vertices", min_vertices),
                        ("max_vertices", max_vertices)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if min_vertices > max_vertices:
        raise ValueError(f"min_vertices ({min_vertices}) must be <= max_vertices ({max_vertices})")
    min_width = _check_real("min_width", min_width, low=0.0)
    max_width = _check_real("max_width", max_width, low=min_width)
    if average_radius is None:
        average_radius = math.sqrt(height * height + width * width) / 8.0
    average_radius = _check_real("average_radius", average_radius, low=0.0)

    missing = np.zeros((height, width), dtype=bool)
    n_strokes = int(gen.integers(1, max_strokes, endpoint=True))
    for _ in range(n_strokes):
        n_vertex = int(gen.integers(min_vertices, max_vertices, endpoint=True))
        angle_min = mean_angle - gen.uniform(0.0, angle_range)
        angle_max = mean_angle + gen.uniform(0.0, angle_range)
        angles = [gen.uniform(angle_min, angle_max) for _ in range(n_vertex)]
        angles = [2 * math.pi - a if i % 2 == 0 else a for i, a in enumerate(angles)]
        vertices = [(float(gen.integers(0, width)), float(gen.integers(0, height)))]
        for a in angles:
            r = float(np.clip(gen.normal(average_radius, average_radius // 2), 0.0, 2 * average_radius))
            x = float(np.clip(vertices[-1][0] + r * math.cos(a), 0, width - 1))
            y = float(np.clip(vertices[-1][1] + r * math.sin(a), 0, height - 1))
            vertices.append((float(int(x)), float(int(y))))
        brush = float(int(gen.uniform(min_width, max_width)))
        for p0, p1 in zip(vertices[:-1], vertices[1:]):
            _draw_capsule(missing, p0, p1, brush / 2.0)
    return ~missing


def random_box_mask(height: int, width: int, *, rng, box_height: int | tuple[int, int],
                    box_width: int | tuple[int, int]) -> np.ndarray:
    """One axis-aligned rectangular hole at a random position, ``True`` = kept.

    Parameters
    ----------
    height, width : int
        Mask size in pixels.
    rng : numpy.random.Generator or int, keyword-only
        Source of randomness (an int is a seed).
    box_height, box_width : int or (int, int), keyword-only
        Size of the hole in pixels, fixed or uniform in an inclusive
        ``(low, high)`` range; at most the image size.

    Returns
    -------
    ndarray of bool, shape (height, width)
        ``False`` inside the box, which lies wholly inside the image at a
        uniformly drawn position.
    """
    height, width = _check_size(height, width)
    gen = _as_generator(rng)

    def draw(name, spec, limit):
        low, high = (spec, spec) if np.ndim(spec) == 0 else tuple(spec)
        for v in (low, high):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int or a pair of ints, got {spec!r}")
        if not 1 <= low <= high <= limit:
            raise ValueError(f"{name} must satisfy 1 <= low <= high <= {limit}, got {spec!r}")
        return int(gen.integers(low, high, endpoint=True))

    bh = draw("box_height", box_height, height)
    bw = draw("box_width", box_width, width)
    top = int(gen.integers(0, height - bh, endpoint=True))
    left = int(gen.integers(0, width - bw, endpoint=True))
    mask = np.ones((height, width), dtype=bool)
    mask[top:top + bh, left:left + bw] = False
    return mask


# --------------------------------------------------------------------------
# applying a mask
# --------------------------------------------------------------------------


def apply_mask(image: np.ndarray, mask: np.ndarray, *, fill="zero") -> np.ndarray:
    """Return a copy of ``image`` with its missing pixels filled.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Any real dtype; the result has the same dtype.
    mask : ndarray of bool, shape (H, W)
        ``True`` = kept, ``False`` = missing.
    fill : {"zero", "mean"}, float or sequence of C floats, keyword-only
        ``"zero"`` (default): missing pixels become 0, i.e. the paper's
        ``x * M``. ``"mean"``: the mean of the *kept* pixels, per channel
        (rounded for integer dtypes). A number: that value in every channel; a
        sequence: one value per channel. Values are rounded to the nearest
        integer for integer dtypes and must fit the dtype.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``; kept pixels are unchanged.
    """
    image = np.asarray(image)
    mask = _check_mask(mask)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must have shape (H, W) or (H, W, C), got {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape[:2]}")
    if image.dtype == bool or not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise TypeError(f"image must have an integer or floating dtype, got {image.dtype}")
    n_channels = 1 if image.ndim == 2 else image.shape[2]

    if isinstance(fill, str):
        if fill not in _FILLS:
            raise ValueError(f"fill must be one of {_FILLS}, a number or one number per channel, got {fill!r}")
        if fill == "zero":
            value = np.zeros(n_channels)
        else:
            if not mask.any():
                raise ValueError('fill="mean" needs at least one kept pixel')
            value = np.asarray(image[mask], dtype=np.float64).reshape(-1, n_channels).mean(axis=0)
    else:
        value = np.asarray(fill, dtype=np.float64)
        if value.ndim == 0:
            value = np.full(n_channels, float(value))
        elif value.shape != (n_channels,):
            raise ValueError(f"fill must be a number or {n_channels} numbers (one per channel), got shape {value.shape}")
        if not np.isfinite(value).all() and np.issubdtype(image.dtype, np.integer):
            raise ValueError("fill must be finite for integer images")

    if np.issubdtype(image.dtype, np.integer):
        value = np.rint(value)
        info = np.iinfo(image.dtype)
        if (value < info.min).any() or (value > info.max).any():
            raise ValueError(f"fill {value.tolist()} does not fit dtype {image.dtype} [{info.min}, {info.max}]")
    value = value.astype(image.dtype)

    out = image.copy()
    if image.ndim == 2:
        out[~mask] = value[0]
    else:
        out[~mask] = value
    return out
