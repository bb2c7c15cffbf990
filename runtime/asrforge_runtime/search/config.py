"""How an asrforge model is decoded: one frozen set of knobs for every family's search.

A recipe's ``decode:`` section fills it (``decode.KEY=VALUE`` overrides it on the command line), a checkpoint
carries it, an exported model's ``asrforge_onnx.json`` too, and each search builds its own options from it. Knobs a
family's search does not use are ignored by it, so one recipe section serves every family.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal


@dataclass(frozen=True)
class DecodeConfig:
    beam_size: int = 8                  # 1 = greedy search
    # CTC prefix beam search (ctc, and the CTC n-best that joint models rescore)
    token_beam: int | None = None       # tokens tried per frame; None means beam_size
    prune_logprob: float = -8.0         # tokens below this frame log-probability are not tried
    score_margin: float = 10.0          # prefixes this many nats below the best are dropped (.inf: exact search)
    # attention searches (las, transformer, joint)
    ctc_weight: float = 0.3             # joint CTC/attention models: weight of CTC prefix scores in beam search
    joint_search: Literal["one_pass", "rescore"] = "one_pass"   # rescore: the decoder rescores the CTC n-best instead
    max_len_ratio: float = 2.0          # output tokens allowed per encoder frame
    min_len: int = 5                    # ... but never fewer than this many
    candidates: int | None = None       # tokens per hypothesis scored by CTC and the LM; None means 1.5 x beam_size
    # transducer searches (rnnt)
    max_symbols_per_frame: int = 3      # greedy search: tokens emitted on one frame at most

    def __post_init__(self):
        if self.beam_size < 1 or self.max_symbols_per_frame < 1 or self.min_len < 0:
            raise ValueError("decode.beam_size and decode.max_symbols_per_frame must be >= 1, decode.min_len >= 0")
        if self.max_len_ratio <= 0 or self.score_margin <= 0:
            raise ValueError("decode.max_len_ratio and decode.score_margin must be above 0")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError("decode.ctc_weight must be in [0, 1]")
        if (self.token_beam is not None and self.token_beam < 1) or (self.candidates is not None and self.candidates < 1):
            raise ValueError("decode.token_beam and decode.candidates must be >= 1 (or null: follow beam_size)")


def ctc_beam_options(config: DecodeConfig, nbest: int = 1):
    """The CTC prefix beam search's options from ``config``."""
    from asrforge_runtime.search.ctc import CTCBeamOptions

    return CTCBeamOptions(beam_size=config.beam_size, token_beam=config.token_beam, prune_logprob=config.prune_logprob,
                          score_margin=config.score_margin, nbest=nbest)


DECODE_KEYS = frozenset(f.name for f in fields(DecodeConfig))    # the decode.* knobs a transcription may override


def decode_changes(beam_size: int | None, overrides: dict) -> dict:
    """The decode knobs a transcription changes (``None``: the model's default), unknown ones refused by name."""
    from asrforge_runtime.errors import ConfigError

    unknown = sorted(set(overrides) - DECODE_KEYS)
    if unknown:
        raise ConfigError(f"unknown decode option(s) {unknown}; known: {sorted(DECODE_KEYS)}")
    return {k: v for k, v in {**overrides, "beam_size": beam_size}.items() if v is not None}
