"""The web app (``asrforge ui``, ``asrforge serve --ui``): a Gradio page on the API server itself.

Two tabs. **Transcribe**: a recording uploaded or spoken into the microphone, the model, its language (or
detection), the task, timestamps (none, segments, words), beam size and temperature; the transcript grows piece
by piece as a long recording is decoded, beside a picture of the waveform with the segments marked, tables of
segments and words, and the result as .txt, .srt, .vtt and .json files; with "Speakers" ticked, who spoke
when (segments split and coloured by speaker, subtitles led by ``[SPEAKER_1]``). A control the model cannot take is
greyed out, with the reason in the model's note. **Live**: the microphone streamed to ``/v1/audio/stream``
(partials as they change, finals as they are fixed), from the page's own JavaScript.

The page shares everything with the API: the models in memory, the one inference worker and its fair queue
(:mod:`asrforge.serve.scheduler`), the upload cap and the API key (Gradio's login page asks for it). Gradio keeps
uploads and downloads in a folder of the server's own (``GRADIO_TEMP_DIR``), emptied of files older than an
hour and removed when the server stops.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from asrforge_runtime.audio import load_audio
from asrforge.errors import AsrforgeError, AudioError, ConfigError
from asrforge.inference.diarization import DiarizeOptions
from asrforge.inference.recognizer import Recognizer
from asrforge_runtime.result import Result
from asrforge.inference.speakers import assign_speakers, with_word_times
from asrforge_runtime.writers import write_result
from asrforge.serve.errors import ApiError
from asrforge.serve.fields import AudioRequest
from asrforge.serve.scheduler import SAMPLE_RATE, Job, join_results
from asrforge.serve.waveform import Waveform
from asrforge.text.whisper_languages import LANGUAGE_NAMES

if TYPE_CHECKING:
    from fastapi import FastAPI

    from asrforge.serve.app import Server

TIMESTAMPS = {"none": (), "segments": ("segment",), "words": ("segment", "word")}
DOWNLOADS = ("txt", "srt", "vtt", "json")
MAX_BEAM = 10
CACHE_SWEEP = (600, 3600)       # every 10 minutes, Gradio deletes the files it keeps that are over an hour old
LIVE_SCRIPT = Path(__file__).with_name("ui_live.js")


# ---- what a model offers, as the controls show it ---------------------------------------------------------------
def capabilities(recognizer: Recognizer) -> dict:
    """What the controls may offer for ``recognizer``; each ``*_why`` says why a control is off."""
    try:
        recognizer.check_options(temperature=(0.2,))
        sampling, sampling_why = True, ""
    except ConfigError as e:
        sampling, sampling_why = False, str(e)
    return {"languages": tuple(recognizer.languages), "tasks": tuple(recognizer.tasks),
            "words": bool(recognizer.word_timestamps), "beam_size": int(recognizer.beam_size),
            "sampling": sampling, "sampling_why": sampling_why, "streaming": bool(recognizer.streaming)}


def language_choices(languages: tuple[str, ...]) -> list[tuple[str, str]]:
    if len(languages) <= 1:
        return [(f"{LANGUAGE_NAMES.get(languages[0], languages[0])} (the model's only one)" if languages
                 else "the model's own", "auto")]
    named = sorted(languages, key=lambda code: LANGUAGE_NAMES.get(code, code))
    return [("detect it", "auto")] + [(f"{LANGUAGE_NAMES.get(c, c).title()} ({c})", c) for c in named]


def model_note(name: str, caps: dict) -> str:
    """What the chosen model offers, in a sentence, and why any control is off."""
    langs = caps["languages"]
    if len(langs) > 1:
        reads = f"{len(langs)} languages, detected when not chosen"
    else:
        reads = f"reads {LANGUAGE_NAMES.get(langs[0], langs[0])}" if langs else "reads the language it was trained on"
    offers = [reads, "transcribes and translates into English" if "translate" in caps["tasks"] else "transcribes only",
              "word times" if caps["words"] else "no word times (its decoder has no alignment to the audio)",
              f"beam {caps['beam_size']} unless changed"] + (["built to stream"] if caps["streaming"] else [])
    lines = [f"**{html.escape(name)}** — " + "; ".join(offers)]
    if not caps["sampling"]:
        why = caps["sampling_why"].removeprefix("temperature: ")
        lines.append(f"Temperature is off: {why}")
    return "\n\n".join(lines)


def control_updates(name: str, caps: dict) -> tuple:
    """Gradio updates for (language, task, timestamps, beam, temperature, note) after choosing ``name``."""
    langs = language_choices(caps["languages"])
    stamps = ["none", "segments"] + (["words"] if caps["words"] else [])
    return (gr.update(choices=langs, value="auto", interactive=len(langs) > 1),
            gr.update(choices=list(caps["tasks"]), value="transcribe", interactive=len(caps["tasks"]) > 1),
            gr.update(choices=stamps, value="segments"),
            gr.update(value=min(MAX_BEAM, caps["beam_size"])),
            gr.update(value=0.0, interactive=caps["sampling"]),
            gr.update(value=model_note(name, caps)))


# ---- what a result looks like on the page -----------------------------------------------------------------------
def segment_rows(result: Result) -> list[list]:
    return [[i, round(s.start, 2), round(s.end, 2), s.speaker or "", s.text.strip()]
            for i, s in enumerate(result.segments)]


def word_rows(result: Result) -> list[list]:
    return [[w.word.strip(), round(w.start, 2), round(w.end, 2),
             None if w.probability is None else round(w.probability, 3)] for w in result.words]


def summary(result: Result, name: str, seconds: float, speaker_note: str | None = None) -> str:
    parts = [f"**{html.escape(result.source or 'the recording')}** by **{html.escape(name)}**: "
             f"{result.duration:.1f} s of audio in {seconds:.1f} s "
             f"({seconds / max(result.duration, 1e-6):.2f} s per second of audio)"]
    if result.language:
        probability = (result.language_probs or {}).get(result.language)
        parts.append(f"language **{LANGUAGE_NAMES.get(result.language, result.language)}** ({result.language}"
                     + (f", detected with probability {probability:.2f})" if probability is not None else ")"))
    speakers = list(dict.fromkeys(s.speaker for s in result.segments if s.speaker))
    if speakers:
        parts.append(f"**{len(speakers)}** speaker{'s' if len(speakers) > 1 else ''}")
    if speaker_note:
        parts.append(html.escape(speaker_note))
    if not result.text.strip():
        parts.append("no speech was recognized")
    return " · ".join(parts)


def options_from_controls(task: str, language: str | None, timestamps: str, beam: float, temperature: float,
                          default_beam: int) -> dict:
    """The controls -> ``Recognizer.transcribe`` options, mapped as the API maps its form fields (a temperature
    above 0 samples, with the usual fallback to higher ones). The model's own beam is left unsaid."""
    if timestamps not in TIMESTAMPS:
        raise gr.Error(f"timestamps must be one of {', '.join(TIMESTAMPS)}; got {timestamps!r}")
    own = {} if int(beam) == default_beam else {"beam_size": int(beam)}
    request = AudioRequest(task=task or "transcribe", model="", upload=None,
                           language=None if language in (None, "", "auto") else language,
                           temperature=float(temperature or 0.0), granularities=TIMESTAMPS[timestamps], own=own)
    return request.options()


# ---- the page ---------------------------------------------------------------------------------------------------
def live_markup(models: list[str], key_needed: bool) -> str:
    """The Live tab's controls (plain HTML: ui_live.js drives them)."""
    options = "".join(f'<option value="{html.escape(m)}">{html.escape(m)}</option>' for m in models)
    key = ('<label>API key <input class="af-key" type="password" autocomplete="current-password" '
           'placeholder="the key this server was started with"></label>') if key_needed else ""
    return ('<div class="af-live">'
            f'<div class="af-row"><label>Model <select class="af-model">{options}</select></label>{key}'
            '<button class="af-start" type="button">Start</button>'
            '<button class="af-stop" type="button" disabled>Stop</button></div>'
            '<p class="af-status" role="status">Press Start and allow the microphone; speech appears as you speak.</p>'
            '<p class="af-partial" aria-live="polite"></p><ol class="af-finals"></ol></div>')


LIVE_CSS = """
.af-live .af-row { display: flex; flex-wrap: wrap; gap: .6rem; align-items: center; }
.af-live button { padding: .35rem 1rem; border-radius: .4rem; border: 1px solid #94a3b8; cursor: pointer; }
.af-live button:disabled { opacity: .45; cursor: default; }
.af-live .af-start { background: #2563eb; color: white; border-color: #2563eb; }
.af-live .af-partial { color: #64748b; font-style: italic; min-height: 1.5em; }
.af-live .af-finals li { margin: .2rem 0; }
.af-live .af-finals .af-time { color: #64748b; font-size: .85em; margin-right: .5em; }
.af-live .af-status.af-error { color: #dc2626; }
"""


def build_ui(server: "Server") -> gr.Blocks:
    names = server.pool.names()

    def check(name: str) -> None:
        """The server is ready and serves ``name``, or the page says why not."""
        try:
            server.check_ready()
            server.pool.served(name)
        except ApiError as e:
            raise gr.Error(e.message) from None

    async def describe(name: str) -> dict:
        check(name)
        recognizer = await server.acquire(name)     # a --lazy server loads it now
        try:
            return capabilities(recognizer)
        finally:
            server.pool.release(name)

    async def on_model(name: str):
        return control_updates(name, await describe(name))

    async def transcribe(audio: str | None, name: str, language: str, task: str, timestamps: str, beam: float,
                         temperature: float, speakers: bool = False, num_speakers: float = 0):
        if not audio:
            raise gr.Error("there is no recording yet: upload a file or record one with the microphone")
        check(name)
        filename = Path(audio).name
        recognizer = await server.acquire(name)
        try:
            options = options_from_controls(task, language, timestamps, beam, temperature, recognizer.beam_size)
            if speakers:
                options = with_word_times(recognizer, options)
            try:
                recognizer.check_options(**options)
            except ConfigError as e:
                raise gr.Error(f"{name} cannot do that: {e}") from None
            try:
                wave = await asyncio.to_thread(load_audio, audio, SAMPLE_RATE)
            except AudioError as e:     # the message names Gradio's copy: name the user's file instead
                raise gr.Error(str(e).replace(str(Path(audio)), filename)) from None
            duration = len(wave) / SAMPLE_RATE
            if not len(wave):
                raise gr.Error(f"{filename} holds no audio (0 samples)")
            picture = await asyncio.to_thread(Waveform, wave, SAMPLE_RATE)     # reads every sample: off the loop
            yield f"Decoding {filename} ({duration:.1f} s) with {name}…", "", picture.svg(), [], [], None
            started = time.monotonic()
            pieces = await server.pieces(wave)
            arrived: asyncio.Queue = asyncio.Queue()
            job = Job(recognizer, options, pieces, duration, asyncio.get_running_loop(),
                      on_piece=lambda i, r: arrived.put_nowait(i))
            try:
                server.scheduler.submit(job)
            except ApiError as e:
                raise gr.Error(e.message) from None
            try:
                done = 0
                while not job.future.done():
                    waiting = asyncio.ensure_future(arrived.get())
                    await asyncio.wait({waiting, job.future}, return_when=asyncio.FIRST_COMPLETED)
                    waiting.cancel()
                    ready = done
                    while ready < len(pieces) and job.results[ready] is not None:
                        ready += 1
                    if done < ready < len(pieces):      # (the last piece's update is the result itself)
                        done = ready
                        so_far = join_results(job.results[:done], job.starts[:done], duration)
                        yield (f"Decoded {done} of {len(pieces)} pieces of {filename}…", so_far.text,
                               picture.svg(so_far.segments), segment_rows(so_far),
                               word_rows(so_far), None)
                try:
                    result = job.future.result()
                except (AsrforgeError, ApiError) as e:
                    raise gr.Error(f"decoding {filename} failed: {getattr(e, 'message', e)}") from None
            finally:
                if not job.future.done():       # the page was closed or the run stopped: drop what is left
                    server.scheduler.cancel(job)
            if speakers:
                yield (f"Finding who spoke when in {filename}…", result.text.strip(), picture.svg(result.segments),
                       segment_rows(result), word_rows(result), None)
                try:
                    found = await server.diarize(wave, DiarizeOptions(num_speakers=int(num_speakers) or None))
                except ApiError as e:
                    raise gr.Error(e.message) from None
                result = assign_speakers(result, found)
            server.metrics.audio_seconds.labels(name).inc(duration)
            result.source = filename
            folder = Path(tempfile.mkdtemp(prefix="result-", dir=server.ui_temp / "results"))
            try:
                stem = Path(filename).stem or "transcript"
                files = [str(write_result(result, stem, folder, fmt)[0]) for fmt in DOWNLOADS]
                # Gradio copies the files into its cache as this is sent; the copies are what the page links to
                yield (summary(result, name, time.monotonic() - started, found.note if speakers else None),
                       result.text.strip(),
                       picture.svg(result.segments), segment_rows(result), word_rows(result),
                       files)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            server.pool.release(name)

    key_needed = bool(server.config.api_key)
    with gr.Blocks(title="asrforge", analytics_enabled=False, delete_cache=CACHE_SWEEP) as demo:
        gr.Markdown("## asrforge — speech to text")
        with gr.Tab("Transcribe"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=300):
                    audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Recording")
                    model = gr.Dropdown(names, value=names[0], label="Model")
                    note = gr.Markdown()
                    with gr.Row():
                        # every value any model may take: each model's own are set when it is chosen, and the
                        # model itself refuses the rest (check_options) with the reason
                        language = gr.Dropdown([("detect it", "auto")], value="auto", label="Language",
                                               allow_custom_value=True)
                        task = gr.Radio(["transcribe", "translate"], value="transcribe", label="Task")
                    timestamps = gr.Radio(["none", "segments", "words"], value="segments", label="Timestamps")
                    with gr.Row():
                        beam = gr.Slider(1, MAX_BEAM, value=1, step=1, label="Beam size", info="1 is greedy")
                        temperature = gr.Slider(0.0, 1.0, value=0.0, step=0.1, label="Temperature",
                                                info="above 0 samples, falling back to higher ones")
                    with gr.Row():
                        speakers = gr.Checkbox(False, label="Speakers", info="find who spoke when")
                        num_speakers = gr.Number(0, minimum=0, maximum=32, step=1, precision=0,
                                                 label="Number of speakers", info="0: find it")
                    run = gr.Button("Transcribe", variant="primary")
                with gr.Column(scale=3, min_width=300):
                    status = gr.Markdown("Upload a recording or record one, then press Transcribe.")
                    transcript = gr.Textbox(label="Transcript", lines=6, buttons=["copy"], interactive=False,
                                            elem_id="af-transcript")
                    picture = gr.HTML(label="Waveform")
                    with gr.Accordion("Segments", open=True):
                        segments = gr.Dataframe(headers=["#", "start", "end", "speaker", "text"], wrap=True,
                                                interactive=False, column_widths=["7%", "12%", "12%", "15%", "54%"])
                    with gr.Accordion("Words", open=False):
                        words = gr.Dataframe(headers=["word", "start", "end", "probability"], interactive=False)
                    downloads = gr.File(label="Download", file_count="multiple", interactive=False)
        with gr.Tab("Live"):
            gr.HTML(live_markup(names, key_needed), js_on_load=LIVE_SCRIPT.read_text(encoding="utf-8"),
                    css_template=LIVE_CSS)
        controls = [language, task, timestamps, beam, temperature, note]
        model.change(on_model, model, controls, show_progress="hidden", api_name="describe_model")
        demo.load(on_model, model, controls, show_progress="hidden", api_visibility="private")
        run.click(transcribe, [audio, model, language, task, timestamps, beam, temperature, speakers, num_speakers],
                  [status, transcript, picture, segments, words, downloads], api_name="transcribe",
                  concurrency_limit=server.config.max_queue)
    return demo


def mount_ui(app: "FastAPI", server: "Server", path: str) -> None:
    """Mount the web app on ``app`` at ``path``, its files in a folder of the server's own."""
    server.ui_temp = Path(tempfile.mkdtemp(prefix="asrforge-ui-", dir=server.config.temp_dir))
    # Gradio reads where to keep files from the environment, when each Blocks and app is made and as it runs;
    # results are written beside its folder (a file already in it would not be copied, and is then deleted)
    os.environ["GRADIO_TEMP_DIR"] = str(server.ui_temp / "gradio")
    (server.ui_temp / "results").mkdir()
    key = server.config.api_key

    def login(user: str, password: str) -> bool:        # any user name; the password is the API key
        return hmac.compare_digest(password.encode(), key.encode())

    gr.mount_gradio_app(app, build_ui(server), path=path, server_name="127.0.0.1", footer_links=[],
                        max_file_size=int(server.config.max_upload_mb * 2**20), ssr_mode=False,
                        allowed_paths=[str(server.ui_temp / "results")],
                        auth=login if key else None,
                        auth_message="This server needs its API key: any user name, the key as the password.")

