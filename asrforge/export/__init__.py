"""Models written for other runtimes: Whisper checkpoints for faster-whisper, transformers and openai-whisper."""
