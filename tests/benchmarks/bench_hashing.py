"""Timing of cbirlib.hashing: encoding, Hamming search vs faiss, vs float search (not a test).

Run from the repository root::

    python tests/benchmarks/bench_hashing.py [--queries 1000] [--database 54000,59000]
                                             [--bits 64] [--dim 1280] [--repeat 3]

Workload (synthetic, shaped like notebook 03 / 07's CIFAR-10 setting): 10
classes of non-negative 1280-d "CNN" features (ReLU of class centre + noise),
``--train`` of them to fit the hash functions, a database of 54,000 and
59,000 items (the two CIFAR-10 hashing protocols) and 1,000 queries, 64-bit
codes.

Reported (best of ``--repeat`` runs, wall-clock, this machine):

* fit time and encode time per image of every hasher (LSH, PCAH, ITQ, the
  binary autoencoder, paper 000's hash layer; the torch models train for only a
  few epochs here, the point is the encode cost);
* Hamming search per query: :func:`cbirlib.hashing.hamming_distances` (the full
  distance matrix, what mAP@All needs), :func:`cbirlib.hashing.hamming_topk`
  (top 100, stable ties) and ``faiss.IndexBinaryFlat.search`` (top 100) in the
  same process, with faiss on one thread (the reference: the numpy paths are
  single-threaded) and on its default OpenMP threads;
* float brute force on the 1280-d features: numpy float32
  ``||q||^2 - 2 q.x + ||x||^2`` plus an ``argpartition`` top 100, and
  ``faiss.IndexFlatL2.search`` (top 100).

Ratios are against ``faiss.IndexBinaryFlat`` on one thread, measured in the
same process; only ratios are comparable across machines, and absolute times
move with the load of a shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import faiss  # noqa: E402
import torch  # noqa: E402

from cbirlib import hashing as H  # noqa: E402


def make_features(n, dim, *, n_classes=10, seed=0, centres=None):
    rng = np.random.default_rng(seed)
    if centres is None:
        centres = np.random.default_rng(12345).normal(size=(n_classes, dim)).astype(np.float32)
    labels = rng.integers(0, n_classes, size=n)
    x = centres[labels] + rng.normal(scale=2.0, size=(n, dim)).astype(np.float32)
    return np.maximum(x, 0.0, out=x), labels


def timed(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def float_topk(q, x, x_norms, k, block=256):
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for s in range(0, q.shape[0], block):
        qb = q[s : s + block]
        d = (qb * qb).sum(1)[:, None] - 2.0 * (qb @ x.T) + x_norms[None, :]
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
        out[s : s + block] = np.take_along_axis(part, order, axis=1)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--database", default="54000,59000", help="comma-separated database sizes")
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    db_sizes = [int(v) for v in args.database.split(",")]
    n_db_max = max(db_sizes)
    bits, dim, k, rep = args.bits, args.dim, args.k, args.repeat

    print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"faiss {faiss.__version__} ({faiss.omp_get_max_threads()} OpenMP threads), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    t0 = time.perf_counter()
    xtrain, ytrain = make_features(args.train, dim, seed=1)
    xdb, _ = make_features(n_db_max, dim, seed=2)
    xq, _ = make_features(args.queries, dim, seed=3)
    print(f"features: train {xtrain.shape}, database {xdb.shape}, queries {xq.shape} "
          f"(built in {time.perf_counter() - t0:.1f} s)\n")

    # ------------------------------------------------------------------ encoding
    hashers = {
        "LSH": H.LSH(n_bits=bits, seed=0),
        "PCAH": H.PCAHash(n_bits=bits, seed=0),
        "ITQ (50 iter)": H.ITQ(n_bits=bits, seed=0, n_iter=50),
        "BinaryAutoencoder (256 hidden, 3 ep)": H.BinaryAutoencoder(n_bits=bits, seed=0, epochs=3),
        "DeepPairwiseHash (labels, 3 ep)": H.DeepPairwiseHash(n_bits=bits, seed=0, epochs=3),
    }
    print(f"Encoding {n_db_max} database images to {bits} bits (fit on {args.train})")
    print(f"{'method':40s} {'fit s':>8s} {'encode us/img':>14s}")
    packed = {}
    for name, model in hashers.items():
        t_fit, _ = timed(lambda: model.fit(xtrain, ytrain), 1)
        t_enc, codes = timed(lambda: model.encode_packed(xdb), rep)
        packed[name] = codes
        print(f"{name:40s} {t_fit:8.2f} {1e6 * t_enc / n_db_max:14.2f}")
    store = H.storage_comparison(bits, dim, n_images=n_db_max)
    print(f"\nstorage per image: {store['code_bytes_per_image']} B ({bits}-bit code) vs "
          f"{store['float_bytes_per_image']} B ({dim}-d float32), ratio {store['compression_ratio']:.0f}x; "
          f"database {store['code_bytes_total'] / 2**20:.2f} MiB vs {store['float_bytes_total'] / 2**20:.1f} MiB\n")

    # ------------------------------------------------------------------ search
    db_codes_all = packed["ITQ (50 iter)"]
    q_codes = hashers["ITQ (50 iter)"].encode_packed(xq)
    n_q = q_codes.shape[0]
    default_threads = faiss.omp_get_max_threads()
    for n_db in db_sizes:
        db_codes = np.ascontiguousarray(db_codes_all[:n_db])
        x = np.ascontiguousarray(xdb[:n_db])
        rows = []

        index = faiss.IndexBinaryFlat(bits)
        index.add(db_codes)
        faiss.omp_set_num_threads(1)
        t_faiss, (d_f, _) = timed(lambda: index.search(q_codes, k), rep)
        faiss.omp_set_num_threads(default_threads)
        rows.append((f"faiss IndexBinaryFlat top-{k} (1 thr) [reference]", t_faiss))
        t, _ = timed(lambda: index.search(q_codes, k), rep)
        rows.append((f"faiss IndexBinaryFlat top-{k} ({default_threads} thr)", t))

        t, d_full = timed(lambda: H.hamming_distances(q_codes, db_codes), rep)
        rows.append(("hashing.hamming_distances, full matrix (1 thr)", t))
        t, _ = timed(lambda: H.hamming_distances(q_codes, db_codes, method="lut"), rep)
        rows.append(("hashing.hamming_distances method='lut' (1 thr)", t))
        t, (d_top, _) = timed(lambda: H.hamming_topk(q_codes, db_codes, k), rep)
        rows.append((f"hashing.hamming_topk top-{k}, stable ties (1 thr)", t))
        t, _ = timed(lambda: H.hamming_topk(q_codes, db_codes, k, ties="random", seed=0), 1)
        rows.append((f"hashing.hamming_topk top-{k}, random ties (1 thr)", t))
        if not np.array_equal(d_top.astype(np.int64), d_f.astype(np.int64)):
            raise SystemExit("hamming_topk distances differ from faiss IndexBinaryFlat")
        if not np.array_equal(np.sort(d_full, axis=1)[:, :k], d_top):
            raise SystemExit("hamming_topk distances differ from the full matrix")

        norms = (x * x).sum(1)
        t, _ = timed(lambda: float_topk(xq, x, norms, k), max(1, rep - 1))
        rows.append((f"float32 {dim}-d numpy brute force top-{k}", t))
        findex = faiss.IndexFlatL2(dim)
        findex.add(x)
        t, _ = timed(lambda: findex.search(xq, k), max(1, rep - 1))
        rows.append((f"faiss IndexFlatL2 {dim}-d top-{k} ({default_threads} thr)", t))
        del findex

        print(f"Search: {n_q} queries x {n_db} database, {bits}-bit codes / {dim}-d float32")
        print(f"{'method':58s} {'total s':>8s} {'ms/query':>9s} {'vs faiss bin':>12s}")
        for name, t in rows:
            print(f"{name:58s} {t:8.3f} {1e3 * t / n_q:9.4f} {t / t_faiss:12.2f}")
        print()


if __name__ == "__main__":
    main()
