"""A Whisper checkpoint written for another runtime: ``asrforge export SOURCE --format FORMAT --out DIR``.

SOURCE is any Whisper checkpoint asrforge reads (an OpenAI ``.pt``, a Hugging Face folder, a CTranslate2 folder)
or a Whisper fine-tuning run's folder (its ``whisper.pt``). The formats:

- ``ctranslate2``: ``model.bin`` + ``config.json`` (with the language ids and suppressed tokens faster-whisper
  reads) + ``vocabulary.txt`` (CTranslate2's own list of tokens) + the tokenizer files: ``faster_whisper.WhisperModel(DIR)``. Weights float32, float16 or int8.
- ``huggingface``: ``model.safetensors`` + ``config.json`` + ``generation_config.json`` + the tokenizer files:
  ``WhisperForConditionalGeneration.from_pretrained(DIR)``. float32 or float16.
- ``openai``: ``DIR/whisper.pt`` (``dims`` + ``model_state_dict``), the tokenizer files beside it:
  ``whisper.load_model("DIR/whisper.pt")``. float32 or float16 (OpenAI's own files are float16).

Every folder also loads in asrforge (``asrforge transcribe --model DIR``), which is how the tests check it.
"""

from __future__ import annotations

from pathlib import Path

from asrforge.checkpoint import open_checkpoint
from asrforge.errors import CheckpointError, ConfigError
from asrforge.models.whisper import (RUN_CHECKPOINT, Whisper, load_whisper_checkpoint, save_ctranslate2, save_huggingface, save_openai,
                                     side_files_folder, tokenizer_files)
from asrforge.text.whisper import WhisperTokenizer

FORMATS = ("ctranslate2", "huggingface", "openai")
QUANTIZATIONS = {"ctranslate2": ("float32", "float16", "int8"), "huggingface": ("float32", "float16"),
                 "openai": ("float32", "float16")}


def whisper_source(path: str | Path) -> Path:
    """The checkpoint ``path`` names (a fine-tuning run's folder is one: its ``whisper.pt``, or its LoRA adapters
    merged into their base); an asrforge model is refused by name (these formats hold Whisper models)."""
    path = Path(path)
    if open_checkpoint(path).kind != "whisper":
        raise ConfigError(f"{path} is an asrforge model; --format {', '.join(FORMATS)} write Whisper checkpoints, so "
                          "give a Whisper checkpoint or a Whisper fine-tuning run's folder")
    return path


def ctranslate2_config(tokenizer: WhisperTokenizer) -> dict:
    """What CTranslate2's converter writes into config.json and faster-whisper reads back."""
    return {"lang_ids": tokenizer.language_tokens,     # written for English-only models too, as the converter does
            "suppress_ids": tokenizer.suppressed_tokens, "suppress_ids_begin": tokenizer.blank_tokens}


def write_vocabulary(tokenizer: WhisperTokenizer, n_vocab: int, path: Path) -> None:
    """CTranslate2's ``vocabulary.txt``: every token of the model's vocabulary, one per line, in id order; the
    timestamp tokens, which tokenizer.json leaves out, named as the converter names them (``<|0.02|>``)."""
    first = tokenizer.timestamp_begin
    names = [tokenizer.tk.id_to_token(i) if i < first else f"<|{(i - first) * 0.02:.2f}|>" for i in range(n_vocab)]
    missing = [i for i, name in enumerate(names) if name is None]
    if missing:
        raise CheckpointError(f"the tokenizer has no token for id {missing[0]} (of {len(missing)}) of the model's "
                              f"{n_vocab}; give the checkpoint's own tokenizer with --tokenizer")
    path.write_text("\n".join(names) + "\n", encoding="utf-8")


def save_whisper(model: Whisper, tokenizer: WhisperTokenizer, tokenizer_folder: Path, fmt: str, out: str | Path,
                 quantization: str = "float32") -> list[Path]:
    """Write ``model`` (and its tokenizer) as ``fmt`` into the folder ``out``; returns the model's file(s)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if quantization not in QUANTIZATIONS[fmt]:
        raise ConfigError(f"--quantization {quantization} is not offered for {fmt}; it takes "
                          f"{', '.join(QUANTIZATIONS[fmt])}" + (" (int8 is CTranslate2's)" if quantization == "int8" else ""))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = tokenizer_files(tokenizer_folder, tokenizer, out)
    if fmt == "ctranslate2":
        save_ctranslate2(model, out, quantization, ctranslate2_config(tokenizer), files)
        write_vocabulary(tokenizer, model.dims.n_vocab, out / "vocabulary.txt")
        return [out / "model.bin"]
    weights = model.half() if quantization == "float16" else model
    if fmt == "huggingface":
        save_huggingface(weights, out, files, tokenizer)
        return [out / "model.safetensors"]
    save_openai(weights, out / RUN_CHECKPOINT, files)
    return [out / RUN_CHECKPOINT]


def export_whisper(source: str | Path, fmt: str, out: str | Path, quantization: str = "float32",
                   tokenizer: str | Path | None = None) -> list[Path]:
    """Read ``source`` (see the module's docstring) and write it as ``fmt`` into ``out``, which must be empty or
    new (an export never mixes with older files)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} already exists and is not an empty folder; give a new folder")
    path = whisper_source(source)
    loaded = load_whisper_checkpoint(path)
    model = loaded.build()
    folder = Path(tokenizer) if tokenizer else side_files_folder(path)
    try:
        words = WhisperTokenizer.from_folder(folder, model.is_multilingual, model.dims.n_vocab)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; give the folder holding the tokenizer with --tokenizer") from None
    return save_whisper(model, words, folder, fmt, out, quantization)
