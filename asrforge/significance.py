"""Whether a WER is known well enough, and whether two systems' WERs really differ.

- :func:`bootstrap_interval`: a 95 % confidence interval of an error rate by resampling utterances with replacement
  (Bisani and Ney, 2004): the rate of each resample is its errors over its reference words, and the interval is the
  middle 95 % of those rates.
- :func:`paired_bootstrap`: the same resampling applied to two systems' results on the same utterances at once, so the
  difference ``b - a`` carries the utterances' shared difficulty; its interval, and a two-sided p-value: how often a
  resampled difference, shifted to centre on no difference, lies at least as far from zero as the observed one.
- :func:`mapsswe`: sclite's matched-pairs sentence-segment word error test. Each utterance is cut into segments
  wherever both systems recognized at least two reference words in a row correctly; the per-segment differences in
  error counts are approximately normal under "no difference", giving a z statistic and a two-sided p-value.

Every resampling is seeded, so the same inputs give the same figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from asrforge.metrics import ErrorReport, align

RESAMPLES = 1000        # bootstrap resamples by default (`--bootstrap N`; 0: none)
LEVEL = 0.95


def _resample_rows(n: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n)`` utterance indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _middle(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_interval(errors, words, resamples: int = RESAMPLES, seed: int = 0,
                       level: float = LEVEL) -> tuple[float, float] | None:
    """``errors (n,)``, ``words (n,)`` per utterance -> ``(low, high)`` of the rate ``sum(errors) / sum(words)``; None
    with no resamples or no utterance."""
    errors, words = np.asarray(errors, dtype=np.float64), np.asarray(words, dtype=np.float64)
    if resamples <= 0 or errors.size == 0:
        return None
    rows = _resample_rows(errors.size, resamples, seed)
    rates = errors[rows].sum(1) / np.maximum(words[rows].sum(1), 1.0)
    return _middle(rates, level)


def report_intervals(report: ErrorReport, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """``wer_ci`` and ``cer_ci`` of an evaluation: 95 % bootstrap intervals over its utterances (None with no
    resamples)."""
    rows = report.utterance_rows()
    word_errors = [r["sub"] + r["del"] + r["ins"] for r in rows]
    wer = bootstrap_interval(word_errors, [r["words"] for r in rows], resamples, seed)
    cer = bootstrap_interval([r["char_errors"] for r in rows], [r["chars"] for r in rows], resamples, seed)
    return {"wer_ci": None if wer is None else list(wer), "cer_ci": None if cer is None else list(cer)}


@dataclass(frozen=True)
class PairedDifference:
    rate_a: float
    rate_b: float
    delta: float                        # rate_b - rate_a
    interval: tuple[float, float]       # of delta
    p: float                            # two-sided: no difference


def paired_bootstrap(errors_a, errors_b, words, resamples: int = RESAMPLES, seed: int = 0,
                     level: float = LEVEL) -> PairedDifference:
    """Two systems' errors ``(n,)`` on the same ``n`` utterances with ``words (n,)`` reference words each."""
    a, b = np.asarray(errors_a, dtype=np.float64), np.asarray(errors_b, dtype=np.float64)
    words = np.asarray(words, dtype=np.float64)
    total = max(words.sum(), 1.0)
    rate_a, rate_b = a.sum() / total, b.sum() / total
    delta = rate_b - rate_a
    rows = _resample_rows(a.size, max(resamples, 1), seed)
    per = np.maximum(words[rows].sum(1), 1.0)
    deltas = (b[rows].sum(1) - a[rows].sum(1)) / per
    # centred on no difference: how often chance alone moves the difference as far as observed
    extreme = np.abs(deltas - delta) >= abs(delta) - 1e-12
    p = float((extreme.sum() + 1) / (deltas.size + 1))
    return PairedDifference(float(rate_a), float(rate_b), float(delta), _middle(deltas, level), min(1.0, p))


def _segment_errors(ref: list[str], hyp_a: list[str], hyp_b: list[str]) -> list[tuple[int, int]]:
    """One utterance cut as sclite's MAPSSWE cuts it -> ``(errors of a, errors of b)`` per segment.

    Each reference word gets both systems' verdict (correct or not) and the insertions each made just before it; a
    boundary falls after every run of two or more reference words both got right with no insertion inside the run."""
    n = len(ref)

    def per_word(hyp: list[str]) -> tuple[list[int], list[int]]:
        wrong, inserted = [0] * n, [0] * (n + 1)      # inserted[i]: insertions before reference word i
        i = 0
        for r, h in align(ref, hyp).pairs:
            if r is None:
                inserted[i] += 1
                continue
            wrong[i] = int(r != h)
            i += 1
        return wrong, inserted

    wa, ia = per_word(hyp_a)
    wb, ib = per_word(hyp_b)
    segments, current, run = [], [0, 0], 0
    for i in range(n):
        clean = not wa[i] and not wb[i] and not ia[i] and not ib[i]
        current[0] += wa[i] + ia[i]
        current[1] += wb[i] + ib[i]
        run = run + 1 if clean else 0
        if run == 2:                 # two words right in both: what came before is a segment of its own
            segments.append(tuple(current))
            current = [0, 0]
    current[0] += ia[n]
    current[1] += ib[n]
    segments.append(tuple(current))
    return [s for s in segments if s != (0, 0)] or [(0, 0)]


def mapsswe(refs: list[str], hyps_a: list[str], hyps_b: list[str]) -> tuple[float, float]:
    """``(z, p)`` of sclite's matched-pairs test over utterances' reference and both systems' hypotheses (words
    split on spaces). p is 1 when the two make the same number of errors in every segment."""
    diffs = []
    for ref, a, b in zip(refs, hyps_a, hyps_b, strict=True):
        diffs += [ea - eb for ea, eb in _segment_errors(ref.split(), a.split(), b.split())]
    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2 or not d.any():
        return 0.0, 1.0
    sd = d.std(ddof=1)
    if sd == 0.0:                    # every segment differs by the same non-zero count: as sure as it gets
        return math.copysign(math.inf, d.mean()), 0.0
    z = d.mean() / (sd / math.sqrt(d.size))
    return float(z), float(math.erfc(abs(z) / math.sqrt(2)))
