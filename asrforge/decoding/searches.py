"""One entry point per training objective: padded features -> hypotheses, by greedy or beam search.

The Transcriber looks the search up by ``model.objective`` (ctc | attention | transducer), so adding a
family with a new head means adding one function here, not a branch in every caller. Each function builds
its search's own options from the one :class:`DecodeConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from asrforge.decoding.attention import TorchAttention
from asrforge_runtime.search.attention import attention_search, uses_word_bonus as _uses_word_bonus
from asrforge_runtime.search.config import DecodeConfig, ctc_beam_options
from asrforge_runtime.search.ctc import ctc_greedy, ctc_prefix_beam_search
from asrforge_runtime.search.hypothesis import Hypothesis
from asrforge.decoding.transducer import TransducerOptions, transducer_beam_search, transducer_greedy
from asrforge_runtime.search.word_lm import WordLMScorer


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


def _ctc(model, feats, lens, config: DecodeConfig, lm: WordLMScorer | None, nbest: int) -> Decoded:
    log_probs, out_lens = model(feats, lens)
    log_probs, out_lens = log_probs.float().cpu(), out_lens.cpu()
    if config.beam_size <= 1:
        hyps = [[Hypothesis(t, 0.0)] for t in ctc_greedy(log_probs, out_lens)]
    else:
        beam = ctc_beam_options(config, nbest)
        hyps = [ctc_prefix_beam_search(log_probs[b], int(out_lens[b]), beam, lm=lm) for b in range(len(out_lens))]
    return Decoded(hyps, log_probs, out_lens)


def uses_word_bonus(model, config: DecodeConfig) -> bool:
    """Whether the beam search adds the LM's word bonus (the one-pass attention search ranks by score per token
    instead: see :mod:`asrforge_runtime.search.attention`)."""
    attention = model.objective == "attention"        # only encoder-decoders have the ctc_head attribute
    return _uses_word_bonus(model.objective, attention and model.ctc_head is not None, config)


def _attention(model, feats, lens, config: DecodeConfig, lm: WordLMScorer | None, nbest: int) -> Decoded:
    h, h_lens = model.encode(feats, lens)
    network = TorchAttention(model)
    # a joint model's CTC head joins the search and times the words its decoder chose (the decoder has no alignment)
    ctc = network.ctc(h)
    hyps = attention_search(network, network.memory(h, h_lens), h_lens.cpu().numpy(), ctc, config, lm, nbest)
    return Decoded(hyps, None if ctc is None else torch.from_numpy(ctc), h_lens.cpu())


def _transducer(model, feats, lens, config: DecodeConfig, lm: WordLMScorer | None, nbest: int) -> Decoded:
    enc, enc_lens = model.encode(feats, lens)
    options = TransducerOptions(beam_size=config.beam_size, max_symbols_per_frame=config.max_symbols_per_frame,
                                nbest=nbest)
    if config.beam_size <= 1:
        hyps = [[h] for h in transducer_greedy(model, enc, enc_lens, options)]
    else:
        hyps = transducer_beam_search(model, enc, enc_lens, options, lm=lm)
    return Decoded(hyps, None, enc_lens.cpu())


SEARCHES: dict[str, Callable[..., Decoded]] = {"ctc": _ctc, "attention": _attention, "transducer": _transducer}


@torch.inference_mode()
def decode_batch(model, feats: torch.Tensor, feat_lens: torch.Tensor, config: DecodeConfig = DecodeConfig(),
                 lm: WordLMScorer | None = None, nbest: int = 1) -> Decoded:
    """``feats (B, T, D), feat_lens (B,)`` on the model's device -> up to ``nbest`` hypotheses of each utterance,
    best first, by the search ``config`` names for the model's objective; ``lm`` fuses a word n-gram into beam search."""
    return SEARCHES[model.objective](model, feats, feat_lens, config, lm, nbest)
