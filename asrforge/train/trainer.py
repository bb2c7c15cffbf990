"""Training loop: AdamW + warmup/cosine, clipping, accumulation, AMP on GPU, DDP under torchrun,
a wall-clock budget, exact resume, per-epoch validation, best.pt/last.pt and train_log.jsonl.

Exact resume rests on three facts: the batch order depends only on (seed, epoch); SpecAugment
masks depend only on (seed, epoch, utterance); and the global torch RNG (dropout) is saved and
restored. DataLoader workers get their seeds from a private generator, so creating a loader
does not disturb the global RNG.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from asrforge.data.augment import SpecAugment, WaveAugment
from asrforge.config import to_dict
from asrforge.data.dataset import ItemMaker, SpeechDataset, collate
from asrforge.data.manifest import Skipped, Utterance, load_utterance, missing_audio, read_manifest
from asrforge.data.sampler import DurationBatchSampler
from asrforge.data.shards import ShardStream, is_shard_spec, pool_speaker_statistics, read_index, shard_speakers
from asrforge.decoding.kneser_ney import write_lm
from asrforge.errors import AsrforgeError, CheckpointError, ConfigError
from asrforge.features import FeatureConfig, FeatureExtractor
from asrforge.features.cmvn import CMVNAccumulator, CMVNStats
from asrforge.inference.transcriber import LM_FILE
from asrforge.losses.objectives import loss_terms, objective_for
from asrforge.models.whisper.config import WhisperModelConfig
from asrforge.progress import log, progress_bar
from asrforge.recipe import Recipe, recipe_from_dict
from asrforge.text import Normalizer, build_tokenizer, tokenizer_from_state
from asrforge import distributed as D
from asrforge.train.adversary import NO_SPEAKER, SpeakerAdversary, reversal_scale, speaker_index
from asrforge.checkpoint import load_checkpoint, save_checkpoint
from asrforge.train.examples import example_indices
from asrforge.train.loggers import TrainLoggers
from asrforge.train.schedule import WarmupCosine
from asrforge.train.task import ScratchTask
from asrforge.train.whisper_task import WhisperTask


@dataclass
class TrainState:
    epoch: int = 0                 # epochs completed
    batch_in_epoch: int = 0        # batches of the current epoch consumed
    step: int = 0                  # optimizer steps
    planned_epochs: int = 0        # may shrink to fit train.max_minutes
    elapsed: float = 0.0           # training seconds across resumes
    best_wer: float = math.inf
    best_loss: float = math.inf    # dev loss of best.pt: breaks ties in dev WER (a dev set often saturates at 0 %)
    best_epoch: int | None = None  # the epoch the best weights are from (0: a pretrained model before training)
    wer_before: float | None = None   # dev WER of a pretrained model before the first step
    skipped: dict = field(default_factory=dict)   # item id -> reason (unique items)


def _load_split(paths: str | list[str] | None, name: str, max_duration: float | None) -> tuple[list[Utterance], list[Skipped]]:
    if not paths:
        raise ConfigError(f"data.{name} is not set; pass data.{name}=PATH/TO/{name}.jsonl (or a list: [a.jsonl,b.jsonl])")
    utts, skipped = [], []
    for path in [paths] if isinstance(paths, str) else paths:
        more, bad = read_manifest(path)
        utts += more
        skipped += bad
    if max_duration:
        skipped += [Skipped(u.id, f"longer than data.max_duration={max_duration}s") for u in utts if u.duration > max_duration]
        utts = [u for u in utts if u.duration <= max_duration]
    missing = missing_audio(utts)    # unreadable files are caught when loaded
    skipped += [Skipped(u.id, f"audio file {u.audio_filepath} does not exist") for u in utts if u.audio_filepath in missing]
    utts = [u for u in utts if u.audio_filepath not in missing]
    if not utts:
        if not skipped:
            raise AsrforgeError(f"data.{name} ({paths}) lists no utterances")
        raise AsrforgeError(f"data.{name} ({paths}) has no usable utterance: all {len(skipped)} skipped, the first "
                            f"({skipped[0].item}) because: {skipped[0].reason}")
    return utts, skipped


# where, and for how long, a run goes: a resumed run may change these (and data.*) and still continue exactly
RESUME_MAY_CHANGE = ("train.max_minutes", "train.max_steps", "train.device", "train.threads", "train.amp",
                     "train.log_every", "train.trace", "train.frozen_encoder_cache_gb", "train.loggers",
                     "train.tensorboard_examples")


def _flat(tree: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}``."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _dev_record(metrics: dict) -> dict:
    """A validation's figures as train_log.jsonl holds them (an infinite dev loss, nothing scorable, is null)."""
    return {"dev_wer": metrics["wer"], "dev_cer": metrics["cer"],
            "dev_loss": metrics["loss"] if math.isfinite(metrics["loss"]) else None, "dev_utts": metrics["utts"]}


class StopOnInterrupt:
    """Ctrl-C while training: the step in hand finishes, ``last.pt`` is saved where training stopped (resumable
    exactly, like a time-budget stop), and then the run ends with KeyboardInterrupt. A second Ctrl-C stops at
    once. Outside the main thread (where signals cannot be caught) it does nothing."""

    def __init__(self):
        self.asked = False
        self._previous = None

    def __enter__(self) -> "StopOnInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._ask)
        return self

    def _ask(self, signum, frame) -> None:
        self.asked = True
        signal.signal(signal.SIGINT, self._previous)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _ignore_interrupts(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the training process, which stops cleanly; killed, they would break it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


GLOBAL_STATS_UTTS = 2000       # utterances global CMVN is measured on at most (evenly spread over data.train)


def global_statistics(features: FeatureConfig, utts: list, progress: bool = False) -> FeatureConfig:
    """``features`` with ``global_mean``/``global_std`` measured on (up to :data:`GLOBAL_STATS_UTTS` of) ``utts``."""
    extractor = FeatureExtractor(features)
    acc = CMVNAccumulator()
    step = max(1, len(utts) // GLOBAL_STATS_UTTS)
    for u in progress_bar(utts[::step], desc="global CMVN statistics", unit="utt", disable=not progress, leave=False):
        try:
            acc.add(extractor.unnormalized(load_utterance(u)))
        except AsrforgeError:
            continue            # the dataset reports unreadable audio
    if not acc.frames:
        raise ConfigError("features.cmvn=global: none of data.train's audio could be read to measure statistics")
    stats = acc.stats()
    return replace(features, global_mean=[round(v, 5) for v in stats.mean.tolist()],
                   global_std=[round(v, 5) for v in stats.std.tolist()])


class Trainer:
    def __init__(self, recipe: Recipe, out_dir: str | Path, resume: bool = False, progress: bool = True):
        self.out = Path(out_dir)
        self._loggers: TrainLoggers | None = None
        self.dist = D.init_distributed(recipe.train.device)
        self.progress = progress and self.dist.is_main
        cfg = recipe.train
        world = self.dist.world
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // world))
        torch.manual_seed(cfg.seed)

        self.state = TrainState()
        self._interrupt = StopOnInterrupt()
        self._speaker_acc: list[float] = []   # the adversary's accuracy per batch since the last log line
        checkpoint = None
        if resume:
            last = self.out / "last.pt"
            if not last.is_file():
                raise CheckpointError(f"--resume: {last} does not exist; start without --resume")
            checkpoint = load_checkpoint(last)
            recipe = self._resumed_recipe(recipe, recipe_from_dict(checkpoint["recipe"]))
        self.recipe = recipe
        self.out.mkdir(parents=True, exist_ok=True)

        self.normalizer = Normalizer(recipe.text)
        whisper = isinstance(recipe.model, WhisperModelConfig)
        if whisper:
            WhisperTask.check(recipe)
        # the model's own limit (a Whisper window holds 30 s): longer utterances are skipped and reported
        max_seconds = (WhisperTask if whisper else ScratchTask).max_seconds
        limits = [x for x in (recipe.data.max_duration, max_seconds) if x]
        max_train = min(limits) if limits else None
        shards = is_shard_spec(recipe.data.train)
        if shards:
            index = read_index(recipe.data.train)
            raw_texts = index["transcripts"]
            self.manifest_skips = [Skipped(s["item"], s["reason"]) for s in index["skipped"]]
        else:
            train_utts, self.manifest_skips = _load_split(recipe.data.train, "train", max_train)
            raw_texts = [u.text for u in train_utts]
        train_texts = [self.normalizer(t) for t in raw_texts]      # once: the tokenizer and the LM learn from them
        if not any(train_texts):
            raise ConfigError(f"data.train {recipe.data.train}: none of its {len(train_texts)} utterances has a transcript "
                              "(after normalization); training needs text. Manifests of untranscribed audio "
                              "(`prepare folder --audio-only`) are for augment.* and `asrforge adapt`")
        if not whisper and recipe.features.cmvn == "global" and recipe.features.global_mean is None:
            if shards:
                raise ConfigError("features.cmvn=global with shards: measure the statistics on a manifest first "
                                  "and give them as features.global_mean and features.global_std")
            recipe = self.recipe = replace(recipe, features=global_statistics(recipe.features, train_utts,
                                                                              self.progress))
        dev_utts, dev_skips = _load_split(recipe.data.dev, "dev", max_seconds)
        self.manifest_skips += dev_skips
        if whisper:
            self.task = WhisperTask(recipe, self.out, self.dist.device, self.progress)
        else:
            tokenizer = (tokenizer_from_state(checkpoint["tokenizer"]) if checkpoint else
                         build_tokenizer(recipe.text, train_texts))
            self.task = ScratchTask(recipe, tokenizer, self.out, self.dist.device)
        self.tokenizer = self.task.tokenizer

        features = self.task.features
        specaug = SpecAugment(recipe.specaugment) if recipe.specaugment.enabled else None
        augment = WaveAugment(recipe.augment) if recipe.augment.enabled else None
        self.dev_set = SpeechDataset(dev_utts, features, None, self.normalizer, None,
                                     cache_features=recipe.data.cache_features, progress=self.progress)
        # the same utterances and feature cache with token ids, for the dev loss (WER keeps every utterance)
        self.dev_targets = self.dev_set.with_tokenizer(self.tokenizer)
        if shards:
            # a stream of ready batches; it stands where the batch sampler stands for manifests
            maker = ItemMaker(features, self.tokenizer, self.normalizer, specaug, augment, cfg.seed)
            self.train_set = None
            self.sampler = ShardStream(recipe.data.train, maker, recipe.data.max_batch_seconds, cfg.seed,
                                       self.dist.rank, world, max_batch_size=recipe.data.max_batch_size,
                                       max_duration=max_train,
                                       speaker_stats=(self._shard_speaker_stats(features)
                                                      if recipe.features.cmvn == "speaker" else None))
        else:
            self.train_set = SpeechDataset(train_utts, features, self.tokenizer, self.normalizer, specaug, cfg.seed,
                                           cache_features=recipe.data.cache_features, wave_augment=augment,
                                           progress=self.progress, texts=train_texts)
            self.sampler = DurationBatchSampler(self.train_set.durations, recipe.data.max_batch_seconds, shuffle=True,
                                                seed=cfg.seed, rank=self.dist.rank, world=world,
                                                max_batch_size=recipe.data.max_batch_size)

        self.model = self.task.model
        self.objective = objective_for(self.model)
        # each term of a loss of several, summed and counted since the last log line (logged as loss_NAME)
        self._terms: dict[str, list[float]] = {name: [0.0, 0] for name in loss_terms(self.model)}
        if recipe.lm.order > 0 and not recipe.lm.path and self.dist.is_main:
            # built first, so an interrupted run still has the LM its checkpoints decode with
            write_lm(train_texts, recipe.lm.order, self.out / LM_FILE)
        self.ddp = (DistributedDataParallel(self.model, device_ids=[self.dist.device] if self.dist.device.type == "cuda" else None)
                    if self.dist.enabled else self.model)
        self.adversary, self.speakers = self._build_adversary(None if shards else train_utts)
        # frozen weights (a Whisper encoder, the base of LoRA adapters) get no optimizer state
        params = [p for p in self.model.parameters() if p.requires_grad] + (
            list(self.adversary.parameters()) if self.adversary else [])
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        # the averaged copy includes buffers (BatchNorm statistics), so it is a complete model on its own
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
                    if cfg.ema_decay else None)
        self.steps_per_epoch = max(1, math.ceil(len(self.sampler) / cfg.accum_steps))
        self.state.planned_epochs = cfg.epochs
        self.scheduler = WarmupCosine(self.optimizer, cfg.lr, cfg.warmup_steps, cfg.epochs * self.steps_per_epoch,
                                      cfg.final_lr_ratio)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if checkpoint:
            self._restore(checkpoint)

    # ---- setup helpers -------------------------------------------------------------------------
    @staticmethod
    def _resumed_recipe(given: Recipe, saved: Recipe) -> Recipe:
        """A resumed run trains what the checkpoint was training: every setting must be the checkpoint's, except
        the data paths and the settings of :data:`RESUME_MAY_CHANGE` (where, and for how long, it runs), which are
        taken from ``given``. Any other difference is refused by name rather than silently dropped."""
        mine, theirs = _flat(to_dict(given)), _flat(to_dict(saved))
        changed = [key for key in sorted(mine.keys() | theirs.keys())
                   if mine.get(key) != theirs.get(key) and key.split(".")[0] != "data"
                   and key not in RESUME_MAY_CHANGE]
        if changed:
            shown = ", ".join(f"{key}={mine.get(key)!r} (the checkpoint's: {theirs.get(key)!r})" for key in changed[:6])
            more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
            verb = "differs" if len(changed) == 1 else "differ"
            raise ConfigError(f"--resume continues the checkpoint's training exactly, but {shown}{more} {verb} from "
                              f"how it was started; give the recipe and overrides it was started with (only data.* and "
                              f"{', '.join(sorted(RESUME_MAY_CHANGE))} may change), or start again with --overwrite")
        for key in RESUME_MAY_CHANGE:
            setattr(saved.train, key.split(".")[1], getattr(given.train, key.split(".")[1]))
        saved.data = given.data
        return saved

    def _shard_speaker_stats(self, features: FeatureExtractor) -> dict[str, CMVNStats]:
        """Speaker CMVN statistics of the training shards: each rank pools its share of them, and every rank
        merges all shares, so all ranks normalize a speaker alike."""
        mine = pool_speaker_statistics(self.recipe.data.train, features.statistics_frames, self.dist.rank,
                                       self.dist.world, self.progress)
        merged: dict[str, CMVNAccumulator] = {}
        for share in D.gather_objects(mine, self.dist):
            for speaker, acc in share.items():
                merged.setdefault(speaker, CMVNAccumulator()).merge(acc)
        return {speaker: acc.stats() for speaker, acc in merged.items()}

    def _build_adversary(self, train_utts: list[Utterance] | None) -> tuple[SpeakerAdversary | None, dict[str, int]]:
        """The speaker classifier of train.speaker_adversarial, fed by a hook on the model's encoder (speakers from
        the manifests, or from the shards' index when ``train_utts`` is None)."""
        if not self.recipe.train.speaker_adversarial:
            return None, {}
        speakers = speaker_index(list(shard_speakers(self.recipe.data.train)) if train_utts is None
                                 else [u.speaker for u in train_utts])
        if len(speakers) < 2:
            raise ConfigError(f"train.speaker_adversarial needs at least two speakers in data.train (the manifests' "
                              f"'speaker' field); found {len(speakers)}. Add speakers to the manifests, or set "
                              "train.speaker_adversarial=0")
        adversary = SpeakerAdversary(self.model.encoder.out_dim, len(speakers)).to(self.dist.device)
        self._encoded = None
        # only training forwards are kept (the EMA copy, deep-copied with this hook, runs in eval mode)
        self.model.encoder.register_forward_hook(
            lambda module, inputs, output: setattr(self, "_encoded", output) if module.training else None)
        return adversary, speakers

    def _amp_dtype(self) -> torch.dtype | None:
        if not self.recipe.train.amp or self.dist.device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    @property
    def eval_model(self) -> torch.nn.Module:
        """What validation scores and checkpoints hold: the weight average when train.ema_decay is set."""
        return self.ema.module if self.ema is not None else self.model

    def _restore(self, ckpt: dict) -> None:
        if self.ema is not None:      # the recipe is the checkpoint's (_resumed_recipe), so the average is there
            self.task.load_weights(self.ema.module, ckpt["model"])
            self.ema.n_averaged.fill_(ckpt["ema_steps"])
        self.task.load_weights(self.model, ckpt.get("training_model", ckpt["model"]))
        if self.adversary is not None:
            self.adversary.load_state_dict(ckpt["adversary"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["train_state"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if torch.cuda.is_available() and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.dist.device)

    def _save_best(self) -> None:
        """The evaluated weights, where inference looks for the run's model (the task says where and how)."""
        self.task.save_best(self.eval_model, train_state=asdict(self.state))

    def _save_last(self) -> None:
        """``last.pt``: everything ``--resume`` needs to go on exactly as if never stopped."""
        extra = {"train_state": asdict(self.state), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "rng": {"torch": torch.get_rng_state(),
                         "cuda": torch.cuda.get_rng_state(self.dist.device) if self.dist.device.type == "cuda" else None}}
        if self.adversary is not None:
            extra.update(adversary=self.adversary.state_dict())
        if self.ema is not None:   # "model" holds the average; resuming needs the weights being trained too
            extra.update(training_model={k: v.detach().cpu() for k, v in self.task.weights(self.model).items()},
                         ema_steps=int(self.ema.n_averaged))
        save_checkpoint(self.out / "last.pt", self.recipe, self.tokenizer, self.task.weights(self.eval_model), **extra)

    def _log(self, record: dict) -> None:
        if self._loggers is None:        # opened at the first record, after a resume has set the step
            self._loggers = TrainLoggers(self.out, self.recipe.train.loggers, self.dist.is_main, self.state.step)
        self._loggers.log(record)

    # ---- the loop ------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        gen = torch.Generator().manual_seed(self.recipe.train.seed * 1000 + self.state.epoch)
        nw = self.recipe.data.num_workers
        workers = {"num_workers": nw, "generator": gen, "prefetch_factor": 4 if nw else None,
                   "worker_init_fn": _ignore_interrupts if nw else None}
        if self.train_set is None:   # shards: the stream already yields collated batches
            return DataLoader(self.sampler, batch_size=None, **workers)
        return DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate, persistent_workers=False,
                          **workers)

    def _out_of_budget(self, started: float) -> bool:
        cfg = self.recipe.train
        over = (cfg.max_steps is not None and self.state.step >= cfg.max_steps) or (
            cfg.max_minutes is not None and self.state.elapsed + time.time() - started >= cfg.max_minutes * 60) or (
            self._interrupt.asked)
        return bool(D.broadcast_value(float(over), self.dist))

    def _train_step(self, batch) -> float | None:
        """Forward + backward of one micro-batch; returns its loss, or None if nothing in it was trainable."""
        dev = self.dist.device
        if len(batch) == 0:
            # Every item was unusable (already counted). Under DDP this rank must still join the gradient
            # all-reduce, so it runs a dummy input whose loss is multiplied by zero.
            self._zero_backward(self._loss(*self.task.dummy_inputs(dev))[1])
            return None
        out, outputs, adv_loss = self._loss(batch.feats.to(dev, non_blocking=True), batch.feat_lens.to(dev),
                                            batch.tokens.to(dev), batch.token_lens.to(dev), batch.speakers)
        for uid, ok in zip(batch.ids, out.usable.tolist()):
            if not ok:
                self.state.skipped.setdefault(uid, out.reason)
        if out.loss is None:
            # Every utterance was infeasible: join the all-reduce with zero gradients, as above.
            self._zero_backward(outputs)
            return None
        for name, term in out.terms.items():
            self._terms[name][0] += float(term)
            self._terms[name][1] += 1
        total = out.loss if adv_loss is None else out.loss + adv_loss
        self.scaler.scale(total / self.recipe.train.accum_steps).backward()
        return float(out.loss.detach())   # the recognizer's loss alone, comparable with runs without the adversary

    def _loss(self, feats, feat_lens, tokens, token_lens, speakers: list[str | None] | None = None):
        with torch.autocast(feats.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            outputs = self.ddp(feats, feat_lens, tokens, token_lens)
        out = self.objective(self.model, outputs, tokens, token_lens)
        if self.adversary is not None and speakers is not None and out.loss is not None:
            labels = torch.tensor([self.speakers.get(s, NO_SPEAKER) if s is not None else NO_SPEAKER for s in speakers],
                                  device=feats.device)
            h, h_lens = self._encoded
            progress = self.state.step / max(1, self.state.planned_epochs * self.steps_per_epoch)
            adv_loss, accuracy = self.adversary(h, h_lens, labels, reversal_scale(self.recipe.train.speaker_adversarial, progress))
            self._encoded = None
            self._speaker_acc.append(accuracy)
            return out, outputs, adv_loss
        return out, outputs, None

    def _zero_backward(self, outputs) -> None:
        """A backward pass with zero gradients through every output tensor (keeps DDP ranks in step)."""
        parts = ((outputs,) if isinstance(outputs, torch.Tensor) else outputs if isinstance(outputs, tuple)
                 else vars(outputs).values())
        tensors = [t for t in parts if isinstance(t, torch.Tensor) and t.requires_grad]
        self.scaler.scale(sum(t.float().sum() for t in tensors) * 0.0).backward()

    def _optimizer_step(self) -> float:
        self.scaler.unscale_(self.optimizer)
        if self.adversary is not None:
            self._average_adversary_grads()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.state.step += 1
        return float(norm)

    def _average_adversary_grads(self) -> None:
        """Mean of the classifier's gradients over ranks (it is outside DDP; a rank with no speaker gives zeros)."""
        if not self.dist.enabled:
            return
        for p in self.adversary.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad /= self.dist.world

    def validate(self) -> dict:
        """Greedy WER/CER of the evaluated weights on data.dev, and their training objective there (``loss``)."""
        self.model.eval()
        result = self.task.validate(self.eval_model, self.dev_set)
        result["loss"] = self._dev_loss()
        self.model.train()
        return result

    def _log_examples(self) -> None:
        """The fixed dev examples, as the evaluated weights see them now, to the loggers that show them."""
        if not self._loggers.wants_examples:
            return
        indices = example_indices(self.dev_set.durations, self.recipe.train.tensorboard_examples)
        self.model.eval()
        try:
            examples = self.task.examples(self.eval_model, self.dev_set, indices)
        finally:
            self.model.train()
        self._loggers.log_examples(examples, self.state.step)

    @torch.no_grad()
    def _dev_loss(self) -> float:
        """The objective of the evaluated weights on data.dev, without augmentation: the mean over the utterances
        it can score (inf when it can score none, e.g. every dev transcript is out of the vocabulary)."""
        model, dev = self.eval_model, self.dist.device
        sampler = DurationBatchSampler(self.dev_targets.durations, self.recipe.data.max_batch_seconds, shuffle=False,
                                       max_batch_size=self.recipe.data.max_batch_size)
        total, count = 0.0, 0
        for batch in DataLoader(self.dev_targets, batch_sampler=sampler, collate_fn=collate):
            if not len(batch):
                continue
            tokens, token_lens = batch.tokens.to(dev), batch.token_lens.to(dev)
            outputs = model(batch.feats.to(dev), batch.feat_lens.to(dev), tokens, token_lens)
            out = self.objective(model, outputs, tokens, token_lens)
            if out.loss is not None:
                used = int(out.usable.sum())
                total, count = total + float(out.loss) * used, count + used
        return total / count if count else math.inf

    def _improves(self, metrics: dict) -> bool:
        """Lower dev WER, or the same WER at a lower dev loss: once dev WER stops moving (often at 0 % on a
        small dev set), the first epoch to reach it would otherwise stay best.pt, however undertrained."""
        return (metrics["wer"], metrics["loss"]) < (self.state.best_wer, self.state.best_loss)

    def fit(self) -> dict:
        cfg = self.recipe.train
        trace = None
        if cfg.trace:
            (self.out / "trace").mkdir(exist_ok=True)
            trace = open(self.out / "trace" / f"rank{self.dist.rank}.jsonl", "a")
        self.model.train()
        if self.state.epoch >= self.state.planned_epochs and self.dist.is_main:   # --resume of a finished run
            log.warning(f"{self.out} has finished its {self.state.planned_epochs} epochs; nothing is left to train (to "
                        "train longer, start again with --overwrite and more train.epochs)")
        try:
            with self._interrupt:
                summary = self._fit(trace)
        finally:
            if self._loggers is not None:
                self._loggers.close()
                self._loggers = None
        if self._interrupt.asked:
            if self.dist.is_main:
                log.warning(f"stopped at step {self.state.step} (epoch {self.state.epoch + 1}, batch "
                            f"{self.state.batch_in_epoch}); saved {self.out / 'last.pt'}: continue with --resume")
            raise KeyboardInterrupt
        return summary

    def check_batch_fits(self) -> None:
        """Forward and backward of this epoch's largest batch (by padded size) before the first step, so a run that
        cannot fit in memory says so at once and names the setting, instead of failing hours in. The weights, their
        gradients, buffers and the random state are as before (the probe changes nothing a resume compares)."""
        if self.train_set is None:       # shards: batches exist only as they stream
            return
        batches = self.sampler.batches(self.state.epoch)
        if not batches:
            return
        durations = self.train_set.durations
        largest = max(batches, key=lambda b: len(b) * max(durations[i] for i in b))
        batch = collate([self.train_set[(i, self.state.epoch)] for i in largest])
        if not len(batch):
            return
        buffers = {k: v.clone() for k, v in self.model.named_buffers()}     # BatchNorm statistics move in a forward
        try:
            with torch.random.fork_rng(devices=[self.dist.device] if self.dist.device.type == "cuda" else []):
                dev = self.dist.device
                out, outputs, _ = self._loss(batch.feats.to(dev), batch.feat_lens.to(dev), batch.tokens.to(dev),
                                             batch.token_lens.to(dev))
                if out.loss is not None:
                    out.loss.backward()
        except torch.OutOfMemoryError:
            raise ConfigError(
                f"the largest training batch ({len(batch)} utterances, up to {max(durations[i] for i in largest):.1f} s "
                f"each) does not fit in {self.dist.device}'s memory; lower data.max_batch_seconds (now "
                f"{self.recipe.data.max_batch_seconds:g}) or data.max_batch_size (now {self.recipe.data.max_batch_size}), "
                "and raise train.accum_steps to keep the same batch per step"
                + ("" if self.recipe.train.grad_checkpointing or not self.task.grad_checkpointing
                   else ", or set train.grad_checkpointing=true")) from None
        finally:
            self.optimizer.zero_grad(set_to_none=True)
            self.model.load_state_dict(buffers, strict=False)
            if self.dist.device.type == "cuda":
                torch.cuda.empty_cache()

    def _fit(self, trace) -> dict:
        cfg = self.recipe.train
        fresh = self.state.step == 0 and self.state.batch_in_epoch == 0
        if fresh and self.dist.device.type == "cuda":
            self.check_batch_fits()     # on CPU, running out of memory is the OS killing the process, not an error
        if fresh and self.task.scores_before_training and self.state.wer_before is None:
            self._score_before_training()
        started = time.time()
        stop = self._out_of_budget(started)
        while not stop and self.state.epoch < self.state.planned_epochs:
            epoch_start = time.time()
            self.sampler.set_epoch(self.state.epoch, self.state.batch_in_epoch)
            bar = progress_bar(total=len(self.sampler), initial=self.state.batch_in_epoch,
                               desc=f"epoch {self.state.epoch + 1}/{self.state.planned_epochs}", unit="batch",
                               disable=not self.progress, dynamic_ncols=True)
            losses, utts, window_start = [], 0, time.time()
            for batch in self._loader():
                micro = self.state.batch_in_epoch % cfg.accum_steps
                last_micro = micro == cfg.accum_steps - 1 or self.state.batch_in_epoch + 1 == bar.total
                for b in batch.bad:
                    self.state.skipped.setdefault(b.id, b.reason)
                if trace:
                    trace.write(json.dumps({"epoch": self.state.epoch, "batch": self.state.batch_in_epoch, "ids": batch.ids}) + "\n")
                sync = self.ddp.no_sync() if (self.dist.enabled and not last_micro) else nullcontext()
                with sync:
                    loss = self._train_step(batch)
                self.state.batch_in_epoch += 1
                utts += len(batch)
                if loss is not None:
                    losses.append(loss)
                bar.update()
                if not last_micro:
                    continue
                norm = self._optimizer_step()
                # the loss of every rank's batches (each rank alone saw only its share); a rank whose batches
                # were all unusable adds nothing
                sums = [sum(losses), len(losses), *(v for term in self._terms.values() for v in term)]
                total, count, *terms = (D.sum_values(sums, self.dist) if self.state.step % cfg.log_every == 0
                                        else (0.0, 0))
                if count:
                    now = time.time()
                    rate = utts * self.dist.world / max(now - window_start, 1e-9)
                    record = {"step": self.state.step, "epoch": self.state.epoch, "loss": total / count,
                              "lr": self.scheduler.lr, "grad_norm": norm, "utts_per_s": rate,
                              "elapsed_min": (self.state.elapsed + now - started) / 60}
                    for name, term_total, term_count in zip(self._terms, terms[0::2], terms[1::2]):
                        if term_count:
                            record[f"loss_{name}"] = term_total / term_count
                        self._terms[name] = [0.0, 0]
                    known = [a for a in self._speaker_acc if a == a]   # NaN: a batch without named speakers
                    if known:   # near chance when the encoder hides the speaker
                        record["speaker_acc"] = sum(known) / len(known)
                    self._speaker_acc = []
                    self._log(record)
                    bar.set_postfix(loss=f"{total / count:.3f}", lr=f"{self.scheduler.lr:.2e}", utt_s=f"{rate:.0f}",
                                    refresh=False)
                    losses, utts, window_start = [], 0, now
                if self._out_of_budget(started):
                    stop = True
                    break
            bar.close()
            if not stop:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
            self.state.elapsed += time.time() - started
            started = time.time()
            self._end_of_epoch(epoch_start, finished=not stop)
        if trace:
            trace.close()
            weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            if self.adversary is not None:
                weights.update({f"adversary.{k}": v.detach().cpu() for k, v in self.adversary.state_dict().items()})
            # what each rank normalized its training audio with (speaker CMVN): it must agree across ranks too
            speaker_stats = self.train_set.speaker_stats if self.train_set is not None else self.sampler.speaker_stats
            for speaker, stats in speaker_stats.items():
                weights.update({f"speaker_stats.{speaker}.mean": stats.mean, f"speaker_stats.{speaker}.std": stats.std})
            torch.save(weights, self.out / "trace" / f"rank{self.dist.rank}_weights.pt")
        summary = {"epochs": self.state.epoch, "steps": self.state.step, "train_minutes": self.state.elapsed / 60,
                   # null, not Infinity (which JSON readers such as jq refuse), when no epoch was validated yet
                   "best_dev_wer": self.state.best_wer if math.isfinite(self.state.best_wer) else None,
                   "best_epoch": self.state.best_epoch, "skipped": len(self.state.skipped) + len(self.manifest_skips),
                   "trainable_parameters": sum(p.numel() for p in self.model.parameters() if p.requires_grad)}
        if self.state.wer_before is not None:
            summary["dev_wer_before"] = self.state.wer_before
        if self.dist.is_main:
            self._write_skip_report()
            (self.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
        D.barrier(self.dist)
        D.shutdown(self.dist)
        return summary

    def _score_before_training(self) -> None:
        """A pretrained model's dev WER as given: logged as epoch 0, and the best model until an epoch beats it."""
        if self.dist.is_main:
            metrics = self.validate()
            self.state.wer_before = metrics["wer"]
            self.state.best_wer, self.state.best_loss, self.state.best_epoch = metrics["wer"], metrics["loss"], 0
            self._log({"epoch": 0, "step": 0, **_dev_record(metrics)})
            self._log_examples()
            self._save_best()
            if self.progress:
                log.info(f"before training: dev WER {100 * metrics['wer']:.2f}%  CER {100 * metrics['cer']:.2f}%")
        self.state.wer_before = D.broadcast_value(float(self.state.wer_before or 0.0), self.dist)
        D.barrier(self.dist)

    def _end_of_epoch(self, epoch_start: float, finished: bool) -> None:
        """Validate, save best/last, and (after the first epoch) fit the schedule to the time budget."""
        record = {"epoch": self.state.epoch, "step": self.state.step, "elapsed_min": self.state.elapsed / 60}
        if self.dist.is_main:
            if finished:
                metrics = self.validate()
                record.update(_dev_record(metrics))
                if self._improves(metrics):
                    self.state.best_wer, self.state.best_loss = metrics["wer"], metrics["loss"]
                    self.state.best_epoch = self.state.epoch
                    self._save_best()
                if self.progress:
                    log.info(f"epoch {self.state.epoch}: dev WER {100 * metrics['wer']:.2f}%  CER {100 * metrics['cer']:.2f}%  "
                               f"loss {metrics['loss']:.3f}  ({self.state.elapsed / 60:.1f} min)")
            self._save_last()
            self._log(record)
            if finished:
                self._log_examples()
        cfg = self.recipe.train
        # with data.cache_features the first epoch also computes every feature, so it is slower than the rest: the
        # schedule fitted to it is fitted again to the second (measured on 2 cores: 67 s, then 50 s an epoch; the
        # fit to the first alone left 2.2 of 10 minutes unused)
        refits = (1, 2) if self.recipe.data.cache_features else (1,)
        if finished and self.state.epoch in refits and cfg.max_minutes and cfg.fit_schedule_to_budget:
            epoch_seconds = time.time() - epoch_start   # training + validation of one epoch
            fit = self.state.epoch + int((cfg.max_minutes * 60 - self.state.elapsed) // max(epoch_seconds, 1e-6))
            planned = int(D.broadcast_value(float(min(cfg.epochs, max(fit, self.state.epoch))), self.dist))
            if planned != self.state.planned_epochs:
                self.state.planned_epochs = planned
                self.scheduler.total_steps = planned * self.steps_per_epoch
                if self.progress:
                    log.info(f"{epoch_seconds:.0f}s per epoch: {planned} epochs fit train.max_minutes={cfg.max_minutes}; "
                               "learning-rate schedule fitted to match")
        D.barrier(self.dist)

    def _write_skip_report(self) -> None:
        items = [asdict(s) for s in self.manifest_skips] + [{"item": k, "reason": v} for k, v in self.state.skipped.items()]
        with open(self.out / "skipped.jsonl", "w") as f:
            for it in items:
                f.write(json.dumps(it) + "\n")
        if items and self.progress:
            reasons = Counter(it["reason"].split(";")[0] for it in items)
            log.info(f"skipped {len(items)} item(s) (details in {self.out / 'skipped.jsonl'}):")
            for reason, n in reasons.most_common(5):
                log.info(f"  {n} x {reason}")
