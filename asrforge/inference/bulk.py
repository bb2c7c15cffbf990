"""Bulk transcription of a manifest: one output line per utterance, resumable, shared between torchrun processes.

Each output line is the manifest's own line with ``pred_text`` added (NeMo's convention) and ``words`` where the
model times words. Work is written as it is done, batch by batch, to one part file per process beside the
output (``OUT.parts/rank-K.jsonl``); at the end the parts and any earlier output are merged into ``OUT`` in the
manifest's order, and the parts removed. A job that is killed is started again with the same command: every
utterance already in ``OUT`` or in a part is skipped, a line cut off by the kill is dropped and done again, so
nothing is lost and nothing is written twice.

Under ``torchrun --nproc_per_node N`` each process takes the utterances whose key hashes to its rank, so the
shares are distinct without the processes agreeing on anything but the manifest; a restart with another number
of processes still skips what any earlier process finished.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asrforge import distributed as D
from asrforge_runtime.audio import SAMPLE_RATE
from asrforge.data.manifest import Utterance, load_utterance, parse_object, read_json_line
from asrforge.errors import AsrforgeError, ManifestError
from asrforge.progress import progress_bar

BATCH_SECONDS = 120.0      # audio seconds handed to the recognizer at once (and written together)


@dataclass
class Entry:
    line: int                  # 1-based line number in the manifest
    key: str                   # what identifies it across runs
    raw: dict                  # the manifest's line, as written
    utt: Utterance

    @property
    def name(self) -> str:
        """How reports name it: its id, or its audio file."""
        return self.raw.get("id") or self.raw["audio_filepath"]


@dataclass
class BulkSummary:
    output: str
    utterances: int                      # usable lines of the manifest
    done_before: int                     # found finished by an earlier run
    transcribed: int = 0                 # by this run, all processes
    audio_seconds: float = 0.0           # of what this run transcribed
    seconds: float = 0.0                 # wall time of this run (the slowest process)
    processes: int = 1
    skipped: list[dict] = field(default_factory=list)    # {"item", "reason"}: bad lines and undecodable audio

    @property
    def utterances_per_second(self) -> float:
        return self.transcribed / max(self.seconds, 1e-9)

    @property
    def audio_hours_per_hour(self) -> float:
        return self.audio_seconds / max(self.seconds, 1e-9)


def entry_key(raw: dict) -> str:
    """An utterance's identity across runs: its ``id``, or (for manifests without ids) where its audio is."""
    if raw.get("id") is not None:
        return f"id:{raw['id']}"
    return f"audio:{raw['audio_filepath']}@{raw.get('offset') or 0}+{raw.get('duration')}#{raw.get('channel')}"


def read_entries(manifest: str | Path) -> tuple[list[Entry], list[dict]]:
    """The manifest's usable lines and the unusable ones (``{"item", "reason"}``); two lines with one key are an
    error, since resuming goes by key."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ManifestError(f"manifest {manifest} does not exist; create one with `asrforge prepare` or `asrforge synth`")
    base = str(manifest.parent.resolve())
    entries, bad, seen = [], [], {}
    with open(manifest, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                raw = read_json_line(line)
                utt = parse_object(raw, base)
            except ManifestError as e:
                bad.append({"item": f"{manifest}:{n}", "reason": str(e)})
                continue
            key = entry_key(raw)
            if key in seen:
                raise ManifestError(f"{manifest}: lines {seen[key]} and {n} are the same utterance ({key}); bulk "
                                    "transcription resumes by id, so give each line its own \"id\"")
            seen[key] = n
            entries.append(Entry(n, key, raw, utt))
    if not entries:
        raise ManifestError(f"manifest {manifest} has no readable line ({len(bad)} bad); check its format")
    return entries, bad


def parts_folder(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def skip_report(output: Path) -> Path:
    """``preds.jsonl`` -> ``preds.skipped.jsonl``: what the last run could not transcribe, and why."""
    return output.with_name(output.stem + ".skipped" + output.suffix)


def _finished_lines(path: Path) -> list[dict]:
    """The complete JSON lines of an output or part file (a last line cut off by a kill is not one)."""
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _open_part(path: Path):
    """Append to ``path`` after cutting off a last line the previous run did not finish writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep < len(data):
            with open(path, "r+b") as f:
                f.truncate(keep)
    return open(path, "a", encoding="utf-8")


def _batches(entries: list[Entry], batch_seconds: float) -> list[list[Entry]]:
    """Similar durations together (little padding), at most ``batch_seconds`` of audio a batch."""
    ordered = sorted(entries, key=lambda e: e.utt.duration)
    batches, current, total = [], [], 0.0
    for e in ordered:
        if current and total + e.utt.duration > batch_seconds:
            batches.append(current)
            current, total = [], 0.0
        current.append(e)
        total += e.utt.duration
    return batches + ([current] if current else [])


def transcribe_manifest(recognizer, manifest: str | Path, output: str | Path, options: dict | None = None,
                        dist: D.DistInfo | None = None, batch_seconds: float = BATCH_SECONDS,
                        progress: bool = True) -> BulkSummary:
    """Transcribe every utterance of ``manifest`` not yet in ``output`` with ``recognizer`` (a
    :class:`~asrforge.inference.recognizer.Recognizer`; ``options`` are its ``transcribe`` options, checked once).
    Under torchrun (``dist`` with more than one process) every process calls this with the same arguments."""
    dist = dist or D.DistInfo(0, 1, 0, None)
    started = time.time()
    output = Path(output)
    options = dict(options or {})
    recognizer.check_options(**options)
    entries, bad_lines = read_entries(manifest)
    parts = parts_folder(output)
    done = {entry_key(row) for row in _finished_lines(output)}
    for part in sorted(parts.glob("rank-*.jsonl")) if parts.is_dir() else []:
        done |= {entry_key(row) for row in _finished_lines(part)}
    todo = [e for e in entries if e.key not in done]
    done_before = len(entries) - len(todo)
    mine = [e for e in todo if zlib.crc32(e.key.encode()) % dist.world == dist.rank]
    stats = _speaker_stats(recognizer, entries, mine)

    skipped, transcribed, audio_seconds = [], 0, 0.0
    bar = progress_bar(total=len(mine), unit="utt", disable=not (progress and dist.is_main),
                       desc="transcribing" + (f" (process 1 of {dist.world})" if dist.enabled else ""))
    with _open_part(parts / f"rank-{dist.rank:05d}.jsonl") as out:
        for batch in _batches(mine, batch_seconds):
            waves, ready = [], []
            for e in batch:
                try:
                    waves.append(load_utterance(e.utt))
                    ready.append(e)
                except AsrforgeError as err:
                    skipped.append({"item": e.name, "reason": str(err)})
            results = _transcribe(recognizer, waves, ready, options, stats, skipped)
            for e, wave, result in zip(ready, waves, results):
                if result is None:
                    continue
                row = {**e.raw, "pred_text": result.text}
                if result.words:
                    row["words"] = [w.to_dict() for w in result.words]
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                transcribed += 1
                audio_seconds += wave.size / SAMPLE_RATE
            out.flush()
            bar.update(len(batch))
            bar.set_postfix(audio_h_per_h=f"{audio_seconds / max(time.time() - started, 1e-9):.0f}", refresh=False)
    bar.close()
    with open(parts / f"skipped-rank-{dist.rank:05d}.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in skipped)
    seconds = time.time() - started
    shares = D.gather_objects((transcribed, audio_seconds, seconds), dist)
    D.barrier(dist)          # every part is complete before it is merged
    summary = BulkSummary(str(output), len(entries), done_before, sum(s[0] for s in shares), sum(s[1] for s in shares),
                          max(s[2] for s in shares), dist.world, bad_lines)
    if dist.is_main:
        summary.skipped += _merge(output, entries, parts)
        report = skip_report(output)
        if summary.skipped:
            report.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in summary.skipped), encoding="utf-8")
        else:
            report.unlink(missing_ok=True)     # an earlier run's report is out of date
    D.barrier(dist)
    return summary


def _transcribe(recognizer, waves: list[np.ndarray], entries: list[Entry], options: dict,
                stats: dict | None, skipped: list[dict]) -> list:
    """Results of one batch; if the batch fails as a whole, each utterance alone, so one bad item costs only itself."""
    extra = {} if stats is None else {"speaker_stats": [stats.get(e.utt.speaker) for e in entries]}
    try:
        return recognizer.transcribe_batch(waves, **options, **extra)
    except AsrforgeError:
        results = []
        for wave, e in zip(waves, entries):
            one = {} if stats is None else {"speaker_stats": stats.get(e.utt.speaker)}
            try:
                results.append(recognizer.transcribe(wave, **options, **one))
            except AsrforgeError as err:
                skipped.append({"item": e.name, "reason": str(err)})
                results.append(None)
        return results


def _speaker_stats(recognizer, entries: list[Entry], mine: list[Entry]) -> dict | None:
    """Models trained with speaker CMVN: each speaker of this share normalized by statistics over all of that
    speaker's utterances in the manifest (as evaluation does), so every process count gives the same text."""
    if not getattr(recognizer, "speaker_cmvn", False):
        return None
    speakers = {e.utt.speaker for e in mine if e.utt.speaker is not None}
    by_speaker: dict[str, list[Utterance]] = {}
    for e in entries:
        if e.utt.speaker in speakers:
            by_speaker.setdefault(e.utt.speaker, []).append(e.utt)
    stats = {}
    for speaker, utts in sorted(by_speaker.items()):
        try:
            stats[speaker] = recognizer.pooled_speaker_stats(utts)
        except AsrforgeError:
            continue             # none of the speaker's audio reads: each utterance is reported when it is tried
    return stats


def _merge(output: Path, entries: list[Entry], parts: Path) -> list[dict]:
    """Earlier output and every part -> ``output``, one line per utterance in the manifest's order (written to a
    temporary file, then moved over ``output``); the parts are removed. Returns the skip reports of the parts."""
    rows: dict[str, dict] = {}
    for source in [output, *sorted(parts.glob("rank-*.jsonl"))]:
        for row in _finished_lines(source):
            rows.setdefault(entry_key(row), row)
    skipped = [s for report in sorted(parts.glob("skipped-rank-*.jsonl")) for s in _finished_lines(report)]
    tmp = output.with_name(output.name + ".tmp")
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        for e in entries:
            if e.key in rows:
                f.write(json.dumps(rows[e.key], ensure_ascii=False) + "\n")
    os.replace(tmp, output)
    shutil.rmtree(parts, ignore_errors=True)
    return skipped
