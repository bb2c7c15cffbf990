"""Searches over model outputs. Each search has one frozen options dataclass."""

from asrforge.decoding.hypothesis import Hypothesis
from asrforge.decoding.ctc import CTCBeamOptions, ctc_greedy, ctc_prefix_beam_search

__all__ = ["Hypothesis", "CTCBeamOptions", "ctc_greedy", "ctc_prefix_beam_search"]
