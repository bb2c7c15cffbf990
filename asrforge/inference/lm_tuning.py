"""`asrforge lm tune`: choose the n-gram LM's weight and word bonus on a dev manifest, and optionally store them.

The best fusion settings depend on the model family and on how it errs: a transducer that drops words wants a
larger word bonus than a CTC model that misspells them (docs/decoding.md, "Tuning the weight and bonus on dev"). Tuning on dev,
never on test, keeps the reported test figure honest. Features are computed once; each grid point decodes the
dev set again with its own settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from asrforge.data.dataset import SpeechDataset
from asrforge_runtime.search.config import DecodeConfig
from asrforge_runtime.search.ngram import NGramLM
from asrforge.decoding.searches import uses_word_bonus
from asrforge.errors import CheckpointError
from asrforge.inference.evaluate import evaluate_dataset
from asrforge.inference.transcriber import Transcriber
from asrforge.progress import progress_bar
from asrforge.checkpoint import load_checkpoint

DEFAULT_WEIGHTS = (0.2, 0.35, 0.5, 0.75, 1.0)
DEFAULT_BONUSES = (0.0, 1.0, 2.0, 3.0, 4.0)


@dataclass
class GridPoint:
    weight: float
    word_bonus: float
    wer: float
    cer: float


@dataclass
class TuningResult:
    without_lm: GridPoint                      # weight and bonus 0: the search without the LM
    grid: list[GridPoint] = field(default_factory=list)
    tunes_bonus: bool = True                   # False for the one-pass attention search, which adds no bonus

    @property
    def best(self) -> GridPoint:
        """Lowest WER, then lowest CER; the earlier grid point on a full tie."""
        return min(self.grid, key=lambda p: (round(p.wer, 9), round(p.cer, 9)))

    def table(self) -> str:
        """WER (%) by weight (rows) and word bonus (columns), the best marked with ``*``."""
        bonuses = sorted({p.word_bonus for p in self.grid})
        weights = sorted({p.weight for p in self.grid})
        cell = {(p.weight, p.word_bonus): p for p in self.grid}
        best = self.best
        head = "weight \\ bonus" if self.tunes_bonus else "weight"
        lines = [f"{head:>14} " + "".join(f"{b:>9g}" for b in bonuses)]
        for w in weights:
            row = ""
            for b in bonuses:
                p = cell.get((w, b))
                row += f"{'':>9}" if p is None else f"{100 * p.wer:>8.2f}{'*' if p is best else ' '}"
            lines.append(f"{w:>14g} " + row)
        return "\n".join(lines)


def tune_lm(transcriber: Transcriber, dataset: SpeechDataset, lm: NGramLM, config: DecodeConfig,
            weights=DEFAULT_WEIGHTS, bonuses=DEFAULT_BONUSES, closed_vocabulary: bool = False,
            progress: bool = True, source: str = "the dev manifest") -> TuningResult:
    """Dev WER/CER for every (weight, bonus) pair and without the LM, decoding as ``config`` says (a beam search).
    Leaves ``transcriber`` without an LM. ``source`` names the dataset in errors."""
    transcriber.use_lm(None)
    without = evaluate_dataset(transcriber, dataset, config, progress=False)
    without.require_scored(source)
    plain = without.summary()
    tunes_bonus = uses_word_bonus(transcriber.model, config)
    bonuses = list(bonuses) if tunes_bonus else [0.0]
    result = TuningResult(GridPoint(0.0, 0.0, plain["wer"], plain["cer"]), tunes_bonus=tunes_bonus)
    points = [(w, b) for w in weights for b in bonuses]
    bar = progress_bar(points, desc="tuning LM", unit="setting", disable=not progress, leave=False)
    for weight, bonus in bar:
        transcriber.use_lm(lm, weight, bonus, closed_vocabulary)
        s = evaluate_dataset(transcriber, dataset, config, progress=False).summary()
        result.grid.append(GridPoint(weight, bonus, s["wer"], s["cer"]))
        bar.set_postfix(best_wer=f"{100 * result.best.wer:.2f}%")
    transcriber.use_lm(None)
    return result


def save_lm_settings(checkpoint: str | Path, weight: float, word_bonus: float, closed_vocabulary: bool,
                     beam_size: int, lm_path: str | Path | None = None) -> Path:
    """Write the tuned ``lm.weight``/``lm.word_bonus``, ``lm.closed_vocabulary`` and the ``decode.beam_size`` they
    were tuned at (and ``lm.path`` when an ARPA file other than the recipe's was tuned) into the checkpoint's
    recipe, so decoding uses them by default."""
    state = load_checkpoint(checkpoint)
    path = Path(state.pop("path"))
    state["recipe"].setdefault("decode", {})["beam_size"] = beam_size
    lm = state["recipe"].setdefault("lm", {})
    lm.update(weight=weight, word_bonus=word_bonus, closed_vocabulary=closed_vocabulary)
    if lm_path is not None:
        lm["path"] = str(Path(lm_path).resolve())
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        tmp.replace(path)   # atomic, as every checkpoint write
    except OSError as e:
        raise CheckpointError(f"cannot rewrite {path} ({e}); copy the checkpoint somewhere writable and tune that") from None
    return path
