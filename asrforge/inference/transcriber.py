"""An asrforge checkpoint as a :class:`~asrforge.inference.recognizer.Recognizer`: audio (paths or arrays) -> text,
with the model, features, tokenizer, search and n-gram LM it needs."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from asrforge_runtime.audio import SAMPLE_RATE, load_audio
from asrforge.checkpoint import load_checkpoint
from asrforge.config import from_dict, to_dict
from asrforge.data.dataset import SpeechDataset
from asrforge.data.manifest import Skipped, Utterance, load_utterance
from asrforge_runtime.long_form import LONG_FORM_S
from asrforge_runtime.pieces import (describe_search, join_pieces, length_batches, placed_words, refuse_other_tasks,
                                     word_times_wanted)
from asrforge_runtime.search.config import DECODE_KEYS, DecodeConfig, decode_changes
from asrforge_runtime.search.ngram import NGramLM
from asrforge.decoding.searches import Decoded, decode_batch, uses_word_bonus
from asrforge_runtime.search.word_lm import WordLMScorer
from asrforge.devices import resolve_device
from asrforge.errors import AsrforgeError, CheckpointError, ConfigError
from asrforge.features import FeatureExtractor
from asrforge.features.cmvn import CMVNAccumulator, CMVNStats
from asrforge.inference.evaluate import Evaluation, as_written, evaluate_dataset, read_scored_manifest, scoring_for
from asrforge_runtime.result import Result, Segment, Word
from asrforge_runtime.words import ctc_token_spans, words_from_spans
from asrforge.inference.vad import VadOptions, speech_spans
from asrforge.models.build import build_model
from asrforge.progress import progress_bar
from asrforge.recipe import Recipe, recipe_from_dict
from asrforge.text import Normalizer, Tokenizer, tokenizer_from_state


LM_FILE = "lm.arpa"     # the n-gram `asrforge train` builds (lm.order > 0), beside the checkpoints


def recipe_lm_file(recipe: Recipe, checkpoint: Path) -> Path | None:
    """The ARPA file a recipe decodes with: ``lm.path``, or the trained ``lm.arpa`` in the checkpoint's folder."""
    if recipe.lm.path:
        return Path(recipe.lm.path)
    return checkpoint.parent / LM_FILE if recipe.lm.order > 0 else None


SPEECH_PAD_MS = 200     # kept around each stretch of speech: enough for word edges, little silence to decode


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




@dataclass(frozen=True)
class TranscribeOptions:
    """What :meth:`Transcriber.transcribe` was asked for, checked."""
    decode: DecodeConfig
    word_timestamps: bool
    speaker_stats: CMVNStats | list[CMVNStats | None] | None = None
    max_segment_s: float = LONG_FORM_S
    progress: bool = False


class Transcriber:
    """An asrforge model (any family) with its front end, tokenizer, search and LM."""

    sample_rate = SAMPLE_RATE
    languages: tuple[str, ...] = ()     # it reads the one language it was trained on, and takes no language option
    tasks = ("transcribe",)

    def __init__(self, model: torch.nn.Module, recipe: Recipe, tokenizer: Tokenizer, device: str | torch.device = "cpu",
                 source: str = ""):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.recipe = recipe
        self.tokenizer = tokenizer
        self.features = FeatureExtractor(recipe.features)
        self.normalizer = Normalizer(recipe.text)
        self.lm: WordLMScorer | None = None
        self.source = source

    # ---- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", lm: str | Path | bool = True,
                        lm_weight: float | None = None, word_bonus: float | None = None,
                        closed_vocabulary: bool | None = None) -> "Transcriber":
        """``path``: a checkpoint file, or an experiment folder (its ``best.pt``). ``lm``: True uses the recipe's
        n-gram LM (``lm.path``, or ``lm.arpa`` that training wrote beside the checkpoint), False none, a path that
        ARPA file; ``lm_weight``, ``word_bonus`` and ``closed_vocabulary`` default to the recipe's ``lm.*``."""
        return cls.from_state(load_checkpoint(path), device, lm, lm_weight, word_bonus, closed_vocabulary)

    @classmethod
    def from_state(cls, state: dict, device: str = "cpu", lm: str | Path | bool = True, lm_weight: float | None = None,
                   word_bonus: float | None = None, closed_vocabulary: bool | None = None) -> "Transcriber":
        """A checkpoint already read by :func:`asrforge.checkpoint.load_checkpoint` (its ``path`` entry included)."""
        recipe = recipe_from_dict(state["recipe"])
        tokenizer = tokenizer_from_state(state["tokenizer"])
        model = build_model(recipe.model, recipe.features.dim, tokenizer.vocab_size)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint {state['path']} does not match its own model config ({str(e).splitlines()[0][:160]}); it is damaged") from None
        transcriber = cls(model, recipe, tokenizer, device, state["path"])
        lm_file = recipe_lm_file(recipe, Path(state["path"])) if lm is True else (Path(lm) if lm else None)
        if lm is True and lm_file is not None and not lm_file.is_file():
            raise CheckpointError(f"{state['path']} decodes with the n-gram LM {lm_file}, which is missing: copy it "
                                  "there, give another with --lm PATH, or decode without one (--no-lm)")
        transcriber.use_lm(NGramLM.load(lm_file) if lm_file else None, lm_weight, word_bonus, closed_vocabulary)
        return transcriber

    def use_lm(self, lm: NGramLM | None, weight: float | None = None, word_bonus: float | None = None,
               closed_vocabulary: bool | None = None) -> None:
        """Fuse a word n-gram into beam search (``None``: decode without one); settings default to ``recipe.lm``."""
        if lm is None:
            self.lm = None
            return
        cfg = self.recipe.lm
        self.lm = WordLMScorer(lm, self.pieces, cfg.weight if weight is None else weight,
                               cfg.word_bonus if word_bonus is None else word_bonus,
                               cfg.closed_vocabulary if closed_vocabulary is None else closed_vocabulary)

    # ---- what it offers ---------------------------------------------------------------------------
    @property
    def word_timestamps(self) -> bool:
        """CTC heads and transducers align their tokens to frames; a plain attention decoder (LAS, Transformer) does not."""
        return self.model.objective != "attention" or self.model.ctc_head is not None

    @property
    def streaming(self) -> bool:
        """Whether the model was built to decode as audio arrives (a causal transducer: ``model.streaming``)."""
        return bool(getattr(self.recipe.model, "streaming", False))

    @property
    def beam_size(self) -> int:
        """The recipe's ``decode.beam_size``: what a transcription without ``beam_size`` searches with."""
        return self.decode_config().beam_size

    def decode_config(self, beam_size: int | None = None, **overrides) -> DecodeConfig:
        """The recipe's ``decode.*``, with ``beam_size`` (None: the recipe's) and any other of its keys changed.
        This is where "no beam size given" is resolved, for every command and the library alike."""
        changes = decode_changes(beam_size, overrides)
        if not changes:
            return self.recipe.decode
        return from_dict(DecodeConfig, {**to_dict(self.recipe.decode), **changes}, "decode.")

    def search_description(self, config: DecodeConfig) -> str:
        """How this model decodes with ``config``: ``greedy``, or ``beam 8, 2-gram LM weight 0.5 bonus 1, ...``."""
        return describe_search(config, self.lm, uses_word_bonus(self.model, config))

    def check_options(self, **options) -> None:
        """Refuse what this model cannot do (another language, translation, sampling, word times from a decoder
        without an alignment) and unknown options, before any audio is read."""
        self._options(options)

    def _options(self, options: dict) -> TranscribeOptions:
        options = dict(options)
        refuse_other_tasks(options)
        words = word_times_wanted(options, self.word_timestamps, self.recipe.model.family)
        own = {"beam_size", "speaker_stats", "max_segment_s", "progress"} | DECODE_KEYS
        unknown = sorted(set(options) - own)
        if unknown:
            raise ConfigError(f"option(s) {unknown} apply to Whisper checkpoints only; an asrforge model takes "
                              f"beam_size, max_segment_s, word_timestamps, speaker_stats and the decode.* knobs "
                              f"({', '.join(sorted(DECODE_KEYS - {'beam_size'}))})")
        decode = self.decode_config(options.pop("beam_size", None), **{k: options.pop(k) for k in DECODE_KEYS & set(options)})
        max_segment_s = options.get("max_segment_s") or LONG_FORM_S
        if max_segment_s <= 0:
            raise ConfigError(f"max_segment_s must be above 0, got {max_segment_s}")
        return TranscribeOptions(decode, words,
                                 options.get("speaker_stats"), max_segment_s, bool(options.get("progress")))

    # ---- the pieces -------------------------------------------------------------------------------
    @functools.cached_property
    def frame_seconds(self) -> float:
        """Seconds per encoder output frame (feature hop x time subsampling), measured once on the model itself."""
        n = 800
        with torch.inference_mode():
            feats = torch.zeros(1, n, self.recipe.features.dim, device=self.device)
            _, out = self.model.encode(feats, torch.tensor([n], device=self.device))
        return self.recipe.features.hop_ms / 1000 * n / int(out[0])

    def decode(self, feats: torch.Tensor, feat_lens: torch.Tensor, config: DecodeConfig | None = None,
               nbest: int = 1) -> Decoded:
        """Padded features ``(B, T, D)`` -> up to ``nbest`` hypotheses of each utterance, by the family's search
        as ``config`` (default: the recipe's ``decode``) says, with this transcriber's LM."""
        return decode_batch(self.model, feats.to(self.device), feat_lens.to(self.device), config or self.recipe.decode,
                            self.lm, nbest)

    def decode_text(self, feats: torch.Tensor, feat_lens: torch.Tensor, config: DecodeConfig | None = None) -> list[str]:
        """Padded features ``(B, T, D)`` -> one string per utterance."""
        return [self.tokenizer.decode(h.tokens).strip() for h in self.decode(feats, feat_lens, config).hyps]

    @functools.cached_property
    def pieces(self) -> list[str]:
        """Each token's text (the blank's empty), as word times and the word LM read them."""
        blank = self.tokenizer.blank_id
        return [self.tokenizer.piece(i) if i != blank else "" for i in range(self.tokenizer.vocab_size)]

    def words_from_frames(self, tokens: list[int], frames: list[int]) -> list[Word]:
        """Word times from the frame each token was emitted on (transducers)."""
        return words_from_spans(self.pieces, tokens, [(f, f) for f in frames], self.frame_seconds)

    def word_times(self, log_probs, length: int, tokens: list[int] | None = None) -> list[Word]:
        """CTC word times from ``log_probs (T, V)`` (a CPU tensor or an array). With ``tokens`` (the transcript a
        beam search chose), each token's frames come from aligning those tokens to ``log_probs`` (:func:`ctc_align`),
        so the times belong to the words shown; without, or when they cannot be aligned, from the best path: a
        token held over several frames spans them."""
        found, spans = ctc_token_spans(np.asarray(log_probs[:length], dtype=np.float32), tokens, self.tokenizer.blank_id)
        return words_from_spans(self.pieces, found, spans, self.frame_seconds)

    def text(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens).strip()

    # ---- what the streaming engine asks of a streaming model (asrforge_runtime/native_streaming.py) ------------
    @property
    def objective(self) -> str:
        return self.model.objective

    @functools.cached_property
    def search_network(self):
        """The model as the network the transducer searches run over (None for CTC)."""
        from asrforge.decoding.transducer import TorchTransducer

        return TorchTransducer(self.model) if self.objective == "transducer" else None

    @functools.cached_property
    def stream_encoder(self) -> "TorchStreamEncoder":
        return TorchStreamEncoder(self.model, self.device)

    def online_features(self):
        """A new stream's front end, computed as audio arrives (frames as numpy arrays)."""
        from asrforge.features.online import OnlineFeatures

        return NumpyFrames(OnlineFeatures(self.features))

    @property
    def speaker_cmvn(self) -> bool:
        """Trained with ``features.cmvn=speaker``: it reads best given a speaker's statistics (:meth:`pooled_speaker_stats`)."""
        return self.recipe.features.cmvn == "speaker"

    def pooled_speaker_stats(self, audio: list[str | Path | np.ndarray | Utterance]) -> CMVNStats:
        """CMVN statistics over all of ``audio`` (files, 16 kHz arrays or manifest utterances) taken as one speaker,
        for models trained with ``features.cmvn=speaker``. Unreadable items are left out here; transcribing them
        reports them."""
        acc = CMVNAccumulator()
        for item in audio:
            try:
                wave = (load_audio(item) if isinstance(item, (str, Path)) else load_utterance(item)
                        if isinstance(item, Utterance) else np.asarray(item, dtype=np.float32))
            except AsrforgeError:
                continue
            acc.add(self.features.statistics_frames(wave))
        if not acc.frames:
            raise AsrforgeError("none of the audio could be read to pool speaker statistics")
        return acc.stats()

    # ---- transcription ----------------------------------------------------------------------------
    def transcribe(self, audio: str | Path | np.ndarray, **options) -> Result:
        """A path or 16 kHz float array -> :class:`Result`. Options: ``beam_size`` (default: the recipe's), any
        other ``decode.*`` knob, ``word_timestamps``, ``speaker_stats``, ``max_segment_s``, ``progress``; see
        :meth:`transcribe_batch`."""
        return self.transcribe_batch([audio], **options)[0]

    def transcribe_batch(self, audio: list, **options) -> list[Result]:
        """Paths or 16 kHz float arrays -> one :class:`Result` each, their pieces decoded together in batches.

        Word times come from the CTC posteriors aligned to the chosen tokens (CTC and joint CTC/attention models)
        or the transducer's emission frames; LAS and Transformer decoders have no alignment, so their results
        carry no words. ``speaker_stats`` (from :meth:`pooled_speaker_stats`; one for all, or a list with one per
        input) normalizes models trained with speaker CMVN; without it each segment is normalized on its own.

        Input longer than ``max_segment_s`` (a lecture, a meeting) is cut into its stretches of speech by voice
        activity detection, none longer than ``max_segment_s``, and each is decoded as an utterance: models are
        trained on utterances of seconds, and over minutes a recurrent encoder drifts and self-attention's
        memory grows with the square of the length. Silence between them is not decoded."""
        opts = self._options(options)
        waves = [load_audio(a) if isinstance(a, (str, Path)) else np.asarray(a, dtype=np.float32) for a in audio]
        stats = opts.speaker_stats if isinstance(opts.speaker_stats, list) else [opts.speaker_stats] * len(waves)
        if len(stats) != len(waves):
            raise ConfigError(f"speaker_stats: {len(stats)} statistics for {len(waves)} inputs; give one, or one per input")
        results = self.transcribe_waves(waves, opts.decode, stats, opts.max_segment_s, opts.word_timestamps, opts.progress)
        for result, item in zip(results, audio):
            result.source = str(item) if isinstance(item, (str, Path)) else None
        return results

    def transcribe_waves(self, waves: list[np.ndarray], config: DecodeConfig, speaker_stats: list[CMVNStats | None],
                         max_segment_s: float = LONG_FORM_S, word_timestamps: bool = True,
                         progress: bool = False) -> list[Result]:
        """16 kHz float arrays -> :class:`Result` each (options already checked: see :meth:`transcribe_batch`)."""
        spans = [(w, start, end) for w, wave in enumerate(waves) for start, end in long_form_spans(wave, max_segment_s)]
        return join_pieces(waves, spans, self._decode_spans(waves, spans, config, speaker_stats, word_timestamps,
                                                            progress))

    def _decode_spans(self, waves: list[np.ndarray], spans: list[tuple[int, int, int]], config: DecodeConfig,
                      speaker_stats: list[CMVNStats | None], word_timestamps: bool, progress: bool) -> list[Segment]:
        """Each ``(wave, start, end)`` sample range decoded as one utterance, in batches of similar lengths -> one
        :class:`Segment` per span, in the spans' order, times counted from the start of its wave."""
        segments: list[Segment | None] = [None] * len(spans)
        batches = length_batches(spans)
        bar = progress_bar(total=len(spans), desc="decoding", unit="segment", disable=not progress, leave=False)
        hop = self.recipe.features.hop_ms / 1000
        for batch in batches:
            pieces = [waves[spans[i][0]][spans[i][1]:spans[i][2]] for i in batch]
            feats = [self.features(p, speaker_stats[spans[i][0]]) for p, i in zip(pieces, batch)]
            lens = torch.tensor([f.shape[0] for f in feats])
            decoded = self.decode(torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lens, config)
            for b, (i, piece) in enumerate(zip(batch, pieces)):
                hyp, (_, start, end) = decoded.hyps[b], spans[i]
                words = None
                if word_timestamps:
                    offset = start / SAMPLE_RATE
                    if self.recipe.features.trim_db is not None:     # frame 0 is the first one the trim kept
                        offset += self.features.kept_frames(piece).start * hop
                    if decoded.ctc_log_probs is not None:
                        found = self.word_times(decoded.ctc_log_probs[b], int(decoded.out_lens[b]), list(hyp.tokens))
                    else:
                        found = self.words_from_frames(hyp.tokens, hyp.frames or [])
                    words = placed_words(found, offset, end / SAMPLE_RATE)
                segments[i] = Segment(round(start / SAMPLE_RATE, 3), round(end / SAMPLE_RATE, 3),
                                      self.tokenizer.decode(hyp.tokens).strip(), words)
            bar.update(len(batch))
        bar.close()
        return segments

    # ---- scoring ----------------------------------------------------------------------------------
    def evaluate(self, manifest: str | Path, progress: bool = True, **options) -> Evaluation:
        """WER/CER on a manifest, decoded as the recipe's ``decode.*`` says unless ``beam_size`` or other of its keys
        are given (the options :meth:`transcribe` takes); speaker CMVN pools each speaker's statistics over the
        manifest. ``normalizer``: what references and hypotheses are scored after (:mod:`asrforge.text.scoring`;
        default ``basic``, the recipe's own normalization)."""
        normalizer, scoring = scoring_for(options.pop("normalizer", None))
        config = self._options(options).decode
        utts, bad = read_scored_manifest(manifest)
        dataset = SpeechDataset(utts, self.features, None, self.normalizer if scoring is None else as_written,
                                progress=progress)
        ev = evaluate_dataset(self, dataset, config, progress=progress, scoring=scoring)
        ev.bad, ev.normalizer = bad + ev.bad, normalizer
        ev.describe_search(self.search_description(config), config, self.lm is not None)
        return ev


class NumpyFrames:
    """An online front end whose frames come out as numpy arrays (the streaming engine's common currency)."""

    def __init__(self, features):
        self.features = features

    @property
    def finished(self) -> bool:
        return self.features.finished

    def accept(self, samples: np.ndarray) -> np.ndarray:
        return self.features.accept(samples).numpy()

    def finish(self) -> np.ndarray:
        return self.features.finish().numpy()


class TorchStreamEncoder:
    """A streaming model's ``initial_stream``/``forward_chunks`` over numpy frames, on the model's device."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model, self.device = model, device

    @torch.inference_mode()
    def initial_stream(self, x: np.ndarray):
        return self.model.initial_stream(torch.from_numpy(x).to(self.device))

    @torch.inference_mode()
    def forward_chunks(self, chunks: list[np.ndarray], states: list, finals: list[bool]) -> list[torch.Tensor]:
        """Transducer frames stay on the device for the joint network; CTC log-probabilities come to the CPU."""
        outs = self.model.forward_chunks([torch.from_numpy(c).to(self.device) for c in chunks], states, finals)
        return [o.float().cpu() for o in outs] if self.model.objective == "ctc" else outs
