"""Acoustic features: log-mel filterbank, MFCC, per-utterance CMVN, SpecAugment."""

from asrforge.features.extractor import FeatureConfig, FeatureExtractor
from asrforge.features.specaugment import SpecAugment, SpecAugmentConfig

__all__ = ["FeatureConfig", "FeatureExtractor", "SpecAugment", "SpecAugmentConfig"]
