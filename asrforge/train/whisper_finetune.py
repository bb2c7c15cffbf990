"""Fine-tune a Whisper checkpoint on a manifest: ``asrforge train whisper_finetune model.init=PATH``.

The data path is the one every asrforge model uses (manifests, duration batches, waveform augmentation,
SpecAugment, the skip report); what differs is Whisper's own front end, its tokenizer and its loss:
the decoder is teacher-forced on ``<|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|> text
<|endoftext|>`` and learns the text and the end token (the task prefix is given, not learned).

WER on ``data.dev`` is measured before the first step and after every epoch; the best weights (lowest dev WER,
ties broken by the lower dev loss) are written as an OpenAI ``.pt`` (``EXP/whisper.pt``, tokenizer beside it)
and a Hugging Face folder (``EXP/hf``); ``EXP/results.json`` holds the figures and the best epoch,
``EXP/dev_before.jsonl`` and ``dev_after.jsonl`` each utterance's hypothesis. Single process (no DDP).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from asrforge.data.augment import SpecAugment, WaveAugment
from asrforge.data.dataset import Batch, SpeechDataset, collate
from asrforge.data.sampler import DurationBatchSampler
from asrforge.errors import AsrforgeError, ConfigError
from asrforge.features.whisper import WhisperFeatures, pad_to_window
from asrforge.inference.whisper_evaluate import evaluate_whisper, whisper_dataset
from asrforge.devices import resolve_device
from asrforge.models.whisper import Whisper, save_huggingface, save_openai, side_files_folder, tokenizer_files
from asrforge.progress import log, progress_bar
from asrforge.recipe import Recipe
from asrforge.registry import PRETRAINED_MODELS
from asrforge.text import Normalizer
from asrforge.text.whisper import WhisperTokenizer
from asrforge.train.schedule import WarmupCosine
from asrforge.train.trainer import _load_split

class WhisperTargets:
    """Transcript -> decoder tokens ``prefix + text + <|endoftext|>`` (the tokenizer role in a dataset)."""

    def __init__(self, tokenizer: WhisperTokenizer, prefix: list[int], n_text_ctx: int):
        self.tokenizer = tokenizer
        self.prefix = prefix
        self.n_text_ctx = n_text_ctx

    def encode(self, text: str) -> list[int]:
        ids = [*self.prefix, *self.tokenizer.encode(" " + text.strip()), self.tokenizer.eot]
        if len(ids) > self.n_text_ctx:
            raise AsrforgeError(f"transcript is {len(ids)} tokens, more than this model's {self.n_text_ctx}; "
                                "split the utterance or drop it")
        return ids


class WhisperFineTuner:
    def __init__(self, recipe: Recipe, out_dir: str | Path, progress: bool = True):
        cfg = recipe.model
        self.recipe = recipe
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        train = recipe.train
        torch.manual_seed(train.seed)
        torch.set_num_threads(train.threads or max(1, os.cpu_count() or 1))
        self.device = resolve_device(train.device, option="train.device")

        self.model: Whisper = PRETRAINED_MODELS.get(cfg.family).cls(cfg).to(self.device)
        self.tokenizer_folder = Path(cfg.tokenizer) if cfg.tokenizer else side_files_folder(cfg.init)
        self.tokenizer = WhisperTokenizer.from_folder(self.tokenizer_folder, self.model.is_multilingual,
                                                     self.model.dims.n_vocab)
        self.language = (self.tokenizer.language_code(cfg.language) if self.tokenizer.multilingual and cfg.language
                         else None if self.tokenizer.multilingual else "en")
        self.prefix = [*self.tokenizer.sot_sequence(self.language, cfg.task), self.tokenizer.no_timestamps]
        for p in self.model.encoder.parameters():
            p.requires_grad_(not cfg.freeze_encoder)

        # Whisper reads cased, punctuated text: whisper_finetune.yaml removes only markers and extra spaces
        # from training transcripts. WER compares normalized text on both sides.
        self.train_text = Normalizer(recipe.text)
        train_utts, self.skipped = _load_split(recipe.data.train, "train", min(recipe.data.max_duration, 30.0))
        dev_utts, dev_skips = _load_split(recipe.data.dev, "dev", 30.0)
        self.skipped += dev_skips
        features = WhisperFeatures(self.model.dims.n_mels)
        targets = WhisperTargets(self.tokenizer, self.prefix, self.model.dims.n_text_ctx)
        specaug = SpecAugment(recipe.specaugment) if recipe.specaugment.enabled else None
        if recipe.augment.vtlp:
            raise ConfigError("augment.vtlp warps the mel filters of asrforge's own front end; a Whisper checkpoint's "
                              "log-mel front end is fixed. Remove it (augment.vtlp=[]) and use augment.speed_factors")
        augment = WaveAugment(recipe.augment) if recipe.augment.enabled else None
        self.train_set = SpeechDataset(train_utts, features, targets, self.train_text, specaug, train.seed,
                                       cache_features=recipe.data.cache_features, wave_augment=augment)
        self.dev_set = whisper_dataset(dev_utts, self.model, self.train_text, recipe.data.cache_features)
        # the same utterances with their targets, for the dev loss that breaks ties of dev WER
        self.dev_targets = SpeechDataset(dev_utts, features, targets, self.train_text, None, train.seed,
                                         cache_features=recipe.data.cache_features)
        self.sampler = DurationBatchSampler(self.train_set.durations, recipe.data.max_batch_seconds, shuffle=True,
                                            seed=train.seed, max_batch_size=recipe.data.max_batch_size)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=train.lr, weight_decay=train.weight_decay)
        self.steps_per_epoch = max(1, math.ceil(len(self.sampler) / train.accum_steps))
        self.scheduler = WarmupCosine(self.optimizer, train.lr, train.warmup_steps, train.epochs * self.steps_per_epoch,
                                      train.final_lr_ratio)

    # ------------------------------------------------------------------ the pieces
    def audio_features(self, batch: Batch) -> torch.Tensor:
        mel = pad_to_window(batch.feats, batch.feat_lens).to(self.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.recipe.model.freeze_encoder):
            return self.model.encoder(mel)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Teacher-forced cross-entropy on the text tokens and ``<|endoftext|>`` (mean per token)."""
        tokens = batch.tokens.to(self.device)
        inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
        positions = torch.arange(targets.shape[1], device=self.device)[None]
        learn = (positions >= len(self.prefix) - 1) & (positions < batch.token_lens.to(self.device)[:, None] - 1)
        targets[~learn] = -100
        logits, _ = self.model.decoder(inputs, self.audio_features(batch))
        return F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100,
                               label_smoothing=self.recipe.model.label_smoothing)

    def evaluate(self, desc: str, hypotheses: Path) -> dict:
        """Dev WER/CER of the current weights, and their dev loss (``loss``)."""
        ev = evaluate_whisper(self.model, self.tokenizer, self.dev_set, self.language, self.recipe.model.task,
                              self.recipe.decode.beam_size, self.eval_batch_size, self.progress, hypotheses, desc)
        self.skipped += ev.bad
        return {**ev.summary(), "loss": self.dev_loss()}

    @property
    def eval_batch_size(self) -> int:
        return max(1, min(self.recipe.data.max_batch_size, 16))

    @torch.no_grad()
    def dev_loss(self) -> float:
        """Teacher-forced loss on the dev transcripts, per utterance (those whose text cannot be a target are
        left out). Once dev WER stops moving (often at 0 % on a small dev set), it tells the epochs apart."""
        was_training = self.model.training
        self.model.eval()
        total, counted = 0.0, 0
        for first in range(0, len(self.dev_targets), self.eval_batch_size):
            batch = collate([self.dev_targets[i] for i in range(first, min(first + self.eval_batch_size,
                                                                           len(self.dev_targets)))])
            if len(batch):
                total += float(self.loss(batch)) * len(batch)
                counted += len(batch)
        self.model.train(was_training)
        return total / counted if counted else math.inf

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict:
        train = self.recipe.train
        before = self.evaluate("dev WER before", self.out / "dev_before.jsonl")
        self._log({"epoch": 0, "step": 0, "dev_wer": before["wer"], "dev_cer": before["cer"], "dev_loss": before["loss"]})
        if self.progress:
            log.info(f"before fine-tuning: dev WER {100 * before['wer']:.2f}%  CER {100 * before['cer']:.2f}%")
        best, best_epoch = before, 0
        self._save()               # the starting point is the best until an epoch beats it
        step, epoch, started, stop = 0, 0, time.time(), False
        self.model.train()
        while epoch < train.epochs and not stop:
            self.sampler.set_epoch(epoch)
            bar = progress_bar(self.sampler, desc=f"epoch {epoch + 1}/{train.epochs}", unit="batch",
                               disable=not self.progress, dynamic_ncols=True)
            losses = []
            for i, indices in enumerate(bar):
                batch = collate([self.train_set[key] for key in indices])   # (index, epoch) pairs
                self.skipped += batch.bad
                if len(batch):
                    loss = self.loss(batch)
                    (loss / train.accum_steps).backward()
                    losses.append(float(loss.detach()))
                if (i + 1) % train.accum_steps and i + 1 < len(self.sampler):
                    continue
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                step += 1
                if losses and step % train.log_every == 0:
                    self._log({"step": step, "epoch": epoch, "loss": sum(losses) / len(losses), "lr": self.scheduler.lr})
                    bar.set_postfix(loss=f"{sum(losses) / len(losses):.3f}", lr=f"{self.scheduler.lr:.1e}", refresh=False)
                    losses = []
                if (train.max_steps is not None and step >= train.max_steps) or (
                        train.max_minutes is not None and time.time() - started >= 60 * train.max_minutes):
                    stop = True
                    break
            bar.close()
            epoch += 1
            metrics = self.evaluate("dev WER", self.out / "dev_last.jsonl")
            self._log({"epoch": epoch, "step": step, "dev_wer": metrics["wer"], "dev_cer": metrics["cer"],
                       "dev_loss": metrics["loss"], "elapsed_min": (time.time() - started) / 60})
            if self.progress:
                log.info(f"epoch {epoch}: dev WER {100 * metrics['wer']:.2f}%  CER {100 * metrics['cer']:.2f}%")
            if (metrics["wer"], metrics["loss"]) < (best["wer"], best["loss"]):   # a WER tie goes to the lower loss
                best, best_epoch = metrics, epoch
                self._save()
                (self.out / "dev_after.jsonl").write_bytes((self.out / "dev_last.jsonl").read_bytes())
        summary = {"dev_wer_before": before["wer"], "dev_wer_after": best["wer"], "dev_cer_before": before["cer"],
                   "dev_cer_after": best["cer"], "best_epoch": best_epoch, "epochs": epoch, "steps": step,
                   "train_minutes": (time.time() - started) / 60, "skipped": len(self.skipped),
                   "openai_checkpoint": str(self.out / "whisper.pt"), "huggingface_folder": str(self.out / "hf")}
        (self.out / "results.json").write_text(json.dumps(summary, indent=2))
        with open(self.out / "skipped.jsonl", "w") as f:
            for bad in self.skipped:
                f.write(json.dumps({"item": getattr(bad, "item", getattr(bad, "id", "")), "reason": bad.reason}) + "\n")
        return summary

    def _save(self) -> None:
        files = tokenizer_files(self.tokenizer_folder, self.tokenizer, self.out)
        save_openai(self.model, self.out / "whisper.pt", files)
        save_huggingface(self.model, self.out / "hf", files, self.tokenizer)

    def _log(self, record: dict) -> None:
        with open(self.out / "train_log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
