"""Whisper fine-tuning as a task of the one :class:`~asrforge.train.trainer.Trainer`:
``asrforge train whisper_finetune model.init=PATH``.

What differs from a model trained from scratch is only here: Whisper's own front end (log-mel of the clip,
padded to the 30-s window in the model's forward), its tokenizer and targets, its loss (teacher-forced
cross-entropy after the start-of-transcript sequence), its dev scoring (Whisper decoding) and what a run keeps
(``EXP/whisper.pt``, OpenAI's layout, or with ``model.lora`` the adapters alone). Everything else (DDP, exact
resume, AMP, EMA, the time budget, accumulation, Ctrl-C, the skip report) is the trainer's.

Targets: ``<|startoftranscript|> <|lang|> <|task|>`` (multilingual; ``<|startoftranscript|>`` alone for English-only
models), then for a ``train.timestamp_ratio`` share of items ``<|0.00|> text <|t|>`` with t where voice activity
ends in the audio as the model hears it (speed perturbation included), else ``<|notimestamps|> text``; then
``<|endoftext|>``. The language is the manifest line's ``lang`` (or ``language``), else ``model.language``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from asrforge.data.dataset import BadItem, SpeechDataset
from asrforge.decoding.whisper import WhisperDecodeOptions, decode
from asrforge.errors import AsrforgeError, ConfigError
from asrforge.features.whisper import TIME_PRECISION, WhisperFeatures, pad_to_window
from asrforge.inference.vad import SAMPLE_RATE, VadOptions, speech_spans
from asrforge.inference.whisper_evaluate import MAX_SECONDS, evaluate_whisper
from asrforge.inference.whisper_timing import alignment_attention
from asrforge.models.whisper import RUN_CHECKPOINT, Whisper, save_openai, side_files_folder, tokenizer_files
from asrforge.models.whisper.checkpoints import copy_into
from asrforge.models.whisper.config import require_init
from asrforge.models.whisper.lora import save_adapters
from asrforge.recipe import Recipe
from asrforge.registry import PRETRAINED_MODELS
from asrforge.text import Normalizer, TextConfig
from asrforge.text.whisper import WhisperTokenizer
from asrforge.train.examples import Example, token_label

# speech ends where Silero's frames stop being speech: no margin added (the end timestamp marks the last word)
END_OF_SPEECH = VadOptions(speech_pad_ms=0, max_chunk_s=3600.0)
MAX_TIMESTAMP_S = 30.0


def speech_end(wave: np.ndarray) -> float | None:
    """Seconds from the start of ``wave`` (16 kHz) to the end of its last speech, or None if it has none."""
    spans = speech_spans(wave, END_OF_SPEECH)
    return spans[-1][1] / SAMPLE_RATE if spans else None


class WhisperTargets:
    """Transcript (+ language, + audio) -> decoder tokens: the tokenizer role in a training dataset."""

    def __init__(self, tokenizer: WhisperTokenizer, language: str | None, task: str, n_text_ctx: int,
                 timestamp_ratio: float, find_end: Callable[[np.ndarray], float | None] = speech_end):
        self.tokenizer = tokenizer
        self.language = language
        self.task = task
        self.n_text_ctx = n_text_ctx
        self.timestamp_ratio = timestamp_ratio
        self.find_end = find_end

    def state_dict(self) -> dict:
        """What ``last.pt`` records (the tokenizer's files are in the run's folder)."""
        return {"kind": "whisper", "language": self.language, "task": self.task}

    def prefix(self, language: str | None) -> list[int]:
        """The start-of-transcript sequence for an utterance in ``language`` (None: ``model.language``)."""
        tok = self.tokenizer
        if not tok.multilingual:
            if language is not None and language.lower() not in ("en", "english"):
                raise AsrforgeError(f"lang {language!r}: this Whisper model is English-only; fine-tune a multilingual "
                                    "checkpoint for other languages, or drop the line")
            return tok.sot_sequence(None, self.task)
        language = language if language is not None else self.language
        if language is None:
            raise AsrforgeError("no language: the line has no `lang` and model.language is null; give one of them")
        return tok.sot_sequence(language, self.task)

    def encode_utterance(self, text: str, language: str | None, audio: Callable[[], np.ndarray] | None,
                         gen: torch.Generator | None) -> list[int]:
        tok = self.tokenizer
        try:
            prefix = self.prefix(language)
        except ConfigError as e:      # an unknown language name: that line is skipped, the run goes on
            raise AsrforgeError(f"lang: {e}") from None
        body = tok.encode(" " + text.strip())
        end = None
        if audio is not None and self._draw(gen):
            end = self.find_end(audio())
        if end is not None:
            stamp = tok.timestamp_begin + round(min(end, MAX_TIMESTAMP_S) / TIME_PRECISION)
            ids = [*prefix, tok.timestamp_begin, *body, stamp, tok.eot]
        else:   # without timestamps, or no speech found to end a segment at
            ids = [*prefix, tok.no_timestamps, *body, tok.eot]
        if len(ids) > self.n_text_ctx:
            raise AsrforgeError(f"transcript is {len(ids)} tokens, more than this model's {self.n_text_ctx}; "
                                "split the utterance or drop it")
        return ids

    def _draw(self, gen: torch.Generator | None) -> bool:
        """Whether this item carries timestamps: its own generator decides, so the choice repeats on resume."""
        if self.timestamp_ratio <= 0.0 or gen is None:
            return False
        return self.timestamp_ratio >= 1.0 or float(torch.rand((), generator=gen)) < self.timestamp_ratio


class EncoderStates:
    """A frozen encoder's outputs, kept across epochs (on the CPU, up to ``max_bytes``), by the content of each clip's
    features: when nothing augments the audio, epoch 2 onward skips the encoder, nine tenths of a step on CPU.

    Exact: an item's states do not depend on the batch they were computed in (bitwise on CPU, tested), and a clip
    whose features differ in any bit is another key. The EMA copy of the model shares this object.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.states: dict[bytes, torch.Tensor] = {}
        self.bytes = 0
        self.hits = self.misses = 0

    def __deepcopy__(self, memo) -> "EncoderStates":
        return self

    @staticmethod
    def key(clip: torch.Tensor) -> bytes:
        return hashlib.blake2b(clip.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).digest() + \
            clip.shape[0].to_bytes(4, "little")

    @torch.no_grad()
    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor, encoder: nn.Module) -> torch.Tensor:
        """``feats (B, T, n_mels)`` clips -> encoder states ``(B, 1500, D)``, computed only for clips not kept."""
        lens = feat_lens.tolist()
        keys = [self.key(feats[i, :n]) for i, n in enumerate(lens)]
        missing = [i for i, k in enumerate(keys) if k not in self.states]
        self.hits, self.misses = self.hits + len(keys) - len(missing), self.misses + len(missing)
        fresh = {}
        if missing:
            rows = torch.tensor(missing, device=feats.device)
            out = encoder(pad_to_window(feats[rows], feat_lens[rows]))
            for j, i in enumerate(missing):
                fresh[i] = out[j]
                size = out[j].numel() * out[j].element_size()
                if keys[i] not in self.states and self.bytes + size <= self.max_bytes:
                    self.states[keys[i]] = out[j].cpu().clone()
                    self.bytes += size
        return torch.stack([fresh[i] if i in fresh else self.states[k].to(feats.device, non_blocking=True)
                            for i, k in enumerate(keys)])


class WhisperTraining(nn.Module):
    """The module the trainer trains (and DDP wraps): a Whisper model teacher-forced on batches.

    ``forward(feats (B, T, n_mels), feat_lens (B,), tokens (B, L), token_lens (B,))`` -> logits ``(B, L-1, V)``
    predicting ``tokens[:, 1:]``; the encoder runs without gradients when it is frozen.
    """

    objective = "whisper"

    def __init__(self, whisper: Whisper, freeze_encoder: bool, prompt_length: int, label_smoothing: float,
                 encoder_states: EncoderStates | None = None):
        super().__init__()
        self.whisper = whisper
        self.freeze_encoder = freeze_encoder
        self.encoder_states = encoder_states     # a frozen encoder's states kept across epochs, or None
        self.prompt_length = prompt_length     # the start-of-transcript tokens decoding gives (not learnt)
        self.label_smoothing = label_smoothing

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor, tokens: torch.Tensor,
                token_lens: torch.Tensor) -> torch.Tensor:
        if self.encoder_states is not None:
            audio = self.encoder_states.encode(feats, feat_lens, self.whisper.encoder)
        else:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
                audio = self.whisper.encoder(pad_to_window(feats, feat_lens))
        return self.whisper.decoder(tokens[:, :-1], audio)[0]


def _adapted_layers(whisper: Whisper, targets: list[str], freeze_encoder: bool) -> list[str]:
    names = [name for name, module in whisper.named_modules() if isinstance(module, nn.Linear)
             and any(name == t or name.endswith("." + t) for t in targets)
             and not (freeze_encoder and name.startswith("encoder."))]
    if not names:
        raise ConfigError(f"model.lora.targets {targets} names no linear layer of this model; layers are named as in "
                          "OpenAI's checkpoints, e.g. attn.query, attn.value, cross_attn.key, mlp.0")
    return names


class WhisperTask:
    """Front end, targets, model, loss, dev scoring and saving for fine-tuning a Whisper checkpoint."""

    scores_before_training = True      # dev WER of the checkpoint as given, logged as epoch 0
    max_seconds = MAX_SECONDS          # one window per utterance: longer ones are skipped and reported
    grad_checkpointing = True          # train.grad_checkpointing recomputes its encoder and decoder blocks

    @staticmethod
    def check(recipe: Recipe) -> None:
        """Settings that cannot work for Whisper, refused by name before any data is read."""
        require_init(recipe.model)
        if recipe.augment.vtlp:
            raise ConfigError("augment.vtlp warps the mel filters of asrforge's own front end; a Whisper checkpoint's "
                              "log-mel front end is fixed. Remove it (augment.vtlp=[]) and use augment.speed_factors")
        if recipe.train.speaker_adversarial:
            raise ConfigError("train.speaker_adversarial trains asrforge's own encoders; set it to 0 for Whisper")

    def __init__(self, recipe: Recipe, out: Path, device: torch.device, progress: bool):
        cfg = recipe.model
        self.recipe, self.out, self.progress = recipe, out, progress
        self.check(recipe)
        whisper: Whisper = PRETRAINED_MODELS.get(cfg.family).cls(cfg)
        self.tokenizer_folder = Path(cfg.tokenizer) if cfg.tokenizer else side_files_folder(cfg.init)
        words = WhisperTokenizer.from_folder(self.tokenizer_folder, whisper.is_multilingual, whisper.dims.n_vocab)
        self.words = words
        self.language = (words.language_code(cfg.language) if words.multilingual and cfg.language
                         else None if words.multilingual else "en")
        self.tokenizer = WhisperTargets(words, self.language, cfg.task, whisper.dims.n_text_ctx,
                                        recipe.train.timestamp_ratio)
        self.features = WhisperFeatures(whisper.dims.n_mels)
        for p in whisper.encoder.parameters():
            p.requires_grad_(not cfg.freeze_encoder)
        whisper.encoder.checkpointing = whisper.decoder.checkpointing = recipe.train.grad_checkpointing
        self.lora_layers = self._add_adapters(whisper) if cfg.lora.rank else []
        # a frozen encoder fed the same features every epoch gives the same states: keep them (for a second epoch)
        keep = (cfg.freeze_encoder and recipe.train.frozen_encoder_cache_gb > 0 and not recipe.augment.enabled
                and not recipe.specaugment.enabled and recipe.train.epochs > 1)
        self.encoder_states = EncoderStates(int(recipe.train.frozen_encoder_cache_gb * 2**30)) if keep else None
        self.model = WhisperTraining(whisper, cfg.freeze_encoder, 3 if words.multilingual else 1,
                                     cfg.label_smoothing, self.encoder_states).to(device)
        # the tokenizer's files travel with the run, so EXP loads (and exports) on its own
        self.tokenizer_files = tokenizer_files(self.tokenizer_folder, words, out)

    def _add_adapters(self, whisper: Whisper) -> list[str]:
        """LoRA on the layers ``model.lora.targets`` names, through peft; every other weight is frozen."""
        lora = self.recipe.model.lora
        from asrforge.extras import require_extra

        require_extra("lora", "model.lora", "peft")
        from peft import LoraConfig, inject_adapter_in_model

        names = _adapted_layers(whisper, lora.targets, self.recipe.model.freeze_encoder)
        for p in whisper.parameters():
            p.requires_grad_(False)
        pattern = "|".join(re.escape(n) for n in names)
        inject_adapter_in_model(LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                           target_modules=f"^({pattern})$"), whisper)
        return names

    # ---- what the trainer asks of a task ---------------------------------------------------------
    def dummy_inputs(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """A one-item batch whose loss (times zero) lets a rank with nothing usable join DDP's all-reduce."""
        n_mels = self.model.whisper.dims.n_mels
        prompt = self.model.prompt_length
        tokens = torch.full((1, prompt + 2), self.words.eot, dtype=torch.long, device=device)
        return (torch.zeros(1, 16, n_mels, device=device), torch.tensor([16], device=device), tokens,
                torch.tensor([prompt + 2], device=device))

    def validate(self, model: WhisperTraining, dev_set: SpeechDataset) -> dict:
        """Dev WER/CER by Whisper's own decoding (each utterance one window, no timestamps)."""
        batch = max(1, min(self.recipe.data.max_batch_size, 16))
        return evaluate_whisper(model.whisper, self.words, dev_set, self.language, self.recipe.model.task,
                                self.recipe.decode.beam_size, batch, progress=False).summary()

    @torch.inference_mode()
    def examples(self, model: WhisperTraining, dev_set: SpeechDataset, indices: list[int]) -> list[Example]:
        """Dev utterances decoded as :meth:`validate` decodes them (``decode.beam_size``, no timestamps), their texts
        as scored, and the alignment heads' attention (their mean; the heads word timestamps read) over the
        hypothesis."""
        whisper, words, score = model.whisper, self.words, Normalizer(TextConfig())
        device, dtype = next(whisper.parameters()).device, whisper.encoder.conv1.weight.dtype
        beam = self.recipe.decode.beam_size
        options = WhisperDecodeOptions(task=self.recipe.model.task, language=self.language, without_timestamps=True,
                                       beam_size=beam if beam > 1 else None)
        examples = []
        for index in indices:
            item = dev_set[index]
            if isinstance(item, BadItem):
                continue
            frames = item.feats.shape[0]
            audio = whisper.encoder(pad_to_window(item.feats[None], torch.tensor([frames])).to(device, dtype))
            result = decode(whisper, words, audio, options, languages=[item.language or self.language])[0]
            text = [t for t in result.tokens if t < words.eot]
            sot = words.sot_sequence(result.language, self.recipe.model.task)
            _, weights = alignment_attention(whisper, words, sot, text, audio, frames)
            first = len(sot)          # the <|notimestamps|> query predicts the first text token
            example = Example(item.id, dev_set.wave(index), score(item.text), score(result.text), TIME_PRECISION)
            example.attention = weights.mean(0)[None, first: first + len(text) + 1].cpu().numpy()
            example.attention_rows = [token_label(words.decode([t])) for t in text] + ["<|endoftext|>"]
            example.attention_panels = [f"mean of the {len(whisper.alignment_heads)} alignment heads"]
            examples.append(example)
        return examples

    def weights(self, model: WhisperTraining) -> dict[str, torch.Tensor]:
        """What ``last.pt`` keeps of the model: everything, or (LoRA) the adapters alone, the base being model.init."""
        state = model.state_dict()
        return {k: v for k, v in state.items() if "lora_" in k} if self.lora_layers else state

    def load_weights(self, model: WhisperTraining, weights: dict[str, torch.Tensor]) -> None:
        missing, unexpected = model.load_state_dict(weights, strict=not self.lora_layers)
        if unexpected or any("lora_" in k for k in missing):
            raise ConfigError("--resume: the checkpoint's weights do not fit this model (model.lora changed?); "
                              "start again with --overwrite")

    def save_best(self, model: WhisperTraining, **training_state) -> None:
        """``EXP/whisper.pt`` (OpenAI's layout, tokenizer beside it), or ``EXP/adapters.*`` for a LoRA run."""
        if not self.lora_layers:
            save_openai(model.whisper, self.out / RUN_CHECKPOINT, self.tokenizer_files)
            return
        lora = self.recipe.model.lora
        adapters = {}
        for key, value in model.whisper.state_dict().items():
            if "lora_" in key:    # peft's "NAME.lora_A.default.weight" -> "NAME.lora_A"
                layer, which = re.match(r"(.*)\.(lora_[AB])\.", key).groups()
                adapters[f"{layer}.{which}"] = value
        save_adapters(adapters, self.out, str(Path(self.recipe.model.init).resolve()), lora.rank, lora.alpha,
                      self.lora_layers)
        copy_into(self.tokenizer_files, self.out)

