"""Whisper: the model, and readers/writers for OpenAI, Hugging Face and CTranslate2 checkpoints."""

from asrforge.models.whisper.checkpoints import (FORMATS_HELP, RUN_CHECKPOINT, LoadedWhisper, load_whisper_checkpoint, save_ctranslate2,
                                                 save_huggingface, save_openai, side_files_folder,
                                                 tokenizer_files)
from asrforge.models.whisper.model import DecoderCache, Whisper, WhisperDims

__all__ = ["FORMATS_HELP", "RUN_CHECKPOINT", "LoadedWhisper", "load_whisper_checkpoint", "save_ctranslate2", "save_huggingface",
           "save_openai", "side_files_folder", "tokenizer_files", "DecoderCache", "Whisper", "WhisperDims"]
