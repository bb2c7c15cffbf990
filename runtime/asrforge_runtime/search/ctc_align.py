"""CTC forced alignment: where in the frames each token of a given transcript is spoken.

Beam search with an n-gram LM can choose a transcript whose tokens are not the frame-wise best ones ("three"
where the best path spells "thrie"), so word times read off the best path would not match the words shown.
Aligning the chosen tokens themselves (Viterbi over CTC's topology: blank, token 1, blank, token 2, ..., blank;
a token repeats on neighbouring frames, and two equal tokens in a row need a blank between them) gives each
token the frames where it is most probably spoken.
"""

from __future__ import annotations

import numpy as np

NEG_INF = -1e30


def ctc_align(log_probs, tokens: list[int], blank: int) -> list[tuple[int, int]] | None:
    """``log_probs`` ``(T, V)`` (an array) of one utterance and its token ids -> each token's ``(first, last)`` frame, or None
    when the frames are too few to spell the tokens."""
    lp = np.asarray(log_probs, dtype=np.float32)
    T, L = lp.shape[0], len(tokens)
    if L == 0:
        return []
    states = np.full(2 * L + 1, blank, dtype=np.int64)
    states[1::2] = tokens
    S = states.size
    # a token state may be entered from two states back, past a blank, unless it repeats the token there
    skip = np.zeros(S, dtype=bool)
    skip[3::2] = states[3::2] != states[1:-2:2]
    emit = lp[:, states]                                   # (T, S)
    score = np.full(S, NEG_INF)
    score[0], score[1] = emit[0, 0], emit[0, 1]
    back = np.zeros((T, S), dtype=np.int8)                 # 0: stayed, 1: from s-1, 2: from s-2
    for t in range(1, T):
        stay = score
        step = np.concatenate(([NEG_INF], score[:-1]))
        jump = np.where(skip, np.concatenate(([NEG_INF, NEG_INF], score[:-2])), NEG_INF)
        choices = np.stack([stay, step, jump])
        back[t] = choices.argmax(0)
        score = choices.max(0) + emit[t]
    end = S - 1 if score[S - 1] >= score[S - 2] else S - 2   # the last blank, or the last token itself
    if score[end] <= NEG_INF / 2:
        return None
    spans: list[list[int]] = [[-1, -1] for _ in range(L)]
    s = end
    for t in range(T - 1, -1, -1):
        if s % 2 == 1:
            k = s // 2
            spans[k][0] = t
            if spans[k][1] < 0:
                spans[k][1] = t
        s -= int(back[t, s])
    return [(first, last) for first, last in spans]
