"""Acoustic features: log-mel filterbank, MFCC, per-utterance and speaker CMVN, Whisper's log-mel."""

from asrforge.features.extractor import FeatureConfig, FeatureExtractor

__all__ = ["FeatureConfig", "FeatureExtractor"]
