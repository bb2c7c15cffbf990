"""The few dev utterances TensorBoard shows each epoch (``train.tensorboard_examples``): each one's audio, its
reference and the evaluated weights' greedy hypothesis, and pictures of what the network does with it — the CTC
head's posteriorgram where the model has one, and the attention decoder's alignment for attention models.

A task makes the :class:`Example` objects (:meth:`ScratchTask.examples`, :meth:`WhisperTask.examples`);
:mod:`asrforge.train.figures` draws them and :mod:`asrforge.train.loggers` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from asrforge.data.dataset import BadItem, SpeechDataset
from asrforge.metrics import align

BLANK_LABEL, EOS_LABEL = "<blank>", "<eos>"
MAX_EXAMPLE_SECONDS = 30.0     # longer dev entries (recordings) would make unreadable pictures


@dataclass
class Example:
    """One dev utterance as the network saw it at one validation."""

    uid: str
    audio: np.ndarray                 # (N,) float32 at 16 kHz
    reference: str                    # normalized, as dev WER scores it
    hypothesis: str
    frame_seconds: float              # seconds per column of the pictures (one encoder frame)
    posteriors: np.ndarray | None = None         # (T', V) the CTC head's probabilities
    labels: list[str] | None = None              # V: each token's label (posteriorgram rows)
    attention: np.ndarray | None = None          # (P, L, T') attention weights, in P panels
    attention_rows: list[str] | None = None      # L: the token each attention row predicts
    attention_panels: list[str] | None = None    # P: what each panel is (a decoder layer, Whisper's alignment heads)

    @property
    def errors(self) -> str:
        """``"2 word errors in 9 reference words (1 substituted, 0 deleted, 1 inserted)"``."""
        a = align(self.reference.split(), self.hypothesis.split())
        words = len(self.reference.split())
        return (f"{a.sub + a.dels + a.ins} word errors in {words} reference words ({a.sub} substituted, "
                f"{a.dels} deleted, {a.ins} inserted)")


def example_indices(durations: list[float], count: int) -> list[int]:
    """``count`` dev utterances spread evenly over the dev manifest (the same ones every epoch and on a resume),
    among those short enough to picture."""
    usable = [i for i, d in enumerate(durations) if d <= MAX_EXAMPLE_SECONDS]
    if count <= 0 or not usable:
        return []
    picks = np.linspace(0, len(usable) - 1, min(count, len(usable))).round().astype(int)
    return [usable[p] for p in dict.fromkeys(picks.tolist())]


def token_label(piece: str) -> str:
    """A token's text as a picture's axis shows it: a space (word start) as ``▁``."""
    return piece.replace(" ", "\u2581") or "?"


@torch.inference_mode()
def scratch_examples(transcriber, dev_set: SpeechDataset, indices: list[int]) -> list[Example]:
    """:class:`Example` of dev utterances ``indices`` for an asrforge family, decoded greedily by ``transcriber``
    (an :class:`~asrforge.inference.transcriber.Transcriber` over the evaluated weights); an unreadable one is
    left out (validation reports it)."""
    model, device = transcriber.model, transcriber.device
    tokenizer = transcriber.tokenizer
    labels = [BLANK_LABEL if i == tokenizer.blank_id else token_label(tokenizer.piece(i))
              for i in range(tokenizer.vocab_size)]
    config = transcriber.decode_config(beam_size=1)
    examples = []
    for index in indices:
        item = dev_set[index]
        if isinstance(item, BadItem):
            continue
        feats, lens = item.feats[None].to(device), torch.tensor([item.feats.shape[0]], device=device)
        hyp = transcriber.decode(feats, lens, config).hyps[0].tokens
        tokens = torch.tensor([hyp], dtype=torch.long, device=device).reshape(1, len(hyp))
        example = Example(item.id, dev_set.wave(index), item.text, transcriber.text(hyp), transcriber.frame_seconds)
        # teacher-forced on the hypothesis: the CTC head does not depend on it, and greedy attention decoding
        # looked exactly where teacher forcing on its own output looks
        outputs = model(feats, lens, tokens, torch.tensor([len(hyp)], device=device))
        # a CTC model's outputs are (log_probs, lens); the others' carry their CTC head's, None without one
        log_probs, out_lens = outputs if model.objective == "ctc" else (outputs.ctc_log_probs, outputs.enc_lens)
        if log_probs is not None:
            example.posteriors = log_probs[0, : int(out_lens[0])].float().exp().cpu().numpy()
            example.labels = labels
        if model.objective == "attention":
            h, h_lens = model.encode(feats, lens)
            example.attention = model.alignment(h, h_lens, tokens)[0, :, :, : int(h_lens[0])].float().cpu().numpy()
            example.attention_rows = [labels[t] for t in hyp] + [EOS_LABEL]
            example.attention_panels = list(model.decoder.alignment_panels)
        examples.append(example)
    return examples
