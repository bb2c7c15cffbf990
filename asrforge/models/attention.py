"""Attention encoder-decoder families: ``las``, ``transformer`` and ``joint`` (CTC/attention).

They are one model — an encoder, an attention decoder and an optional CTC head on the encoder — with
different defaults: LAS is a pyramidal BiLSTM listener and an LSTM speller; ``transformer`` pairs
Transformer encoder and decoder; ``joint`` adds a CTC head (``model.ctc_weight``) to a Conformer encoder
and Transformer decoder. Any encoder and decoder may be combined in any of them.

The CTC blank (id 0) doubles as ``<sos>`` and ``<eos>``: it never occurs inside a transcript, so the
decoder can use it to start and end one without growing the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from asrforge.config import fill_registry_defaults
from asrforge.models.decoders import DecoderMemory, build_decoder, decoder_field
from asrforge.models.encoders import build_encoder, encoder_field
from asrforge.nn.linear import Linear
from asrforge.registry import DECODERS, MODELS
from asrforge.text.special import SOS_ID


@dataclass
class AttentionModelConfig:
    family: str = "transformer"
    encoder: object = encoder_field("transformer")
    decoder: object = decoder_field("transformer")
    ctc_weight: float = 0.0           # weight of the CTC loss in training (0 = attention only)
    label_smoothing: float = 0.1
    sampling_prob: float = 0.0        # scheduled sampling: chance of feeding the decoder its own guess (LSTM decoder)
    sampling_ramp_steps: int = 2000   # training batches over which sampling_prob rises from 0


    def __post_init__(self):
        fill_registry_defaults(self)
        if not 0.0 <= self.ctc_weight < 1.0:
            raise ValueError("model.ctc_weight must be in [0, 1): 0 trains attention only; the decoder always trains")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("model.label_smoothing must be in [0, 1)")
        if not 0.0 <= self.sampling_prob <= 1.0:
            raise ValueError("model.sampling_prob must be in [0, 1]")
        if self.sampling_prob > 0 and not DECODERS.get(self.decoder.kind).cls.supports_sampling:
            allowed = [n for n in DECODERS.names() if DECODERS.get(n).cls.supports_sampling]
            raise ValueError(f"model.sampling_prob (scheduled sampling) needs a step-by-step decoder; "
                             f"model.decoder.kind must be one of {allowed}, got {self.decoder.kind!r}")


@dataclass
class LASModelConfig(AttentionModelConfig):
    family: str = "las"
    encoder: object = encoder_field("pyramid")
    decoder: object = decoder_field("lstm")
    sampling_prob: float = 0.1


@dataclass
class JointModelConfig(AttentionModelConfig):
    family: str = "joint"
    encoder: object = encoder_field("conformer")
    ctc_weight: float = 0.3

    def __post_init__(self):
        super().__post_init__()
        if self.ctc_weight <= 0.0:
            raise ValueError("model.ctc_weight must be > 0 for the joint family (use family: transformer for attention only)")


@dataclass
class AttentionOutput:
    logits: torch.Tensor                    # (B, L+1, V): decoder outputs for <sos> y1..yL
    enc_lens: torch.Tensor                  # (B,)
    ctc_log_probs: torch.Tensor | None      # (B, T', V) float32, when the model has a CTC head


class EncoderDecoderModel(nn.Module):
    objective = "attention"

    def __init__(self, config: AttentionModelConfig, input_dim: int, vocab_size: int):
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config.encoder, input_dim)
        self.decoder = build_decoder(config.decoder, self.encoder.out_dim, vocab_size)
        self.ctc_head = Linear(self.encoder.out_dim, vocab_size) if config.ctc_weight > 0 else None
        # training batches seen: drives the scheduled-sampling ramp and travels with the checkpoint
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))

    def encode(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x, x_lens)

    def ctc_log_probs(self, h: torch.Tensor) -> torch.Tensor | None:
        return None if self.ctc_head is None else torch.log_softmax(self.ctc_head(h).float(), dim=-1)

    def prepare(self, h: torch.Tensor, h_lens: torch.Tensor) -> DecoderMemory:
        return self.decoder.prepare(h, h_lens)

    def alignment(self, h: torch.Tensor, h_lens: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Where the decoder looks in the encoder frames ``h (B, T', H)`` for each of ``tokens (B, L)`` and the
        ``<eos>`` after them: weights ``(B, P, L + 1, T')`` in ``P`` panels (the decoder's layers)."""
        return self.decoder.alignment(self.prepare(h, h_lens), nn.functional.pad(tokens, (1, 0), value=SOS_ID))

    def sampling_prob(self) -> float:
        if not self.training or self.config.sampling_prob == 0.0:
            return 0.0
        ramp = min(1.0, float(self.batches_seen) / max(1, self.config.sampling_ramp_steps))
        return self.config.sampling_prob * ramp

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor, tokens: torch.Tensor,
                token_lens: torch.Tensor) -> AttentionOutput:
        """Teacher-forced: ``tokens (B, L)`` -> decoder logits over ``<sos> y1 .. yL`` predicting ``y1 .. yL <eos>``."""
        h, h_lens = self.encode(x, x_lens)
        tokens_in = nn.functional.pad(tokens, (1, 0), value=SOS_ID)
        logits = self.decoder(self.prepare(h, h_lens), tokens_in, self.sampling_prob())
        if self.training:
            self.batches_seen += 1
        return AttentionOutput(logits, h_lens, self.ctc_log_probs(h))


MODELS.register("transformer", AttentionModelConfig)(EncoderDecoderModel)
MODELS.register("las", LASModelConfig)(EncoderDecoderModel)
MODELS.register("joint", JointModelConfig)(EncoderDecoderModel)
