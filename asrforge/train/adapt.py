"""Unsupervised adaptation of a model of any family to new, untranscribed audio (a new voice, microphone or room).

Self-training in one round: the model transcribes the audio with its own search (beam, n-gram LM, closed
vocabulary: whatever its recipe decodes with), each transcript gets a confidence, the most confident fraction
becomes training targets, and the whole model is fine-tuned on them for a few epochs at a small learning rate.
Wrong targets are the risk, so the least confident are left out; a second round on the adapted model's own
output mostly re-learns its mistakes (on FSDD it drifted back), so there is one round.

Confidence is the posterior of the best hypothesis among the search's n-best: ``exp(s_1) / sum_i exp(s_i)`` over
their fused scores. An utterance the search could not tell from a rival scores about 1/2; a clear one near 1.
The attention and transducer searches rank by score per token or per emission, so their confidences are on a
flatter scale than CTC's; only their order within one model matters here. Fine-tuning uses the family's own
training objective (CTC, attention cross-entropy with its CTC share for joint models, transducer loss).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from asrforge.data.dataset import SpeechDataset
from asrforge.data.manifest import read_manifest
from asrforge.errors import AsrforgeError, ConfigError
from asrforge.inference.transcriber import LONG_FORM_S, Transcriber, recipe_lm_file, speech_pieces
from asrforge.losses.objectives import objective_for
from asrforge.progress import progress_bar
from asrforge.checkpoint import save_checkpoint

ADAPTED = "adapted.pt"


@dataclass
class AdaptConfig:
    keep: float = 0.7          # fraction of the utterances used as targets, most confident first
    epochs: int = 3
    lr: float = 1e-4           # small: the model should move toward the new audio, not forget the old
    batch_size: int = 16
    beam_size: int = 8         # the n-best the confidence is computed over (at least 2)
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.keep <= 1:
            raise ConfigError(f"--keep must be in (0, 1], got {self.keep}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("--epochs and --batch-size must be at least 1 and --lr positive")
        if self.beam_size < 2:
            raise ConfigError("--beam-size must be at least 2: the confidence compares the best hypothesis with the others")


@dataclass
class PseudoLabel:
    id: str
    index: int
    text: str
    confidence: float
    tokens: list[int]            # the training target: the search's own tokens, not its text encoded again
    kept: bool = False


def pseudo_label(transcriber: Transcriber, dataset: SpeechDataset, beam_size: int, batch_size: int = 32,
                 progress: bool = True) -> tuple[list[PseudoLabel], list[dict]]:
    """Transcribe every utterance; returns labels (with confidence) and the unreadable items (id, reason).
    Utterances are decoded in length-sorted batches (little padding) by the model family's beam search."""
    readable, bad = [], []
    for i in range(len(dataset)):
        try:
            readable.append((i, dataset.features_of(i)))
        except AsrforgeError as e:
            bad.append({"id": dataset.utts[i].id or str(i), "reason": str(e)})
    readable.sort(key=lambda item: item[1].shape[0])
    labels = []
    bar = progress_bar(total=len(readable), desc="pseudo-labelling", unit="utt", disable=not progress, leave=False)
    for b in range(0, len(readable), batch_size):
        chunk = readable[b : b + batch_size]
        feats = torch.nn.utils.rnn.pad_sequence([f for _, f in chunk], batch_first=True)
        decoded = transcriber.decode(feats, torch.tensor([f.shape[0] for _, f in chunk]),
                                     transcriber.decode_config(beam_size), nbest=beam_size)
        for (i, _), hyps in zip(chunk, decoded.nbest):
            scores = torch.tensor([h.score for h in hyps], dtype=torch.float64)
            confidence = float(torch.softmax(scores, 0)[0]) if torch.isfinite(scores).all() else 0.0
            text = transcriber.tokenizer.decode(hyps[0].tokens).strip()
            labels.append(PseudoLabel(dataset.utts[i].id or str(i), i, text, confidence if text else 0.0,
                                      list(hyps[0].tokens)))
        bar.update(len(chunk))
    bar.close()
    labels.sort(key=lambda p: p.index)    # manifest order again
    return labels, bad


def _fine_tune(transcriber: Transcriber, dataset: SpeechDataset, kept: list[PseudoLabel], config: AdaptConfig,
               progress: bool) -> list[float]:
    """Fine-tune ``transcriber.model`` in place on the kept labels with its training objective; returns the
    mean loss of each epoch."""
    model, dev = transcriber.model, transcriber.device
    objective = objective_for(model)
    # Dropout and batch-norm statistics stay as trained: a few hundred utterances of one voice would
    # re-estimate the statistics badly, and dropout noise is not needed for a handful of small steps.
    model.eval()
    feats = [dataset.features_of(p.index) for p in kept]
    targets = [torch.tensor(p.tokens, dtype=torch.long) for p in kept]
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    losses = []
    bar = progress_bar(total=config.epochs * math.ceil(len(kept) / config.batch_size), desc="adapting", unit="batch",
                       disable=not progress, leave=False)
    for _ in range(config.epochs):
        order, total = torch.randperm(len(kept), generator=gen).tolist(), 0.0
        for b in range(0, len(order), config.batch_size):
            idx = order[b : b + config.batch_size]
            x = torch.nn.utils.rnn.pad_sequence([feats[i] for i in idx], batch_first=True).to(dev)
            x_lens = torch.tensor([feats[i].shape[0] for i in idx], device=dev)
            y = torch.nn.utils.rnn.pad_sequence([targets[i] for i in idx], batch_first=True).to(dev)
            y_lens = torch.tensor([len(targets[i]) for i in idx], device=dev)
            loss = objective(model, model(x, x_lens, y, y_lens), y, y_lens).loss
            if loss is None:
                bar.update(1)
                continue          # every label too long for its audio (CTC): nothing to learn from this batch
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += float(loss.detach()) * len(idx)
            bar.update(1)
        losses.append(total / len(kept))
    bar.close()
    return losses


def adapt(transcriber: Transcriber, manifest: str | Path, out_dir: str | Path, config: AdaptConfig = AdaptConfig(),
          progress: bool = True) -> dict:
    """Adapt the model of ``transcriber`` (any asrforge family, loaded from a checkpoint; it is fine-tuned in
    place) to the audio of ``manifest`` (its text is ignored); writes ``OUT/adapted.pt``, ``OUT/pseudo_labels.jsonl``
    and the LM file the checkpoint decodes with."""
    started = time.time()
    source = Path(transcriber.source)
    utts, bad_lines = read_manifest(manifest)
    if not utts:
        raise AsrforgeError(f"manifest {manifest} has no readable line ({len(bad_lines)} bad); check its format")
    long_recordings = sum(u.duration > LONG_FORM_S for u in utts)
    utts, unreadable = speech_pieces(utts)       # a long recording of the new voice: its stretches of speech
    bad_lines += unreadable
    # speaker CMVN (if the recipe uses it) pools each speaker's statistics over this manifest's audio
    dataset = SpeechDataset(utts, transcriber.features, None, transcriber.normalizer, cache_features=True,
                            progress=progress)
    labels, bad = pseudo_label(transcriber, dataset, config.beam_size, config.batch_size, progress)
    bad = [{"id": s.item, "reason": s.reason} for s in bad_lines] + bad
    if not labels:
        raise AsrforgeError(f"none of the {len(bad)} utterances of {manifest} could be read; the first: "
                            f"{bad[0]['id']}: {bad[0]['reason']}")
    ranked = sorted((p for p in labels if p.text), key=lambda p: -p.confidence)
    kept = ranked[: max(1, round(config.keep * len(labels)))] if ranked else []
    if not kept:
        raise AsrforgeError(f"the model recognized nothing in {manifest}: there is nothing to adapt to")
    for p in kept:
        p.kept = True
    losses = _fine_tune(transcriber, dataset, kept, config, progress)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"model": str(source), "manifest": str(manifest), "long_recordings_cut": long_recordings,
               "utterances": len(labels),
               "kept": len(kept),
               "min_kept_confidence": kept[-1].confidence, "loss_per_epoch": losses, "bad": bad,
               "minutes": (time.time() - started) / 60, "config": asdict(config)}
    save_checkpoint(out / ADAPTED, transcriber.recipe, transcriber.tokenizer, transcriber.model, adaptation=summary)
    lm_file = recipe_lm_file(transcriber.recipe, source)
    if (lm_file is not None and lm_file.parent == source.parent and lm_file.is_file()
            and not (out / lm_file.name).resolve() == lm_file.resolve()):    # adapted into the experiment folder itself
        shutil.copyfile(lm_file, out / lm_file.name)   # the LM training wrote beside it: decode as the source did
    with open(out / "pseudo_labels.jsonl", "w", encoding="utf-8") as f:
        for p in labels:
            f.write(json.dumps({"id": p.id, "text": p.text, "confidence": round(p.confidence, 4), "kept": p.kept}) + "\n")
    return summary
