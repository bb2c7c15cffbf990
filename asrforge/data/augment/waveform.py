"""Waveform augmentation for training: pauses at the ends, speed perturbation, reverberation, band limiting,
additive noise at a random SNR, gain.

Noise comes from recordings (a noise manifest) or is generated with a power-law spectrum ("white", "pink",
"brown"): recordings differ in their microphone's noise floor, and a model trained only on clean audio
mistakes a noisier voice's quiet consonants for something else.

Randomness comes from a ``torch.Generator`` seeded per (seed, epoch, utterance), like SpecAugment,
so augmented epochs are reproducible and ``--resume`` stays exact. Never applied at evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from asrforge_runtime.audio import SAMPLE_RATE, resample
from asrforge.data.augment.recordings import RecordingPool
from asrforge.data.augment.reverb import reverberate, simulated_rir
from asrforge.errors import ConfigError


@dataclass
class AugmentConfig:
    speed_factors: list[float] = field(default_factory=list)   # e.g. [0.9, 1.0, 1.1]; empty = off
    noise_manifest: str | None = None      # JSONL manifest of noise recordings (text is ignored)
    noise_colors: list[str] = field(default_factory=list)       # generated noise: any of "white", "pink", "brown"
    noise_prob: float = 0.5
    snr_db: list[float] = field(default_factory=lambda: [5.0, 20.0])
    gain_db: list[float] = field(default_factory=list)          # e.g. [-6, 6]; empty = off
    # Reverberation: with probability reverb_prob, the speech is convolved with a room impulse response, drawn
    # from rir_manifest (a JSONL manifest of recorded RIRs) if given, else simulated with a reverberation time
    # drawn from rt60_s (seconds) and a direct-to-reverberant energy ratio from drr_db.
    reverb_prob: float = 0.0
    rir_manifest: str | None = None
    rt60_s: list[float] = field(default_factory=lambda: [0.2, 0.8])
    drr_db: list[float] = field(default_factory=lambda: [0.0, 15.0])
    # Vocal tract length perturbation: the mel filters are warped by a factor drawn from this range, e.g.
    # [0.9, 1.1] (formants move, pitch and timing do not); empty = off. Log-mel and MFCC front ends only.
    vtlp: list[float] = field(default_factory=list)
    # Edge re-cutting imitates recordings trimmed tight, or into the word (a clipped onset or final consonant):
    # with probability crop_prob, each end is cut again at a point drawn from crop_ms, measured from where the
    # speech starts or ends (the first/last 10 ms frame within 30 dB of the loudest): negative keeps that much
    # silence beyond it, positive cuts that far into the speech.
    crop_prob: float = 0.0
    crop_ms: list[float] = field(default_factory=lambda: [-50.0, 40.0])
    # Band limiting imitates microphones and codecs that pass less of the spectrum than the training audio:
    # with probability bandlimit_prob, a low-pass at a cutoff drawn from lowpass_hz and a high-pass at one
    # drawn from highpass_hz (either range may be empty to skip that side).
    bandlimit_prob: float = 0.0
    lowpass_hz: list[float] = field(default_factory=lambda: [1500.0, 4000.0])
    highpass_hz: list[float] = field(default_factory=lambda: [0.0, 400.0])
    # Pauses imitate recordings that start and end in silence, as a user's files and a voice activity detector's
    # segments do, for corpora trimmed to the speech (synthetic speech, FSDD): with probability pad_prob, each
    # end gets a pause drawn from pad_s seconds of room tone (pink noise) at a level drawn from pad_floor_db
    # relative to the speech's RMS. A model that never heard silence reads it as words.
    pad_prob: float = 0.0
    pad_s: list[float] = field(default_factory=lambda: [0.0, 1.0])
    pad_floor_db: list[float] = field(default_factory=lambda: [-60.0, -30.0])

    def active(self) -> dict[str, bool]:
        """Which augmentations this config turns on."""
        return {"speed": bool(self.speed_factors), "noise": bool(self.noise_manifest or self.noise_colors),
                "gain": bool(self.gain_db), "bandlimit": self.bandlimit_prob > 0, "vtlp": bool(self.vtlp),
                "crop": self.crop_prob > 0, "reverb": self.reverb_prob > 0, "pauses": self.pad_prob > 0}

    @property
    def enabled(self) -> bool:
        return any(self.active().values())

    @property
    def pauses_only(self) -> bool:
        """Pauses are the only augmentation: features can then be computed once, with the longest pauses, and cut
        to each epoch's pauses (what keeps ``data.cache_features`` worth having)."""
        others = self.active()
        return others.pop("pauses") and not any(others.values())


# power spectral density falls as 1/f**exponent
NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def colored_noise(n: int, color: str, gen: torch.Generator) -> np.ndarray:
    """``n`` samples of Gaussian noise whose power spectrum falls as 1/f**k ("white" 0, "pink" 1, "brown" 2)."""
    white = torch.randn(n, generator=gen).numpy()
    exponent = NOISE_EXPONENTS[color]
    if exponent == 0.0 or n < 2:
        return white.astype(np.float32)
    freqs = np.fft.rfftfreq(n)
    # amplitude falls as f**(-k/2); hold the DC bin at the first bin's level rather than dividing by zero
    shape = np.maximum(freqs, freqs[1]) ** (-exponent / 2)
    noise = np.fft.irfft(np.fft.rfft(white) * shape, n=n)
    return (noise / (noise.std() + 1e-12)).astype(np.float32)


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch moves with it, as in Kaldi's speed perturbation)."""
    if factor == 1.0:
        return wave
    # read the samples as if recorded at factor * rate, then resample back to the rate
    return resample(wave, int(round(SAMPLE_RATE * factor)), SAMPLE_RATE)


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``wave + noise`` (both ``(N,)``), the noise scaled to ``snr_db`` below the wave."""
    p_speech, p_noise = float(np.mean(wave**2)) + 1e-10, float(np.mean(noise**2)) + 1e-10
    return wave + noise * math.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))


def band_limit(wave: np.ndarray, low_hz: float | None, high_hz: float | None, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth-shaped band pass: keep ``low_hz``..``high_hz`` (None: no edge on that side).

    Applied as a magnitude response on the spectrum, so it adds no delay and needs no filter state;
    ``order`` sets the roll-off (6 dB/octave per order).
    """
    if wave.size == 0 or (not low_hz and not high_hz):
        return wave
    freqs = np.fft.rfftfreq(wave.size, 1.0 / SAMPLE_RATE)
    gain = np.ones_like(freqs)
    if high_hz:
        gain /= np.sqrt(1.0 + (freqs / high_hz) ** (2 * order))
    if low_hz:
        with np.errstate(divide="ignore"):
            gain /= np.sqrt(1.0 + (low_hz / np.maximum(freqs, 1e-9)) ** (2 * order))
    return np.fft.irfft(np.fft.rfft(wave) * gain, n=wave.size).astype(np.float32)


def speech_span(wave: np.ndarray, floor_db: float = 30.0, frame: int = SAMPLE_RATE // 100) -> tuple[int, int]:
    """``(start, end)`` samples from the first to the end of the last ``frame`` within ``floor_db`` of the loudest."""
    n = wave.size // frame
    if n == 0:
        return 0, wave.size
    energy = 10 * np.log10(np.mean(wave[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    active = np.flatnonzero(energy > energy.max() - floor_db)
    return int(active[0]) * frame, min(wave.size, (int(active[-1]) + 1) * frame)


def recut_edges(wave: np.ndarray, start_ms: float, end_ms: float, min_ms: float = 100.0) -> np.ndarray:
    """Cut ``wave`` again ``start_ms`` after its speech starts and ``end_ms`` before it ends (negative: that much
    outside the speech); left as it is when less than ``min_ms`` would remain."""
    onset, offset = speech_span(wave)
    per_ms = SAMPLE_RATE / 1000
    start = max(0, onset + int(start_ms * per_ms))
    end = min(wave.size, offset - int(end_ms * per_ms))
    return wave[start:end] if end - start >= min_ms * per_ms else wave


def pad_with_pauses(wave: np.ndarray, before_s: float, after_s: float, floor_db: float,
                    gen: torch.Generator) -> np.ndarray:
    """``wave`` with ``before_s`` and ``after_s`` seconds of pink noise ``floor_db`` dB (relative to the wave's
    RMS) before and after it; the wave's own samples are left untouched."""
    before, after = int(before_s * SAMPLE_RATE), int(after_s * SAMPLE_RATE)
    if before + after == 0 or wave.size == 0:
        return wave
    level = math.sqrt(float(np.mean(wave.astype(np.float64) ** 2)) + 1e-12) * 10 ** (floor_db / 20)
    tone = colored_noise(before + after, "pink", gen)
    tone *= level / math.sqrt(float(np.mean(tone.astype(np.float64) ** 2)) + 1e-20)   # pink noise's DC: scale by RMS
    return np.concatenate([tone[:before], wave, tone[before:]]).astype(np.float32)


def _check_range(key: str, values: list[float], what: str, example: str, positive: bool = False) -> None:
    if len(values) != 2 or not values[0] <= values[1] or (positive and values[0] <= 0):
        raise ConfigError(f"augment.{key}: {values} is not a range [low, high] of {what}"
                          f"{' (above 0)' if positive else ''}, e.g. {example}")


class WaveAugment:
    """Callable ``(wave (N,), generator) -> augmented wave``. Noise and impulse-response files are read when
    drawn (:class:`RecordingPool`)."""

    def __init__(self, config: AugmentConfig):
        self.config = config
        self.noises = RecordingPool(config.noise_manifest, "noise_manifest", "noise") if config.noise_manifest else None
        # one microphone of a multichannel impulse response: averaging an array's channels, each with its own
        # delay, would make a comb filter no room produces
        self.rirs = (RecordingPool(config.rir_manifest, "rir_manifest", "impulse response", channel=0)
                     if config.rir_manifest else None)
        if not 0.0 <= config.reverb_prob <= 1.0:
            raise ConfigError(f"augment.reverb_prob: {config.reverb_prob} is not a probability between 0 and 1")
        if config.reverb_prob > 0 and self.rirs is None:
            _check_range("rt60_s", config.rt60_s, "reverberation times in seconds", "[0.2, 0.8]", positive=True)
            _check_range("drr_db", config.drr_db, "direct-to-reverberant energy ratios in dB", "[0, 15]")
        unknown = [c for c in config.noise_colors if c not in NOISE_EXPONENTS]
        if unknown:
            raise ConfigError(f"augment.noise_colors: unknown {unknown}; choose from {sorted(NOISE_EXPONENTS)}")
        if config.vtlp:
            _check_range("vtlp", config.vtlp, "warp factors", "[0.9, 1.1]", positive=True)
        if not 0.0 <= config.pad_prob <= 1.0:
            raise ConfigError(f"augment.pad_prob: {config.pad_prob} is not a probability between 0 and 1")
        if config.pad_prob > 0:
            _check_range("pad_s", config.pad_s, "pause lengths in seconds", "[0, 1]")
            if config.pad_s[0] < 0:
                raise ConfigError(f"augment.pad_s: {config.pad_s}: a pause cannot be shorter than 0 s")
            _check_range("pad_floor_db", config.pad_floor_db, "levels in dB relative to the speech", "[-60, -30]")
        # one pool: each recording and each colour is an equally likely source
        self.noise_count = (len(self.noises) if self.noises else 0) + len(config.noise_colors)

    def pauses(self, gen: torch.Generator) -> tuple[float, float]:
        """Seconds of pause drawn for before and after an utterance (both 0 when none is drawn)."""
        c = self.config
        if c.pad_prob > 0 and float(torch.rand((), generator=gen)) < c.pad_prob:
            return _uniform(gen, *c.pad_s), _uniform(gen, *c.pad_s)
        return 0.0, 0.0

    def with_longest_pauses(self, wave: np.ndarray, gen: torch.Generator) -> np.ndarray:
        """``wave`` with the longest pauses ``pad_s`` allows at both ends, room tone at a level drawn once."""
        longest = self.config.pad_s[1]
        return pad_with_pauses(wave, longest, longest, _uniform(gen, *self.config.pad_floor_db), gen)

    def __call__(self, wave: np.ndarray, gen: torch.Generator) -> np.ndarray:
        c = self.config
        if c.crop_prob > 0 and float(torch.rand((), generator=gen)) < c.crop_prob:
            wave = recut_edges(wave, _uniform(gen, *c.crop_ms), _uniform(gen, *c.crop_ms))
        before, after = self.pauses(gen)
        if before or after:
            # before speed, reverberation and noise, so the pauses are slowed, reverberate and get noisy too
            wave = pad_with_pauses(wave, before, after, _uniform(gen, *c.pad_floor_db), gen)
        if c.speed_factors:
            wave = speed_perturb(wave, c.speed_factors[int(torch.randint(0, len(c.speed_factors), (), generator=gen))])
        if c.reverb_prob > 0 and float(torch.rand((), generator=gen)) < c.reverb_prob:
            if self.rirs is not None:
                rir = self.rirs[int(torch.randint(0, len(self.rirs), (), generator=gen))]
            else:
                rir = simulated_rir(_uniform(gen, *c.rt60_s), _uniform(gen, *c.drr_db), gen)
            wave = reverberate(wave, rir)
        if c.bandlimit_prob > 0 and float(torch.rand((), generator=gen)) < c.bandlimit_prob:
            low = _uniform(gen, *c.highpass_hz) if c.highpass_hz else None
            high = _uniform(gen, *c.lowpass_hz) if c.lowpass_hz else None
            wave = band_limit(wave, low, high)
        if self.noise_count and float(torch.rand((), generator=gen)) < c.noise_prob:
            source = int(torch.randint(0, self.noise_count, (), generator=gen))
            recorded = len(self.noises) if self.noises else 0
            noise = (self.noises.stretch(source, wave.size, gen) if source < recorded
                     else colored_noise(wave.size, c.noise_colors[source - recorded], gen))
            wave = add_noise(wave, noise, _uniform(gen, *c.snr_db))
        if c.gain_db:
            wave = wave * 10 ** (_uniform(gen, *c.gain_db) / 20)
        return wave.astype(np.float32, copy=False)

    def warp_factor(self, gen: torch.Generator) -> float:
        """A VTLP factor for one utterance (1.0 when ``vtlp`` is off); drawn after the waveform's choices."""
        return _uniform(gen, *self.config.vtlp) if self.config.vtlp else 1.0
