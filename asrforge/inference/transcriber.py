"""Transcriber: audio (paths or arrays) -> text, with the model, features, tokenizer and search it needs."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from asrforge.audio.io import SAMPLE_RATE, load_audio
from asrforge.data.manifest import Skipped, Utterance, load_utterance
from asrforge.decoding import CTCBeamOptions, ctc_greedy, ctc_prefix_beam_search
from asrforge.decoding.ctc_align import ctc_align
from asrforge.decoding.ngram import NGramLM
from asrforge.decoding.searches import Decoded, SearchOptions, decode_batch
from asrforge.decoding.word_lm import WordLMScorer
from asrforge.devices import resolve_device
from asrforge.errors import AsrforgeError, CheckpointError
from asrforge.features import FeatureExtractor
from asrforge.features.cmvn import CMVNAccumulator, CMVNStats
from asrforge.inference.vad import VadOptions, speech_spans
from asrforge.models.build import build_model
from asrforge.recipe import Recipe, recipe_from_dict
from asrforge.text import Normalizer, Tokenizer, tokenizer_from_state
from asrforge.checkpoint import load_checkpoint


LM_FILE = "lm.arpa"     # the n-gram `asrforge train` builds (lm.order > 0), beside the checkpoints


def recipe_lm_file(recipe: Recipe, checkpoint: Path) -> Path | None:
    """The ARPA file a recipe decodes with: ``lm.path``, or the trained ``lm.arpa`` in the checkpoint's folder."""
    if recipe.lm.path:
        return Path(recipe.lm.path)
    return checkpoint.parent / LM_FILE if recipe.lm.order > 0 else None


@dataclass
class Word:
    word: str
    start: float
    end: float


@dataclass
class Segment:
    start: float        # seconds from the start of the input
    end: float
    text: str
    words: list[Word] = field(default_factory=list)


@dataclass
class Result:
    text: str
    duration: float = 0.0
    words: list[Word] = field(default_factory=list)
    source: str | None = None
    segments: list[Segment] = field(default_factory=list)


LONG_FORM_S = 20.0      # longer input is cut at pauses into speech segments of at most this many seconds
SPEECH_PAD_MS = 200     # kept around each stretch of speech: enough for word edges, little silence to decode
BATCH_SECONDS = 200.0   # padded audio seconds decoded at once


def long_form_spans(wave: np.ndarray, max_segment_s: float = LONG_FORM_S) -> list[tuple[int, int]]:
    """``(start, end)`` sample ranges to decode: the whole of a short input; a long one's stretches of speech."""
    if wave.size <= max_segment_s * SAMPLE_RATE:
        return [(0, wave.size)]
    return speech_spans(wave, VadOptions(max_chunk_s=max_segment_s, speech_pad_ms=SPEECH_PAD_MS))


def speech_pieces(utts: list[Utterance], max_segment_s: float = LONG_FORM_S) -> tuple[list[Utterance], list[Skipped]]:
    """Each utterance longer than ``max_segment_s`` replaced by its stretches of speech: slices of the same file
    (ids ``<id>-0001``, ...), for work that takes utterances of seconds, such as adapting to a long recording.
    Their text is left empty (a whole recording's transcript cannot be split by time). A long one that cannot be
    read is returned as skipped."""
    pieces, skipped = [], []
    for u in utts:
        if u.duration <= max_segment_s:
            pieces.append(u)
            continue
        try:
            wave = load_utterance(u)
        except AsrforgeError as e:
            skipped.append(Skipped(u.id or u.audio_filepath, str(e)))
            continue
        for k, (start, end) in enumerate(long_form_spans(wave, max_segment_s), 1):
            pieces.append(replace(u, offset=round(u.offset + start / SAMPLE_RATE, 4),
                                  duration=round((end - start) / SAMPLE_RATE, 4), text="", id=f"{u.id}-{k:04d}"))
    return pieces, skipped


class Transcriber:
    def __init__(self, model: torch.nn.Module, recipe: Recipe, tokenizer: Tokenizer, device: str | torch.device = "cpu"):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.recipe = recipe
        self.tokenizer = tokenizer
        self.features = FeatureExtractor(recipe.features)
        self.normalizer = Normalizer(recipe.text)
        self.lm: WordLMScorer | None = None

    def use_lm(self, lm: NGramLM | None, weight: float | None = None, word_bonus: float | None = None,
               closed_vocabulary: bool | None = None) -> None:
        """Fuse a word n-gram into beam search (``None``: decode without one); settings default to ``recipe.lm``."""
        if lm is None:
            self.lm = None
            return
        cfg = self.recipe.lm
        pieces = [self.tokenizer.piece(i) if i != self.tokenizer.blank_id else "" for i in range(self.tokenizer.vocab_size)]
        self.lm = WordLMScorer(lm, pieces, cfg.weight if weight is None else weight,
                               cfg.word_bonus if word_bonus is None else word_bonus,
                               cfg.closed_vocabulary if closed_vocabulary is None else closed_vocabulary)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", lm: str | Path | bool = True,
                        lm_weight: float | None = None, word_bonus: float | None = None,
                        closed_vocabulary: bool | None = None) -> "Transcriber":
        """``lm``: True uses the recipe's n-gram LM (``lm.path``, or ``lm.arpa`` that training wrote beside the
        checkpoint), False none, a path that ARPA file."""
        state = load_checkpoint(path)
        recipe = recipe_from_dict(state["recipe"])
        tokenizer = tokenizer_from_state(state["tokenizer"])
        model = build_model(recipe.model, recipe.features.dim, tokenizer.vocab_size)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint {state['path']} does not match its own model config ({str(e).splitlines()[0][:160]}); it is damaged") from None
        transcriber = cls(model, recipe, tokenizer, device)
        lm_file = recipe_lm_file(recipe, Path(state["path"])) if lm is True else (Path(lm) if lm else None)
        if lm is True and lm_file is not None and not lm_file.is_file():
            raise CheckpointError(f"{state['path']} decodes with the n-gram LM {lm_file}, which is missing: copy it "
                                  "there, give another with --lm PATH, or decode without one (--no-lm)")
        transcriber.use_lm(NGramLM.load(lm_file) if lm_file else None, lm_weight, word_bonus, closed_vocabulary)
        return transcriber

    @functools.cached_property
    def frame_seconds(self) -> float:
        """Seconds per encoder output frame (feature hop x time subsampling), measured once on the model itself."""
        n = 800
        with torch.inference_mode():
            feats = torch.zeros(1, n, self.recipe.features.dim, device=self.device)
            _, out = self.model.encode(feats, torch.tensor([n], device=self.device))
        return self.recipe.features.hop_ms / 1000 * n / int(out[0])

    def search_options(self, beam_size: int | None = None, nbest: int = 1) -> SearchOptions:
        d = self.recipe.decode
        return SearchOptions(beam_size=d.beam_size if beam_size is None else beam_size, ctc_weight=d.ctc_weight,
                             joint_search=d.joint_search, max_symbols_per_frame=d.max_symbols_per_frame,
                             max_len_ratio=d.max_len_ratio, lm=self.lm, nbest=nbest)

    @torch.inference_mode()
    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC models: ``(B, T, D), (B,) -> log_probs (B, T', V), lengths (B,)`` on CPU."""
        log_probs, lens = self.model(feats.to(self.device), feat_lens.to(self.device))
        return log_probs.float().cpu(), lens.cpu()

    def search(self, log_probs: torch.Tensor, lens: torch.Tensor, beam_size: int = 1) -> list[list[int]]:
        """CTC models: token ids per utterance; ``beam_size`` 1 is greedy, more is CTC prefix beam search."""
        blank = self.tokenizer.blank_id
        if beam_size <= 1:
            return ctc_greedy(log_probs, lens, blank)
        opts = CTCBeamOptions(beam_size=beam_size)
        return [ctc_prefix_beam_search(log_probs[b], int(lens[b]), opts, blank, self.lm)[0].tokens for b in range(len(lens))]

    def decode(self, feats: torch.Tensor, feat_lens: torch.Tensor, beam_size: int | None = None,
               nbest: int = 1) -> Decoded:
        """Padded features ``(B, T, D)`` -> up to ``nbest`` hypotheses of each utterance, by the family's search."""
        return decode_batch(self.model, feats.to(self.device), feat_lens.to(self.device),
                            self.search_options(beam_size, nbest))

    def decode_text(self, feats: torch.Tensor, feat_lens: torch.Tensor, beam_size: int = 1) -> list[str]:
        """Padded features ``(B, T, D)`` -> one string per utterance."""
        return [self.tokenizer.decode(h.tokens).strip() for h in self.decode(feats, feat_lens, beam_size).hyps]

    def words_from_frames(self, tokens: list[int], frames: list[int]) -> list[Word]:
        """Word times from the frame each token was emitted on (transducers)."""
        return self._words(tokens, [(f, f) for f in frames])

    def word_times(self, log_probs: torch.Tensor, length: int, tokens: list[int] | None = None) -> list[Word]:
        """CTC word times. With ``tokens`` (the transcript a beam search chose), each token's frames come from
        aligning those tokens to ``log_probs`` (:func:`ctc_align`), so the times belong to the words shown;
        without, or when they cannot be aligned, from the best path: a token held over several frames spans them."""
        if tokens is not None:
            spans = ctc_align(log_probs[:length], tokens, self.tokenizer.blank_id)
            if spans is not None:
                return self._words(tokens, spans)
        blank = self.tokenizer.blank_id
        path_tokens: list[int] = []
        spans: list[tuple[int, int]] = []
        prev = blank
        for t, tok in enumerate(log_probs[:length].argmax(-1).tolist()):
            if tok != blank and tok == prev:
                spans[-1] = (spans[-1][0], t)
            elif tok != blank:
                path_tokens.append(tok)
                spans.append((t, t))
            prev = tok
        return self._words(path_tokens, spans)

    def _words(self, tokens: list[int], spans: list[tuple[int, int]]) -> list[Word]:
        """Tokens and each one's (first, last) frame -> words. A token whose text starts with a space (a space
        character, or a BPE piece marked word-initial) begins a new word; a word spans its first token's first
        frame to one frame past its last token's last frame."""
        step = self.frame_seconds
        words: list[Word] = []
        open_word = False
        for tok, (first, last) in zip(tokens, spans):
            piece = self.tokenizer.piece(tok)
            if piece.startswith(" "):
                open_word = False
                piece = piece.lstrip()
            if not piece:
                continue
            if open_word:
                words[-1].word += piece
                words[-1].end = round((last + 1) * step, 3)
            else:
                words.append(Word(piece, round(first * step, 3), round((last + 1) * step, 3)))
                open_word = True
        return words

    def pooled_speaker_stats(self, audio: list[str | Path | np.ndarray]) -> CMVNStats:
        """CMVN statistics over all of ``audio`` taken as one speaker (models trained with ``features.cmvn=speaker``).
        Unreadable files are left out here; transcribing them reports them."""
        acc = CMVNAccumulator()
        for item in audio:
            try:
                wave = load_audio(item) if isinstance(item, (str, Path)) else np.asarray(item, dtype=np.float32)
            except AsrforgeError:
                continue
            acc.add(self.features.statistics_frames(wave))
        if not acc.frames:
            raise AsrforgeError("none of the audio could be read to pool speaker statistics")
        return acc.stats()

    def transcribe(self, audio: str | Path | np.ndarray | list, beam_size: int | None = None,
                   speaker_stats: CMVNStats | None = None, max_segment_s: float = LONG_FORM_S) -> list[Result]:
        """Paths or 16 kHz float arrays -> one :class:`Result` each. Word times come from the CTC posteriors aligned
        to the chosen tokens (CTC and joint CTC/attention models) or the transducer's emission frames; LAS and
        Transformer decoders have no alignment, so their results carry no words.
        ``speaker_stats`` (from :meth:`pooled_speaker_stats`) normalizes models trained with speaker CMVN;
        without it each segment is normalized on its own.

        Input longer than ``max_segment_s`` (a lecture, a meeting) is cut into its stretches of speech by voice
        activity detection, none longer than ``max_segment_s``, and each is decoded as an utterance: models are
        trained on utterances of seconds, and over minutes a recurrent encoder drifts and self-attention's
        memory grows with the square of the length. Silence between them is not decoded."""
        items = audio if isinstance(audio, list) else [audio]
        results = []
        for item in items:
            wave = load_audio(item) if isinstance(item, (str, Path)) else np.asarray(item, dtype=np.float32)
            spans = long_form_spans(wave, max_segment_s)
            segments = [s for s in self._decode_spans(wave, spans, beam_size, speaker_stats) if s.text]
            results.append(Result(" ".join(s.text for s in segments), wave.size / SAMPLE_RATE,
                                  [w for s in segments for w in s.words],
                                  str(item) if isinstance(item, (str, Path)) else None, segments))
        return results

    def _decode_spans(self, wave: np.ndarray, spans: list[tuple[int, int]], beam_size: int | None,
                      speaker_stats: CMVNStats | None) -> list[Segment]:
        """Each ``(start, end)`` sample range of ``wave`` decoded as one utterance, in batches of similar
        lengths -> one :class:`Segment` per span, in the spans' order, times counted from the start of ``wave``."""
        segments: list[Segment | None] = [None] * len(spans)
        order = sorted(range(len(spans)), key=lambda i: spans[i][1] - spans[i][0])
        batches, current = [], []
        for i in order:   # sorted by length, so ``len(current) * this length`` is the padded size
            if current and (len(current) + 1) * (spans[i][1] - spans[i][0]) > BATCH_SECONDS * SAMPLE_RATE:
                batches.append(current)
                current = []
            current.append(i)
        batches += [current] if current else []
        for batch in batches:
            feats = [self.features(wave[spans[i][0]:spans[i][1]], speaker_stats) for i in batch]
            lens = torch.tensor([f.shape[0] for f in feats])
            padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
            decoded = self.decode(padded, lens, beam_size)
            for b, i in enumerate(batch):
                hyp, offset = decoded.hyps[b], spans[i][0] / SAMPLE_RATE
                if self.recipe.features.trim_db is not None:     # frame 0 is the first one the trim kept
                    first = self.features.kept_frames(wave[spans[i][0]:spans[i][1]]).start
                    offset += first * self.recipe.features.hop_ms / 1000
                if decoded.ctc_log_probs is not None:
                    words = self.word_times(decoded.ctc_log_probs[b], int(decoded.out_lens[b]), list(hyp.tokens))
                elif hyp.frames is not None:
                    words = self.words_from_frames(hyp.tokens, hyp.frames)
                else:
                    words = []
                segments[i] = Segment(round(spans[i][0] / SAMPLE_RATE, 3), round(spans[i][1] / SAMPLE_RATE, 3),
                                      self.tokenizer.decode(hyp.tokens).strip(),
                                      [Word(w.word, round(w.start + offset, 3), round(w.end + offset, 3)) for w in words])
        return segments
