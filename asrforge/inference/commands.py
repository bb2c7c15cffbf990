"""What `asrforge evaluate` and `asrforge transcribe` do, beyond argument parsing."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from asrforge.data.dataset import BadItem, SpeechDataset
from asrforge.data.manifest import read_manifest
from asrforge.errors import AsrforgeError
from asrforge.inference.evaluate import Evaluation, evaluate_dataset
from asrforge.inference.transcriber import Transcriber


def print_evaluation(ev: Evaluation, title: str) -> None:
    s = ev.summary()
    print(f"\n{title}")
    print(ev.report.table())
    print(f"WER {100 * s['wer']:.2f}%  (S={s['sub']} D={s['del']} I={s['ins']} over {s['words']} words)   "
          f"CER {100 * s['cer']:.2f}%   utterances {s['utts']}   RTF {s['rtf']:.4f}")
    conf = ev.report.confusions(5)
    for kind in ("substitutions", "deletions", "insertions"):
        if conf[kind]:
            print(f"  top {kind}: " + ", ".join(f"{k} ({n})" for k, n in conf[kind]))
    if ev.bad:
        print(f"  skipped {len(ev.bad)} unusable item(s), not scored:")
        for b in ev.bad[:5]:
            print(f"    {b.id}: {b.reason}")


def evaluate_manifest(transcriber: Transcriber, manifest: str | Path, beam_size: int, progress: bool = True) -> Evaluation:
    utts, bad_lines = read_manifest(manifest)
    if not utts:
        raise AsrforgeError(f"manifest {manifest} has no readable line ({len(bad_lines)} bad); check its format")
    dataset = SpeechDataset(utts, transcriber.features, None, transcriber.normalizer)
    ev = evaluate_dataset(transcriber, dataset, beam_size, progress=progress)
    ev.bad = [BadItem(s.item, s.reason) for s in bad_lines] + ev.bad
    return ev


def evaluate_command(model: str, manifest: str, beam_size: int, json_path: str | None, report_dir: str | None,
                     device: str = "cpu") -> dict:
    transcriber = Transcriber.from_checkpoint(model, device)
    ev = evaluate_manifest(transcriber, manifest, beam_size)
    search = "greedy" if beam_size <= 1 else f"beam {beam_size}"
    print_evaluation(ev, f"{manifest} ({search})")
    summary = {**ev.summary(), "beam_size": beam_size, "model": str(model), "manifest": str(manifest)}
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(summary, indent=1))
    if report_dir:
        d = Path(report_dir)
        d.mkdir(parents=True, exist_ok=True)
        ev.report.write_utterances(d / "utterances.txt")
        ev.report.write_jsonl(d / "utterances.jsonl")
        (d / "summary.txt").write_text(ev.report.table() + "\n")
        print(f"per-utterance results in {d}/utterances.txt")
    return summary


def transcribe_command(audio: list[str], model: str, beam_size: int | None, output_format: str,
                       output_dir: str | None, device: str = "cpu") -> int:
    """Transcribe each file; a bad file is reported and skipped, the rest still run. Returns failures."""
    transcriber = Transcriber.from_checkpoint(model, device)
    failures = 0
    for path in audio:
        try:
            result = transcriber.transcribe(path, beam_size)[0]
        except AsrforgeError as e:
            print(f"asrforge: skipped {path}: {e}", file=sys.stderr)
            failures += 1
            continue
        text = (json.dumps({"file": path, "text": result.text, "duration": round(result.duration, 3),
                            "words": [asdict(w) for w in result.words]}, ensure_ascii=False)
                if output_format == "json" else result.text)
        if output_dir:
            out = Path(output_dir) / f"{Path(path).stem}.{output_format}"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text + "\n", encoding="utf-8")
        elif output_format == "json":
            print(text)
        else:
            print(f"{path}\t{text}" if len(audio) > 1 else text)
    if failures == len(audio):
        raise AsrforgeError(f"none of the {len(audio)} file(s) could be transcribed")
    return failures
