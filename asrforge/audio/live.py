"""Audio as it arrives: a file replayed in chunks (at speaking pace or as fast as it reads), raw PCM from a pipe,
and a microphone (PortAudio through ``sounddevice``, the extra ``stream``).

Each source is an iterator of mono float32 chunks ``(n,)`` in [-1, 1] at the source's ``sample_rate``.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from asrforge_runtime.audio import load_audio
from asrforge.errors import AudioError, ConfigError
from asrforge.extras import require_extra

ENCODINGS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}


def file_chunks(path: str | Path, chunk_s: float = 0.1, realtime: bool = False,
                sample_rate: int = 16000) -> Iterator[np.ndarray]:
    """A file read whole (any format :func:`load_audio` reads), handed out ``chunk_s`` at a time; with
    ``realtime``, each chunk no sooner than it would have been spoken (a slow consumer is not waited for)."""
    wave = load_audio(path, sample_rate)
    step = max(1, int(chunk_s * sample_rate))
    start = time.monotonic()
    for k in range(0, len(wave), step):
        if realtime:
            wait = start + k / sample_rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        yield wave[k: k + step]


class PcmDecoder:
    """Raw little-endian mono PCM (``s16le`` or ``f32le``) -> float32 samples in [-1, 1], as the bytes arrive: a
    read or a frame may stop mid-sample, so the bytes of a split sample wait for the next."""

    def __init__(self, encoding: str, name: str):
        if encoding not in ENCODINGS:
            raise ConfigError(f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
        self.encoding, self.name = encoding, name
        self.dtype = ENCODINGS[encoding]
        self.carry = b""

    def feed(self, data: bytes) -> np.ndarray:
        """The whole samples of ``carry + data`` ``(n,)`` (possibly none)."""
        data = self.carry + data
        whole = len(data) - len(data) % self.dtype.itemsize
        self.carry = data[whole:]
        raw = np.frombuffer(data[:whole], dtype=self.dtype)
        return raw.astype(np.float32) / 32768.0 if raw.dtype.kind == "i" else raw.astype(np.float32)

    def end(self) -> None:
        """The audio ended: :class:`AudioError` if it ended inside a sample."""
        if self.carry:
            raise AudioError(f"{self.name}: the audio ended inside a sample ({len(self.carry)} stray byte(s) after "
                             f"the last whole {self.encoding} sample); send whole {self.dtype.itemsize}-byte samples")


def pcm_chunks(stream: BinaryIO, encoding: str = "s16le", sample_rate: int = 16000,
               chunk_s: float = 0.1, name: str = "standard input") -> Iterator[np.ndarray]:
    """Raw PCM (see :class:`PcmDecoder`) read from a binary stream until it ends."""
    decoder = PcmDecoder(encoding, name)
    want = max(decoder.dtype.itemsize, int(chunk_s * sample_rate) * decoder.dtype.itemsize)
    read = getattr(stream, "read1", stream.read)     # whatever is there, not a full chunk: a live pipe trickles
    while True:
        data = read(want)
        if not data:
            break
        samples = decoder.feed(data)
        if len(samples):
            yield samples
    decoder.end()


def microphone_chunks(sample_rate: int = 16000, chunk_s: float = 0.1, device: str | int | None = None,
                      sounddevice=None) -> Iterator[np.ndarray]:
    """The default (or a named) input device, mono, until the consumer stops iterating or the device stops (it was
    unplugged, or PortAudio ended the stream). PortAudio's callback thread only queues the chunks, so a slow
    consumer drops nothing (it falls behind and catches up)."""
    if sounddevice is None:
        sounddevice = import_sounddevice()
    chunks: queue.Queue = queue.Queue()

    def arrived(indata, frames, when, status):      # PortAudio's thread
        chunks.put(indata[:, 0].copy())

    try:
        source = sounddevice.InputStream(samplerate=sample_rate, channels=1, dtype="float32", device=device,
                                         blocksize=int(chunk_s * sample_rate), callback=arrived)
    except Exception as e:          # PortAudioError, ValueError: no such device, no input channels
        raise ConfigError(f"the microphone could not be opened ({e}); list the devices with "
                          f"`python -m sounddevice` and choose one with --mic-device") from None
    with source:
        while True:
            try:
                yield chunks.get(timeout=0.25)
            except queue.Empty:
                if not source.active:
                    return


def import_sounddevice():
    """``sounddevice``, or a one-line error saying what to install."""
    require_extra("stream", "the microphone (--mic)", "sounddevice")
    try:
        import sounddevice
    except OSError:                 # the module is there, PortAudio's library is not
        raise ConfigError("the microphone needs the PortAudio library: apt-get install libportaudio2 (Debian, "
                          "Ubuntu), brew install portaudio (macOS)") from None
    return sounddevice
