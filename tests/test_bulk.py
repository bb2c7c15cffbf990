"""Bulk transcription of a manifest (`asrforge transcribe --manifest M --output-manifest OUT`): the output lines,
bad audio, two processes under torchrun, and a killed job started again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from asrforge.cli import main
from asrforge.inference import load_model
from asrforge.inference.bulk import entry_key, parts_folder, skip_report

def manifest(corpus: Path, path: Path, copies: int = 1, extra: list[dict] = ()) -> Path:
    """The test split, ``copies`` times over (each copy its own ids), absolute paths, plus ``extra`` lines."""
    rows = [json.loads(line) for line in (corpus / "test.jsonl").read_text().splitlines()]
    with open(path, "w") as f:
        for k in range(copies):
            for r in rows:
                f.write(json.dumps({**r, "audio_filepath": str(corpus / r["audio_filepath"]), "id": f"{r['id']}-{k}",
                                    "note": "kept as it is"}) + "\n")
        for r in extra:
            f.write(json.dumps(r) + "\n")
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def cli(*args, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, **kwargs)


def test_every_line_comes_back_with_its_text_and_words_and_bad_audio_is_reported(babbler, corpus, tmp_path, capsys):
    truncated = tmp_path / "truncated.wav"              # a header promising more samples than the file holds
    truncated.write_bytes((corpus / "wavs" / "test" / "test-000001.wav").read_bytes()[:100])
    (tmp_path / "garbage.wav").write_bytes(b"not audio at all" * 50)
    bad = [{"audio_filepath": str(tmp_path / "gone.wav"), "duration": 1.0, "text": "", "id": "gone"},
           {"audio_filepath": str(truncated), "duration": 1.0, "text": "", "id": "cut"},
           {"audio_filepath": str(tmp_path / "garbage.wav"), "duration": 1.0, "text": "", "id": "garbage"}]
    m = manifest(corpus, tmp_path / "m.jsonl", extra=bad)
    with open(m, "a") as f:
        f.write("{not json\n")
    out = tmp_path / "out" / "preds.jsonl"
    assert main(["transcribe", "--manifest", str(m), "--output-manifest", str(out), "--model", str(babbler)]) == 0
    err = capsys.readouterr().err
    rows, given = lines(out), [r for r in lines_of(m) if r is not None]
    assert [r["id"] for r in rows] == [r["id"] for r in given[:-3]]            # manifest order, bad ones left out
    model = load_model(babbler)
    for row, line in zip(rows, given):
        assert {k: v for k, v in row.items() if k not in ("pred_text", "words")} == line      # the input line, as it was
        alone = model.transcribe(line["audio_filepath"])
        assert row["pred_text"] == alone.text and row["pred_text"]
        assert row["words"] == [w.to_dict() for w in alone.words]
    report = {s["item"]: s["reason"] for s in lines(skip_report(out))}
    assert set(report) == {"gone", "cut", "garbage", f"{m}:{len(given) + 1}"}
    assert "does not exist" in report["gone"] and "truncated" in report["cut"] and "cannot be decoded" in report["garbage"]
    assert "4 skipped, listed in" in err and not parts_folder(out).exists()
    # started again: nothing is transcribed twice; the bad ones are tried (and reported) again
    stamp = out.read_bytes()
    assert main(["transcribe", "--manifest", str(m), "--output-manifest", str(out), "--model", str(babbler)]) == 0
    assert "100 of 100" not in capsys.readouterr().err and out.read_bytes() == stamp


def lines_of(path: Path) -> list[dict | None]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            out.append(None)
    return out


def test_two_processes_under_torchrun_give_each_utterance_once_with_the_texts_of_one(babbler, corpus, tmp_path):
    m = manifest(corpus, tmp_path / "m.jsonl", copies=2)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert main(["transcribe", "--manifest", str(m), "--output-manifest", str(one), "--model", str(babbler)]) == 0
    proc = cli("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "asrforge.cli", "transcribe",
               "--manifest", m, "--output-manifest", two, "--model", babbler, "--batch-seconds", "5",
               env={"TMPDIR": str(tmp_path)})
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert "with 2 process(es)" in stderr
    ids = [r["id"] for r in lines(two)]
    assert len(ids) == len(set(ids)) == len(lines(m))
    assert two.read_text() == one.read_text()


def test_a_killed_job_started_again_loses_and_repeats_nothing(babbler, corpus, tmp_path):
    m = manifest(corpus, tmp_path / "m.jsonl", copies=60)
    out, reference = tmp_path / "out.jsonl", tmp_path / "reference.jsonl"
    part = parts_folder(out) / "rank-00000.jsonl"
    # small batches: many writes, so the kill lands in the middle of the job
    job = cli("-m", "asrforge.cli", "transcribe", "--manifest", m, "--output-manifest", out, "--model", babbler,
              "--batch-seconds", "1")
    deadline = time.time() + 120
    while time.time() < deadline and not (part.is_file() and part.read_text().count("\n") >= 50):
        time.sleep(0.01)
    assert job.poll() is None, "the job ended before it could be killed"
    job.send_signal(signal.SIGKILL)
    job.wait()
    done = part.read_text().count("\n")
    assert 50 <= done < len(lines(m)) and not out.exists()
    again = cli("-m", "asrforge.cli", "transcribe", "--manifest", m, "--output-manifest", out, "--model", babbler)
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr[-3000:]
    assert f"({done} by an earlier run)" in stderr
    assert main(["transcribe", "--manifest", str(m), "--output-manifest", str(reference), "--model", str(babbler)]) == 0
    ids = [r["id"] for r in lines(out)]
    assert len(ids) == len(set(ids)) == len(lines(m)) and out.read_text() == reference.read_text()


def test_a_line_cut_off_by_a_kill_is_done_again_and_written_once(babbler, corpus, tmp_path):
    """What a kill during a write leaves: a part whose last line is unfinished, beside an earlier merged output."""
    m = manifest(corpus, tmp_path / "m.jsonl", copies=5)
    out, reference = tmp_path / "out.jsonl", tmp_path / "reference.jsonl"
    assert main(["transcribe", "--manifest", str(m), "--output-manifest", str(reference), "--model", str(babbler)]) == 0
    finished = reference.read_text().splitlines(keepends=True)
    out.write_text("".join(finished[:10]))                                   # an earlier run's merged output
    parts_folder(out).mkdir()
    (parts_folder(out) / "rank-00001.jsonl").write_text("".join(finished[10:20]) + finished[20][:40])   # then killed
    (parts_folder(out) / "rank-00000.jsonl").write_text("".join(finished[30:35]) + "{\"half\": ")
    assert main(["transcribe", "--manifest", str(m), "--output-manifest", str(out), "--model", str(babbler)]) == 0
    assert out.read_text() == reference.read_text()


def test_whisper_checkpoints_transcribe_a_manifest_as_they_transcribe_each_file(corpus, tmp_path):
    from asrforge.models.whisper import save_openai
    from whisper_fixtures import tiny_whisper

    model, _ = tiny_whisper(tmp_path / "whisper")
    save_openai(model, tmp_path / "whisper" / "tiny.pt")
    m = manifest(corpus, tmp_path / "m.jsonl")
    out = tmp_path / "out.jsonl"
    # temperature 0 alone: a random model loops, and sampling at the fallback temperatures is random
    assert main(["transcribe", "--manifest", str(m), "--output-manifest", str(out), "--model",
                 str(tmp_path / "whisper" / "tiny.pt"), "--temperature", "0", "--temperature-increment-on-fallback", "0",
                 "--word-timestamps"]) == 0
    whisper = load_model(tmp_path / "whisper" / "tiny.pt")
    rows = lines(out)
    assert len(rows) == len(lines(m))
    for row in rows[:8]:
        alone = whisper.transcribe(row["audio_filepath"], temperature=0.0, word_timestamps=True)
        assert row["pred_text"] == alone.text
        assert row.get("words", []) == [w.to_dict() for w in alone.words]


def test_bad_requests_are_refused_up_front(babbler, corpus, tmp_path, capsys):
    m = manifest(corpus, tmp_path / "m.jsonl")
    cases = [
        (["--manifest", str(m)], "--manifest and --output-manifest go together"),
        (["--manifest", str(m), "--output-manifest", str(m)], "must be another file than --manifest"),
        (["--manifest", str(m), "--output-manifest", str(tmp_path / "o.jsonl"), str(m)], "leave out audio files"),
        (["--manifest", str(m), "--output-manifest", str(tmp_path / "o.jsonl"), "--language", "de"],
         "takes no language option"),
        (["a.wav", "--batch-seconds", "3"], "--batch-seconds applies to --manifest"),
        ([], "give the audio to transcribe"),
    ]
    for args, message in cases:
        assert main(["transcribe", "--model", str(babbler), *args]) == 2, args
        assert message in capsys.readouterr().err, args
    twice = tmp_path / "twice.jsonl"
    twice.write_text(m.read_text().splitlines()[0] + "\n" + m.read_text().splitlines()[0] + "\n")
    assert main(["transcribe", "--model", str(babbler), "--manifest", str(twice), "--output-manifest",
                 str(tmp_path / "o.jsonl")]) == 2
    assert "lines 1 and 2 are the same utterance" in capsys.readouterr().err
    assert entry_key({"audio_filepath": "a.wav", "duration": 1}) != entry_key({"audio_filepath": "a.wav", "duration": 1,
                                                                                "offset": 3})
