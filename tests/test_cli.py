"""The command line as a user runs it: real subprocesses, so a traceback would show."""

import json
import subprocess
import sys

import pytest
import torch

from asrforge.cli import main, own_message
from asrforge.data.manifest import read_manifest
from asrforge.errors import ConfigError
from conftest import REPO, tiny_overrides


def cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "asrforge.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def test_synth_command(tmp_path):
    proc = cli("synth", "--out", tmp_path, "--domain", "commands", "--hours", "0.003", "--seed", "5", "--workers", "1")
    assert "test voices (never in train/dev)" in proc.stdout
    utts, _ = read_manifest(tmp_path / "train.jsonl")
    assert utts and all(u.audio_filepath.endswith(".wav") for u in utts)


def test_train_command_with_overrides(corpus, tmp_path):
    proc = cli("train", REPO / "configs" / "demo_ctc.yaml", *tiny_overrides(corpus, **{"train.epochs": 1}), "--out", tmp_path / "exp")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and (tmp_path / "exp" / "best.pt").is_file()
    # the same command again would replace the trained model: it asks for --resume or --overwrite instead
    stamp = (tmp_path / "exp" / "best.pt").stat().st_mtime_ns
    again = [REPO / "configs" / "demo_ctc.yaml", *tiny_overrides(corpus, **{"train.epochs": 1}), "--out", tmp_path / "exp"]
    proc = cli("train", *again, check=False)
    assert proc.returncode == 2 and "already holds a trained model (best.pt, last.pt)" in proc.stderr
    assert "--resume" in proc.stderr and "--overwrite" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "exp" / "best.pt").stat().st_mtime_ns == stamp
    cli("train", *again, "--overwrite")
    assert (tmp_path / "exp" / "best.pt").stat().st_mtime_ns != stamp


def test_evaluate_json_and_report(trained, corpus, tmp_path):
    out = tmp_path / "eval.json"
    proc = cli("evaluate", "--model", trained, "--manifest", corpus / "test.jsonl", "--beam-size", "4",
               "--json", out, "--report-dir", tmp_path / "rep")
    result = json.loads(out.read_text())
    assert {"wer", "cer", "utts", "sub", "del", "ins", "rtf"} <= set(result)
    assert result["utts"] == len(read_manifest(corpus / "test.jsonl")[0])
    words = sum(len(u.text.split()) for u in read_manifest(corpus / "test.jsonl")[0])
    assert result["wer"] == pytest.approx((result["sub"] + result["del"] + result["ins"]) / words)
    assert "Sum/Avg" in proc.stdout and (tmp_path / "rep" / "utterances.txt").read_text().count("REF:") == result["utts"]
    # 95 % bootstrap intervals around the figures, and every utterance's scoring for `asrforge compare`
    assert result["wer_ci"][0] <= result["wer"] <= result["wer_ci"][1] and result["bootstrap"] == 1000
    assert result["cer_ci"][0] <= result["cer"] <= result["cer_ci"][1] and "95% CI" in proc.stdout
    assert len(result["utterances"]) == result["utts"]
    assert sum(u["sub"] + u["del"] + u["ins"] for u in result["utterances"]) == result["sub"] + result["del"] + result["ins"]
    greedy = tmp_path / "greedy.json"
    cli("evaluate", "--model", trained, "--manifest", corpus / "test.jsonl", "--beam-size", "1", "--bootstrap", "0",
        "--json", greedy)
    assert json.loads(greedy.read_text())["wer_ci"] is None and result["normalizer"] == "basic"
    whisper_scored = tmp_path / "whisper_english.json"
    cli("evaluate", "--model", trained, "--manifest", corpus / "test.jsonl", "--beam-size", "1", "--normalizer",
        "whisper_english", "--json", whisper_scored)
    scored = json.loads(whisper_scored.read_text())
    from asrforge.text.scoring import scoring_normalizer

    english = scoring_normalizer("whisper_english")
    texts = {u.id: u.text for u in read_manifest(corpus / "test.jsonl")[0]}
    assert scored["normalizer"] == "whisper_english"
    assert all(u["reference"] == english(texts[u["id"]]) for u in scored["utterances"])
    refused = cli("compare", greedy, whisper_scored, check=False)
    assert refused.returncode == 2 and "evaluate both with the same one" in refused.stderr
    # each utterance keeps its texts as written, so compare scores both again after one normalizer: the basic-scored
    # greedy run rescored after Whisper's English normalizer is the run evaluate scored after it
    assert all(u["written_reference"] == texts[u["id"]] for u in json.loads(greedy.read_text())["utterances"])
    cli("compare", greedy, whisper_scored, "--normalizer", "whisper_english", "--json", tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["normalizer"] == "whisper_english" and again["delta"] == 0.0
    assert again["wer_a"] == pytest.approx(scored["wer"]) and again["wer_b"] == pytest.approx(scored["wer"])
    compared = cli("compare", greedy, out, "--json", tmp_path / "cmp.json")
    figures = json.loads((tmp_path / "cmp.json").read_text())
    assert figures["wer_a"] == pytest.approx(json.loads(greedy.read_text())["wer"]) and figures["wer_b"] == pytest.approx(result["wer"])
    assert {"delta", "delta_ci", "p_bootstrap", "p_mapsswe"} <= set(figures) and "MAPSSWE" in compared.stdout


def test_transcribe_txt_and_json(trained, corpus, tmp_path, capsys):
    utts, _ = read_manifest(corpus / "test.jsonl")
    files = [utts[0].audio_filepath, utts[1].audio_filepath]
    assert main(["transcribe", *files, "--model", str(trained / "best.pt"), "--output-format", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["file"] for r in lines] == files and all(isinstance(r["text"], str) for r in lines)
    assert main(["transcribe", files[0], "--model", str(trained), "--output-dir", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / (utts[0].id + ".txt")).is_file()


def test_transcribe_a_folder_mirrors_its_layout(trained, corpus, tmp_path, capsys):
    import shutil

    utts, _ = read_manifest(corpus / "test.jsonl")
    for sub, u in zip(("a", "b", "b/deep"), utts):
        (tmp_path / "in" / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(u.audio_filepath, tmp_path / "in" / sub / "take.wav")      # the same name in each folder
    (tmp_path / "in" / "notes.txt").write_text("not audio")
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF but nothing else")
    assert main(["transcribe", str(tmp_path / "in"), "--model", str(trained), "--output-dir", str(tmp_path / "o")]) == 0
    assert sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*.txt")) == \
        ["a/take.txt", "b/deep/take.txt", "b/take.txt"]
    err = capsys.readouterr().err      # many files: a bar and a total, not a line per file
    assert f"wrote 3 file(s) for 3 of 4 recordings to {tmp_path / 'o'}; 1 skipped" in err
    assert "skipped" in err and "broken.wav" in err and "wrote " + str(tmp_path / "o") not in err
    # files given one by one that would overwrite each other's results are refused before any work
    same = [str(tmp_path / "in" / "a" / "take.wav"), str(tmp_path / "in" / "b" / "take.wav")]
    assert main(["transcribe", *same, "--model", str(trained), "--output-dir", str(tmp_path / "p")]) == 2
    assert "would both be written as" in capsys.readouterr().err and not (tmp_path / "p").exists()
    (tmp_path / "empty").mkdir()
    assert main(["transcribe", str(tmp_path / "empty"), "--model", str(trained)]) == 2
    assert "holds no audio files" in capsys.readouterr().err


def test_transcribe_skips_a_bad_file_and_keeps_the_rest(trained, corpus, tmp_path):
    good = read_manifest(corpus / "test.jsonl")[0][0].audio_filepath
    proc = cli("transcribe", tmp_path / "nope.wav", good, "--model", trained)
    assert "skipped" in proc.stderr and "nope.wav" in proc.stderr
    assert good in proc.stdout


@pytest.mark.parametrize("make,expected", [
    (lambda p: p.write_bytes(b"not a checkpoint"), "corrupt or not a PyTorch file"),
    (lambda p: torch.save({"weights": torch.zeros(2)}, p), "not an asrforge checkpoint"),
    (lambda p: None, "does not exist"),
])
def test_bad_checkpoints_get_one_clear_line(tmp_path, corpus, make, expected):
    path = tmp_path / "model.pt"
    make(path)
    proc = cli("evaluate", "--model", path, "--manifest", corpus / "test.jsonl", check=False)
    assert proc.returncode == 2 and expected in proc.stderr and "model.pt" in proc.stderr


def test_bad_recipe_and_manifest_errors(tmp_path, corpus):
    proc = cli("train", REPO / "configs" / "demo_ctc.yaml", "model.family=nope", "--out", tmp_path, check=False)
    assert proc.returncode == 2 and "choose one of: ctc" in proc.stderr
    proc = cli("train", REPO / "configs" / "demo_ctc.yaml", "data.dev=x", "--out", tmp_path, check=False)
    assert proc.returncode == 2 and "data.train is not set" in proc.stderr


def test_prepare_and_export_kaldi_commands(tmp_path):
    import numpy as np
    import soundfile as sf
    recordings = tmp_path / "src" / "recordings"
    recordings.mkdir(parents=True)
    for index in range(12):
        sf.write(recordings / f"5_eve_{index}.wav", np.full(3000, 0.01, np.float32), 8000)
    proc = cli("prepare", "fsdd", tmp_path / "src", "--out", tmp_path / "out")
    assert "train" in proc.stdout and "utts" in proc.stdout
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["splits"]["test"]["utterances"] == 5
    cli("export-kaldi", tmp_path / "out" / "test.jsonl", "--out", tmp_path / "kaldi")
    assert len((tmp_path / "kaldi" / "text").read_text().splitlines()) == 5
    proc = cli("prepare", "librispeech", tmp_path / "src", "--out", tmp_path / "x", check=False)
    assert proc.returncode == 2 and "is not a LibriSpeech folder" in proc.stderr
    # a table whose every row is skipped: the summary, then an error naming the first reason
    (tmp_path / "t.csv").write_text("path,words\nsrc/recordings/5_eve_0.wav,five\n")
    proc = cli("prepare", "folder", tmp_path / "t.csv", "--out", tmp_path / "t", check=False)
    assert proc.returncode == 2 and "0 utts" in proc.stdout
    assert (f"nothing was prepared from {tmp_path / 't.csv'}: every item was skipped (the first: missing column"
            in proc.stderr) and str(tmp_path / "t" / "skipped.jsonl") in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["evaluate", "--model", "m", "--manifest", "x.jsonl", "--beam-size", "0"], "--beam-size: must be at least 1, got 0"),
    (["shard", "x.jsonl", "--out", "o", "--shard-size", "0"], "--shard-size: must be at least 1"),
    (["shard", "x.jsonl", "--out", "o", "--shard-size", "ten"], "--shard-size: 'ten' is not a whole number"),
    (["synth", "--out", "o", "--hours", "0"], "--hours: must be above 0, got 0"),
    (["adapt", "--model", "m", "--manifest", "x.jsonl", "--out", "o", "--lr", "0"], "--lr: must be above 0, got 0"),
    (["lm", "train", "--manifest", "x.jsonl", "--out", "o.arpa", "--order", "0"], "--order: must be at least 1"),
])
def test_counts_and_amounts_out_of_range_are_refused_by_name(args, message, capsys):
    """Before, --beam-size 0 silently meant the recipe's beam and --shard-size 0 wrote one shard per utterance."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_audio_without_transcripts_is_not_evaluated_tuned_on_or_trained_on(trained, corpus, tmp_path, capsys):
    rows = [{**json.loads(line), "text": ""} for line in open(corpus / "test.jsonl")]
    for r in rows:
        r["audio_filepath"] = str(corpus / r["audio_filepath"])
    (tmp_path / "untranscribed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(trained), "--manifest", str(tmp_path / "untranscribed.jsonl"),
                 "--json", str(report)]) == 2
    err = capsys.readouterr().err
    assert f"none of the {len(rows)} items" in err and "no WER to report" in err and "transcript is empty" in err
    assert not report.exists()
    # nor can an LM be tuned on it
    from asrforge.decoding.kneser_ney import write_lm

    write_lm(["one two", "three"], 2, tmp_path / "lm.arpa")
    assert main(["lm", "tune", "--model", str(trained), "--manifest", str(tmp_path / "untranscribed.jsonl"),
                 "--lm", str(tmp_path / "lm.arpa"), "--weights", "0.5", "--bonuses", "1"]) == 2
    assert f"none of the {len(rows)} items of {tmp_path / 'untranscribed.jsonl'} could be scored" in capsys.readouterr().err
    # nor trained on
    assert main(["train", str(REPO / "configs" / "demo_ctc.yaml"), f"data.train={tmp_path / 'untranscribed.jsonl'}",
                 f"data.dev={corpus / 'dev.jsonl'}", "--out", str(tmp_path / "exp")]) == 2
    assert "none of its" in capsys.readouterr().err and not (tmp_path / "exp" / "last.pt").exists()


class _FailingStream(torch.utils.data.IterableDataset):
    def __iter__(self):
        raise ConfigError("shards x.tar hold no readable utterance")
        yield


def test_an_error_raised_in_a_dataloader_worker_is_shown_as_itsown_message():
    loader = torch.utils.data.DataLoader(_FailingStream(), batch_size=None, num_workers=1)
    with pytest.raises(ConfigError) as caught:
        list(loader)
    assert "Original Traceback" in str(caught.value)                 # what torch hands back
    assert own_message(caught.value) == "shards x.tar hold no readable utterance"
    assert own_message(ConfigError("plain")) == "plain"


def test_transcribe_reads_a_stream_on_standard_input(trained, corpus, tmp_path):
    """`ffmpeg -i talk.mp4 -f wav - | asrforge transcribe -`: a WAV stream whose header gives no length."""
    import struct

    good = read_manifest(corpus / "test.jsonl")[0][0].audio_filepath
    stream = bytearray(open(good, "rb").read())
    stream[4:8] = struct.pack("<I", 0xFFFFFFFF)                  # what a pipe gets: sizes unknown when written
    data = stream.find(b"data")
    stream[data + 4:data + 8] = struct.pack("<I", 0xFFFFFFFF)
    run = [sys.executable, "-m", "asrforge.cli", "transcribe", "-", "--model", str(trained), "--output-format", "json"]
    piped = subprocess.run(run, input=bytes(stream), capture_output=True, cwd=REPO, timeout=300)
    assert piped.returncode == 0, piped.stderr.decode()
    by_file = json.loads(cli("transcribe", good, "--model", trained, "--output-format", "json").stdout)
    assert json.loads(piped.stdout)["text"] == by_file["text"] and json.loads(piped.stdout)["file"] == "-"
    junk = subprocess.run(run, input=b"not audio at all", capture_output=True, cwd=REPO, timeout=300)
    assert junk.returncode == 2 and b"standard input cannot be decoded (" in junk.stderr and b"ffmpeg" in junk.stderr
    assert b"Error opening" not in junk.stderr and b"BytesIO" not in junk.stderr     # no repr of our buffer
    twice = subprocess.run(run[:5] + ["-"] + run[5:], input=b"", capture_output=True, cwd=REPO, timeout=300)
    assert twice.returncode == 2 and b"can be given once" in twice.stderr


def test_a_command_s_trailing_list_may_also_follow_its_options(capsys):
    """`train cfg --out exp key=value` and `transcribe a.wav --model m b.wav` were refused as unrecognized
    arguments: argparse takes a positional list only in one piece."""
    from asrforge.cli import parse

    args = parse(["train", "cfg.yaml", "data.train=t.jsonl", "--out", "exp", "train.epochs=2", "--resume", "x.y=1"])
    assert args.config == "cfg.yaml" and args.out == "exp" and args.resume
    assert args.overrides == ["data.train=t.jsonl", "train.epochs=2", "x.y=1"]
    assert parse(["transcribe", "a.wav", "--model", "m", "b.wav", "-"]).audio == ["a.wav", "b.wav", "-"]
    with pytest.raises(SystemExit) as stop:
        parse(["train", "cfg.yaml", "--out", "exp", "train.epochs=2", "--bogus"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "asrforge train: error: unrecognized arguments: --bogus" in err
    assert "train.epochs=2" not in err.splitlines()[-1]
    with pytest.raises(SystemExit):
        parse(["synth", "--out", "o", "stray"])           # no list to join: still refused
    assert "unrecognized arguments: stray" in capsys.readouterr().err
