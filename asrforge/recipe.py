"""A training recipe: the typed sections a YAML file fills (asrforge/recipes/ holds the shipped ones).

``data`` / ``features`` / ``augment`` / ``specaugment`` / ``text`` / ``model`` / ``train`` / ``decode`` / ``lm``.
``model.family`` picks the model's config class from the registry of families trained from scratch or
that of pretrained ones (``whisper``, fine-tuned from ``model.init``).
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path

import asrforge.models.build  # noqa: F401  (registers the ctc, las, transformer, joint and rnnt families)
import asrforge.models.whisper.config  # noqa: F401  (registers the pretrained "whisper" family)
from asrforge.data.augment import AugmentConfig, SpecAugmentConfig
from asrforge.config import apply_overrides, from_dict, parse_yaml
from asrforge_runtime.search.config import DecodeConfig
from asrforge.errors import ConfigError
from asrforge.features import FeatureConfig
from asrforge.registry import MODELS, PRETRAINED_MODELS
from asrforge.text import TextConfig


@dataclass
class DataConfig:
    train: str | list[str] | None = None   # manifest path, or a list of them (concatenated)
    dev: str | list[str] | None = None
    max_batch_seconds: float = 120.0     # padded audio seconds per batch
    max_batch_size: int = 256
    max_duration: float = 30.0           # longer training utterances are skipped and reported
    num_workers: int = 0                 # DataLoader worker processes computing features
    cache_features: bool = False         # keep features (or, with augment.*, waveforms) in memory after first use


@dataclass
class TrainConfig:
    epochs: int = 30
    max_minutes: float | None = None     # wall-clock budget; training stops cleanly and saves when it runs out
    fit_schedule_to_budget: bool = True  # after epoch 1 (and 2, with cached features), fit the LR schedule to the epochs the budget holds
    max_steps: int | None = None
    lr: float = 1e-3
    warmup_steps: int = 300
    final_lr_ratio: float = 0.02
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    accum_steps: int = 1
    # Exponential moving average of the weights, updated every optimizer step (e.g. 0.999); validation and the
    # saved models use the average, which generalizes better than the last step's weights. None: off.
    ema_decay: float | None = None
    # > 0: speaker-adversarial training. A classifier learns the training speakers from the encoder's output and
    # its gradient reaches the encoder reversed, scaled by this weight (ramped up from 0): the encoder is pushed
    # toward speaker-independent states. Needs a `speaker` on the training utterances. 0: off.
    speaker_adversarial: float = 0.0
    amp: bool = True                     # mixed precision on GPU (bfloat16 where supported, else float16)
    grad_checkpointing: bool = False     # recompute each block's activations in the backward pass (Whisper):
                                         # less memory for longer batches, about a third more time per step
    # Whisper fine-tuning: the share of training targets that carry timestamps (<|0.00|> text <|end|>, the end
    # found by voice activity); the rest are <|notimestamps|>. Whisper was trained on both, and a model tuned
    # without timestamps forgets them (its subtitles and long-form transcription break).
    timestamp_ratio: float = 0.5
    # Whisper with model.freeze_encoder, no augment.*/specaugment and more than one epoch: each clip's encoder states
    # are kept (in CPU memory, up to this many GB) and later epochs skip the encoder; exact. 0: off.
    frozen_encoder_cache_gb: float = 2.0
    seed: int = 0
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    threads: int | None = None           # CPU threads per process (default: cores / processes)
    log_every: int = 25
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])    # + tensorboard: event files under EXPDIR/tensorboard
    # with tensorboard: this many fixed dev utterances shown at each validation (audio, reference and hypothesis,
    # CTC posteriorgram, attention alignment); 0: none
    tensorboard_examples: int = 3
    trace: bool = False                  # write each rank's batch ids and final weights under EXPDIR/trace

    def __post_init__(self):
        unknown = [name for name in self.loggers if name not in ("jsonl", "tensorboard")]
        if unknown or "jsonl" not in self.loggers:
            raise ValueError(f"train.loggers takes jsonl (always: train_log.jsonl is what everything reads) and "
                             f"optionally tensorboard; got {self.loggers}")
        if self.tensorboard_examples < 0:
            raise ValueError("train.tensorboard_examples must be >= 0 (0 shows no dev examples)")
        if self.speaker_adversarial < 0:
            raise ValueError("train.speaker_adversarial must be >= 0 (0 turns it off)")
        if self.frozen_encoder_cache_gb < 0:
            raise ValueError("train.frozen_encoder_cache_gb must be >= 0 (0 turns it off)")
        if not 0.0 <= self.timestamp_ratio <= 1.0:
            raise ValueError("train.timestamp_ratio must be in [0, 1] (the share of targets with timestamps)")


@dataclass
class LMConfig:
    """Word n-gram LM fused into every family's beam search (``decode.beam_size`` > 1)."""
    order: int = 0                      # > 0: `asrforge train` builds an n-gram of this order from the training
                                        # transcripts and writes it as EXPDIR/lm.arpa, which decoding then uses
    path: str | None = None             # or decode with this ARPA file (.arpa / .arpa.gz), e.g. LibriSpeech's 3-gram
    weight: float = 0.5                 # LM log-probability scale
    word_bonus: float = 1.0             # added per word: offsets the LM's pull toward fewer, shorter words
    closed_vocabulary: bool = False     # only the LM's words may be output (digits, commands); else unknown
                                        # words are allowed at the LM's <unk> cost

    def __post_init__(self):
        if self.order < 0 or self.weight < 0:
            raise ValueError("lm.order and lm.weight must be >= 0")

    @property
    def enabled(self) -> bool:
        return self.order > 0 or self.path is not None


@dataclass
class Recipe:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)        # waveform augmentation (training only)
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: object = field(default=None, metadata={"registry": (MODELS, PRETRAINED_MODELS), "key": "family",
                                                  "default": "ctc"})
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    lm: LMConfig = field(default_factory=LMConfig)

    def __post_init__(self):
        if getattr(self.model, "streaming", False):
            check_streaming_features(self.features)
        if self.features.kind == "kaldi_fbank" and self.augment.vtlp:
            raise ValueError("augment.vtlp warps asrforge's own filterbank; with features.kind: kaldi_fbank leave "
                             "augment.vtlp empty")


def check_streaming_features(features: FeatureConfig) -> None:
    """A streaming model's features of a frame must not depend on audio after it: statistics of the whole
    utterance or speaker (CMVN), deltas over later frames and trimming by the loudest frame all do."""
    wrong = [f"{name}={value}" for name, value, fine in (
        ("features.cmvn", features.cmvn, ("global", "none")), ("features.deltas", features.deltas, (False,)),
        ("features.trim_db", features.trim_db, (None,))) if value not in fine]
    if wrong:
        raise ValueError(f"model.streaming: {', '.join(wrong)} needs audio that has not arrived yet; a streaming model "
                         "takes features.cmvn: global (or none), features.deltas: false, features.trim_db: null")


SHIPPED = importlib.resources.files("asrforge") / "recipes"     # the recipes the package ships


def shipped_recipes() -> dict[str, str]:
    """Name -> what the recipe is (its first comment line), for every recipe shipped with asrforge."""
    found = {}
    for item in sorted(SHIPPED.iterdir(), key=lambda i: i.name):
        if item.name.endswith(".yaml"):
            first = item.read_text(encoding="utf-8").splitlines()[0]
            found[item.name[:-len(".yaml")]] = first.lstrip("# ").split(" (")[0].split(". ")[0].rstrip(":.")
    return found


def recipe_source(path_or_name: str | Path) -> tuple[str, str]:
    """A recipe's YAML text and where it came from: a YAML file, or the name of a shipped recipe (``demo_ctc``,
    with or without ``.yaml``); a file of that name wins over a shipped recipe."""
    path = Path(path_or_name)
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path)
    name = path.name[:-len(".yaml")] if path.name.endswith(".yaml") else path.name
    shipped = SHIPPED / f"{name}.yaml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped.read_text(encoding="utf-8"), f"asrforge recipe {name}"
    raise ConfigError(f"recipe {path_or_name} is neither a YAML file nor a shipped recipe; shipped: "
                      f"{', '.join(shipped_recipes())} (`asrforge recipes` lists them, `asrforge recipes show NAME` "
                      "prints one to start your own)")


def load_recipe(path_or_name: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """A recipe file or shipped recipe's name (None: every default), with ``section.key=value`` overrides."""
    tree = parse_yaml(*recipe_source(path_or_name)) if path_or_name else {}
    return from_dict(Recipe, apply_overrides(tree, list(overrides)))


# Settings a checkpoint may hold that later versions dropped: section -> key -> the value that is the same as
# leaving it out (such a checkpoint loads as it is; any other value needs the version that had the setting).
RETIRED_SETTINGS = {
    # replaced by features.stats_trim_db, which drops only the silence before and after the speech
    "features": {"stats_floor_db": None},
}


def recipe_from_dict(tree: dict) -> Recipe:
    """The recipe saved in a checkpoint (its ``"recipe"`` entry)."""
    tree = {section: dict(values) if isinstance(values, dict) else values for section, values in tree.items()}
    for section, retired in RETIRED_SETTINGS.items():
        for key, neutral in retired.items():
            if section in tree and key in tree[section]:
                value = tree[section].pop(key)
                if value != neutral:
                    raise ConfigError(f"this checkpoint was trained with {section}.{key}={value}, a setting this "
                                      f"version of asrforge no longer has; retrain it, or use the asrforge version "
                                      f"that trained it")
    return from_dict(Recipe, tree)
