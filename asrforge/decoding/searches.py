"""One entry point per training objective: padded features -> hypotheses, by greedy or beam search.

The Transcriber looks the search up by ``model.objective`` (ctc | attention | transducer), so adding a
family with a new head means adding one function here, not a branch in every caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

from asrforge.decoding.attention import AttentionBeamOptions, attention_beam_search, attention_greedy, attention_rescore
from asrforge.decoding.ctc import CTCBeamOptions, ctc_greedy, ctc_prefix_beam_search
from asrforge.decoding.hypothesis import Hypothesis
from asrforge.decoding.word_lm import WordLMScorer
from asrforge.decoding.transducer import TransducerOptions, transducer_beam_search, transducer_greedy


@dataclass(frozen=True)
class SearchOptions:
    beam_size: int = 8                  # 1 = greedy
    ctc_weight: float = 0.3             # joint CTC/attention models: weight of CTC scores in the search
    joint_search: Literal["one_pass", "rescore"] = "one_pass"
    max_symbols_per_frame: int = 3      # transducer greedy search
    max_len_ratio: float = 2.0          # attention searches: output tokens allowed per encoder frame
    lm: WordLMScorer | None = None      # beam searches: word n-gram shallow fusion
    nbest: int = 1                      # beam searches: hypotheses kept per utterance (at most beam_size)


@dataclass
class Decoded:
    nbest: list[list[Hypothesis]]       # each utterance's hypotheses, best first (one from greedy search)
    ctc_log_probs: torch.Tensor | None  # (B, T', V) on CPU, for CTC models and attention models with a CTC head
                                        # (word times: the chosen tokens aligned to them)
    out_lens: torch.Tensor              # (B,) encoder frames

    @property
    def hyps(self) -> list[Hypothesis]:
        """The best hypothesis of each utterance."""
        return [n[0] for n in self.nbest]


def _ctc(model, feats, lens, opts: SearchOptions) -> Decoded:
    log_probs, out_lens = model(feats, lens)
    log_probs, out_lens = log_probs.float().cpu(), out_lens.cpu()
    if opts.beam_size <= 1:
        nbest = [[Hypothesis(t, 0.0)] for t in ctc_greedy(log_probs, out_lens)]
    else:
        beam = CTCBeamOptions(beam_size=opts.beam_size, nbest=opts.nbest)
        nbest = [ctc_prefix_beam_search(log_probs[b], int(out_lens[b]), beam, lm=opts.lm) for b in range(len(out_lens))]
    return Decoded(nbest, log_probs, out_lens)


def _rescores(model, opts: SearchOptions) -> bool:
    """Whether an attention model's beam search rescores a CTC n-best list instead of searching in one pass."""
    return model.ctc_head is not None and opts.ctc_weight > 0 and opts.joint_search == "rescore"


def uses_word_bonus(model, opts: SearchOptions) -> bool:
    """Whether the beam search adds the LM's word bonus (the one-pass attention search ranks by score per token
    instead: see :mod:`asrforge.decoding.attention`)."""
    return model.objective != "attention" or _rescores(model, opts)


def _attention(model, feats, lens, opts: SearchOptions) -> Decoded:
    h, h_lens = model.encode(feats, lens)
    # CTC scores join the search only when the model has a CTC head
    w = opts.ctc_weight if model.ctc_head is not None else 0.0
    beam = AttentionBeamOptions(beam_size=opts.beam_size, ctc_weight=w, max_len_ratio=opts.max_len_ratio,
                                nbest=opts.nbest)
    if opts.beam_size <= 1:
        nbest = [[h] for h in attention_greedy(model, h, h_lens, beam)]
    elif _rescores(model, opts):
        nbest = attention_rescore(model, h, h_lens, beam, lm=opts.lm)
    else:
        nbest = attention_beam_search(model, h, h_lens, beam, lm=opts.lm)
    # a joint model's CTC head times the words its decoder chose (the decoder itself has no alignment)
    ctc = model.ctc_log_probs(h)
    return Decoded(nbest, None if ctc is None else ctc.float().cpu(), h_lens.cpu())


def _transducer(model, feats, lens, opts: SearchOptions) -> Decoded:
    enc, enc_lens = model.encode(feats, lens)
    options = TransducerOptions(beam_size=opts.beam_size, max_symbols_per_frame=opts.max_symbols_per_frame,
                                nbest=opts.nbest)
    if opts.beam_size <= 1:
        nbest = [[h] for h in transducer_greedy(model, enc, enc_lens, options)]
    else:
        nbest = transducer_beam_search(model, enc, enc_lens, options, lm=opts.lm)
    return Decoded(nbest, None, enc_lens.cpu())


SEARCHES: dict[str, Callable[..., Decoded]] = {"ctc": _ctc, "attention": _attention, "transducer": _transducer}


@torch.inference_mode()
def decode_batch(model, feats: torch.Tensor, feat_lens: torch.Tensor, options: SearchOptions) -> Decoded:
    """``feats (B, T, D), feat_lens (B,)`` on the model's device -> each utterance's hypotheses, best first."""
    return SEARCHES[model.objective](model, feats, feat_lens, options)
