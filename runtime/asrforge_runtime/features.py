"""The front end without PyTorch: waveform ``(N,)`` -> features ``(T, D)`` as a recipe's ``features:`` section says.

:class:`FeatureConfig` is that section itself (asrforge's recipes hold this class), and the mel filterbank and DCT
below are the ones asrforge's PyTorch front end multiplies by. :class:`FrontEnd` computes log-mel or MFCC features
with numpy (centred frames, zero padding, a periodic Hann window), deltas, trimming and CMVN as asrforge's
``FeatureExtractor`` does; a test holds the two within 1e-4 of each other. ``kind: kaldi_fbank`` is computed by
kaldi-native-fbank (:func:`kaldi_fbank`), for both front ends and as sherpa-onnx computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from asrforge_runtime.audio import SAMPLE_RATE
from asrforge_runtime.errors import ConfigError

LOG_FLOOR = 1e-6    # keeps log() finite on digital silence
CMVN_EPS = 1e-5     # keeps constant dimensions (digital silence) finite


@dataclass
class FeatureConfig:
    # fbank, mfcc: asrforge's own (centred frames, a Hann window, Slaney or HTK mel). kaldi_fbank: Kaldi's log-mel
    # filterbank computed by kaldi-native-fbank as sherpa-onnx computes it (dither 0, frames not snipped at the
    # edges, a Povey window, pre-emphasis, HTK mel from fmin to fmax; n_fft and htk_mel do not apply), so that a
    # model trained on it runs in sherpa-onnx as exported (asrforge export --format sherpa-onnx).
    kind: Literal["fbank", "mfcc", "kaldi_fbank"] = "fbank"
    sample_rate: int = SAMPLE_RATE
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    n_mels: int = 80
    n_mfcc: int = 13
    deltas: bool = False          # append first and second derivatives (MFCC or fbank)
    fmin: float = 0.0
    fmax: float | None = None     # None: half the sample rate (kaldi_fbank: 400 Hz below it, sherpa-onnx's choice)
    htk_mel: bool = False         # False: Slaney mel scale (librosa's default)
    # "speaker": statistics pooled over all of a speaker's utterances (the manifest's speaker field), computed
    # by the dataset; an utterance with no speaker, or a lone file at transcription, is its own speaker.
    # "global": one mean and deviation per dimension over the training set (``asrforge train`` measures them into
    # global_mean/global_std, which the checkpoint's recipe then holds): a frame's features depend on it alone,
    # as a streaming model's must.
    cmvn: Literal["utterance", "speaker", "global", "none"] = "utterance"
    global_mean: list[float] | None = None
    global_std: list[float] | None = None
    # Speaker statistics from each recording's speech only: the frames from the first to the last that come within
    # this many dB of the recording's loudest (None: every frame). Recordings differ in how much silence they keep
    # before and after the speech (FSDD's are cut to the word, people's are not), and a mean over silence and
    # speech moves with that share; pauses inside the speech still count, as the model hears them too.
    stats_trim_db: float | None = None
    # Cut the silence before and after the speech from every recording, in training, evaluation and transcription
    # alike: frames outside the first to the last that come within this many dB of the recording's loudest are
    # dropped, but for trim_margin_ms beside the speech (None: keep every frame). For models trained on corpora cut
    # to the word (FSDD, synthetic speech): they read the silence people leave around a word as more words.
    trim_db: float | None = None
    trim_margin_ms: float = 100.0   # a weak consonant at a word's edge can lie 30 dB or more under its vowel

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def dim(self) -> int:
        base = self.n_mfcc if self.kind == "mfcc" else self.n_mels
        return base * (3 if self.deltas else 1)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples: centred frames, or Kaldi's unsnipped ones."""
        if self.kind == "kaldi_fbank":
            return (num_samples + self.hop_length // 2) // self.hop_length
        return num_samples // self.hop_length + 1

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the ``features.*`` setting that cannot work."""
        if self.win_length > self.n_fft:
            raise ConfigError(f"features.win_ms={self.win_ms} gives {self.win_length} samples, more than "
                              f"n_fft={self.n_fft}")
        for name in ("stats_trim_db", "trim_db"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"features.{name}={value}: give a positive number of dB under the loudest frame, "
                                  "or null for every frame")
        if self.trim_margin_ms < 0:
            raise ConfigError(f"features.trim_margin_ms={self.trim_margin_ms} must be 0 or more")
        if self.kind == "kaldi_fbank" and (self.trim_db is not None or self.stats_trim_db is not None):
            raise ConfigError("features.trim_db and features.stats_trim_db measure asrforge's own power spectrum; "
                              "with features.kind: kaldi_fbank leave them null (or use kind: fbank)")
        if self.global_mean is not None or self.global_std is not None:
            if not (len(self.global_mean or ()) == len(self.global_std or ()) == self.dim):
                raise ConfigError(f"features.global_mean and features.global_std must both hold {self.dim} numbers "
                                  "(one per feature dimension); leave both out and `asrforge train` measures them")


# ---- mel scale, filterbank, DCT (the same definitions librosa uses) -------------------------------------------------
_F_SP = 200.0 / 3                                   # Slaney: linear below 1 kHz, logarithmic above
_MIN_LOG_HZ, _MIN_LOG_MEL, _LOGSTEP = 1000.0, 1000.0 / _F_SP, math.log(6.4) / 27.0


def hz_to_mel(freq: np.ndarray, htk: bool = False) -> np.ndarray:
    freq = np.asarray(freq, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + freq / 700.0)
    log = _MIN_LOG_MEL + np.log(np.maximum(freq, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(freq >= _MIN_LOG_HZ, log, freq / _F_SP)


def mel_to_hz(mel: np.ndarray, htk: bool = False) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    return np.where(mel >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL)), _F_SP * mel)


def warp_frequencies(freqs: np.ndarray, factor: float, top: float, knee_ratio: float = 0.85) -> np.ndarray:
    """Vocal tract length perturbation's frequency warp (Jaitly & Hinton, 2013): ``f -> factor * f`` up to a
    knee, then a straight line that lands on ``top`` at ``top``, so the band's edge stays where it is.

    ``factor > 1`` moves formants up, as a shorter vocal tract does; pitch and timing are left alone, which is
    what speed perturbation cannot do (it moves all three together).
    """
    knee = knee_ratio * top * min(factor, 1.0) / factor
    upper = top - (top - factor * knee) * (top - freqs) / (top - knee)
    return np.where(freqs <= knee, freqs * factor, upper)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None,
                   htk: bool = False, slaney_norm: bool = True, warp: float = 1.0) -> np.ndarray:
    """Triangular mel filters ``(n_mels, n_fft // 2 + 1)``, float64.

    With ``slaney_norm`` each filter is scaled to unit area (constant energy per band). ``warp`` != 1 gathers
    each FFT bin's energy into the filter of its warped frequency (:func:`warp_frequencies`, edge at ``fmax``).
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    if warp != 1.0:
        fft_freqs = warp_frequencies(fft_freqs, warp, fmax)
    hz_pts = mel_to_hz(np.linspace(float(hz_to_mel(fmin, htk)), float(hz_to_mel(fmax, htk)), n_mels + 2), htk)
    widths = hz_pts[1:] - hz_pts[:-1]                       # (n_mels + 1,)
    ramps = hz_pts[:, None] - fft_freqs[None, :]            # (n_mels + 2, F)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(np.minimum(lower, upper), 0.0)
    if slaney_norm:
        weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    return weights


def dct_matrix(n_mfcc: int, n_mels: int) -> np.ndarray:
    """Orthonormal DCT-II basis ``(n_mels, n_mfcc)``, float64: ``mfcc = logmel @ basis``."""
    n, k = np.arange(n_mels, dtype=np.float64), np.arange(n_mfcc, dtype=np.float64)
    basis = np.cos(math.pi / n_mels * (n[:, None] + 0.5) * k[None, :])
    basis[:, 0] *= math.sqrt(1.0 / n_mels)
    basis[:, 1:] *= math.sqrt(2.0 / n_mels)
    return basis


def deltas(feats: np.ndarray, window: int = 2) -> np.ndarray:
    """Regression deltas along time for ``(T, D)``, edges repeated (HTK/Kaldi formula)."""
    T = feats.shape[0]
    padded = np.concatenate([np.repeat(feats[:1], window, 0), feats, np.repeat(feats[-1:], window, 0)])
    num = sum(n * (padded[window + n: window + n + T] - padded[window - n: window - n + T]) for n in range(1, window + 1))
    return num / (2 * sum(n * n for n in range(1, window + 1)))


def kaldi_fbank_options(config: FeatureConfig):
    """kaldi-native-fbank's options for ``config``: sherpa-onnx's front end, with the recipe's frames and bins."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = config.sample_rate
    opts.frame_opts.frame_length_ms = config.win_ms
    opts.frame_opts.frame_shift_ms = config.hop_ms
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = False
    opts.mel_opts.num_bins = config.n_mels
    opts.mel_opts.low_freq = config.fmin
    opts.mel_opts.high_freq = -400.0 if config.fmax is None else config.fmax
    return opts


def kaldi_fbank(wave: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """``(N,)`` samples in [-1, 1] -> Kaldi log-mel filterbank frames ``(T, n_mels)`` float32, by kaldi-native-fbank
    (what sherpa-onnx computes from the same samples)."""
    try:
        import kaldi_native_fbank as knf
    except ImportError:
        raise ConfigError("features.kind: kaldi_fbank needs kaldi-native-fbank: pip install kaldi-native-fbank") from None
    fbank = knf.OnlineFbank(kaldi_fbank_options(config))
    fbank.accept_waveform(config.sample_rate, np.asarray(wave, dtype=np.float32))
    fbank.input_finished()
    n = fbank.num_frames_ready
    if not n:
        return np.zeros((0, config.n_mels), dtype=np.float32)
    return np.stack([fbank.get_frame(i) for i in range(n)]).astype(np.float32, copy=False)


def loud_span(power: np.ndarray, below_db: float) -> tuple[int, int]:
    """Power spectrum ``(T, F)`` -> ``(first, last + 1)``: the frames from the first to the last whose energy comes
    within ``below_db`` of the loudest frame's."""
    energy_db = 10 * np.log10(power.sum(1) + LOG_FLOOR)
    loud = np.flatnonzero(energy_db >= energy_db.max() - below_db)
    return int(loud[0]), int(loud[-1]) + 1


class FrontEnd:
    """Callable turning a mono 16 kHz waveform ``(N,)`` into normalized features ``(T, D)`` float32 (fewer frames
    with ``features.trim_db``). ``features.cmvn: speaker`` normalizes each input on its own, as asrforge does for a
    lone file."""

    def __init__(self, config: FeatureConfig):
        config.check()
        self.config = config
        if config.kind == "kaldi_fbank":
            kaldi_fbank_options(config)     # kaldi-native-fbank is there (a clear error now, not at the first file)
        self.window = np.zeros(config.n_fft)
        left = (config.n_fft - config.win_length) // 2      # the window centred in the FFT frame, as torch.stft does
        self.window[left: left + config.win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(config.win_length)
                                                                         / config.win_length)
        self.mel_t = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax,
                                    htk=config.htk_mel).T.astype(np.float32)        # (F, n_mels)
        self.dct = dct_matrix(config.n_mfcc, config.n_mels).astype(np.float32) if config.kind == "mfcc" else None
        self.mean = self.std = None
        if config.global_mean is not None:
            self.mean = np.asarray(config.global_mean, dtype=np.float32)
            self.std = np.asarray(config.global_std, dtype=np.float32)

    def power_spectrogram(self, wave: np.ndarray) -> np.ndarray:
        """``(N,)`` -> ``(T, n_fft//2+1)`` power spectrum: frame ``k`` centred on sample ``k * hop``, zeros beyond
        the edges."""
        pad = np.zeros(self.config.n_fft // 2, np.float32)
        return self.frame_power(np.concatenate([pad, np.asarray(wave, np.float32), pad]))

    def frame_power(self, samples: np.ndarray) -> np.ndarray:
        """``(N,)`` -> the power spectrum ``(T, n_fft//2+1)`` of every whole ``n_fft``-sample frame, one per hop
        from the first sample (no padding)."""
        c = self.config
        if samples.size < c.n_fft:
            return np.zeros((0, c.n_fft // 2 + 1), np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(samples, c.n_fft)[:: c.hop_length]
        spec = np.fft.rfft(frames * self.window.astype(np.float32), axis=1)
        return (spec.real ** 2 + spec.imag ** 2).astype(np.float32)

    def power_features(self, power: np.ndarray) -> np.ndarray:
        """Power spectrum ``(T, F)`` -> every frame's features ``(T, D)``, before CMVN."""
        feats = np.log(power @ self.mel_t + LOG_FLOOR)
        if self.dct is not None:
            feats = feats @ self.dct
        if self.config.deltas:
            d1 = deltas(feats)
            feats = np.concatenate([feats, d1, deltas(d1)], axis=1)
        return feats.astype(np.float32, copy=False)

    def kept_frames(self, power: np.ndarray) -> slice:
        """The frames ``features.trim_db`` keeps of a power spectrum ``(T, F)``: all of them when it is unset."""
        c = self.config
        if c.trim_db is None:
            return slice(0, power.shape[0])
        first, end = loud_span(power, c.trim_db)
        margin = int(round(c.trim_margin_ms / c.hop_ms))
        return slice(max(0, first - margin), min(power.shape[0], end + margin))

    def normalized(self, feats: np.ndarray) -> np.ndarray:
        """``(T, D)`` un-normalized -> what ``features.cmvn`` makes of them (speaker: the input's own statistics)."""
        cmvn = self.config.cmvn
        if cmvn == "none":
            return feats
        if cmvn == "global":
            if self.mean is None:
                raise ConfigError("features.cmvn=global needs features.global_mean and features.global_std; "
                                  "`asrforge train` measures them on data.train")
            mean, std = self.mean, self.std
        else:
            mean, std = feats.mean(0), feats.std(0)
        return ((feats - mean) / (std + CMVN_EPS)).astype(np.float32, copy=False)

    def unnormalized(self, wave: np.ndarray) -> np.ndarray:
        """``(N,)`` -> ``(T, D)`` features before CMVN, of the frames ``features.trim_db`` keeps."""
        if self.config.kind == "kaldi_fbank":
            feats = kaldi_fbank(wave, self.config)
            if self.config.deltas:
                d1 = deltas(feats)
                feats = np.concatenate([feats, d1, deltas(d1)], axis=1)
            return feats
        power = self.power_spectrogram(wave)
        return self.power_features(power)[self.kept_frames(power)]

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.normalized(self.unnormalized(wave)))

    def trimmed_start(self, wave: np.ndarray) -> int:
        """The first frame ``features.trim_db`` keeps of ``wave`` (0 without trimming): where frame 0 of the
        features lies, in hops from the start."""
        return 0 if self.config.trim_db is None else self.kept_frames(self.power_spectrogram(wave)).start


class OnlineKaldiFbank:
    """``kind: kaldi_fbank`` frames as the audio arrives, by kaldi-native-fbank's own online computation (as
    sherpa-onnx's streams compute them): ``accept(samples (N,))`` -> the raw ``(T, n_mels)`` frames that became
    ready, ``finish()`` -> the rest. Concatenated they are :func:`kaldi_fbank`'s frames of the whole waveform."""

    def __init__(self, config: FeatureConfig):
        try:
            import kaldi_native_fbank as knf
        except ImportError:
            raise ConfigError("features.kind: kaldi_fbank needs kaldi-native-fbank: pip install kaldi-native-fbank") from None
        self.config = config
        self.fbank = knf.OnlineFbank(kaldi_fbank_options(config))
        self.frames = 0             # frames given out (and dropped from kaldi-native-fbank's buffer)
        self.finished = False

    def accept(self, samples: np.ndarray) -> np.ndarray:
        if self.finished:
            raise ValueError("features were finished; start a new stream's features for more audio")
        self.fbank.accept_waveform(self.config.sample_rate, np.asarray(samples, dtype=np.float32).reshape(-1))
        return self._ready()

    def finish(self) -> np.ndarray:
        self.finished = True
        self.fbank.input_finished()
        return self._ready()

    def _ready(self) -> np.ndarray:
        ready = self.fbank.num_frames_ready
        if ready <= self.frames:
            return np.zeros((0, self.config.n_mels), dtype=np.float32)
        frames = np.stack([self.fbank.get_frame(i) for i in range(self.frames, ready)]).astype(np.float32, copy=False)
        self.fbank.pop(ready - self.frames)        # a long stream keeps no frames it has given out
        self.frames = ready
        return frames


class OnlineFrames:
    """The frames of ``config``'s features computed as the audio arrives: ``accept(samples (N,))`` -> the ``(T, D)``
    frames that became ready, ``finish()`` -> the rest; over a whole waveform the frames are the offline ones.

    asrforge's own fbank and MFCC are frames of a centred STFT: frame ``k`` is centred on sample ``k * hop`` and reads
    ``n_fft`` samples (zeros before the first and after the last), so it is ready once ``k * hop + n_fft / 2`` samples
    are in. Subclasses compute the frames of a run of samples (``_compute``: one per hop from its first sample, no
    padding) and say what no frames are (``_empty``). ``kind: kaldi_fbank`` is kaldi-native-fbank's own online
    computation (:class:`OnlineKaldiFbank`), whose raw frames subclasses normalize (``_from_kaldi``)."""

    def __init__(self, config: FeatureConfig):
        check_online(config)
        self.hop, self.n_fft = config.hop_length, config.n_fft
        self.kaldi = OnlineKaldiFbank(config) if config.kind == "kaldi_fbank" else None
        self.pending = np.zeros(self.n_fft // 2, dtype=np.float32)     # samples later frames still read
        self.samples = 0            # real samples received
        self.frames = 0             # frames given out
        self.finished = False

    def _from_kaldi(self, raw: np.ndarray):
        raise NotImplementedError

    def _compute(self, samples: np.ndarray):
        raise NotImplementedError

    def _empty(self):
        raise NotImplementedError

    def accept(self, samples: np.ndarray):
        if self.finished:
            raise ValueError("features were finished; start a new stream's features for more audio")
        if self.kaldi is not None:
            return self._from_kaldi(self.kaldi.accept(samples))
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.pending = np.concatenate([self.pending, samples])
        self.samples += samples.size
        return self._frames(final=False)

    def finish(self):
        """The frames after the last whole one: ``samples // hop + 1`` frames in all, as offline."""
        self.finished = True
        if self.kaldi is not None:
            return self._from_kaldi(self.kaldi.finish())
        self.pending = np.concatenate([self.pending, np.zeros(self.n_fft // 2, dtype=np.float32)])
        return self._frames(final=True)

    def _frames(self, final: bool):
        ready = (self.pending.size - self.n_fft) // self.hop + 1 if self.pending.size >= self.n_fft else 0
        if final:
            ready = min(ready, self.samples // self.hop + 1 - self.frames)
        if ready <= 0:
            return self._empty()
        frames = self._compute(self.pending[: (ready - 1) * self.hop + self.n_fft])
        self.pending = self.pending[ready * self.hop:]
        self.frames += ready
        return frames


def check_online(config: FeatureConfig) -> None:
    """Only features whose frame needs no later audio are computed as audio arrives: what streaming models are
    trained on."""
    if config.cmvn not in ("global", "none") or config.deltas or config.trim_db is not None:
        raise ConfigError("features computed as audio arrives take features.cmvn global (or none), no deltas and no "
                          "trim_db: what a streaming model is trained on")


class OnlineFrontEnd(OnlineFrames):
    """:class:`FrontEnd`'s frames as the audio arrives (numpy), normalized."""

    def __init__(self, front: FrontEnd):
        super().__init__(front.config)
        self.front = front

    def _from_kaldi(self, raw: np.ndarray) -> np.ndarray:
        return self.front.normalized(raw)

    def _compute(self, samples: np.ndarray) -> np.ndarray:
        front = self.front
        return np.ascontiguousarray(front.normalized(front.power_features(front.frame_power(samples))))

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.front.config.dim), dtype=np.float32)
