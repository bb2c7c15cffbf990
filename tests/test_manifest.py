import json
import os

from asrforge.data.manifest import Utterance, missing_audio, read_manifest, write_manifest
from conftest import write_manifest_lines


def test_roundtrip_with_relative_paths(tmp_path):
    (tmp_path / "wavs").mkdir()
    utts = [Utterance(str(tmp_path / "wavs" / "a.wav"), 1.5, "one two", 0.0, "s1", "a"),
            Utterance("/abs/elsewhere/b.flac", 2.0, "three", 0.5, None, "b")]
    write_manifest(tmp_path / "m.jsonl", utts)
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert rows[0]["audio_filepath"] == "wavs/a.wav"            # stored relative to the manifest
    assert rows[1]["audio_filepath"] == "/abs/elsewhere/b.flac"
    back, skipped = read_manifest(tmp_path / "m.jsonl")
    assert not skipped
    assert back[0].audio_filepath == str(tmp_path / "wavs" / "a.wav") and back[1].offset == 0.5
    assert [u.text for u in back] == ["one two", "three"]


def test_bad_lines_are_reported_not_fatal(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join([
        json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "ok"}),
        "{not json",
        json.dumps({"audio_filepath": "b.wav", "text": "no duration"}),
        json.dumps({"audio_filepath": "c.wav", "duration": -1, "text": "negative"}),
        json.dumps([1, 2]),
        "",
        json.dumps({"audio_filepath": "d.wav", "duration": "2.5", "text": "string duration is fine", "id": 7}),
    ]))
    utts, skipped = read_manifest(path)
    assert [u.id for u in utts] == ["a", "7"]
    assert len(skipped) == 4
    reasons = " ".join(s.reason for s in skipped)
    assert "not valid JSON" in reasons and "missing field(s) duration" in reasons and "positive" in reasons
    assert all(s.item.startswith(str(path)) for s in skipped)    # each names the file and line


def test_missing_manifest_error(tmp_path):
    import pytest
    from asrforge.errors import ManifestError
    with pytest.raises(ManifestError, match="nope.jsonl does not exist"):
        read_manifest(tmp_path / "nope.jsonl")


def test_helper_writes_lines(tmp_path):
    p = write_manifest_lines(tmp_path / "x.jsonl", [{"audio_filepath": "a.wav", "duration": 1, "text": "a"}])
    assert read_manifest(p)[0][0].duration == 1.0


def test_channel_is_kept_only_where_set_and_checked(tmp_path):
    utts = [Utterance("/calls/sw1.sph", 1.0, "side a", 0.0, "A", "a", channel=0),
            Utterance("/calls/book.flac", 2.0, "all channels", 0.0, None, "b")]
    write_manifest(tmp_path / "m.jsonl", utts)
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert rows[0]["channel"] == 0 and "channel" not in rows[1]       # plain lines stay as other tools write them
    assert [u.channel for u in read_manifest(tmp_path / "m.jsonl")[0]] == [0, None]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "x", "channel": c}) + "\n"
                           for c in (-1, "1", 1.5, True)))
    utts, skipped = read_manifest(bad)
    assert utts == [] and len(skipped) == 4 and all("channel number counted from 0" in s.reason for s in skipped)


def test_missing_audio_is_found_by_folder_listing_and_checked_by_name(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    for name in ("x.wav", "y.wav"):
        (tmp_path / "a" / name).write_bytes(b"")
    (tmp_path / "a" / "sub").mkdir()
    paths = [tmp_path / "a" / "x.wav", tmp_path / "a" / "y.wav", tmp_path / "a" / "z.wav",
             tmp_path / "nowhere" / "x.wav", tmp_path / "a" / "sub" / "..." / "x.wav"]
    utts = [Utterance(str(p), 1.0, "t") for p in paths]
    assert missing_audio(utts) == {str(p) for p in paths[2:]}
    # what a listing lacks but opens by name (a case-insensitive filesystem) is not missing
    monkeypatch.setattr(os, "listdir", lambda folder: [])
    assert missing_audio(utts) == {str(p) for p in paths[2:]}


def test_packed_list_gives_back_each_item_and_holds_no_object_per_item():
    import multiprocessing
    import pytest
    from asrforge.data.packed import PackedList

    utts = [Utterance(f"/a/{i}.wav", 1.0 + i, "é" * (i % 7), speaker=None if i % 3 else f"s{i}", id=f"u{i}")
            for i in range(5000)]
    packed = PackedList(utts)
    assert len(packed) == 5000 and list(packed) == utts and packed[-1] == utts[-1]
    with pytest.raises(IndexError):
        packed[5000]
    # the whole list is two numpy buffers: nothing per item for a forked worker's reads to copy
    assert [type(v).__name__ for v in vars(packed).values()] == ["ndarray", "ndarray"]
    # and it travels to a worker process whole (a spawned worker gets the dataset pickled)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(_read_every_other, (packed,)) == [u.id for u in utts[::2]]


def _read_every_other(packed):
    return [packed[i].id for i in range(0, len(packed), 2)]
