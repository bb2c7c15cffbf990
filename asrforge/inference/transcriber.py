"""Transcriber: audio (paths or arrays) -> text, with the model, features, tokenizer and search it needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asrforge.audio.io import SAMPLE_RATE, load_audio
from asrforge.decoding import CTCBeamOptions, ctc_greedy, ctc_prefix_beam_search
from asrforge.features import FeatureExtractor
from asrforge.models.ctc import build_model
from asrforge.recipe import Recipe, recipe_from_dict
from asrforge.text import Normalizer, Tokenizer, tokenizer_from_state
from asrforge.train.checkpoint import load_checkpoint


@dataclass
class Word:
    word: str
    start: float
    end: float


@dataclass
class Result:
    text: str
    duration: float = 0.0
    words: list[Word] = field(default_factory=list)
    source: str | None = None


class Transcriber:
    def __init__(self, model: torch.nn.Module, recipe: Recipe, tokenizer: Tokenizer, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.recipe = recipe
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.features = FeatureExtractor(recipe.features)
        self.normalizer = Normalizer(recipe.text)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "Transcriber":
        state = load_checkpoint(path)
        recipe = recipe_from_dict(state["recipe"])
        tokenizer = tokenizer_from_state(state["tokenizer"])
        model = build_model(recipe.model, recipe.features.dim, tokenizer.vocab_size)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            from asrforge.errors import CheckpointError
            raise CheckpointError(f"checkpoint {state['path']} does not match its own model config ({str(e).splitlines()[0][:160]}); it is damaged") from None
        return cls(model, recipe, tokenizer, device)

    @property
    def frame_seconds(self) -> float:
        """Seconds per output frame (feature hop x time subsampling)."""
        one = self.model.output_lengths(torch.tensor([4000])).item()
        return self.recipe.features.hop_ms / 1000 * 4000 / one

    @torch.inference_mode()
    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, D), (B,) -> log_probs (B, T', V), lengths (B,)`` on CPU."""
        log_probs, lens = self.model(feats.to(self.device), feat_lens.to(self.device))
        return log_probs.float().cpu(), lens.cpu()

    def search(self, log_probs: torch.Tensor, lens: torch.Tensor, beam_size: int = 1) -> list[list[int]]:
        """Token ids per utterance; ``beam_size`` 1 is greedy, more is CTC prefix beam search."""
        blank = self.tokenizer.blank_id
        if beam_size <= 1:
            return ctc_greedy(log_probs, lens, blank)
        opts = CTCBeamOptions(beam_size=beam_size)
        return [ctc_prefix_beam_search(log_probs[b], int(lens[b]), opts, blank)[0].tokens for b in range(len(lens))]

    def decode_text(self, feats: torch.Tensor, feat_lens: torch.Tensor, beam_size: int = 1) -> list[str]:
        """Padded features ``(B, T, D)`` -> one string per utterance."""
        return [self.tokenizer.decode(ids).strip() for ids in self.search(*self.forward(feats, feat_lens), beam_size)]

    def word_times(self, log_probs: torch.Tensor, length: int) -> list[Word]:
        """Word start/end seconds from the best path: a word spans its first to its last token frame.
        A token whose text starts with a space (a space character, or a BPE piece marked word-initial)
        begins a new word; a token held over several frames extends the current one."""
        step, blank = self.frame_seconds, self.tokenizer.blank_id
        words: list[Word] = []
        text, start, end = "", 0, 0

        def flush():
            if text:
                words.append(Word(text, round(start * step, 3), round((end + 1) * step, 3)))

        prev = blank
        for t, tok in enumerate(log_probs[:length].argmax(-1).tolist()):
            if tok != blank and tok == prev:
                end = t if text else end          # held over several frames
            elif tok != blank:
                piece = self.tokenizer.piece(tok)
                if piece.startswith(" "):
                    flush()
                    text = ""
                    piece = piece.lstrip()
                if piece:
                    if not text:
                        start = t
                    text += piece
                    end = t
            prev = tok
        flush()
        return words

    def transcribe(self, audio: str | Path | np.ndarray | list, beam_size: int | None = None) -> list[Result]:
        """Paths or 16 kHz float arrays -> one :class:`Result` each (with word times from the best path)."""
        items = audio if isinstance(audio, list) else [audio]
        beam = self.recipe.decode.beam_size if beam_size is None else beam_size
        results = []
        for item in items:
            wave = load_audio(item) if isinstance(item, (str, Path)) else np.asarray(item, dtype=np.float32)
            feats = self.features(wave)[None]
            log_probs, lens = self.forward(feats, torch.tensor([feats.shape[1]]))
            ids = self.search(log_probs, lens, beam)[0]
            results.append(Result(self.tokenizer.decode(ids).strip(), wave.size / SAMPLE_RATE,
                                  self.word_times(log_probs[0], int(lens[0])),
                                  str(item) if isinstance(item, (str, Path)) else None))
        return results
