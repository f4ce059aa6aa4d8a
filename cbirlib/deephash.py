"""Deep hashing methods of the survey (paper 004) as hash heads on frozen features.

Used by notebook 07 (survey replication: Tables II, III and IV of Dubey, "A
decade survey of content based image retrieval using deep learning", TCSVT
2022). Every method here is a *hash head* (one linear layer ``z = W f + b``, or
an MLP with ``hidden`` widths) trained on fixed, pretrained backbone features
``f`` with **its own paper's loss**; the codes are always ``sign(z)`` (``sign(0)
= +1``, :func:`cbirlib.hashing.binarize`). They share the fitted-model
interface of :mod:`cbirlib.hashing` (``fit(X, labels)``, ``project``,
``encode`` -> int8 ``{-1, +1}``, ``encode_packed`` -> packed ``uint8``), so
notebook 07 runs them beside :class:`~cbirlib.hashing.LSH` and
:class:`~cbirlib.hashing.ITQ` of notebook 03.

Simplifications common to every method (the survey's numbers come from
networks trained end to end, AlexNet / VGG at 224 px):

* the backbone is **frozen**; only the hash head (and a method's own extra
  parameters: classifier, database codes) is trained. The features are
  standardised (centred, one global scale) before the head. End-to-end
  training, as the survey's sources did, is the ``trunk`` option of every
  head (``trunk=image_trunk(backbone)``, ``fit(images, labels)`` on uint8
  images; the trunk learns at ``trunk_lr``, default ``lr / 10``, its
  BatchNorm statistics frozen): notebook 07's ``end_to_end`` parameter, for
  the ``full`` profile on a GPU;
* mini-batch Adam (``lr``, ``weight_decay``) for every method, where the papers
  used SGD / RMSProp with their own schedules;
* losses are **means** over pairs / items / bits where the papers write sums,
  so that one learning rate suits every code length; the weights below are
  stated for the means (they follow DeepHash-pytorch's re-implementations where
  a paper's weight refers to a sum).

The methods
-----------
:class:`DSH` (Liu et al., CVPR 2016)
    Real-valued outputs ``b = z``; contrastive loss on squared Euclidean
    distances of the pairs of a mini-batch, ``1/2 S D + 1/2 (1 - S) max(m - D,
    0)`` with ``m = 2k``, plus ``alpha || |b| - 1 ||_1`` (``alpha = 0.01``).
:class:`DPSH` (Li, Wang, Kang, IJCAI 2016)
    ``u = z``; pairwise negative log-likelihood with ``theta_ij = u_i . u_j /
    2`` between the batch and a **memory bank** ``U`` of the latest outputs of
    every training image (the authors' code does the same), plus ``eta ||u -
    sign(u)||^2`` (``eta = 0.1`` on the mean).
:class:`DHN` (Zhu et al., AAAI 2016)
    ``z`` unbounded; pairwise cross-entropy ``log(1 + exp(<z_i, z_j>)) - S_ij
    <z_i, z_j>`` over the pairs of a batch, plus the pseudo-quantisation loss
    ``lambda sum log cosh(|z| - 1)`` (``lambda = 0.1`` on the mean).
:class:`HashNet` (Cao et al., ICCV 2017)
    ``h = tanh(beta z)`` with the continuation ``beta_t = sqrt(1 + gamma t)``
    (``t`` the iteration; ``gamma`` chosen so that ``beta`` reaches
    ``beta_max`` at the last iteration, where HashNet steps ``gamma = 0.005``
    for 10,000 iterations); weighted pairwise cross-entropy with ``alpha =
    10 / k`` in the sigmoid and weights ``|S| / |S_1|`` for similar, ``|S| /
    |S_0|`` for dissimilar pairs of the batch. No quantisation term.
:class:`DSDH` (Li et al., NIPS 2017)
    DPSH's likelihood (memory bank) plus a linear classifier on the *discrete*
    codes: the network step pulls ``u`` towards the codes ``B``, then once per
    epoch ``W`` is the ridge solution of ``min mu ||Y - B W||^2 + nu ||W||^2``
    and ``B`` is updated bit by bit by discrete cyclic coordinate descent
    (DCC) on ``mu ||Y - B W||^2 + eta ||B - U||^2``. The authors alternate per
    mini-batch for ``U`` and per epoch for ``B`` and ``W`` too.
:class:`GreedyHash` (Su et al., NeurIPS 2018)
    ``h = sign(z)`` in the forward pass, the gradient passed straight through
    (``dL/dz = dL/dh``), plus ``alpha || |z| - 1 ||_3^3`` (``alpha = 0.1``).
    ``supervised=True``: cross-entropy of a linear classifier on ``h``;
    ``supervised=False``: the unsupervised loss of the paper, the squared
    difference between the cosine similarities of codes and of features over
    pairs (first half of a batch against the second half). GreedyHash's
    unsupervised setting already trains on frozen VGG-16 fc7 features; our
    cosines are taken on the *centred* features (MobileNetV2's pooled features
    are non-negative, which would put every feature cosine in [0, 1]).
:class:`ADSH` (Jiang & Li, AAAI 2018)
    Asymmetric: the codes ``V`` of the training (database) images are learned
    directly, a query network ``u = tanh(z)`` is trained on ``m`` images
    sampled from them per outer iteration, loss ``sum (u_i . v_j - k S_ij)^2 +
    gamma sum (v_i - u_i)^2`` with ``S`` in ``{-1, +1}`` and ``gamma = 200``
    (sums over the ``m x n`` block, divided by ``m n`` as in DeepHash-pytorch);
    ``V`` is updated by DCC after each outer iteration. :meth:`ADSH.database_codes`
    returns ``V`` for the images ADSH trained on and the network's codes for
    the others.

References
----------
.. [1] H. Liu, R. Wang, S. Shan, X. Chen, "Deep supervised hashing for fast
   image retrieval", CVPR 2016.
.. [2] W.-J. Li, S. Wang, W.-C. Kang, "Feature learning based deep supervised
   hashing with pairwise labels", IJCAI 2016.
.. [3] H. Zhu, M. Long, J. Wang, Y. Cao, "Deep hashing network for efficient
   similarity retrieval", AAAI 2016.
.. [4] Z. Cao, M. Long, J. Wang, P. S. Yu, "HashNet: deep learning to hash by
   continuation", ICCV 2017.
.. [5] Q. Li, Z. Sun, R. He, T. Tan, "Deep supervised discrete hashing", NIPS
   2017.
.. [6] S. Su, C. Zhang, K. Han, Y. Tian, "Greedy hash: towards fast
   optimization for accurate hash coding in CNN", NeurIPS 2018.
.. [7] Q.-Y. Jiang, W.-J. Li, "Asymmetric deep supervised hashing", AAAI 2018.
"""

from __future__ import annotations

import functools
import math
import re
import time

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as Fn

from . import hashing, metrics, retrieval
from ._checks import check_int as _check_int
from .hashing import _check_labels_for, _check_weight, _seeded, _Standardizer, _torch_threads, _TorchHasher

__all__ = [
    "image_trunk",
    "trunk_factory",
    "DSH",
    "DPSH",
    "DHN",
    "HashNet",
    "DSDH",
    "GreedyHash",
    "ADSH",
    "METHODS",
    "make_method",
    "SURVEY_ROWS",
    "SURVEY_PROTOCOLS",
    "parse_survey_column",
    "scaled_k",
    "map_conventions",
    "convention_table",
    "evaluate_survey_codes",
    "run_survey_methods",
    "protocol_data",
    "survey_comparison",
]


# --------------------------------------------------------------------------
# private helpers
# --------------------------------------------------------------------------


def _label_matrix(labels, n):
    """(n, c) float32 0/1 matrix of single-label (one-hot) or multi-label labels."""
    y = _check_labels_for(labels, n)
    if y.ndim == 2:
        return np.asarray(y, dtype=np.float32), True
    codes = np.unique(y, return_inverse=True)[1].reshape(-1)
    Y = np.zeros((n, int(codes.max()) + 1), dtype=np.float32)
    Y[np.arange(n), codes] = 1.0
    return Y, False


def _sign(t):
    return torch.where(t >= 0, 1.0, -1.0).to(t.dtype)


def _upper_pairs(n, device):
    return torch.triu(torch.ones(n, n, dtype=torch.bool, device=device), diagonal=1)


def _mlp(d_in, hidden, d_out):
    widths = (d_in, *hidden, d_out)
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _pair_likelihood(theta, S, reduction="none"):
    """Negative log-likelihood of pairwise labels: ``log(1 + e^theta) - S theta`` (stable).

    Exactly binary cross-entropy with logits ``theta`` and targets ``S`` (one
    fused kernel).
    """
    return Fn.binary_cross_entropy_with_logits(theta, S, reduction=reduction)


# --------------------------------------------------------------------------
# the shared training engine
# --------------------------------------------------------------------------


def _check_raw(X, *, shape=None):
    """Raw trunk inputs: a non-empty numeric array ``(n, ...)`` (with ``shape`` per item if given)."""
    arr = np.asarray(X)
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise ValueError(f"trunk inputs must be a non-empty (n, ...) array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"trunk inputs must be numeric, got dtype {arr.dtype}")
    if shape is not None and arr.shape[1:] != tuple(shape):
        raise ValueError(f"trunk inputs of shape {arr.shape[1:]} per item, the model was fitted on {tuple(shape)}")
    return arr


class _ImageInput(nn.Module):
    """uint8 ``(n, h, w, 3)`` images -> the backbone's normalised ``(n, 3, s, s)`` input."""

    def __init__(self, backbone):
        super().__init__()
        self.size = int(backbone.input_size)
        self.register_buffer("mean", torch.tensor(backbone.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(backbone.std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x):
        x = x.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-2:] != (self.size, self.size):  # squash, as notebook 07's cached features
            x = Fn.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                          align_corners=False, antialias=True)
        return (x - self.mean) / self.std


def image_trunk(backbone):
    """A trainable module from uint8 images to the backbone's pooled features (notebook 07).

    ``nn.Sequential(image input, cbirlib.backbones.truncate(backbone, "penultimate"))``:
    the images ``(n, h, w, 3)`` are scaled to 0..1, squashed to the backbone's
    input size (bilinear, antialiased) and normalised as its weights expect.
    The module *shares* the backbone's parameters. Pass it as ``trunk=`` to any
    head of this module to train end to end.
    """
    from .backbones import truncate

    return nn.Sequential(_ImageInput(backbone), truncate(backbone, "penultimate"))


class _SurveyHead(_TorchHasher):
    """Hash head ``z = head(f)`` on standardised features, trained by mini-batch Adam.

    Subclasses define ``_loss(idx, z, y)`` returning a dict of terms with
    ``"total"``, and may define ``_setup``, ``_after_step``, ``_end_epoch``.

    ``trunk`` (an ``nn.Module`` from raw inputs to ``(n, d)`` features, e.g.
    :func:`image_trunk`) makes the model end to end: ``fit`` / ``encode`` take
    the trunk's raw inputs, the trunk is trained with the head at ``trunk_lr``
    (default ``lr / 10``) with its BatchNorm layers in inference mode, and
    forward passes over many inputs run in chunks of ``chunk`` (default 64;
    4096 without a trunk).
    """

    supervised = True
    _terms: tuple = ("total",)

    def __init__(self, *, n_bits, seed=0, epochs=20, batch_size=128, lr=1e-3, weight_decay=1e-5, hidden=(),
                 progress=False, device="cpu", n_threads=1, trunk=None, trunk_lr=None, chunk=None):
        super().__init__(n_bits=n_bits, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr, progress=progress,
                         device=device, n_threads=n_threads)
        self.weight_decay = _check_weight("weight_decay", weight_decay)
        self.hidden = tuple(_check_int("hidden width", h) for h in hidden)
        if trunk is not None and not isinstance(trunk, nn.Module):
            raise TypeError("trunk must be a torch.nn.Module mapping raw inputs to (n, d) features")
        self.trunk = trunk
        self.trunk_lr = self.lr / 10 if trunk_lr is None else _check_weight("trunk_lr", trunk_lr)
        self.chunk = _check_int("chunk", chunk or (4096 if trunk is None else 64), minimum=1)

    def __repr__(self):
        return f"{type(self).__name__}(n_bits={self.n_bits}, seed={self.seed}, epochs={self.epochs})"

    # raw inputs of an end-to-end trunk -----------------------------------
    def fit(self, X, labels=None):
        """Fit on features ``(n, d)``, or on the trunk's raw inputs (e.g. uint8 images) with a trunk."""
        if self.trunk is None:
            return super().fit(X, labels)
        X = _check_raw(X)
        self._fit(X, labels)
        self.input_shape_ = X.shape[1:]
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        return self

    def project(self, X):
        """Real-valued outputs ``(n, n_bits)`` whose signs are the codes."""
        if self.trunk is None:
            return super().project(X)
        self._require_fitted()
        return self._project(_check_raw(X, shape=self.input_shape_))

    # hooks ---------------------------------------------------------------
    def _extra_modules(self, n_classes):
        return {}

    def _setup(self, Xs, Y):
        pass

    def _after_step(self, idx, z):
        pass

    def _end_epoch(self, Xs, Y):
        pass

    def _loss(self, idx, z, y):  # pragma: no cover - abstract
        raise NotImplementedError

    # engine ----------------------------------------------------------------
    def _fit(self, X, labels):
        n = X.shape[0]
        if n < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 training samples")
        if self.supervised:
            if labels is None:
                raise ValueError(f"{type(self).__name__} is supervised: call fit(X, labels)")
            Y, self.multi_label_ = _label_matrix(labels, n)
        else:
            Y, self.multi_label_ = None, False
        if self.trunk is None:
            self.scaler_ = _Standardizer.fit(X)
            Xs = self._inputs(X)
            d = X.shape[1]
        else:  # end to end: raw inputs, the trunk's output feeds the head
            self.scaler_ = None
            Xs = self._inputs(X)
            self.trunk.to(self.device).eval()
            with torch.no_grad(), _torch_threads(self.n_threads):
                d = int(self.trunk(Xs[:2]).shape[1])
        n_classes = 0 if Y is None else Y.shape[1]
        mods = _seeded(self.seed, lambda: {"head": _mlp(d, self.hidden, self.n_bits),
                                           **self._extra_modules(n_classes)})
        head = mods.pop("head")
        self.head_ = (head if self.trunk is None else nn.Sequential(self.trunk, head)).to(self.device)
        self.extra_ = nn.ModuleDict(mods).to(self.device)
        self.Y_ = None if Y is None else torch.as_tensor(Y, device=self.device)
        self.n_train_ = n
        gen = torch.Generator().manual_seed(self.seed)
        params = list(head.parameters()) + list(self.extra_.parameters())
        groups = [{"params": params}]
        if self.trunk is not None:
            groups.append({"params": [p for p in self.trunk.parameters() if p.requires_grad],
                           "lr": self.trunk_lr})
        self.opt_ = torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)
        self.history_ = {t: [] for t in self._terms}
        self.step_ = 0
        self.total_steps_ = self.epochs * max(1, -(-n // self.batch_size))
        epoch_iter = range(self.epochs)
        if self.progress:
            from tqdm.auto import tqdm

            epoch_iter = tqdm(epoch_iter, desc=type(self).__name__, unit="epoch")
        with _torch_threads(self.n_threads):
            self._setup(Xs, self.Y_)
            self._train(Xs, gen, epoch_iter)
        self.head_.eval()

    def _train(self, Xs, gen, epoch_iter):
        n = Xs.shape[0]
        for _ in epoch_iter:
            self._train_mode()
            perm = torch.randperm(n, generator=gen).to(self.device)
            sums = dict.fromkeys(self._terms, 0.0)
            n_batches = 0
            for start in range(0, n, self.batch_size):
                idx = perm[start: start + self.batch_size]
                if idx.numel() < 2:
                    continue
                z = self.head_(Xs[idx])
                terms = self._loss(idx, z, None if self.Y_ is None else self.Y_[idx])
                self.opt_.zero_grad(set_to_none=True)
                terms["total"].backward()
                self.opt_.step()
                self._after_step(idx, z.detach())
                self.step_ += 1
                for t in self._terms:
                    sums[t] += float(terms[t].detach())
                n_batches += 1
            for t in self._terms:
                self.history_[t].append(sums[t] / max(n_batches, 1))
            self.head_.eval()
            self._end_epoch(Xs, self.Y_)

    def _train_mode(self):
        """Head in training mode; a trunk's BatchNorm layers keep their ImageNet statistics."""
        self.head_.train()
        if self.trunk is not None:
            for m in self.trunk.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def _inputs(self, X):
        if self.trunk is None:
            return super()._inputs(X)
        return torch.as_tensor(np.ascontiguousarray(X), device=self.device)

    def _all_outputs(self, Xs):
        with torch.no_grad():
            c = self.chunk
            return torch.cat([self.head_(Xs[s: s + c]) for s in range(0, Xs.shape[0], c)])

    def _batch_similarity(self, y):
        return (y @ y.T > 0).to(y.dtype)

    def _project(self, X):
        if self.trunk is None:
            return self._batched(X, self.head_)
        c = self.chunk
        return np.concatenate([self._batched(X[s: s + c], self.head_) for s in range(0, len(X), c)])


class _BankMixin:
    """Memory bank of the latest outputs ``U`` of every training image (DPSH, DSDH)."""

    def _setup_bank(self, Xs):
        self.U_ = self._all_outputs(Xs).clone()

    def _after_step(self, idx, z):
        self.U_[idx] = z

    def _bank_likelihood(self, idx, z, y):
        theta = 0.5 * z @ self.U_.T
        S = (y @ self.Y_.T > 0).to(z.dtype)
        return _pair_likelihood(theta, S, reduction="mean")


# --------------------------------------------------------------------------
# the methods
# --------------------------------------------------------------------------


class DSH(_SurveyHead):
    """Deep Supervised Hashing (Liu et al., CVPR 2016) as a head on fixed features.

    Used by notebook 07 (survey Table II, ``DSH’16``).

    Loss over the pairs ``i < j`` of a mini-batch (mean) with ``D_ij = ||b_i -
    b_j||^2`` of the real-valued outputs ``b = z``::

        1/2 S_ij D_ij + 1/2 (1 - S_ij) max(m - D_ij, 0) + alpha (|| |b_i| - 1 ||_1 + || |b_j| - 1 ||_1)

    with ``m = margin_factor * k`` (DSH: ``m = 2k``) and ``alpha = 0.01``
    (DSH's value). The regulariser is computed per item (mean over the batch,
    times 2, the pair's two items). Codes ``sign(b)``.

    Parameters
    ----------
    n_bits, seed, epochs, batch_size, lr, weight_decay, hidden, progress, device, n_threads : keyword-only
        See :class:`ADSH` (shared by every head).
    alpha : float, keyword-only
    margin_factor : float, keyword-only
    """

    _terms = ("pair", "regulariser", "total")

    def __init__(self, *, n_bits, alpha=0.01, margin_factor=2.0, **kwargs):
        super().__init__(n_bits=n_bits, **kwargs)
        self.alpha = _check_weight("alpha", alpha)
        self.margin_factor = _check_weight("margin_factor", margin_factor)

    def _loss(self, idx, z, y):
        S = self._batch_similarity(y)
        D = torch.cdist(z, z).pow(2)
        m = self.margin_factor * self.n_bits
        mask = _upper_pairs(z.shape[0], z.device)
        pair = (0.5 * S * D + 0.5 * (1 - S) * torch.clamp(m - D, min=0))[mask].mean()
        reg = 2 * self.alpha * (z.abs() - 1).abs().sum(dim=1).mean()
        return {"pair": pair, "regulariser": reg, "total": pair + reg}


class DPSH(_BankMixin, _SurveyHead):
    """Deep Pairwise-Supervised Hashing (Li, Wang, Kang, IJCAI 2016) on fixed features.

    Used by notebook 07 (survey Tables II and IV, ``DPSH’16``).

    ``u = z``; loss for a batch ``B`` against the memory bank ``U`` (latest
    outputs of all ``n`` training images, refreshed after each step)::

        mean_{i in B, j} [log(1 + e^theta_ij) - S_ij theta_ij] + eta mean_i ||u_i - sign(u_i)||^2 / k,
        theta_ij = u_i . U_j / 2

    ``eta = 0.1`` (DeepHash-pytorch's weight for these means; the paper's
    ``eta`` multiplies sums). Codes ``sign(u)``.
    """

    _terms = ("likelihood", "quantization", "total")

    def __init__(self, *, n_bits, eta=0.1, **kwargs):
        super().__init__(n_bits=n_bits, **kwargs)
        self.eta = _check_weight("eta", eta)

    def _setup(self, Xs, Y):
        self._setup_bank(Xs)

    def _loss(self, idx, z, y):
        lik = self._bank_likelihood(idx, z, y)
        quant = self.eta * (z - _sign(z.detach())).pow(2).mean()
        return {"likelihood": lik, "quantization": quant, "total": lik + quant}


class DHN(_SurveyHead):
    """Deep Hashing Network (Zhu et al., AAAI 2016) as a head on fixed features.

    Used by notebook 07 (survey Tables II and IV, ``DHN’16``).

    Pairwise cross-entropy over the pairs ``i < j`` of a batch (mean) plus the
    pseudo-quantisation loss of DHN (a smooth L1 of ``|z| - 1``)::

        log(1 + exp(<z_i, z_j>)) - S_ij <z_i, z_j>  +  lam mean log cosh(|z| - 1)

    ``lam = 0.1`` on the mean. Codes ``sign(z)``.
    """

    _terms = ("cross-entropy", "quantization", "total")

    def __init__(self, *, n_bits, lam=0.1, **kwargs):
        super().__init__(n_bits=n_bits, **kwargs)
        self.lam = _check_weight("lam", lam)

    def _loss(self, idx, z, y):
        S = self._batch_similarity(y)
        mask = _upper_pairs(z.shape[0], z.device)
        ce = _pair_likelihood(z @ z.T, S)[mask].mean()
        a = z.abs() - 1
        quant = self.lam * (a + Fn.softplus(-2 * a) - math.log(2.0)).mean()  # log cosh, stable
        return {"cross-entropy": ce, "quantization": quant, "total": ce + quant}


class HashNet(_SurveyHead):
    """HashNet (Cao et al., ICCV 2017): weighted pairwise loss with tanh continuation.

    Used by notebook 07 (survey Table IV, ``HashNet’17``).

    ``h = tanh(beta_t z)``, ``beta_t = sqrt(1 + gamma t)`` at iteration ``t``,
    with ``gamma = (beta_max^2 - 1) / T`` so that ``beta`` reaches
    ``beta_max`` at the last of the ``T`` iterations (HashNet: ``gamma =
    0.005`` over 10,000 iterations, ``beta`` about 7.1, the default). Loss over
    the pairs ``i < j`` of a batch, weighted against the imbalance of similar
    and dissimilar pairs::

        sum_ij w_ij [log(1 + exp(alpha <h_i, h_j>)) - alpha S_ij <h_i, h_j>] / |S|,
        w_ij = |S| / |S_1| (similar) or |S| / |S_0| (dissimilar), alpha = 10 / k
    """

    _terms = ("weighted cross-entropy", "total")

    def __init__(self, *, n_bits, beta_max=math.sqrt(51.0), alpha=None, **kwargs):
        super().__init__(n_bits=n_bits, **kwargs)
        self.beta_max = _check_weight("beta_max", beta_max)
        if self.beta_max < 1:
            raise ValueError(f"beta_max must be >= 1, got {beta_max}")
        self.alpha = 10.0 / n_bits if alpha is None else _check_weight("alpha", alpha)

    @property
    def beta_(self):
        """Continuation ``beta`` at the current iteration."""
        gamma = (self.beta_max ** 2 - 1) / max(self.total_steps_, 1)
        return math.sqrt(1 + gamma * self.step_)

    def _loss(self, idx, z, y):
        S = self._batch_similarity(y)
        h = torch.tanh(self.beta_ * z)
        mask = _upper_pairs(z.shape[0], z.device)
        s = S[mask]
        loss = _pair_likelihood(self.alpha * (h @ h.T)[mask], s)
        n_all, n_pos = s.numel(), float(s.sum())
        n_neg = n_all - n_pos
        w = torch.where(s > 0, n_all / max(n_pos, 1.0), n_all / max(n_neg, 1.0))
        total = (w * loss).sum() / n_all
        return {"weighted cross-entropy": total, "total": total}


class DSDH(_BankMixin, _SurveyHead):
    """Deep Supervised Discrete Hashing (Li et al., NIPS 2017) on fixed features.

    Used by notebook 07 (survey Tables II and IV, ``DSDH’17``).

    Network step (per batch, bank as :class:`DPSH`)::

        mean likelihood(theta = u_i . U_j / 2, S_ij) + eta mean ||u_i - b_i||^2 / k

    with ``b_i`` the current discrete code of image ``i``; once per epoch
    (and before the first) the classifier ``W`` (``k x c``) and the codes ``B``
    are updated on the whole training set: ``W = (B^T B + nu/mu I)^-1 B^T Y``,
    then ``dcc_iter`` sweeps of discrete cyclic coordinate descent on ``mu
    ||Y - B W||^2 + eta_b ||B - U||^2`` (bit ``r``: ``b_r = sign(q_r - mu B'
    W' w_r)`` with ``Q = mu Y W^T + eta_b U``). Defaults ``mu = 1``, ``nu =
    1``, ``eta = 0.1``, ``eta_b = 1``, ``dcc_iter = 3``.
    """

    _terms = ("likelihood", "quantization", "total")

    def __init__(self, *, n_bits, mu=1.0, nu=1.0, eta=0.1, eta_b=1.0, dcc_iter=3, **kwargs):
        super().__init__(n_bits=n_bits, **kwargs)
        self.mu = _check_weight("mu", mu)
        self.nu = _check_weight("nu", nu)
        self.eta = _check_weight("eta", eta)
        self.eta_b = _check_weight("eta_b", eta_b)
        self.dcc_iter = _check_int("dcc_iter", dcc_iter, minimum=0)

    def _setup(self, Xs, Y):
        self._setup_bank(Xs)
        self.B_ = _sign(self.U_.clone())
        self._update_codes(Y)

    def _update_codes(self, Y):
        B, U = self.B_, self.U_
        k = self.n_bits
        eye = torch.eye(k, dtype=B.dtype, device=B.device)
        for _ in range(max(self.dcc_iter, 1)):
            W = torch.linalg.solve(B.T @ B + (self.nu / max(self.mu, 1e-12)) * eye, B.T @ Y)  # (k, c)
            if self.dcc_iter == 0:
                break
            Q = self.mu * Y @ W.T + self.eta_b * U  # (n, k)
            for r in range(k):
                keep = torch.arange(k, device=B.device) != r
                rest = B[:, keep] @ (W[keep] @ W[r])  # (n,)
                B[:, r] = _sign(Q[:, r] - self.mu * rest)
        self.W_ = W
        self.B_ = B

    def _end_epoch(self, Xs, Y):
        self._update_codes(Y)

    def _loss(self, idx, z, y):
        lik = self._bank_likelihood(idx, z, y)
        quant = self.eta * (z - self.B_[idx]).pow(2).mean()
        return {"likelihood": lik, "quantization": quant, "total": lik + quant}


class _StraightThroughSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        return torch.where(z >= 0, 1.0, -1.0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class GreedyHash(_SurveyHead):
    """GreedyHash (Su et al., NeurIPS 2018): sign forward, straight-through backward.

    Used by notebook 07 (survey Table III, ``GreedyHash’18``, an unsupervised
    row; the supervised variant is reported beside it).

    ``h = sign(z)`` in the forward pass, ``dL/dz = dL/dh`` in the backward
    pass, and the penalty ``alpha mean | |z| - 1 |^3`` (``alpha = 0.1``).

    ``supervised=True``: cross-entropy of a linear classifier ``k -> c`` on
    ``h`` (binary cross-entropy for multi-label data). ``supervised=False``:
    ``mean_i (cos(h_i, h_i') - cos(f_i, f_i'))^2`` over the pairs formed by the
    first and the second half of each batch, ``f`` the centred features.
    """

    _terms = ("main", "penalty", "total")

    def __init__(self, *, n_bits, supervised=True, alpha=0.1, **kwargs):
        super().__init__(n_bits=n_bits, **kwargs)
        self.supervised = bool(supervised)
        self.alpha = _check_weight("alpha", alpha)

    def __repr__(self):
        return f"GreedyHash(n_bits={self.n_bits}, supervised={self.supervised}, seed={self.seed})"

    def _extra_modules(self, n_classes):
        return {"classifier": nn.Linear(self.n_bits, n_classes)} if self.supervised else {}

    def _setup(self, Xs, Y):
        self.X_ = Xs

    def _loss(self, idx, z, y):
        h = _StraightThroughSign.apply(z)
        if self.supervised:
            logits = self.extra_["classifier"](h)
            if self.multi_label_:
                main = Fn.binary_cross_entropy_with_logits(logits, y)
            else:
                main = Fn.cross_entropy(logits, y.argmax(dim=1))
        else:
            half = z.shape[0] // 2
            f = self.X_[idx]
            cf = Fn.cosine_similarity(f[:half], f[half: 2 * half], dim=1)
            ch = Fn.cosine_similarity(h[:half], h[half: 2 * half], dim=1)
            main = Fn.mse_loss(ch, cf)
        pen = self.alpha * (z.abs() - 1).pow(3).abs().mean()
        return {"main": main, "penalty": pen, "total": main + pen}


class ADSH(_SurveyHead):
    """Asymmetric Deep Supervised Hashing (Jiang & Li, AAAI 2018) on fixed features.

    Used by notebook 07 (survey Table II, ``ADSH’18``).

    The ``n`` training images play ADSH's *database* role: their codes ``V``
    (``n x k``, ``{-1, +1}``) are learned directly. Each outer iteration
    (``epochs`` of them) samples ``m = n_sampled`` of them as queries, trains
    the query network ``u = tanh(z)`` for ``inner_epochs`` epochs on them with
    ``V`` fixed::

        [sum_{i in batch, j} (u_i . v_j - k S_ij)^2 + gamma sum_i ||v_i - u_i||^2] / (n |batch|)

    (``S`` in ``{-1, +1}``; ``gamma = 200``, the paper's), then updates ``V``
    by one sweep of DCC: ``Q = -2k S^T U - 2 gamma U_bar``, ``V_r = -sign(2
    V' U'^T u_r + Q_r)`` bit by bit (``U_bar`` holds ``U`` on the sampled rows,
    0 elsewhere). ``V`` starts at 0, as in the authors' code (the first
    network phase then only sees the quantisation term, and the first DCC
    sweep gives class-dependent codes; a random ``{-1, +1}`` start made every
    database code identical at 16 bits on CIFAR-10 features). Codes of new
    images: ``sign(z)``.

    Parameters
    ----------
    n_bits : int, keyword-only
    seed : int, keyword-only
        Seeds the weights, the samples and the batch order.
    epochs : int, keyword-only
        Outer iterations (the paper: 50).
    inner_epochs : int, keyword-only
        Network epochs per outer iteration (the paper: 3).
    n_sampled : int, keyword-only
        ``m`` (the paper: 2,000), clipped to ``n``.
    gamma : float, keyword-only
    train_on : {"train", "database"}, keyword-only
        Read by :func:`run_survey_methods`: fit on the protocol's training
        images (``"train"``, default; only database images that are training
        images get learned codes) or on the labelled database itself
        (``"database"``, ADSH's own setting: every database image gets its
        learned code ``V``).
    batch_size, lr, weight_decay, hidden, progress, device, n_threads : keyword-only
        Mini-batch Adam on the head (Linear, or an MLP with ``hidden`` widths),
        progress bar, torch device, torch threads during fit/encode.

    Attributes
    ----------
    codes_ : ndarray of int8, (n, k)
        The learned codes ``V`` of the training images.
    """

    _terms = ("square", "quantization", "total")

    def __init__(self, *, n_bits, gamma=200.0, n_sampled=2000, inner_epochs=3, train_on="train", **kwargs):
        super().__init__(n_bits=n_bits, **kwargs)
        if train_on not in ("train", "database"):
            raise ValueError(f"train_on must be 'train' or 'database', got {train_on!r}")
        self.train_on = train_on
        self.gamma = _check_weight("gamma", gamma)
        self.n_sampled = _check_int("n_sampled", n_sampled, minimum=2)
        self.inner_epochs = _check_int("inner_epochs", inner_epochs)

    def _S(self, rows, cols_Y):
        return 2 * (self.Y_[rows] @ cols_Y.T > 0).to(self.Y_.dtype) - 1

    def _train(self, Xs, gen, epoch_iter):
        n, k = Xs.shape[0], self.n_bits
        m = min(self.n_sampled, n)
        V = torch.zeros(n, k, device=self.device)  # as the authors' code: the first DCC sweep sets every bit
        self.total_steps_ = self.epochs * self.inner_epochs * max(1, -(-m // self.batch_size))
        for _ in epoch_iter:
            omega = torch.randperm(n, generator=gen)[:m].to(self.device)
            sums = dict.fromkeys(self._terms, 0.0)
            n_batches = 0
            self._train_mode()
            for _inner in range(self.inner_epochs):
                perm = omega[torch.randperm(m, generator=gen).to(self.device)]
                for start in range(0, m, self.batch_size):
                    idx = perm[start: start + self.batch_size]
                    if idx.numel() < 2:
                        continue
                    u = torch.tanh(self.head_(Xs[idx]))
                    S = self._S(idx, self.Y_)
                    square = (u @ V.T - k * S).pow(2).sum() / (n * idx.numel())
                    quant = self.gamma * (V[idx] - u).pow(2).sum() / (n * idx.numel())
                    loss = square + quant
                    self.opt_.zero_grad(set_to_none=True)
                    loss.backward()
                    self.opt_.step()
                    self.step_ += 1
                    sums["square"] += float(square.detach())
                    sums["quantization"] += float(quant.detach())
                    sums["total"] += float(loss.detach())
                    n_batches += 1
            for t in self._terms:
                self.history_[t].append(sums[t] / max(n_batches, 1))
            self.head_.eval()
            with torch.no_grad():
                U = torch.tanh(self._all_outputs(Xs[omega]))  # (m, k)
                Ubar = torch.zeros(n, k, device=self.device)
                Ubar[omega] = U
                # S^T U in blocks of database rows: (n, m) @ (m, k)
                StU = torch.cat([self._S(omega, self.Y_[s: s + 8192]).T @ U for s in range(0, n, 8192)])
                Q = -2 * k * StU - 2 * self.gamma * Ubar
                for r in range(k):
                    keep = torch.arange(k, device=self.device) != r
                    V[:, r] = -_sign(2 * V[:, keep] @ (U[:, keep].T @ U[:, r]) + Q[:, r])
        self.codes_ = V.cpu().numpy().astype(np.int8)

    def database_codes(self, X, *, trained_rows=None):
        """Codes for a database: ``V`` where the image was a training image, else ``sign(z)``.

        Parameters
        ----------
        X : (n_db, d) array
            Database features.
        trained_rows : (n_db,) array of int, optional, keyword-only
            For each database image, its row in the training set, or -1 if it
            was not a training image (default: all -1, symmetric codes).

        Returns
        -------
        ndarray of int8, (n_db, k), in ``{-1, +1}``
        """
        codes = self.encode(X)
        if trained_rows is not None:
            rows = np.asarray(trained_rows)
            if rows.shape != (codes.shape[0],):
                raise ValueError(f"trained_rows must have one entry per database image ({codes.shape[0]}), "
                                 f"got shape {rows.shape}")
            hit = rows >= 0
            codes[hit] = self.codes_[rows[hit]]
        return codes


# --------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------

#: Notebook 07's methods: name -> (factory(n_bits, seed, epochs, **kw), supervised, family).
METHODS: dict[str, tuple] = {
    "LSH": (lambda n, seed, epochs, **kw: hashing.LSH(n_bits=n, seed=seed), False, "shallow, data-independent"),
    "ITQ": (lambda n, seed, epochs, **kw: hashing.ITQ(n_bits=n, seed=seed), False, "shallow, unsupervised"),
    "DSH": (lambda n, seed, epochs, **kw: DSH(n_bits=n, seed=seed, epochs=epochs, **kw), True, "pairwise"),
    "DPSH": (lambda n, seed, epochs, **kw: DPSH(n_bits=n, seed=seed, epochs=epochs, **kw), True, "pairwise"),
    "DHN": (lambda n, seed, epochs, **kw: DHN(n_bits=n, seed=seed, epochs=epochs, **kw), True, "pairwise"),
    "HashNet": (lambda n, seed, epochs, **kw: HashNet(n_bits=n, seed=seed, epochs=epochs, **kw), True, "pairwise"),
    "DSDH": (lambda n, seed, epochs, **kw: DSDH(n_bits=n, seed=seed, epochs=epochs, **kw), True,
             "pairwise + classification"),
    "GreedyHash (supervised)": (
        lambda n, seed, epochs, **kw: GreedyHash(n_bits=n, seed=seed, epochs=epochs, supervised=True, **kw), True,
        "greedy sign"),
    "GreedyHash (unsupervised)": (
        lambda n, seed, epochs, **kw: GreedyHash(n_bits=n, seed=seed, epochs=epochs, supervised=False, **kw), False,
        "greedy sign, unsupervised"),
    "ADSH": (lambda n, seed, epochs, **kw: ADSH(n_bits=n, seed=seed, epochs=epochs, **kw), True, "asymmetric"),
    "ADSH (database as training set)": (
        lambda n, seed, epochs, **kw: ADSH(n_bits=n, seed=seed, epochs=epochs, train_on="database", **kw), True,
        "asymmetric, trained on the labelled database"),
}


def make_method(name, *, n_bits, seed, epochs, **kwargs):
    """Build one of :data:`METHODS` (notebook 07); ``kwargs`` go to deep heads only."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    factory = METHODS[name][0]
    return factory(n_bits, seed, epochs, **({} if name in ("LSH", "ITQ") else kwargs))


#: Survey row label (verbatim, typographic apostrophe) -> our method.
SURVEY_ROWS: dict[str, str] = {
    "DSH’16": "DSH",
    "DPSH’16": "DPSH",
    "DHN’16": "DHN",
    "HashNet’17": "HashNet",
    "DSDH’17": "DSDH",
    "GreedyHash’18": "GreedyHash (unsupervised)",
    "ADSH’18": "ADSH (database as training set)",
}

#: Per survey table/metric: (our protocol, mAP@K, normalize, why that protocol).
SURVEY_PROTOCOLS: dict[str, dict] = {
    "mAP@5000": dict(
        table="Table II", protocol="cifar10-1", k=5000, normalize="retrieved",
        why="result source DTH [225] and the rows it copies (DSDH, ADSH, DPSH) use 1,000 test queries "
            "(100/class), the other 59,000 images as database and 5,000 training images from it "
            "(DSDH/DPSH setting 1); mAP@5000 as captioned, divided by the relevant images retrieved "
            "(DeepHash-pytorch CalcTopMap)"),
    "mAP@1000": dict(
        table="Table III", protocol="cifar10-1", k=1000, normalize="retrieved",
        why="result source TBH [87] follows the unsupervised setting of GreedyHash/DVB: 1,000 test queries, "
            "the other 59,000 images as database and training set; mAP@1000, divided by relevant retrieved"),
    "mAP@54000": dict(
        table="Table IV", protocol="cifar10", k=54000, normalize="retrieved",
        why="mAP@54000 is HashNet's CIFAR-10 setting: 1,000 queries, 5,000 training images, the other "
            "54,000 as database, so K = the whole database"),
    "mAP@All": dict(
        table="Table IV", protocol="cifar10-1", k=None, normalize="all_relevant",
        why="the rows (DPSH, DSDH) are their papers' setting 1: 1,000 queries against 59,000 database "
            "images, mAP over the whole ranking"),
}

_COLUMN = re.compile(r"^(?P<dataset>[^/]+?) / (?:(?P<metric>mAP@\w+) / )?(?P<bits>\d+) bits$")


def parse_survey_column(table, column):
    """Split a survey claim column into ``(dataset, metric, bits)`` (notebook 07).

    ``"CIFAR-10 / 12 bits"`` of Table II -> ``("CIFAR-10", "mAP@5000", 12)``;
    Table III columns get ``"mAP@1000"``; Table IV columns name the metric
    (``"CIFAR-10 / mAP@54000 / 16 bits"``).
    """
    m = _COLUMN.match(column)
    if not m:
        raise ValueError(f"cannot parse survey column {column!r} of {table}")
    metric = m["metric"] or {"Table II": "mAP@5000", "Table III": "mAP@1000"}.get(table)
    if metric is None:
        raise ValueError(f"{table} column {column!r} names no metric")
    return m["dataset"].strip(), metric, int(m["bits"])


# --------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------


def scaled_k(k, *, n_database, n_database_full):
    """``K`` for a subsampled database: the same *fraction* of the database retrieved.

    Notebook 07 (quick profile): a database subsampled from ``n_database_full``
    to ``n_database`` images is searched with ``K' = round(K n_database /
    n_database_full)`` (at least 1, at most ``n_database``), so that mAP@K'
    estimates mAP@K on the full database. ``k=None`` (mAP@All) stays ``None``.
    """
    if k is None:
        return None
    k = _check_int("k", k)
    n_database = _check_int("n_database", n_database)
    n_database_full = _check_int("n_database_full", n_database_full)
    if n_database >= n_database_full:
        return min(k, n_database)
    return int(min(n_database, max(1, round(k * n_database / n_database_full))))


def map_conventions(dist, query_labels, db_labels, *, k, seed=0):
    """mAP@K of one distance matrix under every convention (notebook 07).

    Rows: ``normalize`` in {retrieved, min_k_relevant, all_relevant} x ``empty``
    in {zero, drop}; columns: tie policies ``stable`` (database order),
    ``random`` (seeded), ``expected`` (exact mean over tie orders), and the
    two extremes ``best`` / ``worst`` (relevant items first / last within every
    tie group).
    """
    d = np.asarray(dist)
    rel = metrics.relevance_matrix(np.asarray(query_labels), np.asarray(db_labels))
    best = d + np.where(rel, 0.0, 0.5)
    worst = d + np.where(rel, 0.5, 0.0)
    rows = []
    for normalize in ("retrieved", "min_k_relevant", "all_relevant"):
        for empty in ("zero", "drop"):
            row = {"normalize": normalize, "empty": empty}
            for ties in ("stable", "random", "expected"):
                row[ties] = float(metrics.mean_average_precision_from_distances(
                    d, query_labels, db_labels, normalize=normalize, k=k, empty=empty, ties=ties,
                    seed=seed if ties == "random" else None))
            for name, dd in (("best", best), ("worst", worst)):
                row[name] = float(metrics.mean_average_precision_from_distances(
                    dd, query_labels, db_labels, normalize=normalize, k=k, empty=empty, ties="stable"))
            rows.append(row)
    return pd.DataFrame(rows)


def convention_table(dist, query_labels, db_labels, *, ks, seed=0):
    """:func:`map_conventions` for several ``K`` (``None`` = all), stacked, with the spread.

    Used by notebook 07. Adds ``K`` and ``spread`` (max - min over the tie
    columns of the row) columns.
    """
    frames = []
    n_db = np.asarray(dist).shape[1]
    for k in ks:
        f = map_conventions(dist, query_labels, db_labels, k=k, seed=seed)
        f.insert(0, "K", "All" if k is None else str(min(k, n_db)))
        ties = ["stable", "random", "expected", "best", "worst"]
        f["spread"] = f[ties].max(axis=1) - f[ties].min(axis=1)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def evaluate_survey_codes(q_codes, db_codes, q_labels, db_labels, *, n_bits, ks, n_database_full, seed=0):
    """Survey metrics of one set of codes (notebook 07).

    For each name in ``ks`` (``{"mAP@5000": 5000, ..., "mAP@All": None}``):
    ``normalize="retrieved"`` for a cut-off, ``"all_relevant"`` for All,
    ``empty="zero"``, ``ties="expected"``; the cut-off is scaled with
    :func:`scaled_k` when the database is a subsample of ``n_database_full``
    images. Also the Hamming-radius precision-recall curve (``"pr"``) and the
    distances (``"dist"``).
    """
    Qp = hashing.pack_codes(q_codes)
    Dp = hashing.pack_codes(db_codes)
    dist = hashing.hamming_distances(Qp, Dp)
    n_db = dist.shape[1]
    out = {}
    for name, k in ks.items():
        kk = scaled_k(k, n_database=n_db, n_database_full=n_database_full)
        normalize = "all_relevant" if k is None else "retrieved"
        out[name] = float(metrics.mean_average_precision_from_distances(
            dist, q_labels, db_labels, normalize=normalize, k=kk, ties="expected"))
        out[f"K used ({name})"] = n_db if kk is None else kk
    out["pr"] = retrieval.hamming_pr_by_radius(dist, q_labels, db_labels, n_bits=n_bits)
    out["dist"] = dist
    return out


def run_survey_methods(features, labels, *, methods, bits, seed, epochs, n_database_full, ks,
                       trained_rows=None, method_kwargs=None, inputs=None, trunk_factory=None,
                       progress=True):
    """Fit every method at every code length on one protocol and score it (notebook 07).

    Parameters
    ----------
    features, labels : dict
        ``{"train": X, "database": X, "query": X}`` and the same for labels.
    methods : sequence of str
        Names in :data:`METHODS`.
    bits : sequence of int
    seed, epochs : int
    n_database_full : int
        Database size of the protocol before subsampling (for :func:`scaled_k`).
    ks : dict
        Metric name -> cut-off (``None`` for All).
    trained_rows : array of int, optional
        Per database image, its row in the training set or -1 (ADSH's
        asymmetric database codes). ``ADSH(train_on="database")`` is fitted
        on the database images and labels instead, and its learned codes are
        the database codes.
    method_kwargs : dict, optional
        Method name -> extra keyword arguments.
    inputs : dict, optional
        ``{"train", "database", "query"}`` raw inputs (uint8 images) of the deep
        heads when training end to end; the shallow LSH / ITQ keep ``features``.
    trunk_factory : callable, optional
        Returns a fresh trainable trunk (:func:`trunk_factory`) for every deep
        run: end-to-end training (the ``full`` profile's ``end_to_end``).

    Returns
    -------
    (DataFrame, dict)
        One row per (method, bits) with the metrics, fit and encode seconds,
        the last training loss; and ``(method, bits) -> {"q": codes, "db":
        codes, "pr": curve, "dist": distances, "history": ...}``.
    """
    from tqdm.auto import tqdm

    method_kwargs = method_kwargs or {}
    rows, full = [], {}
    jobs = [(m, b) for m in methods for b in bits]
    for name, n_bits in tqdm(jobs, desc="survey methods", disable=not progress):
        supervised = METHODS[name][1]
        kwargs = dict(method_kwargs.get(name, {}))
        X = features
        if trunk_factory is not None and name not in ("LSH", "ITQ"):
            if inputs is None:
                raise ValueError("end-to-end training needs the raw inputs (protocol_data(end_to_end=True))")
            kwargs["trunk"], X = trunk_factory(), inputs
        model = make_method(name, n_bits=n_bits, seed=seed, epochs=epochs, **kwargs)
        on_db = isinstance(model, ADSH) and model.train_on == "database"
        fit_role = "database" if on_db else "train"
        start = time.perf_counter()
        model.fit(X[fit_role], labels[fit_role] if supervised else None)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        if on_db:
            db = model.codes_.copy()
        elif isinstance(model, ADSH):
            db = model.database_codes(X["database"], trained_rows=trained_rows)
        else:
            db = model.encode(X["database"])
        q = model.encode(X["query"])
        encode_s = time.perf_counter() - start
        scores = evaluate_survey_codes(q, db, labels["query"], labels["database"], n_bits=n_bits, ks=ks,
                                       n_database_full=n_database_full, seed=seed)
        history = getattr(model, "history_", None)
        last = history["total"][-1] if history and history.get("total") else float("nan")
        first = history["total"][0] if history and history.get("total") else float("nan")
        rows.append({"method": name, "family": METHODS[name][2], "supervised": supervised, "bits": n_bits,
                     "trained on": fit_role, "training images": len(labels[fit_role]),
                     **{k: v for k, v in scores.items() if np.isscalar(v)},
                     "first loss": first, "last loss": last, "fit_s": fit_s, "encode_s": encode_s})
        full[(name, n_bits)] = {"q": q, "db": db, "pr": scores["pr"], "dist": scores["dist"],
                                "history": history}
    return pd.DataFrame(rows), full


# --------------------------------------------------------------------------
# notebook 07 plumbing: protocol data and the survey comparison
# --------------------------------------------------------------------------


def protocol_data(dataset, protocol, *, max_train, max_database, max_queries, seed, backbone, input_size,
                  load_size=32, end_to_end=False, progress=True):
    """Tables, labels and cached backbone features of one hashing protocol (notebook 07).

    Roles and subsampling are those of :func:`cbirlib.pipelines.hashing_split`
    (the same call as notebook 03, so the same parameters read notebook 03's
    cached features). Returns a dict with ``tables``, ``labels``,
    ``features`` (``{"train", "database", "query"}``), ``n_database_full``
    (database size before subsampling), ``n_full`` (every role's size before
    subsampling) and ``trained_rows`` (per database image, its row in the
    training table or -1; ADSH's asymmetric codes). With ``end_to_end`` it
    also returns ``images``: the uint8 images at ``load_size`` for
    :func:`run_survey_methods`' ``inputs``.
    """
    from . import features as _features
    from . import pipelines, splits

    tables = pipelines.hashing_split(dataset, protocol, max_train=max_train, max_database=max_database,
                                     max_queries=max_queries, seed=seed)
    full_split = splits.load_split(dataset, protocol)
    present = set(full_split["role"])
    n_full = {use: int((full_split["role"] == next(r for r in cands if r in present)).sum())
              for use, cands in pipelines._HASH_ROLES.items()}
    feats = {role: pipelines.backbone_features(dataset, t, name=backbone, input_size=input_size,
                                               load_size=load_size, progress=progress)
             for role, t in tables.items()}
    labels = {role: t["label"].to_numpy() for role, t in tables.items()}
    pos = pd.Series(np.arange(len(tables["train"])), index=tables["train"]["path"].to_numpy())
    trained_rows = tables["database"]["path"].map(pos).fillna(-1).astype(int).to_numpy()
    out = {"tables": tables, "labels": labels, "features": feats, "n_database_full": n_full["database"],
           "n_full": n_full, "trained_rows": trained_rows}
    if end_to_end:
        out["images"] = {role: _features.load_images(dataset, t, size=load_size, mode="RGB", progress=progress)
                         for role, t in tables.items()}
    return out


def trunk_factory(backbone, *, input_size):
    """A callable returning a fresh :func:`image_trunk` of ImageNet ``backbone`` (notebook 07).

    Every call loads the pretrained weights again, so each end-to-end run
    starts from the same ImageNet network.
    """
    return functools.partial(_fresh_trunk, backbone, input_size)


def _fresh_trunk(backbone, input_size):
    from .backbones import load_backbone

    return image_trunk(load_backbone(backbone, input_size=input_size, resize="squash"))


_RESULT_SOURCE = re.compile(r"result source (\[\d+\] \([A-Za-z0-9-]+)")


def survey_comparison(survey, results, *, dataset_run, stand_in, datasets_here=("CIFAR-10",)):
    """Every survey cell beside our value, with the reason it cannot be checked (notebook 07).

    Parameters
    ----------
    survey : DataFrame
        The survey's claims (``cbirlib.claims.load_claims("p004")``).
    results : DataFrame
        Our scores: one row per ``protocol, method, bits`` with a column per
        metric of :data:`SURVEY_PROTOCOLS` (``"mAP@5000"``, ...).
    dataset_run : str
        The dataset the notebook ran on (``"cifar10"``; anything else, e.g. the
        smoke profile's digits, leaves every cell without a value).
    stand_in : str
        What our values are measured with (backbone, input size, subsampling).
    datasets_here : tuple of str
        Survey datasets we have.

    Returns
    -------
    DataFrame
        Columns ``table, row, column, dataset, metric, bits, method, protocol,
        convention, survey, ours, difference, reason``; ``reason`` is always
        set (every cell is *not checkable* here, see notebook 07), ``ours`` is
        NaN where we have no value.
    """
    rows = []
    index = results.set_index(["protocol", "method", "bits"]) if len(results) else None
    for c in survey.itertuples(index=False):
        dataset, metric, bits = parse_survey_column(c.table, c.column)
        spec = SURVEY_PROTOCOLS[metric]
        method = SURVEY_ROWS.get(c.row)
        src = _RESULT_SOURCE.search(c.source or "")
        src = f"{src.group(1)})" if src else "its result source"
        conv = (f"{metric}: " + ("all ranks, divided by all relevant" if spec["k"] is None else
                                 f"top {spec['k']}, divided by the relevant retrieved")
                + ", queries without a hit count 0, expected over tie orders")
        row = {"table": c.table, "row": c.row, "column": c.column, "dataset": dataset, "metric": metric,
               "bits": bits, "method": method or "", "protocol": f"cifar10__{spec['protocol']}" if dataset == "CIFAR-10" else "",
               "convention": conv, "survey": float(c.value), "ours": float("nan")}
        if dataset not in datasets_here:
            row["reason"] = (f"{dataset} is not available here (not in the data mirror, not downloadable "
                             "offline); nothing run. Users with its images: cbirlib.hashlists.load_hashing_lists")
        elif method is None:
            row["reason"] = (f"{c.row} is not implemented in notebook 07 (implemented: "
                             f"{', '.join(sorted(set(SURVEY_ROWS.values())))}, LSH, ITQ)")
        elif dataset_run != "cifar10" or index is None or (spec["protocol"], method, bits) not in index.index:
            row["reason"] = f"not run in this profile ({spec['protocol']}, {method}, {bits} bits)"
        else:
            hit = index.loc[(spec["protocol"], method, bits)]
            row["ours"] = 100 * float(hit[metric])
            used = f"K used ({metric})"
            if used in hit.index and spec["k"] is not None:
                row["convention"] += f"; K = {int(hit[used])} of the searched database"
            row["reason"] = (f"stand-in: {stand_in}; the survey's value, copied from {src}, comes from a "
                             "network trained end to end on 224-px images (AlexNet/VGG class), so it measures a "
                             f"different system; protocol {spec['protocol']} chosen because {spec['why']}")
        rows.append(row)
    out = pd.DataFrame(rows)
    out["difference"] = out["ours"] - out["survey"]
    return out
