"""Training-time augmentation: waveform perturbation (speed, noise, gain, band limits, crops, pauses,
reverberation from recorded or simulated rooms) and SpecAugment masks. Evaluation never augments."""

from asrforge.data.augment.specaugment import SpecAugment, SpecAugmentConfig
from asrforge.data.augment.waveform import AugmentConfig, WaveAugment

__all__ = ["AugmentConfig", "WaveAugment", "SpecAugment", "SpecAugmentConfig"]
