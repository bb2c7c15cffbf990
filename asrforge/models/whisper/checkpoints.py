"""Read and write Whisper checkpoints in the three layouts people have on disk.

- OpenAI: one ``.pt`` file holding ``dims`` and ``model_state_dict`` (as in ``~/.cache/whisper``).
- Hugging Face: a directory with ``config.json`` and ``model.safetensors`` or ``pytorch_model.bin``.
- CTranslate2 (faster-whisper): a directory with ``model.bin`` and ``config.json``;
  float32, float16, bfloat16 or int8 weights (int8 carries a per-row ``weight_scale``).

Every reader returns a :class:`LoadedWhisper` whose state dict uses OpenAI's names, so one
model class serves all three. Sizes are read from the checkpoint itself, never from its name.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asrforge.errors import CheckpointError
from asrforge.models.whisper.model import Whisper, WhisperDims
from asrforge.nn.int8 import quantize_rows

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "normalizer.json", "preprocessor_config.json")

FORMATS_HELP = ("supported Whisper formats: an OpenAI .pt file (dims + model_state_dict); a Hugging Face folder "
                "(config.json + model.safetensors or pytorch_model.bin); a CTranslate2/faster-whisper folder "
                "(model.bin + config.json)")


@dataclass
class LoadedWhisper:
    dims: WhisperDims
    state_dict: dict[str, torch.Tensor]
    alignment_heads: list[tuple[int, int]] | None
    folder: Path                       # where to look for tokenizer files

    def build(self) -> Whisper:
        """The model, holding this checkpoint's tensors themselves (float32) rather than copies of them: it is
        made without weights of its own (on the meta device) and the state dict's tensors are assigned to it,
        so loading needs the weights' memory once, not twice."""
        with torch.device("meta"):
            model = Whisper(self.dims, self.alignment_heads)
        missing, unexpected = model.load_state_dict(self.state_dict, strict=False, assign=True)
        missing = [k for k in missing if k != "encoder.positional_embedding"]  # fixed sinusoids; some files omit them
        if missing or unexpected:
            raise CheckpointError(f"Whisper checkpoint in {self.folder} does not match its own sizes "
                                  f"(missing {missing[:3]}, unexpected {unexpected[:3]}); the file is damaged or not Whisper")
        return model.float()


RUN_CHECKPOINT = "whisper.pt"       # what a (full) Whisper fine-tuning run's folder holds


def _folder_format(path: Path) -> str | None:
    if (path / RUN_CHECKPOINT).is_file():
        return "run"
    if (path / "adapters.json").is_file():
        return "lora"
    if (path / "model.bin").is_file():
        return "ctranslate2"
    if (path / "config.json").is_file() and any((path / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")):
        return "huggingface"
    return None


def is_whisper_folder(path: Path) -> bool:
    """A Hugging Face or CTranslate2 folder, or a Whisper fine-tuning run's (read by its file names, not its
    contents)."""
    return _folder_format(path) is not None


def detect_format(path: Path) -> str:
    fmt = "openai" if path.is_file() else _folder_format(path)
    if fmt is None:
        raise CheckpointError(f"{path} is not a Whisper checkpoint I can read; {FORMATS_HELP}")
    return fmt


def tokenizer_files(folder: Path, tokenizer, out: Path) -> list[Path]:
    """The tokenizer files in ``folder`` that a saved checkpoint carries beside it; a tokenizer read from a
    ``.tiktoken`` file (a :class:`~asrforge.text.whisper.WhisperTokenizer`) is written to ``out`` as
    ``tokenizer.json``, which every runtime reads."""
    files = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    if not any(f.name == "tokenizer.json" for f in files):
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.tk.save(str(out / "tokenizer.json"))
        files.append(out / "tokenizer.json")
    return files


def side_files_folder(path: str | Path) -> Path:
    """Where a checkpoint's side files (``tokenizer.json``, ...) are: the checkpoint's folder, or a ``.pt`` file's."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def load_whisper_checkpoint(path: str | Path, contents: dict | None = None) -> LoadedWhisper:
    """``contents``: what an OpenAI ``.pt`` file holds, when the caller has read it already (``asrforge.load_model``
    opens a file once to tell what it is), so it is not read a second time."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Whisper model {path} does not exist; give a local path (nothing is downloaded)")
    fmt = detect_format(path)
    try:
        if fmt == "openai":
            return _read_openai(path, contents)
        if fmt == "run":
            return _read_openai(path / RUN_CHECKPOINT)
        return {"huggingface": _read_huggingface, "ctranslate2": _read_ctranslate2, "lora": _read_lora}[fmt](path)
    except CheckpointError:
        raise
    except Exception as e:  # truncated files, wrong pickles, bad JSON: one message, not a traceback
        raise CheckpointError(f"cannot read {path} as a {fmt} Whisper checkpoint ({type(e).__name__}: {str(e)[:200]}); "
                              f"it may be corrupt or truncated. {FORMATS_HELP}") from None


def _read_lora(path: Path) -> LoadedWhisper:
    """A LoRA run's folder: its base checkpoint with the adapters merged into the weights."""
    from asrforge.models.whisper.lora import merge_adapters, read_adapters

    config, tensors = read_adapters(path)
    base = load_whisper_checkpoint(config["base"])
    model = merge_adapters(base.build(), tensors, config["rank"], config["alpha"])
    return LoadedWhisper(base.dims, model.state_dict(), model.alignment_heads, path)


# ---------------------------------------------------------------- OpenAI

def _read_openai(path: Path, contents: dict | None = None) -> LoadedWhisper:
    ckpt = contents if contents is not None else torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise CheckpointError(f"{path} is a torch file but not an OpenAI Whisper checkpoint (no dims/model_state_dict); {FORMATS_HELP}")
    heads = ckpt.get("alignment_heads")
    if isinstance(heads, torch.Tensor):  # OpenAI stores a dense (layers, heads) boolean mask
        heads = [tuple(p) for p in heads.nonzero().tolist()]
    return LoadedWhisper(WhisperDims(**ckpt["dims"]), ckpt["model_state_dict"], heads, side_files_folder(path))


def save_openai(model: Whisper, path: str | Path, tokenizer_files: list[Path] = ()) -> None:
    """Write ``model`` as an OpenAI ``.pt`` that ``whisper.load_model(path)`` reads, the tokenizer files beside it
    (where asrforge looks for them)."""
    mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
    for layer, head in model.alignment_heads:
        mask[layer, head] = True
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": model.dims.to_dict(), "model_state_dict": state, "alignment_heads": mask}, path)
    copy_into(tokenizer_files, Path(path).parent)


def copy_into(files, folder: Path) -> None:
    """Copy ``files`` into ``folder`` (a file already there stays as it is)."""
    for f in map(Path, files):
        if f.parent.resolve() != folder.resolve():
            (folder / f.name).write_bytes(f.read_bytes())


# ---------------------------------------------------------------- Hugging Face

# OpenAI name fragment <- Hugging Face name fragment, applied in order on each key
_HF_RENAMES = [
    ("model.encoder.embed_positions.weight", "encoder.positional_embedding"),
    ("model.decoder.embed_positions.weight", "decoder.positional_embedding"),
    ("model.decoder.embed_tokens", "decoder.token_embedding"),
    ("model.encoder.layer_norm", "encoder.ln_post"),
    ("model.decoder.layer_norm", "decoder.ln"),
    ("model.", ""),
    (".layers.", ".blocks."),
    (".self_attn_layer_norm", ".attn_ln"),
    (".encoder_attn_layer_norm", ".cross_attn_ln"),
    (".final_layer_norm", ".mlp_ln"),
    (".self_attn.", ".attn."),
    (".encoder_attn.", ".cross_attn."),
    (".q_proj", ".query"), (".k_proj", ".key"), (".v_proj", ".value"), (".out_proj", ".out"),
    (".fc1", ".mlp.0"), (".fc2", ".mlp.2"),
]


def _hf_to_openai_name(name: str) -> str:
    for old, new in _HF_RENAMES:
        name = name.replace(old, new)
    return name


def _openai_to_hf_name(name: str) -> str:
    for old, new in reversed(_HF_RENAMES):
        if new:
            name = name.replace(new, old)
    return name if name.startswith("model.") else "model." + name


def _read_huggingface(path: Path) -> LoadedWhisper:
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") not in (None, "whisper"):
        raise CheckpointError(f"{path} holds a {config.get('model_type')!r} model, not Whisper; {FORMATS_HELP}")
    dims = WhisperDims(
        n_mels=config["num_mel_bins"], n_audio_ctx=config["max_source_positions"], n_audio_state=config["d_model"],
        n_audio_head=config["encoder_attention_heads"], n_audio_layer=config["encoder_layers"],
        n_vocab=config["vocab_size"], n_text_ctx=config["max_target_positions"], n_text_state=config["d_model"],
        n_text_head=config["decoder_attention_heads"], n_text_layer=config["decoder_layers"])
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file
        raw = load_file(str(path / "model.safetensors"))
    else:
        raw = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    state = {_hf_to_openai_name(k): v for k, v in raw.items() if k != "proj_out.weight"}  # proj_out is tied
    heads = None
    gen = path / "generation_config.json"
    if gen.is_file():
        heads = json.loads(gen.read_text()).get("alignment_heads")
    return LoadedWhisper(dims, state, [tuple(h) for h in heads] if heads else None, side_files_folder(path))


def save_huggingface(model: Whisper, folder: str | Path, tokenizer_files: list[Path] = (), tokenizer=None) -> None:
    """Write a folder that ``WhisperForConditionalGeneration.from_pretrained(folder)`` loads; given the
    :class:`~asrforge.text.whisper.WhisperTokenizer`, its ``generation_config.json`` also holds what
    ``model.generate`` needs (start, end and task tokens, suppressed tokens, the languages)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d = model.dims
    state = {_openai_to_hf_name(k): v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper",
        "num_mel_bins": d.n_mels, "max_source_positions": d.n_audio_ctx, "d_model": d.n_audio_state,
        "encoder_attention_heads": d.n_audio_head, "encoder_layers": d.n_audio_layer,
        "encoder_ffn_dim": 4 * d.n_audio_state, "decoder_ffn_dim": 4 * d.n_text_state,
        "vocab_size": d.n_vocab, "max_target_positions": d.n_text_ctx, "decoder_attention_heads": d.n_text_head,
        "decoder_layers": d.n_text_layer, "activation_function": "gelu", "scale_embedding": False,
        "tie_word_embeddings": True, "torch_dtype": "float32",
    }
    config.update(_special_ids(tokenizer_files))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    generation = {"alignment_heads": [list(h) for h in model.alignment_heads], **_special_ids(tokenizer_files)}
    if tokenizer is not None:
        generation.update(_generation(model, tokenizer))
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
    copy_into(tokenizer_files, folder)


def _generation(model: Whisper, tok) -> dict:
    """transformers' Whisper generation settings, from the tokenizer (as the Hub's Whisper folders hold them)."""
    out = {"decoder_start_token_id": tok.sot, "bos_token_id": tok.sot, "eos_token_id": tok.eot, "pad_token_id": tok.eot,
           "no_timestamps_token_id": tok.no_timestamps, "prev_sot_token_id": tok.sot_prev,
           "max_length": model.dims.n_text_ctx, "max_initial_timestamp_index": 50, "return_timestamps": False,
           "begin_suppress_tokens": tok.blank_tokens, "suppress_tokens": tok.suppressed_tokens,
           "is_multilingual": model.is_multilingual}
    if model.is_multilingual:
        out["lang_to_id"] = {f"<|{code}|>": token for code, token in zip(tok.language_codes, tok.language_tokens)}
        out["task_to_id"] = {"transcribe": tok.transcribe, "translate": tok.translate}
    return out


def _special_ids(tokenizer_files) -> dict:
    """pad/bos/eos/decoder-start ids for a Hugging Face config, read from a tokenizer.json if one is given."""
    files = [Path(f) for f in tokenizer_files if Path(f).name == "tokenizer.json"]
    if not files:
        return {}
    from tokenizers import Tokenizer

    tk = Tokenizer.from_file(str(files[0]))
    eot, sot = tk.token_to_id("<|endoftext|>"), tk.token_to_id("<|startoftranscript|>")
    return {"pad_token_id": eot, "bos_token_id": eot, "eos_token_id": eot, "decoder_start_token_id": sot}


# ---------------------------------------------------------------- CTranslate2

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


def read_ct2_variables(file: Path) -> tuple[str, dict[str, np.ndarray]]:
    """Parse a CTranslate2 ``model.bin`` (binary version 5 or 6) -> (spec name, {name: array}).

    Each variable is read into its own array, so the file's bytes are never held a second time."""
    with open(file, "rb") as fh:
        def take(fmt: str):
            size = struct.calcsize(fmt)
            raw = fh.read(size)
            if len(raw) < size:
                raise ValueError(f"{file} ends early: it is truncated")
            return struct.unpack(fmt, raw)

        def string() -> str:
            (n,) = take("<H")
            return fh.read(n)[:-1].decode("utf-8")   # length counts the trailing NUL

        (version,) = take("<I")
        if version not in (5, 6):
            raise CheckpointError(f"{file} has CTranslate2 binary version {version}; versions 5 and 6 are supported")
        spec = string()
        take("<I")  # spec revision
        (count,) = take("<I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = string()
            (rank,) = take("<B")
            shape = take(f"<{rank}I")
            (type_id,) = take("<B")
            (nbytes,) = take("<I")
            dtype = np.dtype(np.uint16 if type_id == 5 else _CT2_DTYPES[type_id])
            raw = np.fromfile(fh, dtype=dtype, count=nbytes // dtype.itemsize)
            if raw.nbytes != nbytes:
                raise ValueError(f"{file} ends early inside {name!r}: it is truncated")
            if type_id == 5:  # bfloat16: the top half of a float32
                raw = (raw.astype(np.uint32) << 16).view(np.float32)
            variables[name] = raw.reshape(shape)
        (aliases,) = take("<I")
        for _ in range(aliases):
            alias, target = string(), string()
            variables[alias] = variables[target]
    return spec, variables


def _ct2_float(variables: dict[str, np.ndarray], name: str) -> torch.Tensor:
    """A weight as float32, taken out of ``variables`` so its stored copy is freed as soon as it is converted;
    int8 weights are divided by their per-row ``<name>_scale``."""
    value = variables.pop(name)
    scale = variables.pop(name + "_scale", None)
    if value.dtype == np.int8 and scale is not None:
        value = value.astype(np.float32) / scale.astype(np.float32).reshape(-1, *([1] * (value.ndim - 1)))
    return torch.from_numpy(value).float()    # torch converts float16 several times faster than numpy


def _read_ctranslate2(path: Path) -> LoadedWhisper:
    spec, v = read_ct2_variables(path / "model.bin")
    if spec != "WhisperSpec":
        raise CheckpointError(f"{path}/model.bin is a CTranslate2 {spec}, not a Whisper model; {FORMATS_HELP}")
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    f = lambda n: _ct2_float(v, n)  # noqa: E731
    n_enc = 1 + max(int(k.split("/")[1][6:]) for k in v if k.startswith("encoder/layer_") and k.split("/")[1][6:].isdigit())
    n_dec = 1 + max(int(k.split("/")[1][6:]) for k in v if k.startswith("decoder/layer_") and k.split("/")[1][6:].isdigit())
    conv1 = f("encoder/conv1/weight")
    d = conv1.shape[0]
    dims = WhisperDims(
        n_mels=conv1.shape[1], n_audio_ctx=v["encoder/position_encodings/encodings"].shape[0], n_audio_state=d,
        n_audio_head=int(v["encoder/num_heads"]), n_audio_layer=n_enc,
        n_vocab=v["decoder/embeddings/weight"].shape[0], n_text_ctx=v["decoder/position_encodings/encodings"].shape[0],
        n_text_state=d, n_text_head=int(v["decoder/num_heads"]), n_text_layer=n_dec)
    s = {"encoder.conv1.weight": conv1, "encoder.conv1.bias": f("encoder/conv1/bias"),
         "encoder.conv2.weight": f("encoder/conv2/weight"), "encoder.conv2.bias": f("encoder/conv2/bias"),
         "encoder.positional_embedding": f("encoder/position_encodings/encodings"),
         "encoder.ln_post.weight": f("encoder/layer_norm/gamma"), "encoder.ln_post.bias": f("encoder/layer_norm/beta"),
         "decoder.token_embedding.weight": f("decoder/embeddings/weight"),
         "decoder.positional_embedding": f("decoder/position_encodings/encodings"),
         "decoder.ln.weight": f("decoder/layer_norm/gamma"), "decoder.ln.bias": f("decoder/layer_norm/beta")}

    def norm(src: str, dst: str):
        s[dst + ".weight"], s[dst + ".bias"] = f(src + "/gamma"), f(src + "/beta")

    def linear(src: str, dst: str, bias: bool = True):
        s[dst + ".weight"] = f(src + "/weight")
        if bias:
            s[dst + ".bias"] = f(src + "/bias")

    def fused(src: str, dsts: list[str]):
        """CTranslate2 concatenates q/k/v (or k/v) rows; Whisper's key has no bias (stored as zeros)."""
        for dst, w, b in zip(dsts, f(src + "/weight").chunk(len(dsts)), f(src + "/bias").chunk(len(dsts))):
            s[dst + ".weight"] = w
            if not dst.endswith(".key"):
                s[dst + ".bias"] = b

    for side, count in (("encoder", n_enc), ("decoder", n_dec)):
        for i in range(count):
            src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
            fused(f"{src}/self_attention/linear_0", [f"{dst}.attn.{n}" for n in ("query", "key", "value")])
            linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
            if side == "decoder":
                norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
                linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
                fused(f"{src}/attention/linear_1", [f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"])
                linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
            norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
            linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
            linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    return LoadedWhisper(dims, s, [tuple(h) for h in config.get("alignment_heads", [])] or None, side_files_folder(path))


def save_ctranslate2(model: Whisper, folder: str | Path, quantization: str = "float32", config: dict | None = None,
                     tokenizer_files: list[Path] = ()) -> None:
    """Write ``model`` as a CTranslate2 WhisperSpec folder (float32, float16 or int8 weights)."""
    if quantization not in ("float32", "float16", "int8"):
        raise ValueError(f"quantization {quantization!r}: use float32, float16 or int8")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: t.detach().cpu().float() for k, t in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}

    def norm(src: str, dst: str):
        out[dst + "/gamma"], out[dst + "/beta"] = sd[src + ".weight"], sd[src + ".bias"]

    def linear(dst: str, srcs: list[str]):
        out[dst + "/weight"] = torch.cat([sd[s + ".weight"] for s in srcs])
        out[dst + "/bias"] = torch.cat([sd.get(s + ".bias", torch.zeros(sd[s + ".weight"].shape[0])) for s in srcs])

    d = model.dims
    for side, count in (("encoder", d.n_audio_layer), ("decoder", d.n_text_layer)):
        for i in range(count):
            src, dst = f"{side}.blocks.{i}", f"{side}/layer_{i}"
            norm(f"{src}.attn_ln", f"{dst}/self_attention/layer_norm")
            linear(f"{dst}/self_attention/linear_0", [f"{src}.attn.{n}" for n in ("query", "key", "value")])
            linear(f"{dst}/self_attention/linear_1", [f"{src}.attn.out"])
            if side == "decoder":
                norm(f"{src}.cross_attn_ln", f"{dst}/attention/layer_norm")
                linear(f"{dst}/attention/linear_0", [f"{src}.cross_attn.query"])
                linear(f"{dst}/attention/linear_1", [f"{src}.cross_attn.key", f"{src}.cross_attn.value"])
                linear(f"{dst}/attention/linear_2", [f"{src}.cross_attn.out"])
            norm(f"{src}.mlp_ln", f"{dst}/ffn/layer_norm")
            linear(f"{dst}/ffn/linear_0", [f"{src}.mlp.0"])
            linear(f"{dst}/ffn/linear_1", [f"{src}.mlp.2"])
    out.update({"encoder/conv1/weight": sd["encoder.conv1.weight"], "encoder/conv1/bias": sd["encoder.conv1.bias"],
                "encoder/conv2/weight": sd["encoder.conv2.weight"], "encoder/conv2/bias": sd["encoder.conv2.bias"],
                "encoder/position_encodings/encodings": sd["encoder.positional_embedding"],
                "decoder/embeddings/weight": sd["decoder.token_embedding.weight"],
                "decoder/position_encodings/encodings": sd["decoder.positional_embedding"]})
    norm("encoder.ln_post", "encoder/layer_norm")
    norm("decoder.ln", "decoder/layer_norm")

    arrays: dict[str, np.ndarray] = {}
    for name, t in out.items():
        a = t.numpy()
        quantizable = name.endswith("/weight") and a.ndim == 2 and "conv" not in name
        if quantization == "int8" and quantizable:
            weight, scale = quantize_rows(t)
            arrays[name] = weight.numpy()
            arrays[name + "_scale"] = (1.0 / scale).numpy()     # CTranslate2 stores int8 = weight * scale
        elif quantization == "float16" and a.dtype == np.float32:
            arrays[name] = a.astype(np.float16)
        else:
            arrays[name] = a.astype(np.float32)
    # scalar attributes the CTranslate2 runtime reads for a WhisperSpec
    scalars = {"encoder/num_heads": np.array(d.n_audio_head, np.int16), "decoder/num_heads": np.array(d.n_text_head, np.int16),
               "decoder/activation": np.array(1, np.int8), "decoder/alibi": np.array(0, np.int8),
               "decoder/pre_norm": np.array(1, np.int8), "decoder/scale_embeddings": np.array(0, np.int8),
               "decoder/start_from_zero_embedding": np.array(0, np.int8),
               "decoder/alignment_heads": np.array(len(model.alignment_heads), np.int16),
               "decoder/alignment_layer": np.array(-1, np.int16)}
    arrays.update(scalars)
    type_ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3, np.dtype(np.float16): 4}
    with open(folder / "model.bin", "wb") as fh:
        def string(s: str):
            b = s.encode("utf-8")
            fh.write(struct.pack("<H", len(b) + 1) + b + b"\0")

        fh.write(struct.pack("<I", 6))
        string("WhisperSpec")
        fh.write(struct.pack("<I", 3))
        fh.write(struct.pack("<I", len(arrays)))
        for name in sorted(arrays):
            a = np.array(arrays[name], order="C")   # (ascontiguousarray would make scalars 1-d)
            string(name)
            fh.write(struct.pack("<B", a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape))
            fh.write(struct.pack("<B", type_ids[a.dtype]) + struct.pack("<I", a.nbytes) + a.tobytes())
        fh.write(struct.pack("<I", 1))
        string("decoder/projection/weight")
        string("decoder/embeddings/weight")
    cfg = dict(config or {})
    cfg["alignment_heads"] = [list(h) for h in model.alignment_heads]
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    copy_into(tokenizer_files, folder)
