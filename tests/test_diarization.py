"""Speaker diarization: the pipeline on eSpeak conversations (voices far apart in pitch) scored with
pyannote.metrics, RTTM, speakers onto transcripts and subtitles, the embedding models, bad input, the commands."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from diarize_fixtures import HIGH, LINES, LOW, conversation, der, say
from serve_fixtures import SR, write_wav

from asrforge.errors import AsrforgeError, ConfigError
from asrforge.features.speaker import speaker_mels
from asrforge.inference.diarization import Diarization, DiarizeOptions, Turn, load_diarizer
from asrforge_runtime.result import Result, Segment, Word
from asrforge.inference.rttm import read_rttm, to_rttm, write_rttm
from asrforge.inference.speaker_clustering import cluster_speakers
from asrforge.inference.speakers import assign_speakers
from asrforge_runtime.writers import to_json, to_srt, to_txt, to_vtt


@pytest.fixture(scope="module")
def diarizer():
    return load_diarizer()


@pytest.fixture(scope="module")
def two_voices():
    return conversation()


def test_two_voices_taking_turns_are_found_with_a_low_der(diarizer, two_voices):
    wave, reference = two_voices
    found = diarizer(wave)
    assert found.speakers == ["SPEAKER_1", "SPEAKER_2"]
    assert der(reference, found.turns) <= 0.05
    assert [t.speaker for t in found.turns] == ["SPEAKER_1", "SPEAKER_2"] * 3     # six turns, alternating
    assert all(a.end <= b.start for a, b in zip(found.turns, found.turns[1:]))
    assert found.note is None


def test_three_voices_and_a_count_given_or_bounded(diarizer):
    third = ("en-us+m7", 55)
    wave, reference = conversation((LOW, HIGH, third), LINES + LINES[:3])
    found = diarizer(wave)
    assert len(found.speakers) == 3
    assert der(reference, found.turns) <= 0.10
    # a count given is kept, and bounds are kept too
    assert len(diarizer(wave, DiarizeOptions(num_speakers=2)).speakers) == 2
    assert len(diarizer(wave, DiarizeOptions(max_speakers=2)).speakers) <= 2


def test_one_voice_is_one_speaker(diarizer):
    wave, _ = conversation((LOW,), LINES[:4])
    found = diarizer(wave)
    assert found.speakers == ["SPEAKER_1"]
    assert found.turns[0].start < 0.3 and found.turns[-1].end > found.duration - 1.0


def test_no_speech_a_very_short_file_and_more_speakers_than_there_are(diarizer):
    silence = diarizer(np.zeros(3 * SR, np.float32))
    assert silence.turns == [] and "no speech" in silence.note
    short = say("yes", LOW)
    assert len(short) < 0.6 * SR
    brief = diarizer(np.concatenate([np.zeros(SR // 2, np.float32), short, np.zeros(SR // 2, np.float32)]))
    assert brief.speakers == ["SPEAKER_1"] and len(brief.turns) == 1
    two_words = np.concatenate([say("good morning", LOW), np.zeros(SR // 2, np.float32), say("hello", HIGH)])
    many = diarizer(two_words, DiarizeOptions(num_speakers=6))
    assert len(many.speakers) < 6 and "6 speakers asked for" in many.note


def test_options_are_checked():
    with pytest.raises(ConfigError, match="min_speakers"):
        DiarizeOptions(min_speakers=3, max_speakers=2).check()
    with pytest.raises(ConfigError, match="hop_s"):
        DiarizeOptions(hop_s=2.0, window_s=1.5).check()
    with pytest.raises(ConfigError, match="num_speakers"):
        DiarizeOptions(num_speakers=0).check()


def test_clustering_counts_distinct_groups_and_keeps_a_given_count():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32))
    points = np.concatenate([c + 0.15 * rng.normal(size=(20, 32)) for c in centres])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    labels = cluster_speakers(points)
    assert len(set(labels)) == 3
    assert all(len(set(labels[i * 20:(i + 1) * 20])) == 1 for i in range(3))     # each group is one label
    assert len(set(cluster_speakers(points, num_speakers=2))) == 2
    assert len(set(cluster_speakers(points, method="agglomerative"))) == 3
    assert len(set(cluster_speakers(points[:20]))) == 1
    assert cluster_speakers(points[:1]).tolist() == [0]
    # an hour of speech is more windows than are clustered at once: evenly spaced ones are, the rest join them
    many = np.concatenate([c + 0.15 * rng.normal(size=(700, 32)) for c in centres])
    many /= np.linalg.norm(many, axis=1, keepdims=True)
    labels = cluster_speakers(many)
    assert len(many) > 2000 and len(set(labels)) == 3
    assert all(len(set(labels[i * 700:(i + 1) * 700])) == 1 for i in range(3))


def test_the_front_end_is_librosas_melspectrogram():
    librosa = pytest.importorskip("librosa")
    wave = np.random.default_rng(1).normal(scale=0.1, size=16000 + 77).astype(np.float32)
    ours = speaker_mels(torch.from_numpy(wave)[None])[0].numpy()
    theirs = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1e-4 * theirs.max()


def test_rttm_round_trips_and_malformed_lines_are_named(tmp_path):
    turns = [Turn(0.0, 1.25, "SPEAKER_1"), Turn(1.5, 3.0, "SPEAKER_2"), Turn(3.2, 4.0, "SPEAKER_1")]
    path = write_rttm(tmp_path / "out" / "talk.rttm", "my talk", turns)
    lines = path.read_text().splitlines()
    assert lines[1] == "SPEAKER my_talk 1 1.500 1.500 <NA> <NA> SPEAKER_2 <NA> <NA>"
    assert read_rttm(path) == {"my_talk": turns}
    assert to_rttm("x", []) == ""
    bad = tmp_path / "bad.rttm"
    bad.write_text(lines[0] + "\nSPEAKER x 1 abc 1.0 <NA> <NA> S <NA> <NA>\n")
    with pytest.raises(AsrforgeError, match=r"bad.rttm:2: not an RTTM SPEAKER line"):
        read_rttm(bad)


def _result(whisper_style: bool) -> Result:
    sp = " " if whisper_style else ""
    words = [Word(sp + "hello", 0.0, 0.4), Word(sp + "there", 0.5, 0.9), Word(sp + "hi", 1.6, 1.8),
             Word(sp + "again", 1.9, 2.3)]
    return Result("hello there hi again", [Segment(0.0, 2.4, sp + "hello there hi again", words),
                                           Segment(3.0, 4.0, "no words here")], duration=4.0)


@pytest.mark.parametrize("whisper_style", [True, False])
def test_words_take_the_speaker_they_overlap_most_and_segments_split_there(whisper_style):
    turns = Diarization([Turn(0.0, 1.0, "SPEAKER_1"), Turn(1.2, 2.4, "SPEAKER_2"), Turn(2.9, 3.3, "SPEAKER_2"),
                         Turn(3.3, 4.0, "SPEAKER_1")], 4.0)
    result = assign_speakers(_result(whisper_style), turns)
    assert [w.speaker for w in result.words] == ["SPEAKER_1", "SPEAKER_1", "SPEAKER_2", "SPEAKER_2"]
    assert [(s.id, s.start, s.end, s.text.strip(), s.speaker) for s in result.segments] == [
        (0, 0.0, 0.9, "hello there", "SPEAKER_1"), (1, 1.6, 2.4, "hi again", "SPEAKER_2"),
        (2, 3.0, 4.0, "no words here", "SPEAKER_1")]     # 0.7 s of SPEAKER_1 against 0.3 s of SPEAKER_2
    srt = to_srt(result)
    assert "00:00:00,000 --> 00:00:00,900\n[SPEAKER_1] hello there\n" in srt
    assert "00:00:01,600 --> 00:00:02,400\n[SPEAKER_2] hi again\n" in srt
    assert "[SPEAKER_2] hi again" in to_vtt(result) and to_txt(result).startswith("[SPEAKER_1] hello there\n")
    saved = json.loads(to_json(result))
    assert [s["speaker"] for s in saved["segments"]] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_1"]
    assert saved["segments"][1]["words"][0]["speaker"] == "SPEAKER_2"
    assert Result.from_dict(saved).segments[1].words[0].speaker == "SPEAKER_2"


def test_a_word_in_a_pause_takes_the_nearest_turn_and_no_turns_leave_no_speakers():
    turns = Diarization([Turn(0.0, 1.0, "SPEAKER_1"), Turn(3.0, 4.0, "SPEAKER_2")], 4.0)
    assert turns.speaker_at(1.2, 1.4) == "SPEAKER_1" and turns.speaker_at(2.5, 2.7) == "SPEAKER_2"
    empty = assign_speakers(_result(True), Diarization([], 4.0))
    assert all(s.speaker is None for s in empty.segments) and "[" not in to_srt(empty)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")      # torch 2.13 marks torch.jit deprecated
def test_a_torchscript_embedding_model_can_be_named(tmp_path, two_voices):
    class Pitchy(torch.nn.Module):
        """A stand-in voice embedding: the spectrum's energy in 32 bands, normalized."""
        def forward(self, waves: torch.Tensor) -> torch.Tensor:
            spectrum = torch.stft(waves, 512, 160, window=torch.hann_window(512), return_complex=True).abs()
            bands = spectrum[:, :256].reshape(waves.shape[0], 32, 8, -1).mean(dim=(2, 3))
            return torch.log(bands + 1e-6)
    path = tmp_path / "pitchy.pt"
    torch.jit.script(Pitchy()).save(str(path))
    diarizer = load_diarizer(f"torchscript:{path}")
    wave, reference = two_voices
    found = diarizer(wave, DiarizeOptions(num_speakers=2))
    assert len(found.speakers) == 2 and found.turns
    vectors = diarizer.embedder.embed([wave[:SR], wave[SR: 3 * SR]])
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="not a TorchScript"):
        load_diarizer(f"torchscript:{tmp_path / 'missing.pt'}")
    with pytest.raises(ConfigError, match="unknown speaker embedding model 'ecapa'"):
        load_diarizer("ecapa:/x")


def test_without_resemblyzer_the_error_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "resemblyzer" else real(name, *a))
    with pytest.raises(ConfigError, match=r"asrforge\[diarize\]"):
        load_diarizer()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asrforge.cli", *args], capture_output=True, text=True, timeout=600)


def test_the_diarize_command_prints_turns_writes_rttm_and_skips_bad_files(tmp_path, two_voices):
    wave, reference = two_voices
    talk = write_wav(tmp_path / "talk.wav", wave)
    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(2 * SR, np.float32))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not audio")
    done = run_cli("diarize", str(talk), str(quiet), str(broken), "--output-dir", str(tmp_path / "rttm"))
    assert done.returncode == 0, done.stderr          # one file failed and was reported; the others were written
    assert "talk.wav: 2 speaker(s), 6 turn(s)" in done.stdout
    assert "quiet.wav: 0 speaker(s), 0 turn(s)" in done.stdout and "no speech found" in done.stderr
    assert f"skipped {broken}" in done.stderr and "Traceback" not in done.stderr
    written = read_rttm(tmp_path / "rttm" / "talk.rttm")["talk"]
    assert der(reference, written) <= 0.05
    assert (tmp_path / "rttm" / "quiet.rttm").read_text() == ""
    refused = run_cli("diarize", str(talk), "--min-speakers", "3", "--max-speakers", "2")
    assert refused.returncode == 2 and "--min-speakers (3)" in refused.stderr and "Traceback" not in refused.stderr


def test_transcribe_diarize_gives_every_segment_and_word_a_speaker(tmp_path, two_voices, babbler):
    wave, reference = two_voices
    talk = write_wav(tmp_path / "talk.wav", wave)
    done = run_cli("transcribe", str(talk), "--model", str(babbler), "--diarize", "--output-format", "all",
                   "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "out" / "talk.json").read_text())
    speakers = [s["speaker"] for s in saved["segments"]]
    assert set(speakers) == {"SPEAKER_1", "SPEAKER_2"} and all(w.get("speaker") for s in saved["segments"]
                                                                 for w in s["words"])
    for s in saved["segments"]:    # each segment lies in a reference turn of its speaker's voice
        middle = (s["start"] + s["end"]) / 2
        voice = min(reference, key=lambda t: max(t.start - middle, middle - t.end)).speaker
        assert (voice == LOW[0]) == (s["speaker"] == speakers[0])
    cues = [line for line in (tmp_path / "out" / "talk.srt").read_text().splitlines() if line.startswith("[")]
    assert len(cues) == len(saved["segments"]) and all(c.startswith(("[SPEAKER_1] ", "[SPEAKER_2] ")) for c in cues)
    wrong = run_cli("transcribe", str(talk), "--model", str(babbler), "--num-speakers", "2")
    assert wrong.returncode != 0 and "go with --diarize" in wrong.stderr


# ---- the server and the web app -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(babbler, tmp_path_factory, two_voices):
    from serve_fixtures import RunningServer

    from asrforge.serve.app import ServerConfig

    folder = tmp_path_factory.mktemp("diarize-serve")
    talk = write_wav(folder / "talk.wav", two_voices[0])
    config = ServerConfig(models={"ctc": str(babbler)}, temp_dir=str(folder / "temp"), ui_path="/ui")
    (folder / "temp").mkdir()
    with RunningServer(config) as running:
        running.wait_ready()
        running.talk = talk
        yield running


def test_diarized_json_is_openais_shape_through_the_official_client(served, two_voices):
    import openai

    client = openai.OpenAI(base_url=served.url + "/v1", api_key="none", max_retries=0)
    with open(served.talk, "rb") as f:
        answer = client.audio.transcriptions.create(file=f, model="ctc", response_format="diarized_json")
    body = answer.model_dump() if hasattr(answer, "model_dump") else json.loads(answer)
    assert body["task"] == "transcribe" and abs(body["duration"] - len(two_voices[0]) / SR) < 0.01
    assert body["text"] and body["usage"] == {"type": "duration", "seconds": round(body["duration"], 3)}
    segments = body["segments"]
    assert {s["speaker"] for s in segments} == {"A", "B"} and segments[0]["speaker"] == "A"
    assert all(s["type"] == "transcript.text.segment" and s["id"].startswith("seg_") and s["start"] <= s["end"]
               for s in segments)
    assert " ".join(s["text"] for s in segments).split() == body["text"].split()


def test_speaker_fields_are_checked_and_the_server_goes_on(served):
    import httpx

    def post(**data):
        with open(served.talk, "rb") as f:
            return httpx.post(served.url + "/v1/audio/transcriptions", files={"file": ("talk.wav", f)},
                              data={"model": "ctc", **data}, timeout=120)
    for data, field in [({"response_format": "json", "num_speakers": "2"}, "num_speakers"),
                        ({"response_format": "diarized_json", "num_speakers": "0"}, "num_speakers"),
                        ({"response_format": "diarized_json", "min_speakers": "3", "max_speakers": "2"},
                         "min_speakers"),
                        ({"response_format": "diarized_json", "stream": "true"}, "stream")]:
        refused = post(**data)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == field, refused.text
    with open(served.talk, "rb") as f:
        translated = httpx.post(served.url + "/v1/audio/translations", files={"file": ("talk.wav", f)},
                                data={"model": "ctc", "response_format": "diarized_json"}, timeout=60)
    assert translated.status_code == 400 and translated.json()["error"]["param"] == "response_format"
    one = post(response_format="diarized_json", num_speakers="1")
    assert one.status_code == 200 and {s["speaker"] for s in one.json()["segments"]} == {"A"}


def test_the_web_app_colours_segments_by_speaker(served, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(served.url + "/ui/", verbose=False, analytics_enabled=False, download_files=str(tmp_path))
    status, text, picture, segments, words, files = client.predict(
        handle_file(str(served.talk)), "ctc", "auto", "transcribe", "segments", 1, 0.0, True, 0, api_name="/transcribe")
    rows = segments["data"] if isinstance(segments, dict) else segments
    assert {r[3] for r in rows} == {"SPEAKER_1", "SPEAKER_2"} and "**2** speakers" in status
    assert picture.count('data-speaker="SPEAKER_1"') + picture.count('data-speaker="SPEAKER_2"') == len(rows)
    assert picture.count('class="speaker"') == 2          # the legend
    srt = next(f for f in files if f.endswith(".srt"))
    assert "[SPEAKER_2] " in open(srt).read()
    plain = client.predict(handle_file(str(served.talk)), "ctc", "auto", "transcribe", "segments", 1, 0.0, False, 0,
                           api_name="/transcribe")
    plain_rows = plain[3]["data"] if isinstance(plain[3], dict) else plain[3]
    assert all(r[3] == "" for r in plain_rows) and 'class="speaker"' not in plain[2]


def test_whisper_transcripts_take_speakers_from_its_word_times(whisper_pt, diarizer, two_voices):
    from asrforge.inference import load_model
    from asrforge.inference.speakers import transcribe_with_speakers

    wave, _ = two_voices
    result = transcribe_with_speakers(load_model(whisper_pt), diarizer, wave)
    assert result.segments and all(s.speaker in ("SPEAKER_1", "SPEAKER_2") for s in result.segments)
    assert all(s.words is not None for s in result.segments)          # word times were asked for
    assert all(w.speaker == s.speaker for s in result.segments for w in s.words)
    assert all(a.end <= b.start + 1e-6 for a, b in zip(result.segments, result.segments[1:]))
