"""WebDataset-compatible tar shards, for corpora that outgrow local disk or file-count limits.

``write_shards`` turns a manifest into ``DIR/shard-000000.tar, ...``: each utterance is ``<key>.flac``
(16 kHz mono, the manifest's slice only) and ``<key>.json`` (text, duration, speaker, id), the layout
the ``webdataset`` library reads. ``DIR/index.json`` holds counts, seconds and utterances per speaker;
``DIR/transcripts.txt`` the texts (a character or BPE vocabulary is built from them without reading any audio).

:class:`ShardStream` reads them for training: every epoch, each (rank, worker) takes its own share of
the shards in an order fixed by (seed, epoch), shuffles utterances in a buffer, builds duration-bucketed
batches, and yields exactly ``len(stream)`` batches per rank (cycling its shards if needed), so DDP
ranks always take the same number of steps.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
from torch.utils.data import IterableDataset, get_worker_info

from asrforge_runtime.audio import SAMPLE_RATE
from asrforge.data.dataset import BadItem, Batch, ItemMaker, collate
from asrforge.data.manifest import Skipped, Utterance, load_utterance, read_manifest
from asrforge.features.cmvn import CMVNAccumulator, CMVNStats
from asrforge.data.sampler import cut_batches
from asrforge.errors import AsrforgeError, ConfigError, ManifestError
from asrforge.parallel import ordered_map
from asrforge.progress import progress_bar

FILL = 0.8   # batches are on average about this full (padding and bucket edges), for the epoch-length estimate


def is_shard_spec(spec) -> bool:
    return isinstance(spec, str) and (".tar" in spec)


def expand_spec(spec: str) -> list[str]:
    """``DIR/shard-{000000..000009}.tar`` -> the ten paths (brace notation, as webdataset writes it)."""
    from braceexpand import braceexpand

    paths = list(braceexpand(spec))
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ConfigError(f"shard {missing[0]} does not exist ({len(missing)} of {len(paths)} missing); "
                          "write shards with `asrforge shard MANIFEST --out DIR`")
    return paths


def _unique_key(uid: str, used: set[str]) -> str:
    """A tar member key for ``uid``, not one of ``used`` (then added to it). webdataset splits a member name at
    its first dot into key and extension, and fails on two neighbouring members with one key: manifests
    concatenated from several imports can repeat ids, so a repeat gets ``_2``, ``_3``, ... (the JSON keeps the id)."""
    base = key = uid.replace(".", "_").replace("/", "_")
    n = 1
    while key in used:
        n += 1
        key = f"{base}_{n}"
    used.add(key)
    return key


def write_shards(manifest: str | Path, out: str | Path, shard_size: int = 1000, seed: int = 0,
                 progress: bool = True, workers: int | None = None) -> dict:
    """Shuffle the manifest (so each shard mixes speakers), then write tar shards of ``shard_size`` utterances,
    decoding and encoding on ``workers`` threads (default: the CPU count, at most 8)."""
    import webdataset as wds

    utts, skipped = read_manifest(manifest)
    random.Random(seed).shuffle(utts)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # shards of an earlier run into this folder would join the new ones under the same spec: remove them, and
    # its index until the new one is written, so an interrupted run leaves no index to train from
    (out / "index.json").unlink(missing_ok=True)
    for stale in out.glob("shard-*.tar"):
        if re.fullmatch(r"shard-\d{6}\.tar", stale.name):
            stale.unlink()
    seconds, texts, keys, speakers = 0.0, [], set(), Counter()
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=shard_size, verbose=0) as sink, \
            ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        for u, encoded in progress_bar(zip(utts, ordered_map(pool, _flac_of, utts)), total=len(utts),
                                       desc="sharding", unit="utt", disable=not progress):
            if isinstance(encoded, Skipped):
                skipped.append(encoded)
                continue
            flac, frames = encoded
            meta = {"id": u.id, "text": u.text, "duration": round(frames / SAMPLE_RATE, 4), "speaker": u.speaker}
            if u.language is not None:
                meta["lang"] = u.language
            sink.write({"__key__": _unique_key(u.id, keys), "flac": flac, "json": json.dumps(meta).encode()})
            seconds += meta["duration"]
            texts.append(u.text)
            if u.speaker is not None:
                speakers[u.speaker] += 1
    shards = sorted(p.name for p in out.glob("shard-*.tar"))
    if not texts:     # shards of nothing would only fail later, at training, far from the cause
        for shard in shards:
            (out / shard).unlink()
        if not skipped:
            raise ManifestError(f"{manifest} lists no utterances; no shards were written")
        raise ManifestError(f"none of the {len(skipped)} item(s) of {manifest} could be read (the first: "
                            f"{skipped[0].reason}); no shards were written: fix the manifest's paths or audio")
    index = {"shards": shards, "utterances": len(texts), "seconds": round(seconds, 2),
             "spec": str(out / f"shard-{{000000..{len(shards) - 1:06d}}}.tar"),
             "speakers": dict(sorted(speakers.items())),
             "skipped": [{"item": s.item, "reason": s.reason} for s in skipped]}
    (out / "index.json").write_text(json.dumps(index, indent=1))
    (out / "transcripts.txt").write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf-8")
    return index


def _flac_of(u: Utterance) -> tuple[bytes, int] | Skipped:
    """The utterance as 16 kHz mono FLAC bytes and its length in samples. A whole 16 kHz mono FLAC file
    (LibriSpeech's) is copied as it is, 60 times faster than decoding and encoding it again."""
    try:
        path = Path(u.audio_filepath)
        if path.suffix.lower() == ".flac" and not u.offset and u.channel is None:
            info = _header(path)
            if (info is not None and info.format == "FLAC" and info.samplerate == SAMPLE_RATE and info.channels == 1
                    and abs(info.frames / SAMPLE_RATE - u.duration) < 1e-3):
                return path.read_bytes(), info.frames
        wave = load_utterance(u)          # names the file and the problem if it cannot be read
    except (AsrforgeError, OSError) as e:
        return Skipped(u.id, str(e))
    flac = io.BytesIO()
    sf.write(flac, wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return flac.getvalue(), wave.size


def _header(path: Path):
    try:
        return sf.info(str(path))
    except Exception:       # libsndfile's several error types; load_utterance then says what is wrong
        return None


def _decode_sample(sample: dict) -> tuple[dict, np.ndarray] | BadItem:
    """A shard sample -> (metadata, 16 kHz waveform), or why it cannot be used."""
    where = f"{sample.get('__url__', 'a shard')}: {sample.get('__key__')}"
    try:
        meta = json.loads(sample["json"])
        wave, _ = sf.read(io.BytesIO(sample["flac"]), dtype="float32")
    except Exception as e:       # a member missing, or its JSON or FLAC damaged
        detail = f"no {e.args[0]} member" if isinstance(e, KeyError) else str(e).splitlines()[0][:120]
        return BadItem(where, f"shard sample {where} cannot be read ({detail}); write the shard again with "
                              "`asrforge shard`")
    return meta, np.asarray(wave, dtype=np.float32)


def read_index(spec: str) -> dict:
    folder = Path(expand_spec(spec)[0]).parent
    path = folder / "index.json"
    if not path.is_file():
        raise ConfigError(f"{folder} has no index.json; write shards with `asrforge shard` (it records counts and texts)")
    index = json.loads(path.read_text())
    index["transcripts"] = (folder / "transcripts.txt").read_text(encoding="utf-8").splitlines()
    return index


def shard_speakers(spec: str) -> dict[str, int]:
    """speaker -> utterances in the shards, from their index.json."""
    index = read_index(spec)
    if "speakers" not in index:
        raise ConfigError(f"the index of {spec} lists no speakers (shards written by an earlier asrforge); "
                          "write them again with `asrforge shard`")
    return index["speakers"]


def pool_speaker_statistics(spec: str, statistics_frames, rank: int = 0, world: int = 1,
                            progress: bool = False) -> dict[str, CMVNAccumulator]:
    """speaker -> CMVN accumulator over this rank's share of the shards (every ``world``-th from ``rank``), one
    pass over their un-augmented audio; ``statistics_frames`` maps a wave ``(N,)`` to the frames ``(T, D)`` to
    pool (:meth:`FeatureExtractor.statistics_frames`). Merge the ranks' accumulators for the whole corpus.
    Unreadable samples are left out here; training reports them when it reaches them."""
    import webdataset as wds

    mine = expand_spec(spec)[rank::world]
    acc: dict[str, CMVNAccumulator] = {}
    if not mine:
        return acc
    samples = wds.WebDataset(mine, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False,
                             handler=lambda exn: True)
    for sample in progress_bar(samples, desc="speaker CMVN statistics", unit="utt", disable=not progress,
                               leave=False):
        decoded = _decode_sample(sample)
        if isinstance(decoded, BadItem) or decoded[0].get("speaker") is None:
            continue
        meta, wave = decoded
        acc.setdefault(meta["speaker"], CMVNAccumulator()).add(statistics_frames(wave))
    return acc


class ShardStream(IterableDataset):
    """Yields collated :class:`Batch` es from shards (use with ``DataLoader(batch_size=None)``). With
    ``speaker_stats`` (speaker -> statistics, :func:`pool_speaker_statistics`), each utterance of a listed speaker
    is normalized by its speaker's statistics."""

    def __init__(self, spec: str, maker: ItemMaker, max_batch_seconds: float, seed: int = 0, rank: int = 0,
                 world: int = 1, buffer: int = 512, max_batch_size: int = 512, max_duration: float | None = None,
                 speaker_stats: dict[str, CMVNStats] | None = None):
        self.shards = expand_spec(spec)
        self.speaker_stats = speaker_stats or {}
        index = read_index(spec)
        self.maker = maker
        self.max_batch_seconds = max_batch_seconds
        self.max_batch_size = max_batch_size
        self.max_duration = max_duration
        self.seed, self.rank, self.world, self.buffer = seed, rank, world, buffer
        self.batches_per_epoch = max(1, math.ceil(index["seconds"] / world / (max_batch_seconds * FILL)))
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _my_shards(self, worker: int, workers: int) -> list[str]:
        order = list(self.shards)
        random.Random(f"{self.seed}/{self.epoch}").shuffle(order)
        slot, slots = self.rank * workers + worker, self.world * workers
        mine = order[slot::slots]
        return mine or [order[slot % len(order)]]     # fewer shards than readers: share (with a different order)

    def _samples(self, shards: list[str], rng: random.Random, bad: list[BadItem]) -> Iterator[dict]:
        """Samples of ``shards``, cycled. A damaged shard (a copy cut short, say) is read up to the damage and
        reported in ``bad``; the others go on."""
        import webdataset as wds

        def damaged(exn: Exception) -> bool:
            url = next((a for a in exn.args if isinstance(a, str) and a.endswith(".tar")), "a shard")
            bad.append(BadItem(url, f"shard {url} is damaged ({str(exn.args[0] if exn.args else exn)[:120]}); "
                                    "the rest of it was skipped: write it again with `asrforge shard`"))
            return True     # go on with the next shard

        while True:   # cycle: the epoch ends after a fixed number of batches, not when shards run out
            dataset = wds.WebDataset(shards, shardshuffle=False, nodesplitter=None, workersplitter=None,
                                     empty_check=False, handler=damaged)
            count = 0
            for sample in dataset:
                count += 1
                yield sample
            if not count:
                first = f"; the first problem: {bad[0].reason}" if bad else ""
                raise ConfigError(f"shards {', '.join(shards)} hold no readable utterance{first}")
            rng.shuffle(shards)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        quota = self.batches_per_epoch // workers + (worker < self.batches_per_epoch % workers)
        skip = self.start_batch // workers + (worker < self.start_batch % workers)   # resume: batches already used
        rng = random.Random(f"{self.seed}/{self.epoch}/{self.rank}/{worker}")
        bad: list[BadItem] = []           # reported with the next batch, as a manifest's bad items are
        samples = self._samples(self._my_shards(worker, workers), rng, bad)
        produced = 0
        while produced < quota:
            pool = []
            for sample in samples:
                decoded = _decode_sample(sample)
                if isinstance(decoded, BadItem):
                    bad.append(decoded)
                    continue
                meta, wave = decoded
                if self.max_duration and meta["duration"] > self.max_duration:
                    continue
                pool.append((meta, wave))
                if len(pool) >= self.buffer:
                    break
            rng.shuffle(pool)
            for batch in self._batches(pool, rng):
                if produced >= quota:
                    break
                produced += 1
                if produced <= skip:
                    continue
                items = [self.maker(m["id"], w, m["text"], self.epoch, m.get("speaker"),
                                    self.speaker_stats.get(m.get("speaker")), m.get("lang", m.get("language")))
                         for m, w in batch]
                yield collate(items + bad)
                bad.clear()

    def _batches(self, pool: list, rng: random.Random) -> list[list]:
        """Length-bucketed batches from a shuffled pool of (meta, wave), in random order."""
        durations = [wave.size / SAMPLE_RATE for _, wave in pool]
        order = sorted(range(len(pool)), key=lambda i: durations[i] * rng.uniform(0.9, 1.1))
        batches = cut_batches(order, durations, self.max_batch_seconds, self.max_batch_size)
        rng.shuffle(batches)
        return [[pool[i] for i in batch] for batch in batches]
