"""What every importer shares: candidates -> validated utterances, per-split manifests, a skip report.

An importer only *lists* its corpus: for each split, :class:`Candidate` rows (and items it already
knows are bad). :func:`write_splits` then validates every candidate's audio header and duration in a
thread pool with a progress bar, writes ``DIR/<split>.jsonl``, and keeps ``DIR/skipped.jsonl`` and
``DIR/summary.json``. A split whose manifest already exists is not redone (idempotent re-runs), unless it was
prepared from another source folder or with other options (another held-out speaker, say): then it is redone.
A split an earlier run wrote into DIR that this run does not list (``validated`` after a Common Voice run without
``--include-validated``) is left in place, but named in the summary as stale so that nobody trains on it unawares.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import soundfile as sf

from asrforge_runtime.audio import decoder_message
from asrforge.data.manifest import Skipped, Utterance, write_manifest
from asrforge.errors import AsrforgeError
from asrforge.parallel import ordered_map
from asrforge.progress import log, progress_bar
from asrforge.text import Normalizer

SEGMENT_TOLERANCE = 0.05   # seconds a segment may run past the end of its file (rounding in STM/segments files)


class LayoutError(AsrforgeError):
    """SRC is not laid out the way the named corpus is distributed."""


@dataclass
class Candidate:
    id: str
    audio: str
    text: str
    speaker: str | None = None
    offset: float = 0.0
    duration: float | None = None      # None: the whole file
    channel: int | None = None         # 0-based; None: channels averaged


@dataclass
class SplitListing:
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)   # found bad while listing (unparsable lines, ...)
    audio_only: bool = False     # candidates carry no transcript (noise, impulse responses, audio to adapt to)


def validate(c: Candidate, normalizer: Normalizer, needs_text: bool = True) -> Utterance | Skipped:
    """Header check (and a first decoded block) plus transcript and segment checks for one candidate."""
    if needs_text and not normalizer(c.text):
        return Skipped(c.id, f"transcript {c.text!r} normalizes to nothing")
    path = Path(c.audio)
    if not path.is_file():
        return Skipped(c.id, f"audio file {path} does not exist")
    try:
        with sf.SoundFile(str(path)) as f:
            total = f.frames / f.samplerate
            if c.channel is not None and c.channel >= f.channels:
                return Skipped(c.id, f"audio file {path} has too few channels ({f.channels}) for "
                                     f"channel {c.channel + 1}")
            f.seek(min(int(c.offset * f.samplerate), max(f.frames - 1, 0)))
            if f.frames == 0 or f.read(min(1024, f.frames), dtype="float32").size == 0:
                return Skipped(c.id, f"audio file {path} holds no samples")
    except Exception as e:  # libsndfile: unknown format, compressed SPHERE, truncated mp3, ...
        return Skipped(c.id, f"audio file {path} cannot be decoded ({decoder_message(e)})")
    duration = total - c.offset if c.duration is None else c.duration
    if c.offset + duration > total + SEGMENT_TOLERANCE:
        return Skipped(c.id, f"audio file {path} is {total:.2f}s long, shorter than its segment "
                             f"{c.offset:.2f}-{c.offset + duration:.2f}s")
    if duration <= 0:
        return Skipped(c.id, f"segment of {path} has no duration")
    return Utterance(str(path.resolve()), round(duration, 4), c.text, round(c.offset, 4), c.speaker, c.id, c.channel)


def write_splits(out: str | Path, listings: dict[str, SplitListing], corpus: str, workers: int | None = None,
                 progress: bool = True, source: dict | None = None) -> dict:
    """Validate and write each split; returns the summary also written to ``out/summary.json``. ``source``
    (JSON-able: the source folder and importer options) is recorded with each finished split; a re-run reuses
    a split only if it was made from the same."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    normalizer = Normalizer()
    workers = workers or min(16, (os.cpu_count() or 1) * 4)   # header reads wait on disk, threads overlap them
    source = json.loads(json.dumps({"corpus": corpus, **(source or {})}))     # tuples -> lists, as read back
    splits = {}
    for split, listing in sorted(listings.items()):
        manifest, record = out / f"{split}.jsonl", out / f".{split}.done.json"
        if manifest.is_file() and record.is_file():
            done = json.loads(record.read_text())
            if done.pop("source", None) == source:
                splits[split] = done                          # finished by an earlier run from the same source
                continue
            log.info(f"{split}: {manifest} was prepared from another source or with other options; redoing it")
        with ThreadPoolExecutor(workers) as pool:
            checks = ordered_map(pool, lambda c: validate(c, normalizer, not listing.audio_only), listing.candidates,
                                 ahead=workers * 16)
            results = list(progress_bar(checks, total=len(listing.candidates), desc=f"{corpus} {split}", unit="file",
                                        disable=not progress))
        utts, skipped, ids = [], listing.skipped + [r for r in results if isinstance(r, Skipped)], set()
        for r in results:
            if isinstance(r, Utterance):
                if r.id in ids:     # reports, speaker lookups and shard keys go by id
                    skipped.append(Skipped(r.id, f"duplicate id: an earlier item of this split has id {r.id} "
                                                 f"({r.audio_filepath}); list each recording once"))
                    continue
                ids.add(r.id)
                utts.append(r)
        write_manifest(manifest, utts)
        reasons: dict[str, int] = {}
        for s in skipped:
            key = _reason_kind(s.reason)
            reasons[key] = reasons.get(key, 0) + 1
        splits[split] = {"utterances": len(utts), "hours": round(sum(u.duration for u in utts) / 3600, 4),
                         "speakers": len({u.speaker for u in utts if u.speaker}), "skipped": len(skipped),
                         "skipped_by_reason": reasons, "skipped_items": [asdict(s) for s in skipped]}
        record.write_text(json.dumps({**splits[split], "source": source}))
    with open(out / "skipped.jsonl", "w", encoding="utf-8") as f:
        for split, info in splits.items():
            for s in info["skipped_items"]:
                f.write(json.dumps({"split": split, **s}, ensure_ascii=False) + "\n")
    summary = {"corpus": corpus, "splits": {k: {kk: vv for kk, vv in v.items() if kk != "skipped_items"}
                                            for k, v in splits.items()}}
    stale = sorted(split for split in (r.name[1:-len(".done.json")] for r in out.glob(".*.done.json"))
                   if split not in splits and (out / f"{split}.jsonl").is_file())
    if stale:
        summary["stale_splits"] = stale
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _reason_kind(reason: str) -> str:
    """Group reasons for the summary: match on our own words, not the decoder's quoted detail in (...)."""
    core = re.sub(r"\(.*\)", "", reason)
    for kind in ("does not exist", "cannot be decoded", "normalizes to nothing", "shorter than its segment",
                 "holds no samples", "missing column", "does not parse", "not supported", "too few channels", "duplicate id"):
        if kind in core:
            return kind
    return core.split(";")[0][:60]
