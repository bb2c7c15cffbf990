"""Word n-gram shallow fusion for searches that emit tokens: characters or word pieces -> words -> LM score.

Every family's beam search fuses it: CTC prefix, attention (joint CTC/attention included) and transducer.
A search keeps one :class:`WordLMState` per hypothesis and calls :meth:`WordLMScorer.extend` for each token
it appends. A token whose text starts with a space (the character tokenizer's space, a SentencePiece piece
marked word-initial) completes the word being spelled, which then scores
``weight * ln p(word | previous words) + word_bonus``. A partly spelled word that no LM word begins with
already carries the ``<unk>`` score, so the beam drops misspellings before they are finished rather than
after. :meth:`WordLMScorer.finish` scores the last word and the end of the sentence.

With ``closed_vocabulary`` the LM's word list is a lexicon: a hypothesis spelling anything else scores
minus infinity and leaves the beam (digit strings, voice commands: any out-of-list word is an error).
"""

from __future__ import annotations

import copy
import functools
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asrforge_runtime.search.ngram import BOS, EOS, LN10, NGramLM

NEG_INF = float("-inf")


@dataclass(frozen=True)
class WordLMState:
    history: tuple[str, ...]     # completed words, at most order - 1 of them (starting with <s>)
    partial: str                 # the word being spelled
    completed: float             # fused score of the completed words
    score: float                 # completed + the penalty of a partial word no LM word begins with


class WordLMScorer:
    def __init__(self, lm: NGramLM, pieces: list[str], weight: float = 0.5, word_bonus: float = 1.0,
                 closed_vocabulary: bool = False):
        """``pieces[token]`` is each token's text as the tokenizer's ``piece`` gives it."""
        self.lm, self.weight, self.word_bonus = lm, weight, word_bonus
        self.closed_vocabulary = closed_vocabulary
        self.starts_word = [p.startswith(" ") for p in pieces]
        self.text = [p.strip() for p in pieces]
        self.prefixes = {w[:i] for w in lm.vocab for i in range(1, len(w) + 1)}
        self.partial_penalty = NEG_INF if closed_vocabulary else weight * lm.unk_log10 * LN10
        self._cache: dict[tuple[tuple[str, ...], str], float] = {}
        self._keep = max(lm.order - 1, 0)

    @functools.cached_property
    def max_gain(self) -> float:
        """The most one token can raise a hypothesis's fused score: the word bonus, plus, with an open
        vocabulary, what completing an unknown word can gain over the ``<unk>`` charge its spelling already
        carries (the LM's backoff weights above 1 on the way to the unigram ``<unk>``). Searches that prune
        by an upper bound of the fused score add this to it."""
        backoff = max([0.0, *self.lm.backoffs.values()]) * max(self.lm.order - 1, 0)
        unknown = 0.0 if self.closed_vocabulary else self.weight * backoff * LN10
        return max(self.word_bonus, 0.0) + unknown

    def initial(self) -> WordLMState:
        return WordLMState((BOS,) if self._keep else (), "", 0.0, 0.0)

    def _word_score(self, history: tuple[str, ...], word: str) -> float:
        key = (history, word)
        s = self._cache.get(key)
        if s is None:
            s = self._cache[key] = self.weight * self.lm.log10_prob(history, word) * LN10
        return s

    def _complete(self, state: WordLMState) -> tuple[tuple[str, ...], float]:
        """History and completed score once the partial word ends."""
        if not state.partial:
            return state.history, state.completed
        if self.closed_vocabulary and state.partial not in self.lm.vocab:
            return state.history, NEG_INF    # a prefix of a word, not a word ("thr")
        score = state.completed + self._word_score(state.history, state.partial) + self.word_bonus
        history = (state.history + (state.partial,))[-self._keep:] if self._keep else ()
        return history, score

    def extend(self, state: WordLMState, token: int) -> WordLMState:
        if self.starts_word[token]:
            history, completed = self._complete(state)
            partial = self.text[token]
        else:
            history, completed, partial = state.history, state.completed, state.partial + self.text[token]
        penalty = 0.0 if not partial or partial in self.prefixes else self.partial_penalty
        return WordLMState(history, partial, completed, completed + penalty)

    def finish(self, state: WordLMState) -> float:
        """The fused score of the whole hypothesis: its last word and the end of the sentence included."""
        history, completed = self._complete(state)
        return completed + self._word_score(history, EOS)

    def score_tokens(self, tokens: list[int]) -> float:
        """The fused score of a finished token sequence (for rescoring an n-best list)."""
        state = self.initial()
        for token in tokens:
            state = self.extend(state, token)
        return self.finish(state)

    def with_word_bonus(self, word_bonus: float) -> "WordLMScorer":
        """The same LM and settings with another word bonus (sharing the score cache, which holds no bonus)."""
        other = copy.copy(self)
        other.word_bonus = word_bonus
        other.__dict__.pop("max_gain", None)
        return other


def fuse_best_first(totals: Sequence[float], change: Callable[[int], float], beam: int,
                    max_gain: float) -> list[tuple[int, float]]:
    """One utterance's candidate extensions, with ``totals`` their scores before the LM's ``change(j)`` ->
    ``(j, total + change(j))`` for the candidates it scored.

    The LM can raise a total by at most ``max_gain`` (:attr:`WordLMScorer.max_gain`), so candidates are scored
    best first until the next one's total plus that gain cannot beat the ``beam``-th best fused total so far:
    no candidate left unscored could enter a beam of that size. Beam searches call this once per utterance
    and step, so the LM scores a few candidates rather than every hypothesis's every token.
    """
    best: list[float] = []                  # min-heap of the ``beam`` best fused totals so far
    scored: list[tuple[int, float]] = []
    for j in sorted(range(len(totals)), key=totals.__getitem__, reverse=True):
        total = totals[j]
        if total == NEG_INF or (len(best) == beam and total + max_gain <= best[0]):
            break
        fused = total + change(j)
        scored.append((j, fused))
        if len(best) < beam:
            heapq.heappush(best, fused)
        elif fused > best[0]:
            heapq.heapreplace(best, fused)
    return scored
