import itertools
import math
import random
from collections import defaultdict

import pytest
import torch

from asrforge_runtime.search.ctc import CTCBeamOptions, ctc_greedy, ctc_prefix_beam_search


def collapse(path, blank=0):
    out, prev = [], None
    for t in path:
        if t != prev and t != blank:
            out.append(t)
        prev = t
    return tuple(out)


def exhaustive_best(log_probs):
    """Sum the probability of every alignment per labeling; return (best labeling, its log prob)."""
    T, V = log_probs.shape
    totals = defaultdict(float)
    for path in itertools.product(range(V), repeat=T):
        totals[collapse(path)] += math.exp(sum(float(log_probs[t, s]) for t, s in enumerate(path)))
    best = max(totals, key=totals.get)
    return best, math.log(totals[best]), totals


@pytest.mark.parametrize("seed", range(12))
def test_wide_prefix_beam_equals_exhaustive_search(seed):
    rng = random.Random(seed)
    T, V = rng.randint(2, 6), rng.randint(2, 4)
    g = torch.Generator().manual_seed(seed)
    # peaky-ish random distributions so repeats and blanks both matter
    log_probs = (torch.randn(T, V, generator=g) * 2).log_softmax(-1)
    best, best_lp, totals = exhaustive_best(log_probs)
    opts = CTCBeamOptions(beam_size=10_000, token_beam=V, prune_logprob=-math.inf, score_margin=math.inf, nbest=5)
    hyps = ctc_prefix_beam_search(log_probs, T, opts)
    assert tuple(hyps[0].tokens) == best
    assert hyps[0].score == pytest.approx(best_lp, abs=1e-9)
    for h in hyps:   # every returned score is the exact labeling probability
        assert h.score == pytest.approx(math.log(totals[tuple(h.tokens)]), abs=1e-9)


def test_greedy_merges_repeats_and_drops_blanks():
    path = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0, 3]])
    lp = torch.full((1, 9, 4), -10.0).scatter(2, path[..., None], 0.0)
    assert ctc_greedy(lp, torch.tensor([9])) == [[1, 1, 2, 3]]
    assert ctc_greedy(lp, torch.tensor([4])) == [[1, 1]]        # length respected


def test_beam_search_prefers_labeling_with_more_alignments():
    # best path is "blank" at every frame (p=.4^3) but the labeling "1" sums more alignments
    lp = torch.tensor([[0.4, 0.35, 0.25]] * 3).log()
    assert ctc_greedy(lp[None], torch.tensor([3])) == [[]]
    assert ctc_prefix_beam_search(lp, 3, CTCBeamOptions(beam_size=8))[0].tokens == [1]
