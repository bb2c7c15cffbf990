"""What the one :class:`~asrforge.train.trainer.Trainer` asks of the model it trains: a *task*.

A task holds the front end (``features``), the targets a dataset makes from a transcript (``tokenizer``), the
module the trainer optimizes (``model``: ``forward(feats, feat_lens, tokens, token_lens)``, whose ``objective``
names its loss in :mod:`asrforge.losses.objectives`), and answers:

- ``dummy_inputs(device)``: a one-item batch for a rank that has nothing usable (it must still join DDP);
- ``validate(model, dev_set)``: greedy dev WER/CER of the weights being evaluated;
- ``examples(model, dev_set, indices)``: those dev utterances as TensorBoard shows them (:mod:`asrforge.train.examples`);
- ``weights(model)`` / ``load_weights(model, weights)``: what ``last.pt`` keeps of the model, and restoring it;
- ``save_best(model)``: the run's best model, where inference looks for it.

:class:`ScratchTask` is asrforge's own families (``best.pt``); :class:`~asrforge.train.whisper_task.WhisperTask`
fine-tunes a Whisper checkpoint (``whisper.pt``, or LoRA adapters).
"""

from __future__ import annotations

from pathlib import Path

import torch

from asrforge.checkpoint import save_checkpoint
from asrforge.data.dataset import SpeechDataset
from asrforge.errors import ConfigError
from asrforge.features import FeatureExtractor
from asrforge.inference.evaluate import evaluate_dataset
from asrforge.inference.transcriber import Transcriber
from asrforge.models.build import build_model
from asrforge.recipe import Recipe
from asrforge.text import Tokenizer
from asrforge.train.examples import Example, scratch_examples


class ScratchTask:
    """An asrforge family trained from its recipe: its front end, a tokenizer, :func:`build_model`."""

    scores_before_training = False     # a random model's WER says nothing
    max_seconds = None                 # no limit of the model's own (data.max_duration applies)
    grad_checkpointing = False         # train.grad_checkpointing is Whisper's

    def __init__(self, recipe: Recipe, tokenizer: Tokenizer, out: Path, device: torch.device):
        if recipe.train.grad_checkpointing:
            raise ConfigError("train.grad_checkpointing recomputes Whisper's blocks; asrforge's own encoders do not "
                              "have it: set it to false, or lower data.max_batch_seconds to fit memory")
        self.recipe, self.out, self.device = recipe, out, device
        self.features = FeatureExtractor(recipe.features)
        self.tokenizer = tokenizer
        self.model = build_model(recipe.model, recipe.features.dim, tokenizer.vocab_size).to(device)

    def dummy_inputs(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        return (torch.zeros(1, 16, self.recipe.features.dim, device=device), torch.tensor([16], device=device),
                torch.ones(1, 1, dtype=torch.long, device=device), torch.ones(1, dtype=torch.long, device=device))

    def validate(self, model: torch.nn.Module, dev_set: SpeechDataset) -> dict:
        transcriber = Transcriber(model, self.recipe, self.tokenizer, self.device)
        return evaluate_dataset(transcriber, dev_set, transcriber.decode_config(beam_size=1), progress=False).summary()

    def examples(self, model: torch.nn.Module, dev_set: SpeechDataset, indices: list[int]) -> list[Example]:
        return scratch_examples(Transcriber(model, self.recipe, self.tokenizer, self.device), dev_set, indices)

    def weights(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return model.state_dict()

    def load_weights(self, model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
        model.load_state_dict(weights)

    def save_best(self, model: torch.nn.Module, **training_state) -> None:
        save_checkpoint(self.out / "best.pt", self.recipe, self.tokenizer, model, **training_state)
