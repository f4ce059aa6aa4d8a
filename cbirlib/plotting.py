"""Figures shared by the notebooks, saved atomically.

No backend is chosen here: ``cbirlib.run`` sets ``MPLBACKEND=agg`` for headless
runs, and an interactive user keeps theirs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ._io import atomic_write

__all__ = ["save_figure", "image_grid", "class_sample_grid", "retrieval_rows", "latent_scatter"]


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (PNG unless the suffix says otherwise).

    The figure is rendered without metadata (no creation date) so reruns with
    the same inputs write identical files where the renderer allows it.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    metadata = {"Software": None} if fmt == "png" else {"CreationDate": None} if fmt == "pdf" else None
    with atomic_write(path, mode="wb") as fh:
        fig.savefig(fh, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
    return path


def image_grid(images: Sequence[np.ndarray], *, ncols: int, titles: Sequence[str] | None = None,
               row_labels: Sequence[str] | None = None, cell_size: float = 1.3,
               suptitle: str | None = None):
    """Show images on a grid and return the figure (sample grids in notebook 01).

    Parameters
    ----------
    images : sequence of ndarray
        ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8 images, filled row by row.
    ncols : int, keyword-only
        Images per row.
    titles : sequence of str, optional, keyword-only
        One small title per image.
    row_labels : sequence of str, optional, keyword-only
        One label per row, drawn left of the first image.
    """
    import matplotlib.pyplot as plt

    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * cell_size, nrows * cell_size),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i >= n:
            continue
        img = images[i]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255,
                  interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=6)
    if row_labels is not None:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def class_sample_grid(index, *, image_file, per_class: int, max_classes: int, seed: int,
                      size: int = 64, title: str | None = None):
    """A grid with one row per class and ``per_class`` random images in it (notebook 01).

    Parameters
    ----------
    index : DataFrame
        Rows with ``path``, ``label`` and ``class_name`` (a dataset index or a split).
    image_file : callable
        ``image_file(path) -> Path``, e.g. ``functools.partial(splits.image_file, name)``.
    per_class, max_classes : int, keyword-only
        Images per row; rows shown (the first classes by label).
    seed : int, keyword-only
        Seed of the random choice of images.
    size : int, keyword-only
        Images are resized to ``size x size`` for display.
    """
    from .datasets import load_image

    rng = np.random.default_rng(seed)
    labels = sorted(index["label"].unique())[:max_classes]
    images, row_labels = [], []
    for label in labels:
        members = index.loc[index["label"] == label]
        take = members.iloc[np.sort(rng.choice(len(members), size=min(per_class, len(members)),
                                               replace=False))]
        row = [load_image(image_file(p), mode="RGB", size=(size, size)) for p in take["path"]]
        row += [np.full((size, size, 3), 255, np.uint8)] * (per_class - len(row))
        images += row
        row_labels.append(str(members["class_name"].iloc[0]).split(",")[0][:18])
    return image_grid(images, ncols=per_class, row_labels=row_labels, suptitle=title)


def retrieval_rows(queries, retrieved, correct, *, query_titles=None, titles=None,
                   cell_size: float = 1.2, suptitle: str | None = None):
    """Query images and their top-ranked results, wrong results framed in red.

    One row per query: the query (framed blue) then its retrieved images in
    rank order (notebook 02 Fig 11, notebook 06 Figs 3-4).

    Parameters
    ----------
    queries : sequence of ndarray
        One image per row.
    retrieved : sequence of sequence of ndarray
        The retrieved images of each query, best first.
    correct : sequence of sequence of bool
        Whether each retrieved image is relevant (green frame) or not (red frame).
    """
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(queries), 1 + max(len(r) for r in retrieved)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * cell_size, n_rows * cell_size * 1.1),
                             squeeze=False)
    for r in range(n_rows):
        row = [(queries[r], "tab:blue", query_titles[r] if query_titles else "query")]
        row += [(img, "tab:green" if ok else "red", titles[r][i] if titles else f"#{i + 1}")
                for i, (img, ok) in enumerate(zip(retrieved[r], correct[r]))]
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            img, colour, title = row[c]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3 if colour == "red" else 2)
            ax.set_title(title, fontsize=6, color="red" if colour == "red" else "black")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def latent_scatter(features: np.ndarray, labels: np.ndarray, *, class_names=None, seed: int = 0,
                   max_points: int = 3000, title: str | None = None):
    """Feature vectors projected on their first two principal components, coloured by class.

    Shows whether a feature space separates the classes (notebook 02's "why the
    autoencoder falls short"). At most ``max_points`` points, drawn with ``seed``.
    """
    import matplotlib.pyplot as plt

    features = np.asarray(features, dtype=np.float64)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(features))[:max_points])
    x = features[pick] - features[pick].mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    fig, ax = plt.subplots(figsize=(6, 4.5))
    lab = np.asarray(labels)[pick]
    for c in np.unique(lab):
        name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        ax.scatter(xy[lab == c, 0], xy[lab == c, 1], s=4, alpha=0.6, label=str(name)[:15])
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.legend(fontsize=6, markerscale=3, loc="best", ncol=2)
    fig.tight_layout()
    return fig
