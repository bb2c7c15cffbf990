"""The web app (``asrforge ui``, ``asrforge serve --ui``): through ``gradio_client`` against a server on a loopback
port, and in a real browser (Debian's Chromium driven by Playwright, with Chromium's fake microphone playing a
recording the test made). Models: a seeded untrained CTC model (a different string for every recording, so a lost
or swapped answer shows) and the tiny random Whisper with a multilingual tokenizer."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from serve_fixtures import SR, RunningServer, load_multilingual, spoken, write_wav

from asrforge_runtime.writers import to_srt, to_vtt
from asrforge.serve.app import ServerConfig

CHROMIUM = "/usr/bin/chromium"
KEY = "ui-key-5678"


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """Two sentences with a second's pause between them (about 5 s)."""
    folder = tmp_path_factory.mktemp("ui-audio")
    wave = np.concatenate([spoken("three one four one five", seed=1), np.zeros(SR, np.float32),
                           spoken("nine two six five three", seed=2)])
    return write_wav(folder / "interview.wav", wave)


@pytest.fixture(scope="module")
def app(whisper_pt, babbler, tmp_path_factory):
    temp = tmp_path_factory.mktemp("ui-temp")
    config = ServerConfig(models={"ctc": str(babbler), "whisper": str(whisper_pt)}, max_upload_mb=3,
                          temp_dir=str(temp), loader=load_multilingual, ui_path="/ui")
    with RunningServer(config) as running:
        running.wait_ready()
        yield running


@pytest.fixture(scope="module")
def client(app, tmp_path_factory):
    return Client(app.url + "/ui/", verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture
def fresh(app, tmp_path):
    """A client of its own: a page's controls keep what choosing a model set them to, per session."""
    return Client(app.url + "/ui/", verbose=False, analytics_enabled=False, download_files=str(tmp_path))


def controls(model="ctc", language="auto", task="transcribe", timestamps="segments", beam=1, temperature=0.0):
    return [model, language, task, timestamps, beam, temperature]


def rows(table) -> list[list]:
    return table["data"] if isinstance(table, dict) else table


# ---- through gradio_client ------------------------------------------------------------------------------------------
def test_a_recording_gives_the_models_transcript_segments_and_downloads(client, recording, babbler):
    expected = load_multilingual(babbler).transcribe(str(recording))
    assert expected.text.strip()
    status, text, picture, segments, words, files = client.predict(handle_file(str(recording)), *controls(),
                                                                   api_name="/transcribe")
    assert text == expected.text.strip()
    assert [r[4] for r in rows(segments)] == [s.text.strip() for s in expected.segments]
    assert [[r[1], r[2]] for r in rows(segments)] == [[round(s.start, 2), round(s.end, 2)] for s in expected.segments]
    assert "interview" in status and "s per second of audio" in status
    assert picture.startswith("<svg") and picture.count('class="segment"') == len(expected.segments)
    by_suffix = {Path(f).suffix: Path(f) for f in files}
    assert sorted(by_suffix) == [".json", ".srt", ".txt", ".vtt"]
    assert all(p.stem == "interview" for p in by_suffix.values())
    assert by_suffix[".txt"].read_text().strip() == expected.text.strip()
    saved = json.loads(by_suffix[".json"].read_text())
    assert saved["text"].strip() == expected.text.strip() and len(saved["segments"]) == len(expected.segments)
    expected.source = "interview.wav"
    assert by_suffix[".srt"].read_text() == to_srt(expected) and by_suffix[".vtt"].read_text() == to_vtt(expected)


def test_word_times_and_whispers_detected_language(client, recording):
    _, _, _, _, words, _ = client.predict(handle_file(str(recording)), *controls(timestamps="words"),
                                          api_name="/transcribe")
    assert rows(words) and all(r[1] <= r[2] for r in rows(words))
    status, *_ = client.predict(handle_file(str(recording)), *controls("whisper", timestamps="none"),
                                api_name="/transcribe")
    assert "detected with probability" in status


def test_each_model_offers_only_what_it_can(client):
    language, task, timestamps, beam, temperature, note = client.predict("whisper", api_name="/describe_model")
    # the client reports each control's new state; the Whisper's tokenizer here knows en, de and fr
    choices = [c[1] if isinstance(c, (list, tuple)) else c for c in language.get("choices", [])]
    assert choices[0] == "auto" and {"en", "de", "fr"} <= set(choices)
    assert "translate" in [c[1] if isinstance(c, (list, tuple)) else c for c in task["choices"]]
    assert temperature.get("interactive", True) is not False
    language, task, timestamps, beam, temperature, note = client.predict("ctc", api_name="/describe_model")
    assert language["interactive"] is False and task["interactive"] is False and temperature["interactive"] is False
    assert "decodes by search" in note["value"] if isinstance(note, dict) else "decodes by search" in note


def test_bad_input_gets_a_message_and_the_app_goes_on(client, fresh, recording, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"this is not a recording")
    with pytest.raises(Exception, match=r"notes\.wav cannot be decoded.*re-encode") as caught:
        client.predict(handle_file(str(bad)), *controls(), api_name="/transcribe")
    assert str(tmp_path) not in str(caught.value)          # the server's paths stay on the server
    with pytest.raises(Exception, match="temperature.*decodes by search"):
        client.predict(handle_file(str(recording)), *controls(temperature=0.5), api_name="/transcribe")
    with pytest.raises(Exception, match="task: an asrforge model transcribes only"):
        fresh.predict(handle_file(str(recording)), *controls(task="translate"), api_name="/transcribe")
    _, text, *_ = client.predict(handle_file(str(recording)), *controls(), api_name="/transcribe")
    assert text


class Unhurried:
    """A recognizer that takes a while over each batch, as a real model does over 30-s pieces (the babbler would
    decode all of them before the page looked)."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay = inner, delay

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def transcribe_batch(self, audio, **options):
        time.sleep(self.delay)
        return self.inner.transcribe_batch(audio, **options)


def test_a_long_recording_shows_segments_as_they_are_decoded(babbler, tmp_path):
    """A minute of speech with pauses is cut into pieces; the page gets the segments of each piece as it is decoded."""
    sentences = ["ask not what your country can do for you", "seven eight nine zero one two three"]
    wave = np.concatenate([np.concatenate([spoken(sentences[i % 2], seed=i), np.zeros(SR, np.float32)])
                           for i in range(22)])
    path = write_wav(tmp_path / "long.wav", (wave * 0.8).astype(np.float32))
    config = ServerConfig(models={"ctc": str(babbler)}, max_batch=1, temp_dir=str(tmp_path),
                          loader=lambda p: Unhurried(load_multilingual(p), 0.3), ui_path="/ui")
    with RunningServer(config) as server:
        server.wait_ready()
        client = Client(server.url + "/ui/", verbose=False, download_files=str(tmp_path))
        job = client.submit(handle_file(str(path)), *controls(), api_name="/transcribe")
        job.result(timeout=120)
        updates = job.outputs()
    progress = [u for u in updates if u[0].startswith("Decoded")]
    assert [u[0].split(" pieces")[0] for u in progress] == ["Decoded 1 of 3", "Decoded 2 of 3"]
    counts = [len(rows(u[3])) for u in progress] + [len(rows(updates[-1][3]))]
    assert 0 < counts[0] < counts[1] < counts[2]                # segments appear piece by piece
    assert f"{len(wave) / SR:.1f} s of audio" in updates[-1][0]


def test_the_page_and_its_files_need_the_key_and_are_removed_with_the_server(babbler, recording, tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    config = ServerConfig(models={"ctc": str(babbler)}, api_key=KEY, temp_dir=str(temp), ui_path="/ui")
    with RunningServer(config) as server:
        server.wait_ready()
        assert httpx.get(server.url + "/v1/models").status_code == 401          # the API still needs the key
        assert httpx.get(server.url + "/ui/config").status_code == 401          # so does the app, by its login
        with pytest.raises(Exception):
            Client(server.url + "/ui/", verbose=False, auth=("anyone", "wrong"))
        client = Client(server.url + "/ui/", verbose=False, auth=("anyone", KEY), download_files=str(tmp_path))
        _, text, *_ = client.predict(handle_file(str(recording)), *controls(), api_name="/transcribe")
        assert text
        held = server.internals.ui_temp
        assert held.parent == temp and not list((held / "results").iterdir())   # each request's folder: gone
    assert not held.exists() and not list(temp.iterdir())


def test_a_browser_sends_its_key_as_a_websocket_subprotocol(babbler):
    from websockets.sync.client import connect

    config = ServerConfig(models={"ctc": str(babbler)}, api_key=KEY)
    with RunningServer(config) as server:
        server.wait_ready()
        url = server.url.replace("http", "ws") + "/v1/audio/stream"
        with connect(url, subprotocols=["asrforge", "asrforge.key." + KEY]) as ws:
            assert ws.subprotocol == "asrforge"
            ws.send(json.dumps({"model": "ctc", "sample_rate": SR, "encoding": "pcm_f32le"}))
            assert json.loads(ws.recv())["type"] == "ready"
        with pytest.raises(Exception, match="403"):
            connect(url, subprotocols=["asrforge", "asrforge.key.wrong"])


# ---- in Chromium -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(recording):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("ASRFORGE_BROWSER_TESTS") == "required":
            pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={recording}"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(app.url + "/ui/")
    page.get_by_role("button", name="Transcribe", exact=True).wait_for(timeout=30000)
    yield page
    context.close()


def shot(page, name: str) -> Path:
    folder = Path(os.environ.get("ASRFORGE_SCREENSHOTS", Path(__file__).parent.parent / ".screenshots"))
    folder.mkdir(exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    return folder / f"{name}.png"


def transcript(page) -> str:
    return page.locator("#af-transcript textarea").input_value()


def test_upload_and_transcribe_in_the_browser(page, recording, babbler):
    expected = load_multilingual(babbler).transcribe(str(recording)).text.strip()
    page.locator("input[type=file]").first.set_input_files(str(recording))
    page.get_by_role("button", name="Transcribe", exact=True).click()
    page.wait_for_function("document.querySelector('svg.asrforge-waveform g.segment') !== null", timeout=60000)
    page.get_by_text(".srt", exact=True).wait_for(timeout=30000)       # the downloads, with the last update
    assert transcript(page) == expected
    assert shot(page, "ui-transcribe").stat().st_size > 10_000


def test_speakers_in_the_browser_colour_the_segments(page, tmp_path):
    from diarize_fixtures import conversation

    talk = write_wav(tmp_path / "two-voices.wav", conversation()[0])
    page.locator("input[type=file]").first.set_input_files(str(talk))
    page.get_by_role("checkbox", name="Speakers").check()
    page.get_by_role("button", name="Transcribe", exact=True).click()
    page.wait_for_function("document.querySelectorAll('svg.asrforge-waveform g.speaker').length === 2",
                           timeout=90000)
    page.get_by_text(".srt", exact=True).wait_for(timeout=30000)
    legend = page.locator("svg.asrforge-waveform g.speaker text").all_text_contents()
    assert legend == ["SPEAKER_1", "SPEAKER_2"]
    bands = page.locator("svg.asrforge-waveform g.segment")
    assert {bands.nth(i).get_attribute("data-speaker") for i in range(bands.count())} == {"SPEAKER_1", "SPEAKER_2"}
    assert page.get_by_text("2 speakers").count() >= 1
    shot(page, "ui-speakers")


def test_bad_files_are_told_on_the_page(page, tmp_path):
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"ID3 but nothing else")
    page.locator("input[type=file]").first.set_input_files(str(bad))
    page.get_by_role("button", name="Transcribe", exact=True).click()
    page.get_by_text("broken.mp3 cannot be decoded").first.wait_for(timeout=30000)
    big = tmp_path / "huge.wav"
    big.write_bytes(b"RIFF" + bytes(4 * 2**20))                  # over the 3-MB cap of this server
    page.reload()
    page.locator("input[type=file]").first.set_input_files(str(big))
    page.get_by_text("exceed the maximum allowed size").first.wait_for(timeout=30000)
    shot(page, "ui-too-large")


def test_the_microphone_records_into_the_transcribe_tab(page):
    page.get_by_role("button", name="Record audio").first.click()
    page.get_by_role("button", name="Record", exact=True).click()
    time.sleep(3)
    page.get_by_role("button", name="Stop", exact=True).click()
    # the recording is on the page and uploaded (its download button links to the server's copy)
    page.get_by_role("button", name="Play", exact=True).wait_for(timeout=30000)
    page.get_by_role("button", name="Download", exact=True).first.wait_for(timeout=30000)
    page.get_by_role("button", name="Transcribe", exact=True).click()
    try:
        page.get_by_text(" by ctc: ").wait_for(timeout=60000)
    except Exception:                   # what the page said instead, for the failure's report
        shot(page, "ui-microphone-failed")
        print(page.locator("body").inner_text())
        raise
    shot(page, "ui-microphone")
    assert transcript(page)


def test_the_live_tab_streams_the_microphone(page, app):
    page.get_by_role("tab", name="Live").click()
    page.locator(".af-model").select_option("ctc")
    page.locator(".af-start").click()
    page.get_by_text("Listening").wait_for(timeout=30000)
    assert len(app.internals.live.lag) == 1                     # one live stream on the server
    page.wait_for_function("document.querySelector('.af-partial').textContent.trim() !== ''", timeout=30000)
    page.locator(".af-stop").click()                            # the stream's last words become finals
    page.get_by_text("Stopped.").wait_for(timeout=30000)
    finals = page.locator(".af-finals li").all_inner_texts()
    assert finals and all(f.strip() for f in finals)
    deadline = time.monotonic() + 10
    while app.internals.live.lag and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not app.internals.live.lag                           # the stream ended on the server too
    shot(page, "ui-live")


def test_a_phone_width_page_has_no_sideways_scrolling(browser, app):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(app.url + "/ui/")
    page.get_by_role("button", name="Transcribe", exact=True).wait_for(timeout=30000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "ui-phone")
    context.close()


def test_the_command_line_serves_the_app(babbler, monkeypatch):
    """``asrforge ui`` mounts the app at / beside the API; ``serve --ui`` at /ui."""
    import sys

    from asrforge.cli import main

    seen = {}

    class Uvicorn:
        def __init__(self, config):
            seen["app"] = config.app
            self.should_exit = False

        def run(self):
            seen["routes"] = [getattr(r, "path", "") for r in seen["app"].routes]

    monkeypatch.setattr("uvicorn.Server", Uvicorn)
    monkeypatch.setattr("asrforge.serve.scheduler.Scheduler.work_here", lambda self, keep_going: None)
    for argv, mounted in ((["ui"], ""), (["serve", "--ui"], "/ui")):
        monkeypatch.setattr(sys, "argv", ["asrforge", *argv, "--model", f"ctc={babbler}"])
        main()
        seen["app"].state.server.stop()      # the app was never started: its lifespan would have removed its folders
        assert mounted in seen["routes"] and "/v1/audio/transcriptions" in seen["routes"]
