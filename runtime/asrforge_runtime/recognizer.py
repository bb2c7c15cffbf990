"""An exported folder as a recognizer: audio (paths or 16 kHz arrays) -> :class:`~asrforge_runtime.result.Result`.

It offers what asrforge's ``Recognizer`` protocol asks of transcription (``transcribe``, ``transcribe_batch``,
``check_options`` and what the model offers); ``asrforge.load_model(DIR)`` adds scoring on a manifest. Features are
the runtime's numpy front end, the searches and the n-gram fusion those asrforge decodes PyTorch models with.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable

import numpy as np

from asrforge_runtime.audio import SAMPLE_RATE, load_audio
from asrforge_runtime.errors import CheckpointError, ConfigError
from asrforge_runtime.features import FeatureConfig, FrontEnd, OnlineFrontEnd
from asrforge_runtime.long_form import LONG_FORM_S, long_form_spans
from asrforge_runtime.onnx_model import ExportedFolder, open_folder
from asrforge_runtime.pieces import (describe_search, join_pieces, length_batches, placed_words, refuse_other_tasks,
                                     word_times_wanted)
from asrforge_runtime.result import Result, Segment, Word
from asrforge_runtime.search.attention import attention_search, uses_word_bonus
from asrforge_runtime.search.config import DECODE_KEYS, DecodeConfig, ctc_beam_options, decode_changes
from asrforge_runtime.search.ctc import ctc_greedy, ctc_prefix_beam_search
from asrforge_runtime.search.hypothesis import Hypothesis
from asrforge_runtime.search.ngram import NGramLM
from asrforge_runtime.search.transducer import TransducerOptions, transducer_beam_search, transducer_greedy
from asrforge_runtime.search.word_lm import WordLMScorer
from asrforge_runtime.streaming import OnnxStreamingEncoder
from asrforge_runtime.words import ctc_token_spans, words_from_spans

LM_FILE = "lm.arpa"     # the n-gram the export copies beside the graphs when the model decodes with one (+.gz)


def _known(cls, values: dict) -> dict:
    """The entries of ``values`` that ``cls`` has fields for (a newer export may write more)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}


class OnnxRecognizer:
    """An exported model (CTC, transducer, or encoder-decoder) with its front end, search defaults and optional word
    n-gram LM."""

    sample_rate = SAMPLE_RATE
    languages: tuple[str, ...] = ()     # it reads the one language it was trained on
    tasks = ("transcribe",)

    def __init__(self, folder: ExportedFolder, lm: NGramLM | None = None, lm_weight: float | None = None,
                 word_bonus: float | None = None, closed_vocabulary: bool | None = None):
        self.folder = folder
        self.info = folder.info
        self.source = str(folder.path)
        self.network = folder.network
        self.pieces = folder.pieces
        self.blank = self.info["blank_id"]
        features = _known(FeatureConfig, self.info["features"])
        if self.info.get("layout") == "sherpa-onnx":
            features["cmvn"] = "none"       # the statistics are folded into the first graph, as sherpa-onnx needs
        self.features = FrontEnd(FeatureConfig(**features))
        self.decode_defaults = DecodeConfig(**_known(DecodeConfig, self.info["decode"]))
        self.lm: WordLMScorer | None = None
        if lm is not None:
            cfg = self.info.get("lm", {})
            self.lm = WordLMScorer(lm, self.pieces, cfg.get("weight", 0.5) if lm_weight is None else lm_weight,
                                   cfg.get("word_bonus", 1.0) if word_bonus is None else word_bonus,
                                   cfg.get("closed_vocabulary", False) if closed_vocabulary is None else closed_vocabulary)

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None, lm: str | Path | bool = True,
             lm_weight: float | None = None, word_bonus: float | None = None,
             closed_vocabulary: bool | None = None) -> "OnnxRecognizer":
        """An exported folder. ``threads``: onnxruntime's threads per graph (None: its default, every core). ``lm``:
        True uses the folder's ``lm.arpa`` when the export copied one, False none, a path that ARPA file;
        ``lm_weight``, ``word_bonus``, ``closed_vocabulary`` default to the training recipe's."""
        folder = open_folder(path, threads)
        if lm is True:
            name = folder.info.get("lm", {}).get("file")
            lm_file = folder.path / name if name else None
            if lm_file is not None and not lm_file.is_file():
                raise CheckpointError(f"{folder.path} decodes with the n-gram LM {lm_file}, which is missing: copy "
                                      "it there, give another with --lm PATH, or decode without one (--no-lm)")
        else:
            lm_file = Path(lm) if lm else None
        return cls(folder, NGramLM.load(lm_file) if lm_file else None, lm_weight, word_bonus, closed_vocabulary)

    # ---- what it offers ---------------------------------------------------------------------------
    @property
    def word_timestamps(self) -> bool:
        """CTC heads and transducers align their tokens to frames; a plain attention decoder (LAS, Transformer) does not."""
        return self.objective != "attention" or self.network.ctc_head

    @property
    def beam_size(self) -> int:
        return self.decode_defaults.beam_size

    @property
    def streaming(self) -> bool:
        """Whether the export holds a streaming step (a model trained with ``model.streaming``)."""
        return "stream" in self.info

    # ---- what asrforge's streaming engine asks of a streaming model ---------------------------------------------
    @property
    def objective(self) -> str:
        return self.info["objective"]

    @property
    def search_network(self):
        """The transducer network the searches run over (None for CTC)."""
        return self.network if self.objective == "transducer" else None

    @functools.cached_property
    def stream_encoder(self) -> OnnxStreamingEncoder:
        """The streaming step graph as an encoder fed chunk by chunk (:mod:`asrforge_runtime.streaming`)."""
        if not self.streaming:
            raise ConfigError(f"{self.source} holds no streaming step: export a model trained with model.streaming")
        return OnnxStreamingEncoder(self.folder.sessions["encoder_step"], self.info["stream"])

    def online_features(self) -> OnlineFrontEnd:
        """A new stream's front end, computed as audio arrives."""
        return OnlineFrontEnd(self.features)

    def word_times(self, log_probs: np.ndarray, length: int, tokens: list[int] | None = None) -> list[Word]:
        """CTC word times of ``tokens`` aligned to ``log_probs (T, V)`` (the best path's without them)."""
        found, spans = ctc_token_spans(np.asarray(log_probs[:length], dtype=np.float32), tokens, self.blank)
        return words_from_spans(self.pieces, found, spans, self.frame_seconds)

    def words_from_frames(self, tokens: list[int], frames: list[int]) -> list[Word]:
        """Word times from the frame each token was emitted on (transducers)."""
        return words_from_spans(self.pieces, tokens, [(f, f) for f in frames], self.frame_seconds)

    def decode_config(self, beam_size: int | None = None, **overrides) -> DecodeConfig:
        """The export's ``decode`` defaults, with ``beam_size`` (None: the default) and other knobs changed."""
        changes = decode_changes(beam_size, overrides)
        try:
            return DecodeConfig(**{**asdict(self.decode_defaults), **changes})
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None

    def search_description(self, config: DecodeConfig) -> str:
        """``greedy``, or ``beam 8``, ``beam 8, 3-gram LM weight 0.5 bonus 1``."""
        has_ctc_head = self.objective == "attention" and self.network.ctc_head
        return describe_search(config, self.lm, uses_word_bonus(self.objective, has_ctc_head, config))

    def check_options(self, **options) -> None:
        """Refuse what this model cannot do and unknown options, before any audio is read."""
        self._options(options)

    def _options(self, options: dict) -> tuple[DecodeConfig, bool, float]:
        options = dict(options)
        refuse_other_tasks(options)
        words = word_times_wanted(options, self.word_timestamps, self.info["family"])
        max_segment_s = options.pop("max_segment_s", None) or LONG_FORM_S
        unknown = sorted(set(options) - DECODE_KEYS)
        if unknown:
            raise ConfigError(f"option(s) {unknown} do not apply to an exported model, which takes beam_size, "
                              f"max_segment_s, word_timestamps and the decode knobs "
                              f"({', '.join(sorted(DECODE_KEYS - {'beam_size'}))})")
        if max_segment_s <= 0:
            raise ConfigError(f"max_segment_s must be above 0, got {max_segment_s}")
        config = self.decode_config(options.pop("beam_size", None), **options)
        return config, words, float(max_segment_s)

    # ---- decoding ---------------------------------------------------------------------------------
    def decode(self, feats: list[np.ndarray], config: DecodeConfig) -> tuple[list[Hypothesis], list | None, np.ndarray]:
        """Features ``(T_i, D)`` of a batch -> the best hypothesis of each, the CTC log-probabilities ``(T', V)`` of
        each (None for a transducer and an attention model without a CTC head), and the encoder frames of each
        ``(B,)``."""
        lens = np.array([f.shape[0] for f in feats], dtype=np.int64)
        padded = np.zeros((len(feats), int(lens.max()), feats[0].shape[1]), dtype=np.float32)
        for b, f in enumerate(feats):
            padded[b, : f.shape[0]] = f
        out, out_lens = self.network.encode(padded, lens)
        out_lens = np.asarray(out_lens).astype(np.int64)
        if self.info["objective"] == "ctc":
            per_utt = [out[b, : out_lens[b]] for b in range(len(feats))]
            if config.beam_size <= 1:
                hyps = [Hypothesis(t, 0.0) for t in ctc_greedy(out, out_lens, self.blank)]
            else:
                options = ctc_beam_options(config)
                hyps = [ctc_prefix_beam_search(lp, lp.shape[0], options, self.blank, self.lm)[0] for lp in per_utt]
            return hyps, per_utt, out_lens
        if self.info["objective"] == "attention":
            ctc = out.get("ctc_log_probs")
            hyps = [n[0] for n in attention_search(self.network, out, out_lens, ctc, config, self.lm)]
            return hyps, None if ctc is None else [ctc[b, : out_lens[b]] for b in range(len(feats))], out_lens
        options = TransducerOptions(beam_size=config.beam_size, max_symbols_per_frame=config.max_symbols_per_frame)
        if config.beam_size <= 1:
            hyps = transducer_greedy(self.network, out, out_lens.tolist(), options)
        else:
            hyps = [n[0] for n in transducer_beam_search(self.network, out, out_lens.tolist(), options, self.lm)]
        return hyps, None, out_lens

    def text(self, tokens: list[int]) -> str:
        return "".join(self.pieces[t] for t in tokens).strip()

    @functools.cached_property
    def frame_seconds(self) -> float:
        """Seconds per encoder output frame (feature hop x time subsampling), measured once on the graph itself."""
        n = 800
        _, out = self.network.encode(np.zeros((1, n, self.features.config.dim), np.float32), np.array([n]))
        return self.features.config.hop_ms / 1000 * n / int(out[0])

    # ---- transcription ----------------------------------------------------------------------------
    def transcribe(self, audio: str | Path | np.ndarray, **options) -> Result:
        """A path or 16 kHz float array -> :class:`Result`. Options: ``beam_size`` (default: the export's), any
        other decode knob, ``word_timestamps``, ``max_segment_s``."""
        return self.transcribe_batch([audio], **options)[0]

    def transcribe_batch(self, audio: list, on_batch: Callable[[int], None] | None = None, **options) -> list[Result]:
        """Paths or 16 kHz float arrays -> one :class:`Result` each, their pieces decoded together in batches of
        similar lengths (``on_batch(pieces)`` after each). Input longer than ``max_segment_s`` is cut into pieces
        at its quietest moments (:mod:`asrforge_runtime.long_form`)."""
        config, word_timestamps, max_segment_s = self._options(options)
        waves = [load_audio(a) if isinstance(a, (str, Path)) else np.asarray(a, dtype=np.float32) for a in audio]
        results = self.transcribe_waves(waves, config, max_segment_s, word_timestamps, on_batch)
        for result, item in zip(results, audio):
            result.source = str(item) if isinstance(item, (str, Path)) else None
        return results

    def transcribe_waves(self, waves: list[np.ndarray], config: DecodeConfig, max_segment_s: float = LONG_FORM_S,
                         word_timestamps: bool = True, on_batch: Callable[[int], None] | None = None) -> list[Result]:
        """16 kHz float arrays -> :class:`Result` each (options already checked)."""
        word_timestamps = word_timestamps and self.word_timestamps
        spans = [(w, start, end) for w, wave in enumerate(waves) for start, end in long_form_spans(wave, max_segment_s)]
        segments: list[Segment | None] = [None] * len(spans)
        hop = self.features.config.hop_ms / 1000
        for batch in length_batches(spans):
            pieces = [waves[spans[i][0]][spans[i][1]: spans[i][2]] for i in batch]
            hyps, log_probs, _ = self.decode([self.features(p) for p in pieces], config)
            for b, (i, piece) in enumerate(zip(batch, pieces)):
                _, start, end = spans[i]
                words = None
                if word_timestamps:
                    found = (self.word_times(log_probs[b], log_probs[b].shape[0], hyps[b].tokens)
                             if log_probs is not None else self.words_from_frames(hyps[b].tokens, hyps[b].frames or []))
                    words = placed_words(found, start / SAMPLE_RATE + self.features.trimmed_start(piece) * hop,
                                         end / SAMPLE_RATE)
                segments[i] = Segment(round(start / SAMPLE_RATE, 3), round(end / SAMPLE_RATE, 3),
                                      self.text(hyps[b].tokens), words)
            if on_batch is not None:
                on_batch(len(batch))
        return join_pieces(waves, spans, segments)

