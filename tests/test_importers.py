"""Importers on tiny copies of each corpus layout, written here with synthetic audio and broken items."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from asrforge.cli.data import print_summary
from asrforge.data.importers import IMPORTERS, LayoutError, export_kaldi, prepare
from asrforge.data.importers.kaldi import list_kaldi
from asrforge.data.importers.wav_scp import UnsupportedEntry, WavSource, parse_wav_scp_entry
from asrforge.data.manifest import Utterance, load_utterance, read_manifest
from asrforge.data.dataset import SpeechDataset
from asrforge.features import FeatureConfig, FeatureExtractor
from asrforge.text import Normalizer

SHORTEN_SPHERE = (b"NIST_1A\n   1024\nsample_count -i 16000\nsample_rate -i 16000\nchannel_count -i 1\n"
                  b"sample_n_bytes -i 2\nsample_byte_format -s2 01\nsample_coding -s26 pcm,embedded-shorten-v2.00\nend_head\n")


def tone(path, seconds=1.0, sr=16000, fmt=None, subtype=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, format=fmt, subtype=subtype)
    return path


def skips(out):
    return [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]


def test_librispeech(tmp_path):
    src = tmp_path / "LibriSpeech"
    chapter = src / "dev-clean" / "84" / "121123"
    tone(chapter / "84-121123-0000.flac", 1.0)
    tone(chapter / "84-121123-0001.flac", 2.0)
    (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS THAN FIVE MINUTES\n"
                                                 "84-121123-0002 THIS ONE HAS NO AUDIO\n84-121123-0003\n")
    tone(src / "test-other" / "1688" / "142285" / "1688-142285-0000.flac", 1.5)
    (src / "test-other" / "1688" / "142285" / "1688-142285.trans.txt").write_text("1688-142285-0000 THERE\n")
    summary = prepare("librispeech", tmp_path, tmp_path / "out", progress=False)
    assert summary["splits"]["dev-clean"]["utterances"] == 2 and summary["splits"]["test-other"]["utterances"] == 1
    utts, _ = read_manifest(tmp_path / "out" / "dev-clean.jsonl")
    assert [(u.id, u.text, u.speaker) for u in utts] == [("84-121123-0000", "GO DO YOU HEAR", "84"),
                                                       ("84-121123-0001", "BUT IN LESS THAN FIVE MINUTES", "84")]
    assert utts[1].duration == pytest.approx(2.0)
    reasons = {s["item"].rsplit("/", 1)[-1]: s["reason"] for s in skips(tmp_path / "out")}
    assert "does not exist" in reasons["84-121123-0002"]
    assert "does not parse" in reasons["84-121123.trans.txt:4"]
    one = prepare("librispeech", src / "test-other", tmp_path / "out-one", progress=False)    # one split's folder
    assert list(one["splits"]) == ["test-other"] and one["splits"]["test-other"]["utterances"] == 1


def test_commonvoice_release_folder_with_one_language_or_several(tmp_path):
    for lang in ("cy", "eu"):
        tone(tmp_path / "cv-corpus" / lang / "clips" / "a.mp3", 1.0, fmt="MP3")
        (tmp_path / "cv-corpus" / lang / "train.tsv").write_text(f"client_id\tpath\tsentence\ns\ta.mp3\t{lang} text\n")
    with pytest.raises(LayoutError, match="several Common Voice languages.*cy, eu"):
        prepare("commonvoice", tmp_path / "cv-corpus", tmp_path / "out", progress=False)
    shutil.rmtree(tmp_path / "cv-corpus" / "eu")
    summary = prepare("commonvoice", tmp_path / "cv-corpus", tmp_path / "out", progress=False)
    assert summary["splits"]["train"]["utterances"] == 1
    assert read_manifest(tmp_path / "out" / "train.jsonl")[0][0].text == "cy text"


def test_commonvoice(tmp_path, capsys):
    tone(tmp_path / "clips" / "a.mp3", 1.0, fmt="MP3")
    tone(tmp_path / "clips" / "c.mp3", 1.0, fmt="MP3")
    (tmp_path / "clips" / "b.mp3").write_bytes(b"ID3" + bytes(200))          # an mp3 that will not decode
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
    (tmp_path / "train.tsv").write_text(header + "spk1\ta.mp3\tHello there, world!\t2\t0\t\t\t\ten\t\n"
                                        "spk2\tb.mp3\tBroken file.\t2\t0\t\t\t\ten\t\n")
    (tmp_path / "dev.tsv").write_text("client_id\tpath\n" + "spk1\ta.mp3\n")   # missing column: sentence
    (tmp_path / "test.tsv").write_text(header + "spk3\tc.mp3\t...\t1\t0\t\t\t\ten\t\n")
    (tmp_path / "validated.tsv").write_text(header + "spk1\ta.mp3\tHello there, world!\t2\t0\t\t\t\ten\t\n")
    summary = prepare("commonvoice", tmp_path, tmp_path / "out", progress=False)
    assert "validated" not in summary["splits"]
    train, _ = read_manifest(tmp_path / "out" / "train.jsonl")
    assert [(u.id, u.speaker, u.text) for u in train] == [("a", "spk1", "Hello there, world!")]
    reasons = {s["item"]: s["reason"] for s in skips(tmp_path / "out")}
    assert "cannot be decoded" in reasons["b"]
    assert "missing column(s) sentence" in reasons[str(tmp_path / "dev.tsv")]
    assert "normalizes to nothing" in reasons["c"]
    assert summary["splits"]["train"]["skipped_by_reason"] == {"cannot be decoded": 1}
    again = prepare("commonvoice", tmp_path, tmp_path / "out2", progress=False, include_validated=True)
    assert again["splits"]["validated"]["utterances"] == 1 and "stale_splits" not in again
    # a re-run without validated.tsv leaves the earlier validated.jsonl, and says so
    without = prepare("commonvoice", tmp_path, tmp_path / "out2", progress=False)
    assert "validated" not in without["splits"] and without["stale_splits"] == ["validated"]
    assert json.loads((tmp_path / "out2" / "summary.json").read_text())["stale_splits"] == ["validated"]
    print_summary(without, tmp_path / "out2")
    assert f"note: {tmp_path / 'out2' / 'validated.jsonl'} is left from an earlier run" in capsys.readouterr().out


def test_tedlium_segments_offsets_and_bad_lines(tmp_path):
    legacy = tmp_path / "legacy" / "test"
    tone(legacy / "sph" / "TalkA.sph", 5.0, fmt="NIST", subtype="PCM_16")
    (legacy / "sph" / "TalkB.sph").write_bytes(SHORTEN_SPHERE.ljust(1024, b" ") + bytes(range(256)) * 20)
    (legacy / "stm").mkdir(parents=True)
    (legacy / "stm" / "TalkA.stm").write_text(
        ";; comment\n"
        "TalkA 1 TalkA 0.50 2.00 <o,f0,male> so it 's <unk> good\n"
        "TalkA 1 inter_segment_gap 2.00 2.50 <o,,unknown> ignore_time_segment_in_scoring\n"
        "TalkA 1 TalkA 2.50 oops <o,f0,male> broken line\n"
        "TalkA 1 TalkA 4.00 7.00 <o,f0,male> runs past the end\n")
    (legacy / "stm" / "TalkB.stm").write_text("TalkB 1 TalkB 0.00 1.00 <o,f0,female> compressed audio\n")
    summary = prepare("tedlium", tmp_path, tmp_path / "out", progress=False)
    utts, _ = read_manifest(tmp_path / "out" / "test.jsonl")
    assert len(utts) == 1 and summary["splits"]["test"]["skipped"] == 3
    u = utts[0]
    assert (u.offset, u.duration, u.speaker) == (0.5, 1.5, "TalkA")
    assert Normalizer()(u.text) == "so it's good"
    reasons = " | ".join(s["reason"] for s in skips(tmp_path / "out"))
    assert "STM line does not parse" in reasons and "shorter than its segment" in reasons
    assert "TalkB.sph cannot be decoded" in reasons
    # the manifest's offset makes the dataset read only that slice
    ds = SpeechDataset(utts, FeatureExtractor(FeatureConfig()), None, Normalizer())
    assert ds.features_of(0).shape[0] == 151      # 1.5 s at 10 ms hop (+1 centered frame)


def test_fsdd_splits_and_holdout(tmp_path):
    for speaker in ("ann", "bob"):
        for digit in (0, 7):
            for index in range(12):
                tone(tmp_path / "recordings" / f"{digit}_{speaker}_{index}.wav", 0.4, sr=8000)
    (tmp_path / "recordings" / "readme.wav").write_bytes(b"")
    summary = prepare("fsdd", tmp_path, tmp_path / "std", progress=False)
    assert {k: v["utterances"] for k, v in summary["splits"].items()} == {"dev": 20, "test": 20, "train": 8}
    test, _ = read_manifest(tmp_path / "std" / "test.jsonl")
    assert {u.text for u in test} == {"zero", "seven"} and test[0].duration == pytest.approx(0.4)
    held = prepare("fsdd", tmp_path, tmp_path / "held", progress=False, holdout_speakers=("bob",))
    test, _ = read_manifest(tmp_path / "held" / "test.jsonl")
    train, _ = read_manifest(tmp_path / "held" / "train.jsonl")
    assert {u.speaker for u in test} == {"bob"} and len(test) == 24 and {u.speaker for u in train} == {"ann"}
    assert held["splits"]["train"]["skipped"] == 1          # readme.wav: not {digit}_{speaker}_{index}
    with pytest.raises(LayoutError, match="held-out speaker"):
        prepare("fsdd", tmp_path, tmp_path / "x", progress=False, holdout_speakers=("zed",))


def test_folder_tree_and_tables(tmp_path):
    tone(tmp_path / "tree" / "train" / "alice" / "a1.wav")
    (tmp_path / "tree" / "train" / "alice" / "a1.txt").write_text("Hello\nworld\n")
    tone(tmp_path / "tree" / "train" / "alice" / "a2.flac")          # no transcript
    tone(tmp_path / "tree" / "test" / "bob" / "b1.ogg", fmt="OGG", subtype="VORBIS")
    (tmp_path / "tree" / "test" / "bob" / "b1.txt").write_text("good bye")
    summary = prepare("folder", tmp_path / "tree", tmp_path / "out", progress=False)
    assert summary["splits"]["train"]["utterances"] == 1 and summary["splits"]["test"]["utterances"] == 1
    train, _ = read_manifest(tmp_path / "out" / "train.jsonl")
    assert (train[0].text, train[0].speaker, train[0].id) == ("Hello world", "alice", "alice-a1")
    assert "no transcript a2.txt" in skips(tmp_path / "out")[0]["reason"]

    tone(tmp_path / "tab" / "audio" / "x.wav")
    (tmp_path / "tab" / "train.csv").write_text("path,text,speaker\naudio/x.wav,some words,s9\n,missing path,s9\n"
                                                "audio/x.wav,the same file again,s9\n")
    (tmp_path / "tab" / "bad.tsv").write_text("file\twords\naudio/x.wav\tnope\n")
    summary = prepare("folder", tmp_path / "tab", tmp_path / "out2", progress=False)
    assert summary["splits"]["train"]["utterances"] == 1 and summary["splits"]["bad"]["utterances"] == 0
    rows, _ = read_manifest(tmp_path / "out2" / "train.jsonl")
    assert (rows[0].text, rows[0].speaker) == ("some words", "s9")
    assert any("missing column" in s["reason"] for s in skips(tmp_path / "out2"))
    assert summary["splits"]["train"]["skipped_by_reason"] == {"does not parse": 1, "duplicate id": 1}


def test_folder_table_with_segment_times(tmp_path):
    tone(tmp_path / "talk.wav", 6.0)
    (tmp_path / "segments.tsv").write_text(
        "path\tstart\tend\ttext\tspeaker\n"
        "talk.wav\t0\t2.5\tfirst part\tann\n"
        "talk.wav\t2.5\t5.75\tsecond part\tann\n"
        "talk.wav\t5.0\t9.0\tpast the end\tann\n"
        "talk.wav\tsoon\t3\tnot a time\tann\n"
        "talk.wav\t3\t2\tbackwards\tann\n")
    summary = prepare("folder", tmp_path / "segments.tsv", tmp_path / "out", progress=False)
    utts, _ = read_manifest(tmp_path / "out" / "segments.jsonl")
    assert [(u.id, u.offset, u.duration, u.speaker) for u in utts] == [("talk-0000000", 0.0, 2.5, "ann"),
                                                                      ("talk-0000250", 2.5, 3.25, "ann")]
    assert summary["splits"]["segments"]["skipped_by_reason"] == {"shorter than its segment": 1, "does not parse": 2}
    reasons = " ".join(s["reason"] for s in skips(tmp_path / "out"))
    assert "start 'soon' is not a number of seconds" in reasons and "empty or negative" in reasons
    assert load_utterance(utts[1]).size == 52000


def test_folder_audio_only_lists_untranscribed_audio_for_augmentation_and_adaptation(tmp_path, capsys):
    import torch

    from asrforge.data.augment.waveform import AugmentConfig, WaveAugment
    from asrforge.cli import main

    tone(tmp_path / "rirs" / "small_room" / "r1.wav", 0.3)
    tone(tmp_path / "rirs" / "hall" / "r2.flac", 0.8)
    (tmp_path / "rirs" / "hall" / "r2.txt").write_text("ignored")       # a stray text file is not a transcript
    (tmp_path / "rirs" / "broken.wav").write_bytes(b"RIFF....WAVEfmt nothing")
    assert main(["prepare", "folder", str(tmp_path / "rirs"), "--out", str(tmp_path / "out"), "--audio-only"]) == 0
    assert "all" in capsys.readouterr().out
    rows, _ = read_manifest(tmp_path / "out" / "all.jsonl")
    assert sorted((r.id, r.text, r.speaker) for r in rows) == [("hall-r2", "", "hall"), ("small_room-r1", "", "small_room")]
    assert sorted(r.duration for r in rows) == [pytest.approx(0.3), pytest.approx(0.8)]
    assert [s["item"] for s in skips(tmp_path / "out")] == ["broken"]
    assert "cannot be decoded" in skips(tmp_path / "out")[0]["reason"]
    # the manifest feeds augmentation directly
    aug = WaveAugment(AugmentConfig(reverb_prob=1.0, rir_manifest=str(tmp_path / "out" / "all.jsonl")))
    assert len(aug.rirs) == 2 and aug(np.ones(4000, np.float32), torch.Generator().manual_seed(0)).shape == (4000,)

    # a table needs only its path column; without the flag, only files with a transcript import
    (tmp_path / "noise").mkdir()
    tone(tmp_path / "noise" / "hum.wav")
    (tmp_path / "noise" / "noise.csv").write_text("path\nhum.wav\n")
    assert prepare("folder", tmp_path / "noise", tmp_path / "n1", progress=False, audio_only=True)["splits"]["noise"]["utterances"] == 1
    assert prepare("folder", tmp_path / "noise", tmp_path / "n2", progress=False)["splits"]["noise"]["utterances"] == 0
    assert prepare("folder", tmp_path / "rirs", tmp_path / "n3", progress=False)["splits"]["all"]["utterances"] == 1
    assert main(["prepare", "librispeech", str(tmp_path / "rirs"), "--out", str(tmp_path / "x"), "--audio-only"]) == 2
    assert "--audio-only applies to folder only" in capsys.readouterr().err


def test_kaldi_import_and_export_roundtrip(tmp_path):
    rec = tone(tmp_path / "audio" / "rec1.wav", 4.0)
    d = tmp_path / "data" / "train"
    d.mkdir(parents=True)
    (d / "wav.scp").write_text(f"rec1 {rec}\nrec2 sox {rec} -t wav - speed 0.9 |\n")
    (d / "segments").write_text("spk-u1 rec1 0.00 1.50\nspk-u2 rec1 1.50 3.25\nspk-u3 rec2 0 1\nspk-u4 rec1 x y\n")
    (d / "text").write_text("spk-u1 hello there\nspk-u2 general kenobi\nspk-u3 piped\nspk-u4 bad segment\n")
    (d / "utt2spk").write_text("spk-u1 spk\nspk-u2 spk\nspk-u3 spk\nspk-u4 spk\n")
    summary = prepare("kaldi", tmp_path / "data", tmp_path / "out", progress=False)
    assert summary["splits"]["train"]["utterances"] == 2 and summary["splits"]["train"]["skipped"] == 2
    utts, _ = read_manifest(tmp_path / "out" / "train.jsonl")
    assert [(u.id, u.offset, u.duration, u.speaker) for u in utts] == [("spk-u1", 0.0, 1.5, "spk"), ("spk-u2", 1.5, 1.75, "spk")]
    assert any("sox effect 'speed' changes the audio" in s["reason"] for s in skips(tmp_path / "out"))
    export_kaldi(utts, tmp_path / "exported")
    assert (tmp_path / "exported" / "segments").read_text().splitlines()[1] == "spk-u2 rec1 1.50 3.25"
    assert (tmp_path / "exported" / "spk2utt").read_text() == "spk spk-u1 spk-u2\n"
    back = list_kaldi(tmp_path / "exported")["exported"].candidates
    assert [(c.id, c.offset, c.duration, c.text) for c in back] == [("spk-u1", 0.0, 1.5, "hello there"),
                                                                     ("spk-u2", 1.5, 1.75, "general kenobi")]


def test_kaldi_recipes_decoding_commands_read_their_file_and_channel(tmp_path):
    """The wav.scp of Kaldi's own recipes: flac and sph2pipe commands (one side of a two-channel call each),
    segments from 0.00; commands that change the audio are reported, not run."""
    call = tmp_path / "audio" / "call.sph"
    call.parent.mkdir(parents=True)
    sides = np.stack([np.full(32000, 0.25), np.full(32000, -0.5)], axis=1).astype(np.float32)
    sf.write(call, sides, 16000, format="NIST", subtype="PCM_16")
    book = tone(tmp_path / "audio" / "book.flac", 3.0)
    d = tmp_path / "s5" / "data" / "train"
    d.mkdir(parents=True)
    (tmp_path / "s5" / "audio").symlink_to(tmp_path / "audio")       # a path relative to the recipe folder
    (d / "wav.scp").write_text(f"call-A sph2pipe -f wav -p -c 1 {call} |\ncall-B sph2pipe -f wav -p -c 2 {call} |\n"
                               f"book flac -c -d -s audio/book.flac |\nfast sox {book} -t wav - speed 1.1 |\n"
                               f"side3 sph2pipe -f wav -p -c 2 {book} |\n")
    (d / "segments").write_text("a1 call-A 0.00 0.50\nb1 call-B 0.25 1.00\nk1 book 0.00 1.50\nf1 fast 0 1\nx1 side3 0 1\n")
    (d / "text").write_text("a1 hello\nb1 hi there\nk1 chapter one\nf1 faster\nx1 no such side\n")
    summary = prepare("kaldi", d, tmp_path / "out", progress=False)
    assert summary["splits"]["train"]["skipped_by_reason"] == {"not supported": 1, "too few channels": 1}
    utts, _ = read_manifest(tmp_path / "out" / "train.jsonl")
    by_id = {u.id: u for u in utts}
    assert [(by_id[i].channel, by_id[i].offset, by_id[i].duration) for i in ("a1", "b1", "k1")] == \
        [(0, 0.0, 0.5), (1, 0.25, 0.75), (None, 0.0, 1.5)]
    assert by_id["k1"].audio_filepath == str(book.resolve())
    waves = {u.id: load_utterance(u) for u in utts}
    assert waves["a1"].shape == (8000,) and np.allclose(waves["a1"], 0.25, atol=1e-3)     # side A, half a second
    assert waves["b1"].shape == (12000,) and np.allclose(waves["b1"], -0.5, atol=1e-3)    # side B
    assert waves["k1"].shape == (24000,)            # a segment from 0.00 is the segment, not the whole recording
    export_kaldi(utts, tmp_path / "exported")
    scp = (tmp_path / "exported" / "wav.scp").read_text()
    assert f"call-2 sph2pipe -f wav -p -c 2 {call}" in scp and f"book flac -c -d -s {book.resolve()} |" in scp
    back = list_kaldi(tmp_path / "exported")["exported"].candidates
    assert sorted((c.id, c.channel, c.offset, c.duration) for c in back) == \
        [("a1", 0, 0.0, 0.5), ("b1", 1, 0.25, 0.75), ("k1", None, 0.0, 1.5)]


def test_kaldi_export_writes_what_kaldi_can_read_and_reads_it_back(tmp_path):
    """Kaldi reads only RIFF WAV itself: other formats go through the decoders its recipes use. Whole files need
    no segments file; an utterance that ends before its file does."""
    files = {name: tone(tmp_path / name, 1.0, fmt=fmt) for name, fmt in
             (("a.wav", None), ("b.flac", None), ("c.mp3", "MP3"), ("d.ogg", "OGG"))}
    stereo = tmp_path / "e.wav"
    sf.write(stereo, np.zeros((16000, 2), np.float32), 16000)
    utts = [Utterance(str(p), 1.0, f"words {n}", speaker="s", id=n.split(".")[0]) for n, p in files.items()]
    utts.append(Utterance(str(stereo), 1.0, "right side", speaker="s", id="e", channel=1))
    export_kaldi(utts, tmp_path / "whole")
    scp = dict(line.split(" ", 1) for line in (tmp_path / "whole" / "wav.scp").read_text().splitlines())
    assert scp == {"a": str(files["a.wav"]), "b": f"flac -c -d -s {files['b.flac']} |",
                   "c": f"ffmpeg -nostdin -loglevel quiet -i {files['c.mp3']} -f wav -ar 16000 -ac 1 - |",
                   "d": f"ffmpeg -nostdin -loglevel quiet -i {files['d.ogg']} -f wav -ar 16000 -ac 1 - |",
                   "e": f"sox {stereo} -t wav - remix 2 |"}
    assert not (tmp_path / "whole" / "segments").exists()
    back = {c.id: (c.audio, c.channel) for c in list_kaldi(tmp_path / "whole")["whole"].candidates}
    assert back == {u.id: (u.audio_filepath, u.channel) for u in utts}
    export_kaldi([Utterance(str(files["a.wav"]), 0.5, "first half", id="a")], tmp_path / "part")
    assert (tmp_path / "part" / "segments").read_text() == "a a 0.00 0.50\n"


@pytest.mark.parametrize("entry,path,channel", [
    ("/a/b.flac", "/a/b.flac", None),
    ("flac -c -d -s /a/1089-134686-0000.flac |", "/a/1089-134686-0000.flac", None),
    ("flac -cds '/a/with space.flac' |", "/a/with space.flac", None),
    ("/usr/bin/sph2pipe -f wav -p -c 2 /a/sw02001.sph |", "/a/sw02001.sph", 1),
    ("sox /a/x.mp3 -t wav -r 16000 -b 16 -e signed - |", "/a/x.mp3", None),
    ("sox -t sph /a/x.sph -t wav - remix 2 rate -v 8000 |", "/a/x.sph", 1),
    ("ffmpeg -hide_banner -loglevel quiet -i /a/x.m4a -ar 16000 -ac 1 -f wav - |", "/a/x.m4a", None),
    ("cat /a/x.wav |", "/a/x.wav", None),
    ("ffmpeg -i /a/x.mp3 -f wav -ar 16000 -ab 16 -ac 1 - |", "/a/x.mp3", None),
    ("sox /a/x.mp3 -t wav -r 16k -b 16 -e signed - |", "/a/x.mp3", None),
])
def test_wav_scp_decoding_commands_name_their_file(entry, path, channel):
    assert parse_wav_scp_entry(entry) == WavSource(path, channel)


@pytest.mark.parametrize("entry,reason", [
    ("sox /a/x.wav -t wav - | sox -t wav - -t wav - speed 0.9 |", "chain of several commands"),
    ("sox /a/x.wav -t wav - vol 2 |", "sox effect 'vol'"),
    ("ffmpeg -i /a/x.wav -af loudnorm -f wav - |", "ffmpeg option -af"),
    ("flac -c /a/x.wav |", "does not decode"),
    ("sph2pipe -f wav -c 3 /a/x.sph |", "channel 1 or 2"),
    ("wav-reverberate --rir /a/rir.wav /a/x.wav - |", "command 'wav-reverberate' is not supported"),
    ("/data/wav.ark:1234", "Kaldi archive"),
    ("sox 'unterminated -t wav - |", "does not parse"),
])
def test_wav_scp_commands_that_change_the_audio_are_refused_with_the_reason(entry, reason):
    with pytest.raises(UnsupportedEntry, match=reason):
        parse_wav_scp_entry(entry)


@pytest.mark.parametrize("corpus,expected", [("librispeech", "trans.txt"), ("commonvoice", "clips"),
                                             ("tedlium", "legacy"), ("fsdd", "recordings"),
                                             ("folder", "no audio files"), ("kaldi", "wav.scp")])
def test_wrong_layout_says_what_was_expected(tmp_path, corpus, expected):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.md").write_text("not a corpus")
    with pytest.raises(LayoutError, match=expected):
        prepare(corpus, tmp_path / "src", tmp_path / "out", progress=False)
    assert set(IMPORTERS) == {"librispeech", "commonvoice", "tedlium", "fsdd", "folder", "kaldi"}


def test_rerun_does_not_redo_finished_splits(tmp_path):
    for index in range(12):
        tone(tmp_path / "recordings" / f"3_cat_{index}.wav", 0.3, sr=8000)
    prepare("fsdd", tmp_path, tmp_path / "out", progress=False)
    stamp = (tmp_path / "out" / "train.jsonl").stat().st_mtime_ns
    summary = prepare("fsdd", tmp_path, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "train.jsonl").stat().st_mtime_ns == stamp
    assert summary["splits"]["train"]["utterances"] == 2


def test_rerun_with_other_options_or_source_redoes_the_splits(tmp_path, caplog):
    """Idempotent re-runs must not keep a split made for another held-out speaker (its test set would leak
    into training) or from another folder."""
    for speaker in ("ann", "bob", "cid"):
        for index in range(12):
            tone(tmp_path / "a" / "recordings" / f"3_{speaker}_{index}.wav", 0.3, sr=8000)
    tone(tmp_path / "b" / "recordings" / "3_dan_10.wav", 0.3, sr=8000)

    def speakers(split):
        return {u.speaker for u in read_manifest(tmp_path / "out" / f"{split}.jsonl")[0]}

    prepare("fsdd", tmp_path / "a", tmp_path / "out", progress=False, holdout_speakers=("ann",))
    assert speakers("test") == {"ann"} and speakers("train") == {"bob", "cid"}
    stamp = (tmp_path / "out" / "train.jsonl").stat().st_mtime_ns
    caplog.set_level("INFO", logger="asrforge")
    prepare("fsdd", tmp_path / "a", tmp_path / "out", progress=True, holdout_speakers=("ann",))
    assert (tmp_path / "out" / "train.jsonl").stat().st_mtime_ns == stamp and "redoing" not in caplog.text
    prepare("fsdd", tmp_path / "a", tmp_path / "out", progress=True, holdout_speakers=("bob",))
    assert speakers("test") == {"bob"} and speakers("train") == {"ann", "cid"}
    assert f"train: {tmp_path / 'out' / 'train.jsonl'} was prepared from another source or with other options; " \
           "redoing it" in caplog.text
    prepare("fsdd", tmp_path / "b", tmp_path / "out", progress=False)
    assert speakers("train") == {"dan"}
