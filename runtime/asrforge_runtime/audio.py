"""Load any audio file as 16 kHz mono float32, and write WAV/FLAC.

soundfile (libsndfile) decodes wav, flac, ogg/vorbis/opus, mp3 and NIST SPHERE; soxr resamples.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from asrforge_runtime.errors import AudioError

SAMPLE_RATE = 16000  # every model in asrforge consumes 16 kHz audio
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".sph", ".aiff", ".aif"}   # what folders are searched for


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono float32 waveform ``(N,)`` with soxr's high-quality filter."""
    if orig_sr == target_sr:
        return wave
    return soxr.resample(wave, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """``(N,)`` or ``(N, C)`` -> ``(N,)`` by averaging channels."""
    return wave.mean(axis=1) if wave.ndim == 2 else wave


def _missing(path: Path) -> str:
    return f"audio file {path} does not exist; check the path (a manifest's relative paths are resolved from its folder)"


def audio_info(path: str | Path) -> tuple[int, int]:
    """Return ``(sample_rate, frames)`` from the file header, or raise :class:`AudioError`."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(_missing(path))
    try:
        info = sf.info(str(path))
    except Exception as e:  # libsndfile raises several types for bad headers
        raise AudioError(f"audio file {path} cannot be read ({decoder_message(e)}); re-encode it as WAV/FLAC or remove it") from None
    promised = wav_frames(path)
    if promised is not None and promised[1] < promised[0]:
        raise _truncated(path, promised[0] / info.samplerate, promised[1] / info.samplerate)
    return int(info.samplerate), int(info.frames)


def wav_frames(path: Path) -> tuple[int, int] | None:
    """``(frames its header promises, frames the file holds)`` of a RIFF WAV file, or None for other files and
    for streams written without a length (ffmpeg to a pipe). libsndfile quietly reads what is there, so a cut
    copy would otherwise pass for a short recording."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            name, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"fmt ":
                fmt = f.read(size)
                block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else None
                f.seek(size % 2, 1)
            elif name == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                held = path.stat().st_size - f.tell()
                return size // block_align, max(held, 0) // block_align
            else:
                f.seek(size + size % 2, 1)     # chunks are padded to an even length


def _truncated(path: Path, promised_s: float, held_s: float) -> AudioError:
    return AudioError(f"audio file {path} is truncated: its header promises {promised_s:.2f} s of audio but the file "
                      f"holds {held_s:.2f} s; copy it again from its source, or remove it")


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
    channel: int | None = None,
) -> np.ndarray:
    """Read ``path`` (any format libsndfile knows) -> mono float32 ``(N,)`` at ``sample_rate``.

    ``offset``/``duration`` (seconds) read only that slice, so long recordings split into
    segments are never decoded whole. Channels are averaged, or with ``channel`` (from 0) only that one
    is kept.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(_missing(path))
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes); re-export it or remove it from the manifest")
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            start = int(round(offset * sr))
            if start:
                if start >= f.frames > 0:
                    raise AudioError(f"audio file {path} is {f.frames / sr:.2f}s long, shorter than its offset {offset:.2f}s; fix the segment times")
                f.seek(start)
            frames = -1 if duration is None else int(round(duration * sr))
            wave = f.read(frames, dtype="float32", always_2d=False)
            wanted = f.frames - start if duration is None else min(frames, f.frames - start)
            if len(wave) < wanted:          # the decoder stopped before the end the header gives (a cut FLAC, ...)
                raise _truncated(path, f.frames / sr, (start + len(wave)) / sr)
            is_wav = f.format == "WAV"
        promised = wav_frames(path) if is_wav else None
        if promised is not None and promised[1] < promised[0] and (duration is None or start + frames > promised[1]):
            raise _truncated(path, promised[0] / sr, promised[1] / sr)
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(f"audio file {path} cannot be decoded ({decoder_message(e)}); re-encode it as WAV/FLAC or remove it") from None
    wave = np.asarray(wave, dtype=np.float32)
    if channel is not None:
        channels = wave.shape[1] if wave.ndim == 2 else 1
        if channel >= channels:
            raise AudioError(f"audio file {path} has {channels} channel(s); channel {channel} (counted from 0) "
                             "was asked for: fix the manifest's channel")
        if wave.ndim == 2:
            wave = wave[:, channel]
    wave = to_mono(wave)
    if wave.size == 0:
        raise AudioError(f"audio file {path} holds no samples; re-export it or remove it from the manifest")
    return np.ascontiguousarray(resample(wave, sr, sample_rate))


def decode_audio_bytes(data: bytes, what: str = "standard input", sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A whole audio file held in memory (WAV, FLAC, OGG, ... as ``ffmpeg -f wav -`` pipes it) -> mono float32
    ``(N,)`` at ``sample_rate``; ``what`` names the source in errors."""
    if not data:
        raise AudioError(f"{what} holds no audio; pipe a WAV or FLAC stream into it")
    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except Exception as e:
        raise AudioError(f"{what} cannot be decoded ({decoder_message(e)}); pipe WAV or FLAC, e.g. "
                         "ffmpeg -i talk.mp4 -f wav - | asrforge transcribe - --model ...") from None
    wave = to_mono(np.asarray(wave, dtype=np.float32))
    if wave.size == 0:
        raise AudioError(f"{what} holds no samples")
    return np.ascontiguousarray(resample(wave, sr, sample_rate))


def write_audio(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono float32 ``(N,)`` as 16-bit PCM; the format follows the suffix (.wav, .flac, .ogg, .mp3)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "PCM_16" if path.suffix.lower() in (".wav", ".flac") else None
    sf.write(str(path), np.clip(wave, -1.0, 1.0), sample_rate, subtype=subtype)


def decoder_message(e: Exception) -> str:
    """The decoder's reason in one short line, without libsndfile's "Error opening <source>: " (our message names
    the file already; for in-memory audio the source is an object's repr)."""
    text = str(e).strip()
    if not text:
        return type(e).__name__
    return re.sub(r"^Error opening .*?: (?=\S)", "", text.splitlines()[0])[:200]
