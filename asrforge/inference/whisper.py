"""A Whisper checkpoint as a :class:`~asrforge.inference.recognizer.Recognizer`: long-form transcription the way
the reference does it.

The audio is cut into 30-second windows that *seek by the predicted timestamps*: a window ends where
the last complete segment ended, so no word is cut in half. Each window is decoded at temperature 0
and re-decoded at higher temperatures when the result looks wrong (it compresses too well, meaning a
loop, or its mean log-prob is too low), unless the window is judged silent. Text of earlier windows
conditions the next one unless a fallback fired.

``transcribe_batch`` decodes the first window of several recordings in one batch (for short clips, the
only window), and each recording's later windows alone, each conditioned on its own text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asrforge_runtime.audio import load_audio
from asrforge.decoding.whisper import DecodeResult, decode, detect_language
from asrforge.devices import resolve_device
from asrforge.errors import ConfigError
from asrforge.features.whisper import FRAME_SECONDS, N_FRAMES, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram, pad_or_trim
from asrforge.inference.evaluate import Evaluation, scoring_for
from asrforge_runtime.result import Result, Segment
from asrforge.inference.whisper_batched import transcribe_batched
from asrforge.inference.whisper_timing import add_word_timestamps
from asrforge.inference.whisper_windows import WhisperTranscribeOptions, decode_with_fallback, split_segments, with_decoding
from asrforge.models.whisper import Whisper, load_whisper_checkpoint
from asrforge.nn.int8 import DynamicInt8Linear, Int8Embedding, RowwiseInt8Linear, replace_linears
from asrforge.progress import progress_bar
from asrforge.text.whisper import WhisperTokenizer

FIRST_WINDOWS_PER_BATCH = 8     # first windows of different recordings decoded together by transcribe_batch


class WhisperTranscriber:
    """A loaded Whisper checkpoint with its tokenizer."""

    sample_rate = SAMPLE_RATE
    word_timestamps = True          # from the cross-attention of the alignment heads
    streaming = False
    beam_size = 1                   # greedy unless beam_size is given, as openai-whisper's transcribe()

    def __init__(self, model: Whisper, tokenizer: WhisperTokenizer, device: str | torch.device = "cpu",
                 source: str = ""):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.source = source

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", dtype: str = "float32",
             tokenizer_folder: str | Path | None = None, contents: dict | None = None) -> "WhisperTranscriber":
        """``dtype``: float32, float16/bfloat16 (GPU), or int8 (dynamic quantization of linear layers, CPU).
        ``contents``: an OpenAI ``.pt`` file's contents, when they have been read already."""
        resolve_device(device)           # a device this PyTorch cannot use fails before the weights are read
        if dtype not in ("float32", "float16", "bfloat16", "int8"):
            raise ConfigError(f"dtype {dtype!r}: use float32, float16, bfloat16 or int8")
        if dtype == "int8" and torch.device(device).type != "cpu":
            raise ConfigError("dtype int8 is for the CPU; on a GPU use float16 or bfloat16")
        loaded = load_whisper_checkpoint(path, contents)
        model = loaded.build()
        tokenizer = WhisperTokenizer.from_folder(tokenizer_folder or loaded.folder, model.is_multilingual, model.dims.n_vocab)
        if dtype == "int8":
            model = quantize_int8(model)
        elif dtype in ("float16", "bfloat16"):
            model = model.to(getattr(torch, dtype))
        return cls(model, tokenizer, device, str(path))

    # ---- what it offers ---------------------------------------------------------------------------
    @property
    def languages(self) -> tuple[str, ...]:
        """The codes it can be told, or detects among (``("en",)`` for English-only checkpoints)."""
        return tuple(self.tokenizer.language_codes) if self.tokenizer.multilingual else ("en",)

    @property
    def tasks(self) -> tuple[str, ...]:
        return ("transcribe", "translate") if self.tokenizer.multilingual else ("transcribe",)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.encoder.conv1.weight.dtype

    def check_options(self, **options) -> None:
        """Refuse unknown options and ones this checkpoint cannot honour, before any audio is read."""
        self._options(options)

    def _options(self, options: dict) -> WhisperTranscribeOptions:
        opts = WhisperTranscribeOptions.from_kwargs(**options)
        if opts.task not in self.tasks:
            raise ConfigError(f"task {opts.task!r}: this checkpoint offers {', '.join(self.tasks)}"
                              + ("; an English-only model (.en) cannot translate: use a multilingual checkpoint"
                                 if opts.task == "translate" else ""))
        if opts.batch_size is not None and opts.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {opts.batch_size}")
        if opts.language is not None:
            self.tokenizer.language_code(opts.language)     # an unknown code names the known ones
        return opts

    # ---- the pieces -------------------------------------------------------------------------------
    def mel(self, audio: np.ndarray) -> torch.Tensor:
        """Whole-file log-mel ``(n_mels, frames)``; 30 s of silence are appended as the reference does."""
        return log_mel_spectrogram(audio, self.model.dims.n_mels, padding=N_SAMPLES, device=self.device)

    @torch.inference_mode()
    def encode(self, mel_windows: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, 3000)`` -> encoder output ``(B, 1500, D)``."""
        return self.model.embed_audio(mel_windows.to(self.device, self.dtype))

    def detect_language(self, audio: np.ndarray | str | Path) -> tuple[str, dict[str, float]]:
        wave = _as_wave(audio)
        mel = pad_or_trim(self.mel(wave)[:, :-N_FRAMES])
        codes, probs = detect_language(self.model, self.tokenizer, self.encode(mel[None]))
        return codes[0], probs[0]

    def decode_with_fallback(self, features: torch.Tensor, opts: WhisperTranscribeOptions, language: str | None,
                             prompt: list[int], first: DecodeResult | None = None) -> DecodeResult:
        return decode_with_fallback(self.model, self.tokenizer, features, opts, language, prompt, first)

    def language_of(self, opts: WhisperTranscribeOptions) -> str | None:
        """The code ``opts`` asks for; None: detect it (multilingual models)."""
        if not self.tokenizer.multilingual:
            return "en"
        return None if opts.language is None else self.tokenizer.language_code(opts.language)

    # ---- transcription ----------------------------------------------------------------------------
    def transcribe(self, audio: np.ndarray | str | Path, progress: bool = False, **options) -> Result:
        """One file or 16 kHz float array -> :class:`Result`; ``options`` are openai-whisper's (see
        :class:`WhisperTranscribeOptions`)."""
        return self.transcribe_batch([audio], progress=progress, **options)[0]

    def transcribe_batch(self, audio: list, progress: bool = False, **options) -> list[Result]:
        """Files or 16 kHz float arrays -> one :class:`Result` each, as :meth:`transcribe` gives them."""
        opts = self._options(options)
        waves = [_as_wave(a) for a in audio]
        sources = [str(a) if isinstance(a, (str, Path)) else None for a in audio]
        if opts.batch_size:
            return [transcribe_batched(self, w, opts, opts.batch_size, progress, source=s) for w, s in zip(waves, sources)]
        results = []
        for k in range(0, len(waves), FIRST_WINDOWS_PER_BATCH):    # a group at a time: its log-mels are held whole
            group = range(k, min(k + FIRST_WINDOWS_PER_BATCH, len(waves)))
            mels = [self.mel(waves[i]) for i in group]
            for i, mel, first in zip(group, mels, self._first_windows(mels, opts)):
                results.append(self._transcribe_windows(waves[i], mel, opts, *first,
                                                        progress=progress and len(waves) == 1, source=sources[i]))
        return results

    def _first_windows(self, mels: list[torch.Tensor], opts: WhisperTranscribeOptions) -> list[tuple]:
        """Each recording's first window, all in one batch, decoded at the first temperature -> ``(encoder output
        (1, T, D), DecodeResult, language, language probabilities)`` per recording (None, None, the language
        asked for, None for a recording shorter than one frame)."""
        out: list[tuple] = [(None, None, self.language_of(opts), None)] * len(mels)
        batch = [i for i, m in enumerate(mels) if m.shape[-1] > N_FRAMES]
        if not batch:
            return out
        prompt = self.tokenizer.encode(" " + opts.initial_prompt.strip()) if opts.initial_prompt else []
        windows = torch.stack([pad_or_trim(mels[i][:, :min(N_FRAMES, mels[i].shape[-1] - N_FRAMES)]) for i in batch])
        features = self.encode(windows)
        languages = [self.language_of(opts)] * len(batch)
        probs: list[dict | None] = [None] * len(batch)
        if languages[0] is None:
            languages, probs = detect_language(self.model, self.tokenizer, features)
        results = decode(self.model, self.tokenizer, features,
                         opts.window_options(opts.temperature[0], None, prompt), languages=languages)
        for j, i in enumerate(batch):
            out[i] = (features[j: j + 1], results[j], languages[j], probs[j])
        return out

    def _transcribe_windows(self, wave: np.ndarray, mel: torch.Tensor, opts: WhisperTranscribeOptions,
                            first_features: torch.Tensor | None, first_result: DecodeResult | None,
                            language: str | None, language_probs: dict | None, progress: bool = False,
                            source: str | None = None) -> Result:
        """The sequential long-form loop over one recording's windows, its first window already decoded."""
        content_frames = mel.shape[-1] - N_FRAMES
        language = language or "en"     # only a recording without one frame of audio is left undetected
        all_tokens: list[int] = []
        if opts.initial_prompt:
            all_tokens = self.tokenizer.encode(" " + opts.initial_prompt.strip())
        prompt_reset_since = 0
        segments: list[dict] = []
        seek = 0
        last_speech_end = 0.0
        bar = progress_bar(total=content_frames, unit="frames", disable=not progress, desc="transcribing")
        while seek < content_frames:
            time_offset = seek * FRAME_SECONDS
            segment_size = min(N_FRAMES, content_frames - seek)
            if seek == 0 and first_features is not None:
                features, first = first_features, first_result
            else:
                features, first = self.encode(pad_or_trim(mel[:, seek: seek + segment_size])[None]), None
            result = self.decode_with_fallback(features, opts, language, all_tokens[prompt_reset_since:], first)
            previous_seek = seek
            if opts.silent(result):
                seek += segment_size
                bar.update(seek - previous_seek)
                continue

            new, seek = split_segments(self.tokenizer, result, seek, segment_size, time_offset)
            new = [s for s in new if s["end"] > s["start"] and s["text"].strip()]   # drop empty/instantaneous ones
            if opts.word_timestamps and new:
                last_speech_end = add_word_timestamps(
                    new, self.model, self.tokenizer, self.tokenizer.sot_sequence(language, opts.task), features,
                    segment_size, time_offset, language, last_speech_end, opts.prepend_punctuations,
                    opts.append_punctuations)
                words_end = max((w["end"] for s in new for w in s["words"]), default=0.0)
                if seek < previous_seek + segment_size and words_end > time_offset:
                    seek = round(words_end / FRAME_SECONDS)   # the words say more precisely where speech stopped
            for s in new:
                segments.append(with_decoding(s, result, previous_seek) | {"id": len(segments)})
                all_tokens.extend(s["tokens"])
            if not opts.condition_on_previous_text or result.temperature > 0.5:
                prompt_reset_since = len(all_tokens)   # a shaky window must not steer the next one
            bar.update(min(content_frames, seek) - previous_seek)
        bar.close()
        text = self.tokenizer.decode([t for s in segments for t in s["tokens"]])
        return Result(text, [Segment.from_dict(s) for s in segments], language, round(len(wave) / SAMPLE_RATE, 3),
                      language_probs, source)

    # ---- scoring ----------------------------------------------------------------------------------
    def evaluate(self, manifest: str | Path, progress: bool = True, **options) -> Evaluation:
        """WER/CER on a manifest: each utterance is one window (longer ones are skipped and reported), decoded
        greedily unless ``beam_size`` is above 1; ``language`` None: English for .en models, detected otherwise;
        ``normalizer`` (:mod:`asrforge.text.scoring`) defaults to ``whisper_english`` for English, else ``basic``."""
        from asrforge.inference.whisper_evaluate import evaluate_whisper_manifest

        other = sorted(set(options) - {"beam_size", "language", "task", "normalizer"})
        if other:
            raise ConfigError(f"option(s) {other}: a Whisper checkpoint is scored one window per utterance, with "
                              "beam_size, language, task and normalizer only")
        asked = options.pop("normalizer", None)
        opts = self._options(options)
        language = self.language_of(opts)
        # English is scored as Whisper's paper and the Open ASR Leaderboard score it; other languages as asrforge does
        normalizer, scoring = scoring_for(asked, "whisper_english" if language == "en" else "basic")
        ev = evaluate_whisper_manifest(self, manifest, opts.beam_size or 1, language, opts.task, progress, scoring)
        ev.normalizer = normalizer
        return ev


def _as_wave(audio: np.ndarray | str | Path) -> np.ndarray:
    if isinstance(audio, (str, Path)):
        return load_audio(audio)
    return np.asarray(audio, dtype=np.float32)


def quantize_int8(model: Whisper) -> Whisper:
    """Int8 weights with one scale per output row for every linear layer and the token embedding, in place (CPU
    only; see :mod:`asrforge.nn.int8`). Layers that read the audio (the encoder's, and the decoder's projections of
    the audio into keys and values) quantize their 1500-row inputs per row; the layers of a decoding step, the
    vocabulary projection included (as CTranslate2's int8 does; 10x faster per step than float), use PyTorch's
    dynamic int8 kernels."""
    decoder = model.decoder
    with torch.no_grad():
        replace_linears(model.encoder, RowwiseInt8Linear)
        for block in decoder.blocks:
            block.cross_attn.key = RowwiseInt8Linear(block.cross_attn.key)
            block.cross_attn.value = RowwiseInt8Linear(block.cross_attn.value)
        embedding = decoder.token_embedding.weight
        projection = torch.nn.Linear(embedding.shape[1], embedding.shape[0], bias=False, device="meta")
        projection.weight = embedding
        decoder.output_projection = projection
        replace_linears(decoder, DynamicInt8Linear.from_linear)     # the row-wise ones are not nn.Linear any more
        # the lookup reads the projection's int8 rows: the float table (106 MB for Whisper base) goes
        decoder.token_embedding = Int8Embedding.from_dynamic_linear(decoder.output_projection)
    return model
