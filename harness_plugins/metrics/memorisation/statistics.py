"""Copy statistics on feature arrays: how close a model's samples lie to the training split, set
against held-out test examples. Plain numpy on (N, F) float arrays; no harness types.

- :func:`nearest`: each query's nearest reference row (index and Euclidean distance), brute force.
- :func:`nearest_other_distance`: for chosen training rows, the distance to their nearest *other*
  training row.
- :func:`authentic`: Alaa, van Breugel, Saveliev & van der Schaar, "How faithful is your synthetic
  data? Sample-level metrics for evaluating and auditing generative models", ICML 2022 (AuthPct). A
  sample s is unauthentic when d(s, t) <= d(t, T minus t), t its nearest training example: it lies at
  least as close to t as t's own nearest other training example. Authenticity is the authentic share.
- :func:`copy_threshold` and :func:`copy_rate`: the share of samples at most the ``q``-quantile of the
  test examples' distances to their nearest training example away from a training example.
- :func:`partition`, :func:`z_u` and :func:`c_t`: the three-sample data-copying test of Meehan,
  Chaudhuri & Dasgupta, "A non-parametric test to detect data-copying in generative models",
  AISTATS 2020. Cells: k-means on the training features. In each cell, the distances of the test
  examples (P_n) and of the samples (Q_m) to their nearest training example *in that cell* are
  compared by the Mann-Whitney U statistic of the samples, standardised under the null with the
  authors' continuity correction: Z_U = (U - (m n / 2 - 1/2)) / sqrt(m n (m + n + 1) / 12), where U
  counts the (sample, test) pairs with the sample farther away (ties count 1/2). C_T is the mean of
  Z_U over the cells holding more than ``tau`` m samples (tau = 20 / m: more than 20 samples),
  weighted by each cell's share of the test examples, P_n(cell). About 0 for samples as far from
  the training data as new data; strongly negative when samples lie closer (copying); positive when
  they lie farther (underfitting).

Nearest neighbours are exact: for low-dimensional features (the 2-D toys' coordinates) by a k-d
tree (scipy), otherwise by brute force, the expansion |a|^2 + |b|^2 - 2 a.b in float64 in chunks of
``CHUNK_ENTRIES`` matrix entries with the winner's distance recomputed as |a - b|; either way an
exact copy is at distance 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CHUNK_ENTRIES = 4_000_000  # distance-matrix entries per chunk
KD_TREE_MAX_DIM = 8  # features of at most this many dimensions (the 2-D toys) are searched with a k-d tree
COPY_QUANTILE = 0.05  # copy_rate's threshold: this quantile of the test examples' nearest-training distances
CELL_SAMPLES = 20  # C_T counts a cell when it holds more than this many samples (tau = 20 / m, as the authors)
TEST_PER_CELL = 40  # C_T's number of cells: the test examples / 40, between MIN_CELLS and MAX_CELLS
MIN_CELLS, MAX_CELLS = 2, 50  # 50: the authors' partition of MNIST
KMEANS_SEED, KMEANS_RESTARTS = 0, 1  # one k-means++ start, as scikit-learn's default


def _float64(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must have shape (N, F), got {x.shape}")
    return x


def nearest(queries, reference, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """(index, distance) of each query's nearest row of ``reference``. ``exclude``: for each query, a
    reference row it may not match (its own row when the queries are reference rows), or None.
    Features of at most ``KD_TREE_MAX_DIM`` dimensions are searched with a k-d tree, others by brute
    force; both are exact."""
    q, r = _float64(queries), _float64(reference)
    if len(r) == 0 or (exclude is not None and len(r) < 2):
        raise ValueError(f"nearest neighbours need more reference rows, got {len(r)}")
    if r.shape[1] <= KD_TREE_MAX_DIM:
        return _nearest_kd_tree(q, r, exclude)
    r_sq = (r * r).sum(1)
    step = max(1, CHUNK_ENTRIES // len(r))
    index = np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), step):
        chunk = q[start:start + step]
        d2 = (chunk * chunk).sum(1)[:, None] + r_sq[None] - 2.0 * chunk @ r.T
        if exclude is not None:
            d2[np.arange(len(chunk)), np.asarray(exclude)[start:start + step]] = np.inf
        index[start:start + len(chunk)] = d2.argmin(1)
    distance = np.sqrt(((q - r[index]) ** 2).sum(1))
    return index, distance


def _nearest_kd_tree(q: np.ndarray, r: np.ndarray, exclude) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    tree = cKDTree(r)
    if exclude is None:
        distance, index = tree.query(q, k=1)
        return index.astype(np.int64), distance
    distance, index = tree.query(q, k=2)  # the excluded row is one of the two nearest (it may tie a duplicate)
    second = index[:, 0] == np.asarray(exclude)
    rows = np.arange(len(q))
    return index[rows, second.astype(int)].astype(np.int64), distance[rows, second.astype(int)]


def nearest_other_distance(train, rows) -> np.ndarray:
    """For each training row in ``rows``, the distance to its nearest other training row."""
    train = _float64(train)
    rows = np.asarray(rows, dtype=np.int64)
    return nearest(train[rows], train, exclude=rows)[1]


# ----------------------------------------------------------------------------- authenticity


def authentic(distance, index, train_other_distance) -> np.ndarray:
    """Per sample: authentic (True) when its distance to its nearest training example t exceeds t's
    distance to t's nearest other training example. ``train_other_distance`` is indexed by training
    row (:func:`nearest_other_distance` of the rows in ``index``, scattered to their places)."""
    return np.asarray(distance) > np.asarray(train_other_distance)[np.asarray(index)]


# ----------------------------------------------------------------------------- copy rate


def copy_threshold(test_distance, q: float = COPY_QUANTILE) -> float:
    """The ``q``-quantile (numpy's linear interpolation) of the test examples' distances to their
    nearest training example."""
    return float(np.quantile(np.asarray(test_distance, dtype=np.float64), q))


def copy_rate(distance, threshold: float) -> float:
    """The share of samples at distance ``<= threshold`` from their nearest training example."""
    return float((np.asarray(distance) <= threshold).mean())


# ----------------------------------------------------------------------------- C_T


def cell_count(n_test: int) -> int:
    """C_T's number of cells for ``n_test`` test examples: about 40 test examples a cell."""
    return int(min(MAX_CELLS, max(MIN_CELLS, n_test // TEST_PER_CELL)))


def partition(train, cells: int) -> np.ndarray:
    """The cell centres: k-means (scikit-learn, fixed seed) on the training features."""
    from sklearn.cluster import KMeans

    train = _float64(train)
    km = KMeans(n_clusters=min(cells, len(train)), n_init=KMEANS_RESTARTS, random_state=KMEANS_SEED).fit(train)
    return km.cluster_centers_


def assign(x, centres) -> np.ndarray:
    """Each row's cell: its nearest centre."""
    return nearest(x, centres)[0]


def cell_distances(x, x_cells, train, train_cells) -> np.ndarray:
    """Each row's distance to its nearest training example in its own cell (inf where the cell holds
    no training example, which a k-means cell never is)."""
    x, train = _float64(x), _float64(train)
    out = np.full(len(x), np.inf)
    for cell in np.unique(x_cells):
        members, pool = x_cells == cell, train_cells == cell
        if pool.any():
            out[members] = nearest(x[members], train[pool])[1]
    return out


def z_u(sample_distance, test_distance) -> float:
    """Meehan et al.'s Z_U of one cell: the samples' Mann-Whitney U against the test examples (midranks
    for ties), standardised under the null with the authors' continuity correction."""
    from scipy.stats import rankdata

    a, b = np.asarray(sample_distance, np.float64), np.asarray(test_distance, np.float64)
    m, n = len(a), len(b)
    u = rankdata(np.concatenate([a, b]))[:m].sum() - m * (m + 1) / 2.0
    return float((u - (m * n / 2.0 - 0.5)) / math.sqrt(m * n * (m + n + 1) / 12.0))


@dataclass(frozen=True)
class CT:
    """C_T and how it was formed: per included cell its Z_U and weight (the test share)."""

    value: float
    null_sd: float  # the standard deviation of C_T when every Z_U is standard normal (no copying)
    cells: int  # cells in the partition
    z: tuple  # Z_U of each included cell
    weights: tuple  # P_n(cell) of each included cell


def c_t(sample_distance, sample_cells, test_distance, test_cells, cells: int,
        min_samples: int = CELL_SAMPLES) -> CT:
    """C_T from in-cell nearest-training distances (:func:`cell_distances`) and cell labels. A cell
    counts when it holds more than ``min_samples`` samples and at least one test example (a cell
    without test examples has weight P_n = 0)."""
    sample_cells, test_cells = np.asarray(sample_cells), np.asarray(test_cells)
    sample_distance, test_distance = np.asarray(sample_distance), np.asarray(test_distance)
    zs, weights = [], []
    for cell in range(cells):
        in_samples, in_test = sample_cells == cell, test_cells == cell
        if in_samples.sum() > min_samples and in_test.any():
            zs.append(z_u(sample_distance[in_samples], test_distance[in_test]))
            weights.append(in_test.mean())
    if not zs:
        raise ValueError(f"no cell holds more than {min_samples} samples and a test example")
    w = np.asarray(weights)
    value = float(w @ np.asarray(zs) / w.sum())
    return CT(value, float(math.sqrt((w * w).sum()) / w.sum()), int(cells), tuple(zs), tuple(weights))
