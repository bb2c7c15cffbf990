import numpy as np
import pytest
import soundfile as sf

from asrforge_runtime.audio import SAMPLE_RATE, audio_info, load_audio
from asrforge.errors import AudioError
from conftest import sine


@pytest.mark.parametrize("suffix,fmt,subtype", [(".wav", "WAV", "PCM_16"), (".flac", "FLAC", "PCM_24"),
                                               (".ogg", "OGG", "VORBIS"), (".mp3", "MP3", None)])
def test_formats_load_as_16k_mono_float(tmp_path, suffix, fmt, subtype):
    wave = sine(1.0, 16000)
    path = tmp_path / f"a{suffix}"
    sf.write(path, wave, 16000, format=fmt, subtype=subtype)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - 16000) < 1200          # lossy codecs pad a little
    # the tone survives decoding: its spectrum peaks at 440 Hz
    spectrum = np.abs(np.fft.rfft(out[:16000] if out.size >= 16000 else np.pad(out, (0, 16000 - out.size))))
    assert abs(np.argmax(spectrum) - 440) <= 2


def test_resample_stereo_and_integer_pcm(tmp_path):
    sr = 44100
    left, right = sine(0.5, sr, 1000), sine(0.5, sr, 1000, amp=0.1)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], 1), sr, subtype="PCM_32")
    out = load_audio(path)
    assert out.size == pytest.approx(0.5 * SAMPLE_RATE, abs=2)
    # mono is the channel mean: amplitude (0.5 + 0.1) / 2
    assert np.abs(out[1000:-1000]).max() == pytest.approx(0.3, abs=0.01)
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / out.size - 1000) < 5


def test_8khz_int16_and_float32(tmp_path):
    for subtype in ("PCM_16", "FLOAT"):
        path = tmp_path / f"x_{subtype}.wav"
        sf.write(path, sine(1.0, 8000, 300), 8000, subtype=subtype)
        out = load_audio(path)
        assert out.size == 16000 and out.dtype == np.float32


def test_offset_and_duration_read_a_slice(tmp_path):
    wave = np.concatenate([np.zeros(16000, np.float32), np.full(8000, 0.5, np.float32)])
    path = tmp_path / "s.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    part = load_audio(path, offset=1.0, duration=0.25)
    assert part.size == 4000 and np.allclose(part, 0.5)


def test_one_channel_or_the_average_and_a_missing_channel_is_named(tmp_path):
    path = tmp_path / "call.wav"
    sf.write(path, np.stack([np.full(1600, 0.2), np.full(1600, 0.6)], axis=1).astype(np.float32), 16000, subtype="FLOAT")
    assert np.allclose(load_audio(path), 0.4) and np.allclose(load_audio(path, channel=1), 0.6)
    assert np.allclose(load_audio(path, channel=0), 0.2)
    with pytest.raises(AudioError, match="call.wav has 2 channel.*channel 2"):
        load_audio(path, channel=2)
    mono = tmp_path / "mono.wav"
    sf.write(mono, sine(0.1), 16000)
    assert load_audio(mono, channel=0).size == 1600
    with pytest.raises(AudioError, match="mono.wav has 1 channel"):
        load_audio(mono, channel=1)


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="missing.wav.*does not exist"):
        load_audio(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav.*empty"):
        load_audio(empty)
    junk = tmp_path / "junk.flac"
    junk.write_bytes(b"this is not audio at all" * 20)
    with pytest.raises(AudioError, match="junk.flac.*cannot be decoded"):
        load_audio(junk)
    with pytest.raises(AudioError, match="junk.flac"):
        audio_info(junk)
    short = tmp_path / "short.wav"
    sf.write(short, sine(0.5), 16000)
    with pytest.raises(AudioError, match="shorter than its offset"):
        load_audio(short, offset=2.0, duration=1.0)


def test_a_cut_off_file_is_reported_as_truncated_not_read_as_a_short_one(tmp_path):
    """libsndfile reads what is there; the header says how much should be. A 100-byte cut of a WAV (28 samples
    left of 1.5 s) was transcribed as an empty string without a word."""
    whole = tmp_path / "whole.wav"
    sf.write(whole, sine(1.5), 16000, subtype="PCM_16")
    data = whole.read_bytes()
    for keep, held in ((100, "0.00"), (len(data) // 2, "0.75")):
        cut = tmp_path / f"cut{keep}.wav"
        cut.write_bytes(data[:keep])
        with pytest.raises(AudioError, match=rf"cut{keep}.wav is truncated: its header promises 1.50 s of audio but the file holds {held} s"):
            load_audio(cut)
        with pytest.raises(AudioError, match="truncated"):
            audio_info(cut)
    half = tmp_path / f"cut{len(data) // 2}.wav"
    assert load_audio(half, offset=0.1, duration=0.5).size == 8000          # a slice it still holds reads
    with pytest.raises(AudioError, match="truncated"):
        load_audio(half, offset=0.5, duration=0.5)
    # WAV written to a pipe has no length in its header (ffmpeg -f wav -): nothing to compare, so it reads
    streamed = bytearray(data)
    streamed[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    (tmp_path / "streamed.wav").write_bytes(bytes(streamed))
    assert load_audio(tmp_path / "streamed.wav").size == 24000
    with_trailer = tmp_path / "trailer.wav"                                  # a chunk after the data is not a cut
    with_trailer.write_bytes(data + b"LIST\x04\x00\x00\x00abcd")
    assert load_audio(with_trailer).size == 24000
