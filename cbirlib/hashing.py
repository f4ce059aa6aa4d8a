"""Binary hash codes: packing, Hamming search, paper 000's hash layer and baselines.

Used by notebook 03 (hashing, paper 000: the hash layer ``h(x) = sign(W f(x) +
b)`` of its eq. (5) trained with its pairwise loss eq. (6), against LSH, PCAH,
ITQ and a binary autoencoder on the same fixed features) and by notebook 07
(survey replication: LSH and ITQ from here; the survey's deep methods live in
:mod:`cbirlib.deephash`, behind the same fitted-model interface).

Codes
-----
An *unpacked* code matrix is ``(n, n_bits)`` with values in ``{-1, +1}``
(``int8``, what every :meth:`encode` returns) or ``{0, 1}`` / booleans. Bit
value ``+1`` (or ``1``) is stored as a set bit. :func:`pack_codes` packs each row
with :func:`numpy.packbits` in **big-endian bit order** (``bitorder="big"``):
bit ``j`` of a code is bit ``7 - j % 8`` of byte ``j // 8``. A length that is
not a multiple of 8 is **padded with zero bits** at the end of the last byte;
the padding is identical (zero) in every packed code, so it XORs to zero and
never changes a Hamming distance. :func:`unpack_codes` needs ``n_bits`` to drop
the padding, and rejects packed codes whose padding bits are not zero.

Sign policy
-----------
``sign(0)`` is **+1** everywhere in this module (:func:`binarize`): a projection
that is exactly zero (all-zero features, a zero-variance direction, a
projection on a constant) gives bit ``+1``, never ``0`` and never NaN.

Hamming distances
-----------------
:func:`hamming_distances` XORs packed codes and counts bits with
:func:`numpy.bitwise_count` on ``uint64`` words (codes are padded with zero
*bytes* up to a whole word internally, which again cannot change a distance, so
every length takes the fast path; codes of up to 4 bytes use ``uint16`` /
``uint32`` words). ``method="lut"`` counts bytes through a 256-entry lookup
table instead (the reference path, and the fallback for numpy < 2). Work is
done in blocks of queries whose temporaries fit in cache, so memory beyond the
``(n_queries, n_database)`` result stays bounded. :func:`hamming_topk` keeps
only the top ``k`` per query and delegates the tie order to
:func:`cbirlib.metrics.rank_by_distance` (``ties="stable"``: database index
order; ``"random"``: seeded).

Paper 000's hash layer and its loss
-----------------------------------
Paper 000 writes ``h(x) = sign(W f_theta(x) + b)`` (eq. 5) and ``L_hash =
sum_ij S_ij |h(x_i) - h(x_j)|^2`` (eq. 6), ``S_ij = 1`` for similar pairs and 0
otherwise. Taken literally, eq. (6) has no term for dissimilar pairs, so it is
minimised by giving every image the same code. :class:`HashLayer` relaxes
``sign`` to ``tanh`` during training; with ``u = tanh(W f + b)`` in ``(-1,
1)^k`` and ``D_ij = ||u_i - u_j||^2 / (4k)`` (the fraction of differing bits
when ``u`` is binary), the pairwise term is one of (mean over pairs ``i < j`` of
a mini-batch):

``pairwise="literal"``
    ``S_ij D_ij``: eq. (6) as printed. Collapses without the extra terms.
``pairwise="contrastive"`` (default)
    ``S_ij D_ij + (1 - S_ij) max(0, margin - D_ij)``: eq. (6) plus the hinge on
    dissimilar pairs of DSH (Liu et al., CVPR 2016), the most common reading of
    a squared-distance pairwise hashing loss; ``margin = 0.5`` is DSH's ``m =
    2k`` on squared ``+-1`` distances.
``pairwise="likelihood"``
    ``(log(1 + exp(theta_ij)) - S_ij theta_ij) / k`` with ``theta_ij = u_i . u_j
    / 2``: the pairwise likelihood of DPSH (Li et al., IJCAI 2016), divided by
    ``k`` so that the weights below mean the same for every variant.

to which :func:`hash_objective` adds, with weights that are parameters (0
disables a term):

* quantisation, ``alpha * mean_i || |u_i| - 1 ||^2 / k`` (equal to ``||u_i -
  sign(u_i)||^2 / k`` for ``tanh`` outputs; DSH / DPSH);
* bit balance, ``beta * || mean_i u_i ||^2 / k`` (each bit +1 on half of the
  batch; DeepBit, SSDH);
* decorrelation, ``gamma * sum_{p != q} C_pq^2 / (k (k - 1))`` with ``C = U^T U
  / m`` over the batch (independent bits; DeepBit).

Similarity ``S`` comes from labels (``"labels"``, supervised: same label, or
sharing one label for multi-label data), from the nearest neighbours in feature
space (``"knn"``, unsupervised: ``S_ij = 1`` if ``j`` is among the
``n_neighbors`` nearest neighbours of ``i`` by cosine similarity, or ``i`` of
``j``), or from a cosine threshold (``"cosine"``, unsupervised: ``S_ij = 1`` if
the cosine similarity is ``>= cosine_threshold``). Cosines are taken on the
features given to :func:`train_hash_layer`; :class:`DeepPairwiseHash` gives it
the centred features.

Collapse
--------
Eq. (6) alone is minimised by one code for every image: exactly what training
finds with ``pairwise="literal"`` on overlapping classes, and with any variant
when every pair is similar (``similarity="cosine", cosine_threshold=-1``), if
``alpha = beta = 0`` and ``weight_decay = 0`` (tests). With weight decay the
same minimum is reached by shrinking ``W f + b`` towards 0: the relaxed codes
collapse onto the decision boundary and the binary codes are signs of noise.
The quantisation and balance terms make both costly (a balanced bit cannot be
constant, a quantised one cannot be 0) and prevent them.
:func:`collapse_report` measures it (distinct codes, bit means and entropies,
and the mean ``|u|`` of the relaxed outputs).

Baselines (one interface)
-------------------------
:class:`LSH` (random hyperplanes, Charikar 2002), :class:`PCAHash` (sign of
PCA), :class:`ITQ` (Gong & Lazebnik, CVPR 2011), :class:`BinaryAutoencoder`
(sign bottleneck, straight-through gradient) and :class:`DeepPairwiseHash`
(paper 000's layer) all take ``n_bits`` and ``seed`` keyword-only, and provide
``fit(X, labels=None)`` (returns ``self``), ``encode(X)`` (``int8`` in ``{-1,
+1}``) and ``encode_packed(X)`` (``uint8``, :func:`pack_codes`). Features with
NaN or inf raise ``ValueError``.

References
----------
.. [1] M. Charikar, "Similarity estimation techniques from rounding
   algorithms", STOC 2002.
.. [2] Y. Gong, S. Lazebnik, "Iterative quantization: a Procrustean approach to
   learning binary codes", CVPR 2011.
.. [3] H. Liu et al., "Deep supervised hashing for fast image retrieval", CVPR
   2016 (DSH).
.. [4] W.-J. Li et al., "Feature learning based deep supervised hashing with
   pairwise labels", IJCAI 2016 (DPSH).
.. [5] K. Lin et al., "Learning compact binary descriptors with unsupervised
   deep neural networks", CVPR 2016 (DeepBit).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import metrics
from ._checks import check_choice as _check_choice
from ._checks import check_int as _check_int

__all__ = [
    "binarize",
    "pack_codes",
    "unpack_codes",
    "hamming_distances",
    "hamming_topk",
    "storage_bytes_per_image",
    "storage_comparison",
    "CollapseReport",
    "collapse_report",
    "HashLayer",
    "hash_objective",
    "train_hash_layer",
    "LSH",
    "PCAHash",
    "ITQ",
    "BinaryAutoencoder",
    "DeepPairwiseHash",
]

_PAIRWISE = ("literal", "contrastive", "likelihood")
_SIMILARITY = ("labels", "knn", "cosine")
_METHODS = ("auto", "bitwise_count", "lut")
_TIES = ("stable", "random")

# Bytes of XOR temporaries per block of queries: about one L2 cache, which
# measured fastest (a 59,000-item database row of uint64 words is 472 KB).
_BLOCK_BYTES = 1 << 19
# Rows per block when encoding (bounds the float temporaries).
_ENCODE_ROWS = 4096
# Distance elements per block in hamming_topk (bounds its memory).
_TOPK_BLOCK_ELEMS = 1 << 24
_POPCOUNT_LUT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


# --------------------------------------------------------------------------
# private helpers: validation
# --------------------------------------------------------------------------


def _check_weight(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def _check_features(X, *, what="X", n_features=None):
    """Return ``X`` as a float array (n, d), or raise a clear error."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (n_samples, n_features) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{what} must have at least one sample and one feature, got shape {arr.shape}")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{what} must hold real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            bad = np.flatnonzero(~finite.all(axis=1))
            raise ValueError(
                f"{what} contains NaN or inf in {bad.size} row(s) (first: row {bad[0]}); "
                "hash codes of such features are undefined"
            )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{what} has {arr.shape[1]} features, the model was fitted on {n_features}")
    return arr


def _check_packed(packed, name):
    arr = np.asarray(packed)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (n, n_bytes) array of packed codes, got shape {arr.shape}; "
            f"for a single code pass {name}[np.newaxis, :]"
        )
    if arr.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 packed codes (see pack_codes), got dtype {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one code of at least one byte, got shape {arr.shape}")
    return arr


def _check_pair(Qp, Xp):
    q = _check_packed(Qp, "Qp")
    x = _check_packed(Xp, "Xp")
    if q.shape[1] != x.shape[1]:
        raise ValueError(f"Qp and Xp must have the same code length, got {q.shape[1]} and {x.shape[1]} bytes")
    return q, x


def _code_bits(codes, name="codes"):
    """Boolean (n, n_bits) bit matrix of a {-1,+1} / {0,1} / bool code matrix."""
    B = np.asarray(codes)
    if B.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (n, n_bits) array, got shape {B.shape}; for one code pass {name}[np.newaxis, :]"
        )
    if B.shape[0] == 0 or B.shape[1] == 0:
        raise ValueError(f"{name} must have at least one code of at least one bit, got shape {B.shape}")
    if B.dtype == bool:
        return B
    if not (np.issubdtype(B.dtype, np.integer) or np.issubdtype(B.dtype, np.floating)):
        raise TypeError(f"{name} must hold -1/+1 or 0/1 values, got dtype {B.dtype}")
    pos = B == 1
    neg = B == -1
    zero = B == 0
    if not (pos | neg | zero).all():
        raise ValueError(f"{name} must hold only -1/+1 or only 0/1 values (use binarize() on real values)")
    if neg.any() and zero.any():
        raise ValueError(f"{name} mixes -1 and 0: use either the {{-1, +1}} or the {{0, 1}} convention")
    return pos


def _result_dtype(n_bits):
    if n_bits <= np.iinfo(np.uint8).max:
        return np.uint8
    if n_bits <= np.iinfo(np.uint16).max:
        return np.uint16
    return np.uint32


# --------------------------------------------------------------------------
# private helpers: popcount kernels
# --------------------------------------------------------------------------


def _word_view(packed):
    """(n, n_bytes) uint8 -> (n, n_words) unsigned words, zero-byte padded.

    Codes of 1, 2 or 3-4 bytes use uint8 / uint16 / uint32 words, longer codes
    uint64 words. Zero bytes XOR to zero, so the padding never changes a
    distance.
    """
    n, nb = packed.shape
    wsize = 8 if nb > 4 else (4 if nb > 2 else nb)
    width = -(-nb // wsize) * wsize
    if width != nb or not packed.flags.c_contiguous:
        buf = np.zeros((n, width), dtype=np.uint8)
        buf[:, :nb] = packed
        packed = buf
    return packed.view(np.dtype(f"<u{wsize}"))


def _rows_per_block(n_db, itemsize):
    return max(1, _BLOCK_BYTES // max(1, n_db * itemsize))


def _hamming_bitwise_count(q, x, out):
    qw = _word_view(q)
    xw_t = np.ascontiguousarray(_word_view(x).T)  # (n_words, n_db): one contiguous row per word
    n_q, n_words = qw.shape
    n_db = xw_t.shape[1]
    step = _rows_per_block(n_db, qw.itemsize)
    tmp = np.empty((min(step, n_q), n_db), dtype=qw.dtype)
    cnt = np.empty((min(step, n_q), n_db), dtype=np.uint8) if n_words > 1 else None
    for start in range(0, n_q, step):
        stop = min(start + step, n_q)
        m = stop - start
        dest = out[start:stop]
        for w in range(n_words):
            np.bitwise_xor(qw[start:stop, w : w + 1], xw_t[w][None, :], out=tmp[:m])
            if w == 0:
                np.bitwise_count(tmp[:m], out=dest)
            else:
                np.bitwise_count(tmp[:m], out=cnt[:m])
                np.add(dest, cnt[:m], out=dest)
    return out


def _hamming_lut(q, x, out):
    x_t = np.ascontiguousarray(x.T)  # (n_bytes, n_db)
    n_q, nb = q.shape
    n_db = x_t.shape[1]
    step = _rows_per_block(n_db, 1)
    tmp = np.empty((min(step, n_q), n_db), dtype=np.uint8)
    cnt = np.empty_like(tmp)
    for start in range(0, n_q, step):
        stop = min(start + step, n_q)
        m = stop - start
        dest = out[start:stop]
        dest[...] = 0
        for b in range(nb):
            np.bitwise_xor(q[start:stop, b : b + 1], x_t[b][None, :], out=tmp[:m])
            np.take(_POPCOUNT_LUT, tmp[:m], out=cnt[:m])
            np.add(dest, cnt[:m], out=dest)
    return out


# --------------------------------------------------------------------------
# codes
# --------------------------------------------------------------------------


def binarize(values):
    """Sign of real values as ``{-1, +1}`` codes, with ``sign(0) = +1``.

    Used by every encoder of this module (notebooks 03 and 07), and by notebook
    03 to binarise other real-valued latents the same way.

    Parameters
    ----------
    values : array_like of real
        Any shape. NaN is rejected (its sign is undefined); ``+-inf`` are
        ``+-1``.

    Returns
    -------
    codes : ndarray of int8
        ``+1`` where ``values >= 0`` (zero included), ``-1`` elsewhere.

    Raises
    ------
    ValueError
        If ``values`` contains NaN.

    Examples
    --------
    >>> binarize([[-0.5, 0.0, 2.0]])
    array([[-1,  1,  1]], dtype=int8)
    """
    arr = np.asarray(values)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"values must be real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        raise ValueError("values contain NaN; their sign is undefined")
    return np.where(arr >= 0, np.int8(1), np.int8(-1))


def pack_codes(codes):
    """Pack a binary code matrix into bytes (8 bits per byte, big-endian).

    Used by notebook 03 (storage and Hamming search of paper 000's codes) and
    notebook 07.

    Parameters
    ----------
    codes : (n, n_bits) array_like
        Values in ``{-1, +1}`` (what :meth:`encode` returns), in ``{0, 1}``, or
        booleans; ``+1`` / ``1`` / ``True`` becomes a set bit. Mixing ``-1``
        and ``0`` is an error.

    Returns
    -------
    packed : (n, ceil(n_bits / 8)) ndarray of uint8
        :func:`numpy.packbits` with ``bitorder="big"``: bit ``j`` is bit ``7 -
        j % 8`` (most significant first) of byte ``j // 8``. When ``n_bits`` is
        not a multiple of 8 the last byte is padded with zero bits, the same in
        every code, so Hamming distances are unchanged.

    Raises
    ------
    ValueError
        Wrong shape, values other than -1/+1 or 0/1, or a mix of -1 and 0.

    Examples
    --------
    >>> pack_codes([[1, -1, -1, -1, -1, -1, -1, 1, 1]])
    array([[129, 128]], dtype=uint8)
    """
    return np.packbits(_code_bits(codes), axis=1, bitorder="big")


def unpack_codes(packed, n_bits, *, values="pm1"):
    """Inverse of :func:`pack_codes`.

    Used by notebooks 03 and 07 (and by the tests' naive Hamming reference).

    Parameters
    ----------
    packed : (n, n_bytes) array_like of uint8
        Packed codes.
    n_bits : int
        Code length; ``n_bytes`` must equal ``ceil(n_bits / 8)``.
    values : {"pm1", "01"}, keyword-only
        ``"pm1"``: ``int8`` in ``{-1, +1}``; ``"01"``: ``uint8`` in ``{0, 1}``.

    Returns
    -------
    codes : (n, n_bits) ndarray

    Raises
    ------
    ValueError
        ``n_bytes`` does not match ``n_bits``, or a padding bit is set (the
        array was not made by :func:`pack_codes`, and its Hamming distances
        would count the padding).
    """
    arr = _check_packed(packed, "packed")
    n_bits = _check_int("n_bits", n_bits)
    _check_choice("values", values, ("pm1", "01"))
    n_bytes = -(-n_bits // 8)
    if arr.shape[1] != n_bytes:
        raise ValueError(f"{n_bits} bits take {n_bytes} bytes, but packed has {arr.shape[1]} per code")
    pad = 8 * n_bytes - n_bits
    if pad and (arr[:, -1] & np.uint8((1 << pad) - 1)).any():
        raise ValueError(f"packed codes have non-zero padding bits (the last {pad} bits of the last byte)")
    bits = np.unpackbits(arr, axis=1, count=n_bits, bitorder="big")
    if values == "01":
        return bits
    return (2 * bits.astype(np.int8) - 1).astype(np.int8)


def hamming_distances(Qp, Xp, *, method="auto"):
    """All Hamming distances between packed query and database codes.

    Used by notebook 03 (Hamming ranking of paper 000's codes and the
    baselines, fed to :func:`cbirlib.metrics.mean_average_precision_from_distances`
    and :func:`cbirlib.metrics.precision_within_radius`) and notebook 07.

    Parameters
    ----------
    Qp : (n_queries, n_bytes) array_like of uint8
        Packed query codes (:func:`pack_codes`).
    Xp : (n_database, n_bytes) array_like of uint8
        Packed database codes, same length.
    method : {"auto", "bitwise_count", "lut"}, keyword-only
        ``"bitwise_count"``: XOR of machine words and
        :func:`numpy.bitwise_count` (numpy >= 2); ``"lut"``: per-byte lookup
        table; ``"auto"``: the former when available.

    Returns
    -------
    distances : (n_queries, n_database) ndarray of uint8 (uint16 beyond 255 bits)
        Number of differing bits. The dtype is chosen from ``8 * n_bytes``.

    Notes
    -----
    Queries are processed in blocks whose XOR temporaries take about 512 KB,
    so extra memory is bounded independently of the sizes. Zero padding (bits
    in the last byte, bytes up to a whole word) never changes a distance.

    Examples
    --------
    >>> a = pack_codes([[1, 1, -1, -1]]); b = pack_codes([[1, -1, -1, 1], [1, 1, -1, -1]])
    >>> hamming_distances(a, b)
    array([[2, 0]], dtype=uint8)
    """
    q, x = _check_pair(Qp, Xp)
    _check_choice("method", method, _METHODS)
    has_bc = hasattr(np, "bitwise_count")
    if method == "bitwise_count" and not has_bc:
        raise ValueError("method='bitwise_count' needs numpy >= 2.0; use method='lut'")
    out = np.empty((q.shape[0], x.shape[0]), dtype=_result_dtype(8 * q.shape[1]))
    if method == "lut" or not has_bc:
        return _hamming_lut(q, x, out)
    return _hamming_bitwise_count(q, x, out)


def hamming_topk(Qp, Xp, k, *, ties="stable", seed=None, method="auto"):
    """The ``k`` database codes nearest to each query in Hamming distance.

    Used by notebook 03 (retrieval lists of the hash codes, timing against
    ``faiss.IndexBinaryFlat``) and notebook 07.

    Parameters
    ----------
    Qp, Xp : array_like of uint8
        Packed query and database codes, as in :func:`hamming_distances`.
    k : int
        Number of results per query; clipped to the database size.
    ties : {"stable", "random"}, keyword-only
        Tie order, delegated to :func:`cbirlib.metrics.rank_by_distance`:
        ``"stable"`` keeps database index order among equal distances,
        ``"random"`` orders them uniformly at random.
    seed : int, SeedSequence or numpy.random.Generator, optional, keyword-only
        Required for ``ties="random"``. The same seed gives the same result
        for the same inputs.
    method : {"auto", "bitwise_count", "lut"}, keyword-only
        Popcount kernel, as in :func:`hamming_distances`.

    Returns
    -------
    distances : (n_queries, k) ndarray of uint8 / uint16
        Hamming distances in rank order (non-decreasing per row).
    indices : (n_queries, k) ndarray of intp
        Database indices in rank order (the ``(D, I)`` order of faiss and
        :func:`cbirlib.retrieval.euclidean_search`).

    Notes
    -----
    Distances are computed for blocks of queries (at most about 16 M
    distances, 16 MB, at a time) and each block is ranked by
    :func:`~cbirlib.metrics.rank_by_distance` (a stable radix sort of the
    ``uint8`` distances), so ``ties="stable"`` gives exactly the top ``k`` of
    ``rank_by_distance`` on the full distance matrix. For ``"random"`` one
    ``numpy.random.Generator`` made from ``seed`` is passed to every block in
    turn; as ``rank_by_distance`` draws its permutations query by query, the
    result equals ``rank_by_distance(hamming_distances(Qp, Xp), k=k,
    ties="random", seed=seed)`` whatever the block size (tested).
    """
    q, x = _check_pair(Qp, Xp)
    _check_choice("ties", ties, _TIES)
    n_db = x.shape[0]
    kk = min(_check_int("k", k), n_db)
    if ties == "random":
        if seed is None:
            raise ValueError("ties='random' needs a seed (an int, SeedSequence or numpy Generator)")
        rng = np.random.default_rng(seed)
    else:
        rng = None
    dist_out = np.empty((q.shape[0], kk), dtype=_result_dtype(8 * q.shape[1]))
    idx_out = np.empty((q.shape[0], kk), dtype=np.intp)
    step = max(1, _TOPK_BLOCK_ELEMS // n_db)
    for start in range(0, q.shape[0], step):
        stop = min(start + step, q.shape[0])
        d = hamming_distances(q[start:stop], x, method=method)
        idx = metrics.rank_by_distance(d, k=kk, ties=ties, seed=rng)
        dist_out[start:stop] = np.take_along_axis(d, idx, axis=1)
        idx_out[start:stop] = idx
    return dist_out, idx_out


def storage_bytes_per_image(n_bits):
    """Bytes one packed ``n_bits`` code takes: ``ceil(n_bits / 8)``.

    Used by notebook 03 (paper 000's storage-efficiency claim) and 07.

    Parameters
    ----------
    n_bits : int

    Returns
    -------
    int

    Examples
    --------
    >>> storage_bytes_per_image(64), storage_bytes_per_image(12)
    (8, 2)
    """
    return -(-_check_int("n_bits", n_bits) // 8)


def storage_comparison(n_bits, d, *, float_bytes=4, n_images=1):
    """Storage of packed codes against float features of dimension ``d``.

    Used by notebook 03 (storage efficiency, paper 000) and 07.

    Parameters
    ----------
    n_bits : int
        Code length.
    d : int
        Dimension of the float features the codes replace.
    float_bytes : int, keyword-only
        Bytes per float (4 for float32, the default; 8 for float64; 2 for
        float16).
    n_images : int, keyword-only
        Database size, for the totals.

    Returns
    -------
    dict
        ``code_bytes_per_image``, ``float_bytes_per_image`` (``d *
        float_bytes``), ``code_bytes_total``, ``float_bytes_total`` and
        ``compression_ratio`` (float over code bytes).

    Examples
    --------
    >>> storage_comparison(64, 1280)["compression_ratio"]
    640.0
    """
    code = storage_bytes_per_image(n_bits)
    dd = _check_int("d", d)
    fb = _check_int("float_bytes", float_bytes)
    n = _check_int("n_images", n_images)
    flt = dd * fb
    return {
        "n_bits": int(n_bits),
        "d": dd,
        "code_bytes_per_image": code,
        "float_bytes_per_image": flt,
        "code_bytes_total": code * n,
        "float_bytes_total": flt * n,
        "compression_ratio": flt / code,
    }


# --------------------------------------------------------------------------
# code collapse diagnostics
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CollapseReport:
    """How far a set of codes has collapsed (see :func:`collapse_report`).

    Used by notebooks 03 and 07.

    Attributes
    ----------
    n_codes, n_bits : int
        Shape of the code matrix.
    n_distinct : int
        Number of distinct codes.
    distinct_fraction : float
        ``n_distinct / n_codes`` (``1 / n_codes`` when every code is equal).
    largest_bucket_fraction : float
        Fraction of the codes equal to the most common code (1 when fully
        collapsed).
    bit_mean : ndarray of float, shape (n_bits,)
        Mean of each bit in ``{-1, +1}`` (0 = balanced, +-1 = constant).
    bit_entropy : ndarray of float, shape (n_bits,)
        Entropy of each bit, in bits (1 = balanced, 0 = constant).
    mean_bit_entropy : float
        Mean of ``bit_entropy``.
    n_constant_bits : int
        Bits with the same value in every code.
    mean_abs_correlation : float
        Mean absolute Pearson correlation between pairs of non-constant bits
        (``nan`` with fewer than two non-constant bits).
    mean_abs_relaxed : float
        Mean ``|u|`` of the relaxed outputs ``u = tanh(W f + b)`` when given
        (``nan`` otherwise). Near 0: the relaxation has collapsed onto the
        decision boundary, where the signs carry no learned structure even if
        the codes are distinct (what weight decay without the quantisation
        term produces).
    """

    n_codes: int
    n_bits: int
    n_distinct: int
    distinct_fraction: float
    largest_bucket_fraction: float
    bit_mean: np.ndarray = field(repr=False)
    bit_entropy: np.ndarray = field(repr=False)
    mean_bit_entropy: float
    n_constant_bits: int
    mean_abs_correlation: float
    mean_abs_relaxed: float = float("nan")

    def summary(self):
        """The scalar fields as a dict (one table row in notebook 03)."""
        return {
            "n_codes": self.n_codes,
            "n_bits": self.n_bits,
            "n_distinct": self.n_distinct,
            "distinct_fraction": self.distinct_fraction,
            "largest_bucket_fraction": self.largest_bucket_fraction,
            "mean_bit_entropy": self.mean_bit_entropy,
            "n_constant_bits": self.n_constant_bits,
            "mean_abs_correlation": self.mean_abs_correlation,
            "mean_abs_relaxed": self.mean_abs_relaxed,
        }


def collapse_report(codes, *, relaxed=None):
    """Diagnose code collapse: distinct codes, bit balance and bit entropy.

    Used by notebook 03 to show that paper 000's eq. (6) alone collapses the
    codes and that the quantisation / balance terms prevent it, and by 07.

    Parameters
    ----------
    codes : (n, n_bits) array_like
        Unpacked codes in ``{-1, +1}``, ``{0, 1}`` or booleans.
    relaxed : (n, n_bits) array_like, optional, keyword-only
        The relaxed outputs ``tanh(W f + b)`` of the same items
        (``np.tanh(model.project(X))`` for :class:`DeepPairwiseHash`), to
        report ``mean_abs_relaxed``.

    Returns
    -------
    CollapseReport

    Notes
    -----
    Eq. (6) without its extra terms collapses in one of two ways: every code
    equal (``n_distinct`` 1, bit entropy 0), or, under weight decay, every
    relaxed output near 0 (``mean_abs_relaxed`` near 0) with codes that are
    the signs of near-zero projections.
    """
    bits = _code_bits(codes)
    n, k = bits.shape
    packed = np.packbits(bits, axis=1, bitorder="big")
    _, counts = np.unique(packed, axis=0, return_counts=True)
    p = bits.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -(np.where(p > 0, p * np.log2(p), 0.0) + np.where(p < 1, (1 - p) * np.log2(1 - p), 0.0))
    constant = (p == 0) | (p == 1)
    varying = np.flatnonzero(~constant)
    if varying.size >= 2:
        corr = np.corrcoef(bits[:, varying].T.astype(np.float64))
        off = corr[~np.eye(varying.size, dtype=bool)]
        mac = float(np.mean(np.abs(off)))
    else:
        mac = float("nan")
    return CollapseReport(
        n_codes=int(n),
        n_bits=int(k),
        n_distinct=int(counts.size),
        distinct_fraction=float(counts.size / n),
        largest_bucket_fraction=float(counts.max() / n),
        bit_mean=2.0 * p - 1.0,
        bit_entropy=ent,
        mean_bit_entropy=float(ent.mean()),
        n_constant_bits=int(constant.sum()),
        mean_abs_correlation=mac,
        mean_abs_relaxed=_mean_abs_relaxed(relaxed, bits.shape),
    )


def _mean_abs_relaxed(relaxed, shape):
    if relaxed is None:
        return float("nan")
    u = np.asarray(relaxed, dtype=np.float64)
    if u.shape != shape:
        raise ValueError(f"relaxed must have the shape of codes {shape}, got {u.shape}")
    if not np.isfinite(u).all():
        raise ValueError("relaxed contains NaN or inf")
    return float(np.mean(np.abs(u)))


# --------------------------------------------------------------------------
# private helpers: preprocessing and PCA
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Standardizer:
    """Centre per dimension, then divide by one global scale (never by zero)."""

    mean: np.ndarray
    scale: float

    @classmethod
    def fit(cls, X, *, center=True, scale=True):
        n, d = X.shape
        total = np.zeros(d)
        for start in range(0, n, _ENCODE_ROWS):  # blocks: no full float64 copy of X
            total += np.asarray(X[start : start + _ENCODE_ROWS], dtype=np.float64).sum(axis=0)
        mean = total / n if center else np.zeros(d)
        s = 1.0
        if scale:
            sq = 0.0
            for start in range(0, n, _ENCODE_ROWS):
                sq += float(np.sum((np.asarray(X[start : start + _ENCODE_ROWS], dtype=np.float64) - mean) ** 2))
            rms = math.sqrt(sq / (n * d))
            s = rms if rms > 0 and math.isfinite(rms) else 1.0
        return cls(mean=mean, scale=s)

    def transform(self, X, dtype=np.float64):
        dt = np.dtype(dtype)
        return (np.asarray(X, dtype=dt) - self.mean.astype(dt)) / dt.type(self.scale)


def _pca(Xc, n_components):
    """Top principal directions of centred data, deterministic signs.

    Returns ``(components (d, n_components), variances)``. Uses the ``d x d``
    covariance (``eigh``) or, when ``n < d``, a full SVD of the data (whose
    right singular vectors complete an orthonormal basis). Zero-variance
    directions get variance 0 and still an orthonormal direction, so their
    projections are 0 (bit +1), never NaN.
    """
    n, d = Xc.shape
    if n >= d:
        cov = (Xc.T @ Xc) / max(n, 1)
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(vals, kind="stable")[::-1][:n_components]
        comps, var = vecs[:, order], np.maximum(vals[order], 0.0)
    else:
        # thin SVD via numpy; pads with an orthonormal complement if rank < n_components
        _, s, vt = np.linalg.svd(Xc, full_matrices=True)
        comps = vt[:n_components].T
        var = np.zeros(n_components)
        var[: min(s.size, n_components)] = (s[:n_components] ** 2) / max(n, 1)
    # sign convention (as scikit-learn's svd_flip): largest |entry| positive
    pivot = np.argmax(np.abs(comps), axis=0)
    signs = np.sign(comps[pivot, np.arange(comps.shape[1])])
    signs[signs == 0] = 1.0
    return comps * signs, var


@contextlib.contextmanager
def _torch_threads(n_threads):
    """Run with ``n_threads`` torch intra-op threads (``None``: unchanged), then restore."""
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_threads(n_threads):
    return None if n_threads is None else _check_int("n_threads", n_threads)


def _seeded(seed, build):
    """Run ``build()`` with torch's global CPU RNG seeded, restoring it after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _check_seed(seed):
    return _check_int("seed", seed, minimum=0)


def _check_labels_for(labels, n):
    y = np.asarray(labels)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(
            f"labels must be 1-D (n,) or a 2-D (n, n_labels) 0/1 matrix with n = {n} rows, got shape {y.shape}"
        )
    if y.ndim == 2 and y.dtype != bool and not np.isin(y, (0, 1)).all():
        raise ValueError("2-D labels must be a 0/1 (multi-label indicator) matrix")
    return y


# --------------------------------------------------------------------------
# fitted-model interface
# --------------------------------------------------------------------------


class _Hasher:
    """Shared fitted-model interface (private base class)."""

    def __init__(self, *, n_bits, seed=0):
        self.n_bits = _check_int("n_bits", n_bits)
        self.seed = _check_seed(seed)
        self.n_features_in_ = None

    def __repr__(self):
        return f"{type(self).__name__}(n_bits={self.n_bits}, seed={self.seed})"

    def _require_fitted(self):
        if self.n_features_in_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(X) first")

    def fit(self, X, labels=None):
        """Fit the hash function on features ``X`` (n, d); returns ``self``.

        ``labels`` are used only by supervised settings (see the class) and
        ignored otherwise.
        """
        X = _check_features(X)
        self._fit(X, labels)
        self.n_features_in_ = int(X.shape[1])
        return self

    def project(self, X):
        """Real-valued projections whose signs are the codes, ``(n, n_bits)``.

        Computed in blocks of ``4096`` rows, so memory stays bounded for large
        databases.
        """
        self._require_fitted()
        X = _check_features(X, n_features=self.n_features_in_)
        blocks = [self._project(X[start : start + _ENCODE_ROWS]) for start in range(0, X.shape[0], _ENCODE_ROWS)]
        return np.concatenate(blocks, axis=0)

    def encode(self, X):
        """Codes of ``X`` as ``(n, n_bits)`` int8 in ``{-1, +1}`` (``sign(0) = +1``)."""
        return binarize(self.project(X))

    def encode_packed(self, X):
        """Codes of ``X`` packed with :func:`pack_codes`, ``(n, ceil(n_bits / 8))`` uint8."""
        return pack_codes(self.encode(X))


class LSH(_Hasher):
    """Random-hyperplane LSH (SimHash; Charikar 2002).

    Used by notebook 03 (baseline for paper 000's hash layer) and 07.

    ``h(x) = sign(W^T (x - mu))`` with ``W`` a ``(d, n_bits)`` matrix of
    independent standard normal entries drawn from
    ``numpy.random.default_rng(seed)``. For ``center=True`` (default) ``mu`` is
    the training mean: **the data are centred first**, so that features that
    are all non-negative (CNN activations) do not put most hyperplanes on one
    side of every point. With ``center=False`` (``mu = 0``) the probability that
    a bit differs is exactly ``angle(x, y) / pi``.

    Parameters
    ----------
    n_bits : int, keyword-only
        Code length; may exceed the feature dimension.
    seed : int, keyword-only
        Seed of the hyperplanes (default 0).
    center : bool, keyword-only
        Subtract the training mean before projecting.

    Attributes
    ----------
    mean_ : ndarray (d,)
    planes_ : ndarray (d, n_bits)
    """

    def __init__(self, *, n_bits, seed=0, center=True):
        super().__init__(n_bits=n_bits, seed=seed)
        self.center = bool(center)

    def _fit(self, X, labels):
        d = X.shape[1]
        self.mean_ = X.mean(axis=0, dtype=np.float64) if self.center else np.zeros(d)
        rng = np.random.default_rng(self.seed)
        self.planes_ = rng.standard_normal((d, self.n_bits))

    def _project(self, X):
        return (np.asarray(X, dtype=np.float64) - self.mean_) @ self.planes_


class PCAHash(_Hasher):
    """Sign of PCA projections (PCAH).

    Used by notebook 03 (baseline) and 07.

    ``h(x) = sign(P^T (x - mu))`` with ``P`` the top ``n_bits`` principal
    directions of the training features (eigenvectors of the covariance,
    signs fixed so that the largest entry of each is positive). Deterministic:
    ``seed`` is accepted for the common interface and unused.

    Parameters
    ----------
    n_bits : int, keyword-only
        Code length; must be ``<= d`` (``ValueError`` otherwise). Directions
        with zero variance (``n_bits`` above the rank, constant dimensions,
        all-zero features) project to 0 and give a constant ``+1`` bit.
    seed : int, keyword-only
        Unused.

    Attributes
    ----------
    mean_ : ndarray (d,)
    components_ : ndarray (d, n_bits)
    explained_variance_ : ndarray (n_bits,)
    """

    def _fit(self, X, labels):
        if self.n_bits > X.shape[1]:
            raise ValueError(
                f"{type(self).__name__} needs n_bits <= the feature dimension, got n_bits={self.n_bits} "
                f"> d={X.shape[1]} (PCA has only d directions)"
            )
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        self.components_, self.explained_variance_ = _pca(X - self.mean_, self.n_bits)

    def _project(self, X):
        return (np.asarray(X, dtype=np.float64) - self.mean_) @ self.components_


class ITQ(PCAHash):
    """Iterative quantisation (Gong & Lazebnik, CVPR 2011).

    Used by notebook 03 (baseline) and 07.

    PCA to ``n_bits`` dimensions, ``V = (X - mu) P``, then an orthogonal
    rotation ``R`` (``n_bits x n_bits``) minimising the quantisation loss
    ``||B - V R||_F^2`` by alternating ``B = sign(V R)`` and the orthogonal
    Procrustes solution ``R = S_hat S^T`` from the SVD ``B^T V = S Omega
    S_hat^T``. ``R`` starts from a random orthogonal matrix (QR of a standard
    normal matrix drawn from ``numpy.random.default_rng(seed)``). Codes are
    ``sign(V R)``.

    Parameters
    ----------
    n_bits : int, keyword-only
        Code length; ITQ requires ``n_bits <= d`` (``ValueError`` otherwise).
    seed : int, keyword-only
        Seed of the initial rotation (default 0).
    n_iter : int, keyword-only
        Alternations (50 in the paper).

    Attributes
    ----------
    mean_, components_, explained_variance_
        As :class:`PCAHash`.
    rotation_ : ndarray (n_bits, n_bits)
    quantization_loss_ : ndarray (n_iter + 1,)
        ``||sign(V R_t) - V R_t||_F^2 / n`` for the initial rotation ``t = 0``
        and after each iteration; non-increasing, since each half-step is an
        exact minimisation.
    """

    def __init__(self, *, n_bits, seed=0, n_iter=50):
        super().__init__(n_bits=n_bits, seed=seed)
        self.n_iter = _check_int("n_iter", n_iter, minimum=0)

    def __repr__(self):
        return f"ITQ(n_bits={self.n_bits}, seed={self.seed}, n_iter={self.n_iter})"

    def _fit(self, X, labels):
        super()._fit(X, labels)
        V = (np.asarray(X, dtype=np.float64) - self.mean_) @ self.components_
        n = V.shape[0]
        rng = np.random.default_rng(self.seed)
        q, r = np.linalg.qr(rng.standard_normal((self.n_bits, self.n_bits)))
        R = q * np.where(np.diag(r) < 0, -1.0, 1.0)  # Haar-distributed orthogonal matrix
        losses = []
        for it in range(self.n_iter + 1):
            Z = V @ R
            B = np.where(Z >= 0, 1.0, -1.0)
            losses.append(float(np.sum((B - Z) ** 2) / n))
            if it == self.n_iter:
                break
            u, _, vt = np.linalg.svd(B.T @ V)  # B^T V = u s vt  ->  V^T B = vt^T s u^T
            R = vt.T @ u.T
        self.rotation_ = R
        self.quantization_loss_ = np.asarray(losses)

    def _project(self, X):
        return super()._project(X) @ self.rotation_


# --------------------------------------------------------------------------
# torch models: paper 000's hash layer and the binary autoencoder
# --------------------------------------------------------------------------


class HashLayer(nn.Module):
    """Paper 000's hash layer ``h(x) = sign(W f(x) + b)`` (eq. 5).

    Used by notebook 03 (trained on fixed features ``f(x)`` with
    :func:`train_hash_layer`, through :class:`DeepPairwiseHash`) and 07.

    ``forward`` returns the training relaxation ``u = tanh(W f + b)``;
    :meth:`encode` returns ``sign(W f + b)`` as int8 ``{-1, +1}`` with
    ``sign(0) = +1``.

    Parameters
    ----------
    d_in : int
        Feature dimension.
    n_bits : int
        Code length ``k``.

    Notes
    -----
    Parameters are initialised by torch's default ``nn.Linear`` rule from the
    global RNG; build the layer under a seed (as :class:`DeepPairwiseHash`
    does, restoring the global RNG afterwards) for reproducible weights.
    """

    def __init__(self, d_in, n_bits):
        super().__init__()
        self.d_in = _check_int("d_in", d_in)
        self.n_bits = _check_int("n_bits", n_bits)
        self.linear = nn.Linear(self.d_in, self.n_bits)

    def logits(self, f):
        """``W f + b``."""
        return self.linear(f)

    def forward(self, f):
        """Relaxed codes ``tanh(W f + b)`` in ``(-1, 1)``."""
        return torch.tanh(self.linear(f))

    @torch.no_grad()
    def encode(self, f):
        """Binary codes ``sign(W f + b)``, int8 tensor in ``{-1, +1}``."""
        return torch.where(self.linear(f) >= 0, 1, -1).to(torch.int8)


def hash_objective(u, S, *, pairwise="contrastive", margin=0.5, alpha=0.0, beta=0.0, gamma=0.0):
    """Paper 000's eq. (6) pairwise loss plus quantisation, balance, decorrelation.

    Used by :func:`train_hash_layer` (notebook 03, and 07).

    Parameters
    ----------
    u : (m, k) torch.Tensor
        Relaxed codes of a mini-batch, in ``[-1, 1]``.
    S : (m, m) torch.Tensor
        Pairwise similarity in ``{0, 1}`` (only ``i < j`` is read).
    pairwise : {"literal", "contrastive", "likelihood"}, keyword-only
        The reading of eq. (6) (module docstring). With ``D_ij = ||u_i -
        u_j||^2 / (4k)``: ``"literal"`` ``S D``; ``"contrastive"`` ``S D + (1 -
        S) max(0, margin - D)``; ``"likelihood"`` ``(softplus(theta) - S
        theta) / k``, ``theta = u_i . u_j / 2``. Averaged over the pairs ``i <
        j``.
    margin : float, keyword-only
        Hinge margin of ``"contrastive"``, as a fraction of the bits.
    alpha, beta, gamma : float, keyword-only
        Weights of quantisation ``mean_i || |u_i| - 1 ||^2 / k``, bit balance
        ``|| mean_i u_i ||^2 / k`` and decorrelation ``sum_{p != q} C_pq^2 /
        (k (k - 1))`` with ``C = u^T u / m``. 0 disables a term (it is still
        reported).

    Returns
    -------
    dict of str -> torch.Tensor
        ``"pair"``, ``"quantization"``, ``"balance"``, ``"decorrelation"``
        (unweighted) and ``"total"`` (``pair + alpha quantization + beta
        balance + gamma decorrelation``).
    """
    _check_choice("pairwise", pairwise, _PAIRWISE)
    alpha, beta, gamma = (_check_weight(n, v) for n, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)))
    margin = _check_weight("margin", margin)
    m, k = u.shape
    S = S.to(u.dtype)
    gram = u @ u.T
    upper = torch.ones(m, m, dtype=torch.bool, device=u.device).triu(diagonal=1)  # pairs i < j
    if pairwise == "likelihood":
        theta = 0.5 * gram
        per_pair = (torch.nn.functional.softplus(theta) - S * theta) / k
    else:
        sq = torch.diagonal(gram)
        dist = (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min(0.0) / (4.0 * k)
        per_pair = S * dist
        if pairwise == "contrastive":
            per_pair = per_pair + (1.0 - S) * torch.relu(margin - dist)
    n_pairs = m * (m - 1) // 2
    pair = per_pair[upper].sum() / n_pairs if n_pairs else u.sum() * 0.0
    quant = ((u.abs() - 1.0) ** 2).sum(dim=1).mean() / k
    balance = (u.mean(dim=0) ** 2).sum() / k
    if k > 1:
        cov = (u.T @ u) / m
        off = cov - torch.diag(torch.diagonal(cov))
        decor = (off**2).sum() / (k * (k - 1))
    else:
        decor = u.sum() * 0.0
    total = pair + alpha * quant + beta * balance + gamma * decor
    return {"pair": pair, "quantization": quant, "balance": balance, "decorrelation": decor, "total": total}


def _knn_graph(F, n_neighbors):
    """Boolean CSR adjacency: j among the n_neighbors cosine-nearest of i, or i of j; self included."""
    import faiss
    from scipy import sparse

    n = F.shape[0]
    kk = min(n_neighbors + 1, n)
    Z = np.ascontiguousarray(F, dtype=np.float32)
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    Z = Z / np.where(norms > 0, norms, 1.0)
    index = faiss.IndexFlatIP(Z.shape[1])
    index.add(Z)
    _, nbr = index.search(Z, kk)
    nbr = np.where(nbr < 0, np.arange(n)[:, None], nbr)
    rows = np.repeat(np.arange(n), kk)
    A = sparse.csr_matrix((np.ones(rows.size, dtype=bool), (rows, nbr.ravel())), shape=(n, n))
    A = (A + A.T + sparse.identity(n, dtype=bool, format="csr")).astype(bool).tocsr()
    # neighbour lists for batch construction (self excluded where possible)
    lists = []
    for i in range(n):
        row = nbr[i][nbr[i] != i][:n_neighbors]
        lists.append(row if row.size else np.array([i]))
    width = max(len(r) for r in lists)
    padded = np.array([np.resize(r, width) for r in lists], dtype=np.int64)
    return A, padded


def train_hash_layer(
    layer,
    features,
    *,
    labels=None,
    similarity="labels",
    pairwise="contrastive",
    margin=0.5,
    alpha=0.1,
    beta=0.1,
    gamma=0.0,
    n_neighbors=10,
    cosine_threshold=0.5,
    epochs=50,
    batch_size=128,
    lr=1e-3,
    weight_decay=1e-2,
    seed=0,
    progress=False,
    n_threads=1,
):
    """Train a :class:`HashLayer` on fixed features with eq. (6) and extra terms.

    Used by notebook 03 (paper 000, through :class:`DeepPairwiseHash`) and 07.

    Parameters
    ----------
    layer : HashLayer
        Trained in place (on the device of its parameters).
    features : (n, d) array_like of float
        The fixed features ``f(x)``, already preprocessed as wanted.
    labels : (n,) or (n, n_labels) array_like, keyword-only
        Needed for ``similarity="labels"``.
    similarity : {"labels", "knn", "cosine"}, keyword-only
        Source of ``S`` (module docstring). ``"labels"`` (supervised):
        ``S_ij = 1`` if same label (multi-label: share one). ``"knn"``
        (unsupervised): ``S_ij = 1`` if ``j`` is one of the ``n_neighbors``
        cosine-nearest features of ``i`` or ``i`` of ``j`` (exact search with
        ``faiss.IndexFlatIP`` once, before training: ``O(n^2 d)``, about a
        minute for 50,000 1280-d features on 2 cores); each mini-batch then holds
        ``batch_size // 2`` anchors and one random neighbour of each, so that
        every batch has similar pairs. ``"cosine"`` (unsupervised): ``S_ij =
        1`` if ``cos(f_i, f_j) >= cosine_threshold``.
    pairwise, margin, alpha, beta, gamma
        See :func:`hash_objective`.
    n_neighbors : int, keyword-only
        ``k`` of the ``"knn"`` graph.
    cosine_threshold : float, keyword-only
        Threshold of ``"cosine"`` (in ``[-1, 1]``; ``-1`` makes every pair
        similar).
    epochs, batch_size, lr : keyword-only
        Mini-batch Adam; an epoch visits every sample once (as an anchor for
        ``"knn"``); the last incomplete batch is kept if it has >= 2 samples.
    weight_decay : float, keyword-only
        Adam's L2 penalty on ``W`` and ``b`` (default ``1e-2``). Without it
        ``W`` grows until ``tanh`` saturates and the gradients vanish early;
        on synthetic 1280-d features with 64 bits this default raised the mAP
        of every ``pairwise`` variant several-fold (notebook 03 should tune it
        with the other weights).
    seed : int, keyword-only
        Seeds the batch order (a ``torch.Generator``); the global RNG is not
        touched.
    progress : bool, keyword-only
        Show a tqdm bar over epochs.
    n_threads : int or None, keyword-only
        torch intra-op threads while training, restored afterwards (``None``:
        leave torch's setting). 1 (default) is the fastest for a layer this
        small, and avoids the many-fold slow-down of oversubscribed threads
        when other processes share the cores.

    Returns
    -------
    history : dict of str -> list of float
        Per epoch, the batch mean of each term of :func:`hash_objective`
        (``"pair"``, ``"quantization"``, ``"balance"``, ``"decorrelation"``,
        ``"total"``).
    """
    _check_choice("similarity", similarity, _SIMILARITY)
    _check_choice("pairwise", pairwise, _PAIRWISE)
    epochs = _check_int("epochs", epochs, minimum=0)
    batch_size = _check_int("batch_size", batch_size, minimum=2)
    n_neighbors = _check_int("n_neighbors", n_neighbors)
    seed = _check_seed(seed)
    n_threads = _check_threads(n_threads)
    if not (-1.0 <= float(cosine_threshold) <= 1.0):
        raise ValueError(f"cosine_threshold must lie in [-1, 1], got {cosine_threshold}")
    F_np = _check_features(features, what="features")
    n = F_np.shape[0]
    if n < 2:
        raise ValueError("training needs at least 2 samples (pairs)")
    device = next(layer.parameters()).device
    F = torch.as_tensor(np.asarray(F_np, dtype=np.float32), device=device)

    if similarity == "labels":
        if labels is None:
            raise ValueError("similarity='labels' needs labels")
        y = _check_labels_for(labels, n)
        if y.ndim == 1:
            codes = np.unique(y, return_inverse=True)[1].reshape(-1)
            Y = torch.as_tensor(codes, device=device)
            sim = lambda idx: (Y[idx][:, None] == Y[idx][None, :])  # noqa: E731
        else:
            Y = torch.as_tensor(y.astype(np.float32), device=device)
            sim = lambda idx: (Y[idx] @ Y[idx].T) > 0  # noqa: E731
    elif similarity == "cosine":
        Fn = torch.nn.functional.normalize(F, dim=1)
        thr = float(cosine_threshold)
        sim = lambda idx: (Fn[idx] @ Fn[idx].T) >= thr - 1e-6  # noqa: E731
    else:
        A, nbr = _knn_graph(F_np, n_neighbors)
        nbr_t = torch.as_tensor(nbr)

        def sim(idx):
            ii = idx.cpu().numpy()
            return torch.as_tensor(A[ii][:, ii].toarray(), device=device)

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(layer.parameters(), lr=lr, weight_decay=weight_decay)
    names = ("pair", "quantization", "balance", "decorrelation", "total")
    history = {name: [] for name in names}
    step = batch_size // 2 if similarity == "knn" else batch_size
    epoch_iter = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="hash layer", unit="epoch")
    with _torch_threads(n_threads):
        layer.train()
        for _ in epoch_iter:
            perm = torch.randperm(n, generator=gen)
            sums = dict.fromkeys(names, 0.0)
            n_batches = 0
            for start in range(0, n, step):
                idx = perm[start : start + step]
                if similarity == "knn":
                    pick = torch.randint(nbr_t.shape[1], (idx.numel(),), generator=gen)
                    idx = torch.cat([idx, nbr_t[idx, pick]])
                if idx.numel() < 2:
                    continue
                idx = idx.to(device)
                u = layer(F[idx])
                terms = hash_objective(
                    u, sim(idx), pairwise=pairwise, margin=margin, alpha=alpha, beta=beta, gamma=gamma
                )
                opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                opt.step()
                for name in names:
                    sums[name] += float(terms[name].detach())
                n_batches += 1
            for name in names:
                history[name].append(sums[name] / max(n_batches, 1))
            if progress:
                epoch_iter.set_postfix(loss=f"{history['total'][-1]:.4f}")
    layer.eval()
    return history


class _TorchHasher(_Hasher):
    """Shared parts of the torch-based hashers."""

    def __init__(self, *, n_bits, seed, epochs, batch_size, lr, progress, device, n_threads):
        super().__init__(n_bits=n_bits, seed=seed)
        self.n_threads = _check_threads(n_threads)
        self.epochs = _check_int("epochs", epochs, minimum=0)
        self.batch_size = _check_int("batch_size", batch_size, minimum=2)
        self.lr = _check_weight("lr", lr)
        self.progress = bool(progress)
        self.device = device

    def _inputs(self, X):
        Z = self.scaler_.transform(X, dtype=np.float32)
        return torch.as_tensor(Z, device=self.device)

    def _batched(self, X, fn):
        with torch.no_grad(), _torch_threads(self.n_threads):
            return fn(self._inputs(X)).cpu().numpy()


class DeepPairwiseHash(_TorchHasher):
    """Paper 000's hash layer ``sign(W f(x) + b)`` trained with eq. (6).

    Used by notebook 03 (paper 000) and 07.

    ``fit`` standardises the fixed features (centre each dimension, divide by
    one global RMS scale), builds a :class:`HashLayer` with weights seeded by
    ``seed``, and trains it with :func:`train_hash_layer`; ``encode`` returns
    ``sign(W f + b)``.

    Parameters
    ----------
    n_bits : int, keyword-only
        Code length.
    seed : int, keyword-only
        Seeds the layer initialisation and the batch order (default 0).
    pairwise : {"literal", "contrastive", "likelihood"}, keyword-only
        Reading of eq. (6), see :func:`hash_objective` (default
        ``"contrastive"``).
    similarity : {"labels", "knn", "cosine"}, keyword-only
        Source of ``S``, see :func:`train_hash_layer` (default ``"labels"``,
        which needs ``fit(X, labels)``).
    alpha, beta, gamma : float, keyword-only
        Weights of quantisation, bit balance and decorrelation (defaults 0.1,
        0.1, 0; 0 disables).
    margin, n_neighbors, cosine_threshold, epochs, batch_size, lr, weight_decay
        See :func:`train_hash_layer`.
    progress : bool, keyword-only
        tqdm bar over epochs.
    device : str, keyword-only
        Torch device (default ``"cpu"``).
    n_threads : int or None, keyword-only
        torch intra-op threads during ``fit`` and ``encode``, restored
        afterwards (default 1, see :func:`train_hash_layer`; ``None`` leaves
        torch's setting).

    Attributes
    ----------
    layer_ : HashLayer
    history_ : dict of str -> list of float
        Loss per term and epoch (:func:`train_hash_layer`).
    scaler_
        The fitted standardisation.

    Notes
    -----
    Same seed, data and thread count give the same codes; torch does not
    guarantee bit-identical float results across thread counts or machines.
    """

    def __init__(
        self,
        *,
        n_bits,
        seed=0,
        pairwise="contrastive",
        similarity="labels",
        alpha=0.1,
        beta=0.1,
        gamma=0.0,
        margin=0.5,
        n_neighbors=10,
        cosine_threshold=0.5,
        epochs=50,
        batch_size=128,
        lr=1e-3,
        weight_decay=1e-2,
        progress=False,
        device="cpu",
        n_threads=1,
    ):
        super().__init__(
            n_bits=n_bits, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr, progress=progress, device=device,
            n_threads=n_threads,
        )
        _check_choice("pairwise", pairwise, _PAIRWISE)
        _check_choice("similarity", similarity, _SIMILARITY)
        self.pairwise = pairwise
        self.similarity = similarity
        self.alpha = _check_weight("alpha", alpha)
        self.beta = _check_weight("beta", beta)
        self.gamma = _check_weight("gamma", gamma)
        self.margin = _check_weight("margin", margin)
        self.n_neighbors = _check_int("n_neighbors", n_neighbors)
        self.cosine_threshold = float(cosine_threshold)
        self.weight_decay = _check_weight("weight_decay", weight_decay)

    def __repr__(self):
        return (
            f"DeepPairwiseHash(n_bits={self.n_bits}, seed={self.seed}, pairwise={self.pairwise!r}, "
            f"similarity={self.similarity!r}, alpha={self.alpha}, beta={self.beta}, gamma={self.gamma})"
        )

    def _fit(self, X, labels):
        if self.similarity == "labels" and labels is None:
            raise ValueError("DeepPairwiseHash(similarity='labels') needs fit(X, labels)")
        self.scaler_ = _Standardizer.fit(X)
        d = X.shape[1]
        self.layer_ = _seeded(self.seed, lambda: HashLayer(d, self.n_bits).to(self.device))
        self.history_ = train_hash_layer(
            self.layer_,
            self.scaler_.transform(X, dtype=np.float32),
            labels=labels,
            similarity=self.similarity,
            pairwise=self.pairwise,
            margin=self.margin,
            alpha=self.alpha,
            beta=self.beta,
            gamma=self.gamma,
            n_neighbors=self.n_neighbors,
            cosine_threshold=self.cosine_threshold,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
            progress=self.progress,
            n_threads=self.n_threads,
        )

    def _project(self, X):
        return self._batched(X, self.layer_.logits)


class BinaryAutoencoder(_TorchHasher):
    """Autoencoder with a binary bottleneck on fixed features (straight-through).

    Used by notebook 03 (baseline: unsupervised deep hashing by reconstruction,
    the survey's autoencoder family) and 07.

    Encoder ``d -> hidden... -> n_bits`` (Linear + ReLU, last layer linear),
    ``u = tanh(z)``, bottleneck ``b = sign(u)`` in the forward pass with the
    straight-through estimator ``b = u + (sign(u) - u).detach()`` (the gradient
    of ``b`` is taken as that of ``u``); decoder ``n_bits -> hidden reversed ->
    d``. Loss: mean squared error between the standardised features (centred,
    divided by one global RMS scale) and their reconstruction from ``b``,
    Adam. Codes are ``sign(z)`` (``sign(0) = +1``).

    Parameters
    ----------
    n_bits : int, keyword-only
    seed : int, keyword-only
        Seeds the weights and the batch order (default 0).
    hidden : tuple of int, keyword-only
        Hidden widths of the encoder (the decoder mirrors them).
    epochs, batch_size, lr : keyword-only
        Mini-batch Adam.
    progress : bool, keyword-only
    device : str, keyword-only
    n_threads : int or None, keyword-only
        torch intra-op threads during ``fit`` and ``encode``, restored
        afterwards (default 1; ``None`` leaves torch's setting).

    Attributes
    ----------
    encoder_, decoder_ : torch.nn.Sequential
    history_ : dict
        ``{"reconstruction": [mean loss per epoch]}``.
    """

    def __init__(self, *, n_bits, seed=0, hidden=(256,), epochs=30, batch_size=128, lr=1e-3, progress=False,
                 device="cpu", n_threads=1):
        super().__init__(
            n_bits=n_bits, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr, progress=progress, device=device,
            n_threads=n_threads,
        )
        self.hidden = tuple(_check_int("hidden width", h) for h in hidden)

    @staticmethod
    def _mlp(widths):
        layers = []
        for i in range(len(widths) - 1):
            layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers)

    def _fit(self, X, labels):
        d = X.shape[1]
        self.scaler_ = _Standardizer.fit(X)
        enc_w = (d, *self.hidden, self.n_bits)
        self.encoder_, self.decoder_ = _seeded(
            self.seed, lambda: (self._mlp(enc_w).to(self.device), self._mlp(enc_w[::-1]).to(self.device))
        )
        Xs = self._inputs(X)
        n = Xs.shape[0]
        gen = torch.Generator().manual_seed(self.seed)
        params = list(self.encoder_.parameters()) + list(self.decoder_.parameters())
        opt = torch.optim.Adam(params, lr=self.lr)
        history = {"reconstruction": []}
        epoch_iter = range(self.epochs)
        if self.progress:
            from tqdm.auto import tqdm

            epoch_iter = tqdm(epoch_iter, desc="binary autoencoder", unit="epoch")
        with _torch_threads(self.n_threads):
            self.encoder_.train()
            self.decoder_.train()
            for _ in epoch_iter:
                perm = torch.randperm(n, generator=gen).to(self.device)
                total, count = 0.0, 0
                for start in range(0, n, self.batch_size):
                    xb = Xs[perm[start : start + self.batch_size]]
                    u = torch.tanh(self.encoder_(xb))
                    b = u + (torch.where(u >= 0, 1.0, -1.0) - u).detach()
                    loss = torch.mean((self.decoder_(b) - xb) ** 2)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * xb.shape[0]
                    count += xb.shape[0]
                history["reconstruction"].append(total / max(count, 1))
                if self.progress:
                    epoch_iter.set_postfix(loss=f"{history['reconstruction'][-1]:.4f}")
        self.encoder_.eval()
        self.decoder_.eval()
        self.history_ = history

    def _project(self, X):
        return self._batched(X, self.encoder_)

