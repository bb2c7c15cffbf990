"""RecordingPool: the noise / impulse-response collections augmentation draws from."""

import json
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from asrforge.data.augment import recordings
from asrforge.data.augment.recordings import RecordingPool
from asrforge.errors import AudioError


def _collection(folder, n=4):
    rows = []
    for i in range(n):
        sf.write(folder / f"r{i}.wav", np.full(800, (i + 1) / 10, np.float32), 16000)
        rows.append({"audio_filepath": f"r{i}.wav", "duration": 0.05, "text": ""})
    (folder / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(folder / "pool.jsonl")


def test_samples_are_read_when_drawn_and_only_the_recent_ones_kept(tmp_path, monkeypatch):
    reads = []
    real = recordings.load_utterance
    monkeypatch.setattr(recordings, "load_utterance", lambda u: reads.append(u.audio_filepath) or real(u))
    pool = RecordingPool(_collection(tmp_path), "noise_manifest", "noise", cache_bytes=2 * 800 * 4)   # two of them
    assert len(pool) == 4 and reads == []                              # headers only, up front
    assert pool[2][0] == pytest.approx(0.3, abs=1e-4) and pool[2][0] == pytest.approx(0.3, abs=1e-4)
    assert len(reads) == 1                                             # the second draw came from the cache
    pool[0], pool[1], pool[2]                                          # 2 was evicted by 0 and 1
    assert [p.rsplit("/", 1)[-1] for p in reads] == ["r2.wav", "r0.wav", "r1.wav", "r2.wav"]
    copy = pickle.loads(pickle.dumps(pool))                            # what a spawned DataLoader worker gets
    assert len(copy._cache) == 0 and copy._cached_bytes == 0 and len(copy) == 4 and copy[3][0] == pytest.approx(0.4, abs=1e-4)


def test_a_file_that_stops_decoding_is_replaced_by_the_next(tmp_path, capsys):
    pool = RecordingPool(_collection(tmp_path, n=3), "rir_manifest", "impulse response")
    (tmp_path / "r1.wav").write_bytes(b"RIFF....WAVEfmt broken after the header check")
    assert pool[1][0] == pytest.approx(0.3, abs=1e-4)                  # r2 stands in for r1
    assert "augment.rir_manifest:" in capsys.readouterr().err and pool._undecodable == {1}
    assert pool[1][0] == pytest.approx(0.3, abs=1e-4) and capsys.readouterr().err == ""     # reported once
    for name in ("r0.wav", "r2.wav"):
        (tmp_path / name).unlink()
    pool._cache.clear()
    with pytest.raises(AudioError, match="none of its 3 recordings decodes"):
        pool[0]


def test_a_long_recording_is_read_a_stretch_at_a_time_and_a_short_one_is_repeated(tmp_path, monkeypatch):
    # a 40 s "song" whose every sample tells where it is, and a 0.05 s noise
    song = (np.arange(40 * 16000) / (40 * 16000)).astype(np.float32)
    sf.write(tmp_path / "song.wav", song, 16000, subtype="FLOAT")
    sf.write(tmp_path / "tick.wav", np.linspace(-0.5, 0.5, 800, dtype=np.float32), 16000, subtype="FLOAT")
    rows = [{"audio_filepath": "song.wav", "duration": 40.0, "text": ""},
            {"audio_filepath": "tick.wav", "duration": 0.05, "text": ""}]
    (tmp_path / "noise.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    reads = []
    real = recordings.load_audio
    monkeypatch.setattr(recordings, "load_audio", lambda path, **kw: reads.append(kw) or real(path, **kw))
    pool = RecordingPool(str(tmp_path / "noise.jsonl"), "noise_manifest", "noise")
    gen = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(5):
        part = pool.stretch(0, 16000, gen)
        assert part.shape == (16000,)
        assert np.allclose(np.diff(part), 1 / (40 * 16000), atol=1e-6)       # one contiguous stretch of the song
        starts.add(round(float(part[0]), 3))
    assert len(starts) == 5 and len(reads) == 5 and all(kw["duration"] == 1.0 for kw in reads)
    assert 0 not in pool._cache                                           # never read whole, never cached
    tiled = pool.stretch(1, 2000, gen)
    assert tiled.shape == (2000,) and 1 in pool._cache                      # short: read whole, cached, repeated
    assert np.isclose(tiled, -0.5, atol=1e-3).sum() >= 2


def test_the_cache_holds_bytes_not_files(tmp_path):
    pool = RecordingPool(_collection(tmp_path), "noise_manifest", "noise", cache_bytes=800 * 4 * 3)
    for i in (0, 1, 2, 3, 0, 1):
        pool[i]
    assert list(pool._cache) == [3, 0, 1] and pool._cached_bytes == 3 * 800 * 4
