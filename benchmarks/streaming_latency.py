"""Streaming recognition at real-time pace: asrforge's engine, its WebSocket endpoint and WhisperLive, same weights.

    python benchmarks/streaming_latency.py --model PATH/TO/ct2-whisper [--compute int8] [--minutes 2] \
        [--peer-python WL_VENV/bin/python] [--streams 1 2 4] [--systems engine websocket whisperlive]

One recording (the long-form benchmark's: the shared read sentences, FSDD digits three to a group and eSpeak
sentences, here with 1.5-s pauses, as people pause between sentences) is replayed in 100-ms chunks at the pace
it was spoken, through

- ``engine``: :class:`asrforge.inference.streaming.StreamingRecognizer` in this process;
- ``websocket``: ``asrforge serve`` in its own process, through ``WS /v1/audio/stream``;
- ``whisperlive``: WhisperLive (``whisper-live`` from the package index, its faster-whisper backend) in its own
  environment, on the same CTranslate2 folder, int8 on the CPU (what it chooses there), with its VAD;

with language en, beam 5 (WhisperLive's setting) and 2 threads. Per system it prints one JSON line: the WER of
the finals (WhisperLive: its completed segments) against the reference, and the same model's offline WER on the
same recording; the latency of each final (when it arrived, from the start of the replay, minus the end time of
the audio it covers), median and p90; the latency of the first partial of each utterance measured the same way;
and, for the engine, the seconds of decoding per second of audio and the most a chunk of audio waited to be taken
in (how far behind real time the engine fell) for 1, 2, 4 ... streams at once (``--streams``), and how long the
last flush took after the audio ended.
Needs ../shared/data (not in a user's clone).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import free_port  # noqa: E402
from whisper_vs_peers import SHARED, long_form_recording, normalize  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SR = 16000
CHUNK = SR // 10


def quantiles(values: list[float]) -> dict:
    if not values:
        return {"median": None, "p90": None, "n": 0}
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 3), "p90": round(ordered[max(0, int(0.9 * len(ordered)) - 1)], 3),
            "n": len(ordered)}


def wer(reference: str, hypothesis: str) -> float:
    from asrforge.metrics import wer as word_error_rate

    return round(100 * word_error_rate([normalize(reference)], [normalize(hypothesis)]), 2)


def paced(wave: np.ndarray, start: float):
    """Chunks of ``wave``, each handed out no sooner than it would have been spoken after ``start``."""
    for k in range(0, len(wave), CHUNK):
        wait = start + k / SR - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        yield wave[k: k + CHUNK]


def first_partials(events: list[tuple[float, dict]]) -> list[float]:
    """Latency of the first partial after each final (and of the first one): its arrival minus its end time."""
    out, waiting = [], True
    for arrived, e in events:
        if e["type"] == "partial" and waiting and e["text"]:
            out.append(arrived - e["end"])
            waiting = False
        elif e["type"] == "final":
            waiting = True
    return out


def summary(name: str, events: list[tuple[float, dict]], reference: str, offline_wer: float, extra: dict) -> dict:
    finals = [(t, e) for t, e in events if e["type"] == "final"]
    text = " ".join(e["text"] for _, e in finals)
    return {"system": name, "wer": wer(reference, text), "offline_wer": offline_wer,
            "final_latency_s": quantiles([t - e["end"] for t, e in finals]),
            "first_partial_latency_s": quantiles(first_partials(events)), "finals": len(finals), **extra}


# ---- asrforge in this process ---------------------------------------------------------------------------------
def run_engine(engine, wave: np.ndarray, streams: int) -> tuple[list[tuple[float, dict]], dict]:
    """``streams`` copies of the recording replayed side by side in ``engine`` (any streaming engine); events of
    the first."""
    live = [engine.create_stream() for _ in range(streams)]
    events: list[tuple[float, dict]] = []
    busy = lag = 0.0
    start = time.monotonic()
    for k, chunk in enumerate(paced(wave, start)):
        lag = max(lag, time.monotonic() - start - k * CHUNK / SR)     # how late this chunk was taken in
        for s in live:
            s.accept_waveform(chunk, SR)
        t = time.monotonic()
        engine.decode_streams(live)
        busy += time.monotonic() - t
        now = time.monotonic() - start
        events += [(now, e.to_dict()) for e in live[0].pop_events()]
        for s in live[1:]:
            s.pop_events()
    for s in live:
        s.finish()
    t = time.monotonic()
    engine.decode_streams(live)
    busy += time.monotonic() - t
    flush = time.monotonic() - t
    now = time.monotonic() - start
    events += [(now, e.to_dict()) for e in live[0].pop_events()]
    seconds = len(wave) / SR
    # (a streaming model's engine takes a few thousandths of a second per audio second: 4 places show it)
    return events, {"streams": streams, "max_lag_s": round(lag, 3), "last_flush_s": round(flush, 2),
                    "decode_seconds_per_audio_second": round(busy / (seconds * streams), 4)}


# ---- through a WebSocket ----------------------------------------------------------------------------------------
def wait_for(proc: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 300
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the server did not start; see {log}:\n{log.read_text()[-2000:]}")
        time.sleep(0.25)


def replay_socket(url: str, hello: dict, wave: np.ndarray, encode, parse, end: bytes | str) -> list[tuple[float, dict]]:
    """Send ``hello``, then the recording at speaking pace (``encode``d), then ``end``; ``parse`` turns each message
    into events. Returns (arrival, event) pairs."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    events: list[tuple[float, dict]] = []
    with connect(url, open_timeout=60, max_size=None) as ws:
        ws.send(json.dumps(hello))
        ready = ws.recv(timeout=120)
        start = time.monotonic()

        def read():
            try:
                for message in ws:
                    now = time.monotonic() - start
                    for e in parse(json.loads(message)):
                        if e is None:
                            return
                        events.append((now, e))
            except ConnectionClosed:
                pass

        reader = threading.Thread(target=read)
        reader.start()
        for chunk in paced(wave, start):
            ws.send(encode(chunk))
        ws.send(end)
        reader.join(timeout=300)
    assert ready, "no answer to the settings"
    return events


def asrforge_ws(args, wave: np.ndarray, env: dict, tmp: Path) -> list[tuple[float, dict]]:
    port = free_port()
    log = tmp / "asrforge.log"
    proc = subprocess.Popen([str(Path(sys.executable).with_name("asrforge")), "serve", "--model",
                             f"whisper={args.model}", "--dtype", args.compute, "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for(proc, port, log)
        import httpx

        while httpx.get(f"http://127.0.0.1:{port}/ready").status_code != 200:
            time.sleep(0.25)

        def parse(m):
            return [None] if m["type"] in ("done", "error") else [m]

        return replay_socket(f"ws://127.0.0.1:{port}/v1/audio/stream",
                             {"model": "whisper", "language": "en", "beam_size": 5}, wave,
                             lambda c: (np.clip(c, -1, 1) * 32767).astype("<i2").tobytes(), parse, json.dumps({"type": "end"}))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


WHISPERLIVE = """
import sys
from whisper_live.server import TranscriptionServer
TranscriptionServer().run("127.0.0.1", int(sys.argv[1]), backend="faster_whisper",
                          faster_whisper_custom_model_path=sys.argv[2], single_model=True)
"""


def whisperlive(args, wave: np.ndarray, env: dict, tmp: Path) -> list[tuple[float, dict]]:
    port = free_port()
    log = tmp / "whisperlive.log"
    proc = subprocess.Popen([args.peer_python, "-c", WHISPERLIVE, str(port), args.model], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    finished: set = set()

    def parse(m):
        """Its messages hold the last few segments, each again until it is completed; a completed one is a final,
        the newest unfinished one the partial."""
        if m.get("message") == "DISCONNECT":
            return [None]
        out = []
        for seg in m.get("segments", []):
            e = {"text": seg["text"].strip(), "start": float(seg["start"]), "end": float(seg["end"])}
            key = (seg["start"], seg["text"])
            if seg.get("completed"):
                if key not in finished:
                    finished.add(key)
                    out.append({"type": "final", **e})
            else:
                out.append({"type": "partial", **e})
        return out

    try:
        wait_for(proc, port, log)
        return replay_socket(f"ws://127.0.0.1:{port}",
                             {"uid": "bench", "language": "en", "task": "transcribe", "model": args.model, "use_vad": True},
                             wave, lambda c: c.astype(np.float32).tobytes(), parse, b"END_OF_AUDIO")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a CTranslate2 Whisper folder (every system reads it)")
    ap.add_argument("--compute", default="int8", choices=["float32", "int8"])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--peer-python", help="a Python with whisper-live installed (for --systems whisperlive)")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--systems", nargs="+", default=["engine", "websocket", "whisperlive"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit("streaming_latency.py replays ../shared/data's recordings, which are not here")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    import torch

    from asrforge_runtime.audio import load_audio
    from asrforge.inference.recognizer import load_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path, reference = long_form_recording(tmp / "stream.wav", args.minutes, pause_s=1.5)
        wave = load_audio(path)
        recognizer = load_model(args.model, dtype=args.compute)
        offline = wer(reference, recognizer.transcribe(wave, language="en", beam_size=5).text)
        rows = []
        for system in args.systems:
            if system == "engine":
                from asrforge.inference.streaming import StreamingRecognizer

                engine = StreamingRecognizer(recognizer, language="en", beam_size=5)
                for n in args.streams:
                    events, extra = run_engine(engine, wave, n)
                    rows.append(summary("asrforge engine", events, reference, offline, extra))
                    print(json.dumps(rows[-1]), flush=True)
            elif system == "websocket":
                rows.append(summary("asrforge websocket", asrforge_ws(args, wave, env, tmp), reference, offline, {}))
                print(json.dumps(rows[-1]), flush=True)
            elif system == "whisperlive":
                if not args.peer_python:
                    sys.exit("--systems whisperlive needs --peer-python")
                rows.append(summary("whisperlive", whisperlive(args, wave, env, tmp), reference, offline, {}))
                print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"name": "streaming_latency", "model": Path(args.model).name, "compute": args.compute,
                      "audio_seconds": round(len(wave) / SR, 1), "rows": rows}))


if __name__ == "__main__":
    main()
