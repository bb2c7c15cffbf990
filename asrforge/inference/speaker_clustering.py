"""Voice embeddings -> speaker labels, with the number of speakers found or given.

``spectral`` (default): the cosine affinity of every pair of windows, each row pruned to its strongest entries,
the pruning chosen as NME-SC does (Park et al., 2019: the largest eigengap of the graph Laplacian relative to how
much was pruned); the windows' coordinates in the Laplacian's first k eigenvectors are grouped by k-means. The
number of speakers, when not given, is the largest k whose groups are all distinct voices: every group at least
``min_cluster`` windows, and no two groups' mean embeddings closer than ``distinct_similarity`` (cosine) -- one
voice split in two stays above it, two people fall below it (on FSDD and English recordings: two halves of one
speaker's turns 0.85 at the 5th percentile, two speakers 0.80 at the 95th; 0.84 counted best on the benchmark's
tuning conversations, seed 1, which are not the ones it reports). A recording of one speaker is the
k = 1 that remains. ``agglomerative``: average-linkage merging of clusters whose mean cosine distance is under
``threshold`` (scikit-learn).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Method = Literal["spectral", "agglomerative"]
PRUNINGS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)     # the shares of each row's affinities NME-SC tries
# Spectral clustering decomposes an M x M matrix (cubic time): a longer recording (1500 windows are about 6 minutes
# of speech) is clustered on evenly spaced windows, and every window then joins the group whose mean it is nearest
MAX_CLUSTERED = 1500


def _sklearn():
    try:
        import sklearn.cluster
    except ImportError:
        from asrforge.errors import ConfigError
        raise ConfigError("speaker diarization clusters with scikit-learn: pip install 'asrforge[diarize]'") from None
    return sklearn.cluster


def cluster_speakers(embeddings: np.ndarray, num_speakers: int | None = None, min_speakers: int = 1,
                     max_speakers: int = 8, method: Method = "spectral", threshold: float = 0.35,
                     distinct_similarity: float = 0.84, min_cluster: int = 4) -> np.ndarray:
    """``(M, D)`` unit vectors -> ``(M,)`` labels 0..k-1. ``num_speakers`` fixes k; otherwise k is estimated within
    ``[min_speakers, max_speakers]`` (see the module's docstring)."""
    m = len(embeddings)
    if m == 0:
        return np.zeros(0, dtype=int)
    hi = min(max_speakers, m) if num_speakers is None else min(num_speakers, m)
    lo = min(max(min_speakers, 1), hi) if num_speakers is None else hi
    if hi <= 1:
        return np.zeros(m, dtype=int)
    if m > MAX_CLUSTERED:
        chosen = np.linspace(0, m - 1, MAX_CLUSTERED).round().astype(int)
        labels = cluster_speakers(embeddings[chosen], num_speakers, min_speakers, max_speakers, method, threshold,
                                  distinct_similarity, min_cluster)
        means = np.stack([embeddings[chosen][labels == c].mean(axis=0) for c in range(labels.max() + 1)])
        return np.argmax(embeddings @ means.T, axis=1)
    if method == "agglomerative":
        return _agglomerative(embeddings, lo, hi, threshold)
    vectors = _pruned_spectrum(np.clip(embeddings @ embeddings.T, 0.0, 1.0), lo, hi)
    for k in range(hi, lo - 1, -1):
        if k == 1:
            break
        labels = _kmeans(vectors[:, :k], k)
        if k == lo or _distinct(embeddings, labels, distinct_similarity, min_cluster):
            return labels
    return np.zeros(m, dtype=int)


def _distinct(embeddings: np.ndarray, labels: np.ndarray, similarity: float, min_cluster: int) -> bool:
    groups = [embeddings[labels == c] for c in np.unique(labels)]
    if min(len(g) for g in groups) < min_cluster:
        return False
    means = np.stack([g.mean(axis=0) for g in groups])
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    pairs = means @ means.T
    np.fill_diagonal(pairs, -1.0)
    return float(pairs.max()) < similarity


def _agglomerative(embeddings: np.ndarray, lo: int, hi: int, threshold: float) -> np.ndarray:
    cluster = _sklearn()
    found = cluster.AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                            distance_threshold=threshold).fit_predict(embeddings)
    k = len(set(found))
    if lo <= k <= hi:
        return found
    return cluster.AgglomerativeClustering(n_clusters=min(max(k, lo), hi), metric="cosine",
                                           linkage="average").fit_predict(embeddings)


def _laplacian_spectrum(affinity: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each row's ``keep`` largest affinities, symmetrize, and return the eigenvalues (ascending) and
    eigenvectors of the unnormalized Laplacian."""
    m = len(affinity)
    pruned = np.zeros_like(affinity)
    top = np.argsort(-affinity, axis=1)[:, :keep]
    rows = np.arange(m)[:, None]
    pruned[rows, top] = affinity[rows, top]
    pruned = (pruned + pruned.T) / 2
    np.fill_diagonal(pruned, 0.0)
    laplacian = np.diag(pruned.sum(axis=1)) - pruned
    return np.linalg.eigh(laplacian)


def _pruned_spectrum(affinity: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """-> the Laplacian's eigenvectors ``(M, M)``, ascending, for the pruning whose largest eigengap within
    ``[lo, hi]``, relative to the largest eigenvalue, is the biggest per row entry kept."""
    m = len(affinity)
    best = None
    for share in PRUNINGS:
        keep = max(2, int(round(share * m)))
        values, vectors = _laplacian_spectrum(affinity, keep)
        gaps = np.diff(values[: hi + 1])                      # gaps[k-1]: between the k-th and (k+1)-th eigenvalue
        gap = max(gaps[max(lo, 1) - 1: hi], default=0.0)    # none when there are no more windows than speakers
        ratio = keep / max(gap / max(values[-1], 1e-9), 1e-9)
        if best is None or ratio < best[0]:
            best = (ratio, vectors)
    return best[1]


def _kmeans(points: np.ndarray, k: int) -> np.ndarray:
    return _sklearn().KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(points)
