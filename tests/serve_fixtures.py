"""A real server on a loopback port for the serve tests: uvicorn in a thread, started and stopped by the test."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import soxr

from asrforge.inference import load_model

SR = 16000


class RunningServer:
    def __init__(self, config):
        import uvicorn

        from asrforge.serve.app import create_app

        self.app = create_app(config)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "RunningServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while httpx.get(self.url + "/ready").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server never became ready")
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    @property
    def internals(self):
        return self.app.state.server


def spoken(text: str, voice: str = "en-us", seed: int = 0) -> np.ndarray:
    from asrforge.data.synth.espeak import EspeakEngine

    engine = EspeakEngine.get()
    engine.seed(seed)
    wave = engine.synthesize(text, voice).astype(np.float32) / 32768
    return soxr.resample(wave, engine.sample_rate, SR).astype(np.float32)


def write_wav(path, wave: np.ndarray):
    sf.write(str(path), wave, SR)
    return path


def load_multilingual(path):
    """load_model, except that the tiny Whisper (an English-only-sized vocabulary) gets a multilingual tokenizer
    (en/de/fr), so that language detection and translation run."""
    from asrforge.inference.whisper import WhisperTranscriber
    from asrforge.text.whisper import WhisperTokenizer

    recognizer = load_model(path)
    if isinstance(recognizer, WhisperTranscriber):
        return WhisperTranscriber(recognizer.model, WhisperTokenizer.from_folder(Path(path).parent, multilingual=True))
    return recognizer
