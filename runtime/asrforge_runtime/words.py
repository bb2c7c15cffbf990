"""Word times from tokens and the encoder frames each was spoken on, for every model that aligns its output.

A CTC model's chosen tokens are aligned to its log-probabilities (:func:`~asrforge_runtime.search.ctc_align.ctc_align`;
the best path when they cannot be); a transducer emits each token on one frame. :func:`words_from_spans` joins the
tokens into words with times, in seconds from the start of the decoded audio.
"""

from __future__ import annotations

import numpy as np

from asrforge_runtime.result import Word
from asrforge_runtime.search.ctc_align import ctc_align


def best_path_spans(log_probs: np.ndarray, blank: int) -> tuple[list[int], list[tuple[int, int]]]:
    """``(T, V)`` -> the best path's tokens and each one's ``(first, last)`` frame (a token held over several
    frames spans them)."""
    tokens: list[int] = []
    spans: list[tuple[int, int]] = []
    prev = blank
    for t, tok in enumerate(np.asarray(log_probs).argmax(-1).tolist()):
        if tok != blank and tok == prev:
            spans[-1] = (spans[-1][0], t)
        elif tok != blank:
            tokens.append(tok)
            spans.append((t, t))
        prev = tok
    return tokens, spans


def ctc_token_spans(log_probs: np.ndarray, tokens: list[int] | None,
                    blank: int) -> tuple[list[int], list[tuple[int, int]]]:
    """The tokens a search chose, with each one's frames from aligning them to ``log_probs (T, V)``; without
    ``tokens``, or when they cannot be aligned, the best path's."""
    if tokens is not None:
        spans = ctc_align(log_probs, tokens, blank)
        if spans is not None:
            return list(tokens), spans
    return best_path_spans(log_probs, blank)


def words_from_spans(pieces: list[str], tokens: list[int], spans: list[tuple[int, int]],
                     frame_seconds: float) -> list[Word]:
    """Tokens and each one's (first, last) frame -> words. ``pieces[token]`` is a token's text; one that starts with
    a space (a space character, or a BPE piece marked word-initial) begins a new word. A word spans its first
    token's first frame to one frame past its last token's last frame."""
    words: list[Word] = []
    open_word = False
    for tok, (first, last) in zip(tokens, spans):
        piece = pieces[tok]
        if piece.startswith(" "):
            open_word = False
            piece = piece.lstrip()
        if not piece:
            continue
        if open_word:
            words[-1].word += piece
            words[-1].end = round((last + 1) * frame_seconds, 3)
        else:
            words.append(Word(piece, round(first * frame_seconds, 3), round((last + 1) * frame_seconds, 3)))
            open_word = True
    return words
