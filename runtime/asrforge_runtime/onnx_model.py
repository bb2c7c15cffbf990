"""An exported folder's graphs in onnxruntime: what ``asrforge export --format onnx`` wrote, ready to decode.

:func:`open_folder` reads ``asrforge_onnx.json`` and ``tokens.txt`` and opens the graphs. A CTC model gives
log-probabilities; a transducer is the :class:`~asrforge_runtime.search.transducer.TransducerNetwork` the shared
searches run over (its tables: the decoder's output ``(R, J)`` and its state, numpy arrays with a row per
hypothesis); an encoder-decoder (las, transformer, joint) the :class:`~asrforge_runtime.search.attention.
AttentionNetwork` (its memory and states: dicts of numpy arrays with a row per utterance or hypothesis).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asrforge_runtime.errors import CheckpointError
from asrforge_runtime.search.attention import stepwise_sequence_log_probs

CONFIG_FILE = "asrforge_onnx.json"
TOKENS_FILE = "tokens.txt"
FORMAT = "asrforge-onnx"
FORMAT_VERSION = 1
SPACE = "\u2581"        # how tokens.txt writes a space


def is_exported_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder ``asrforge export --format onnx`` wrote."""
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).is_file()


def read_tokens(path: Path) -> list[str]:
    """``tokens.txt`` (``piece id`` per line, ids in order) -> each token's text, ``▁`` read as a space."""
    pieces = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        piece, _, index = line.rstrip("\n").rpartition(" ")
        if not piece or not index.isdigit() or int(index) != len(pieces):
            raise CheckpointError(f"{path} line {n} is not `piece {len(pieces)}`; export the model again")
        pieces.append(piece.replace(SPACE, " "))
    return pieces


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Along the last axis, float32."""
    x = np.asarray(x, dtype=np.float32)
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3          # onnxruntime's warnings are about its own graph rewrites
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise CheckpointError(f"{path} cannot be loaded by onnxruntime ({str(e).splitlines()[0][:200]}); "
                              "export the model again") from None


@dataclass
class ExportedFolder:
    path: Path
    info: dict              # asrforge_onnx.json
    pieces: list[str]       # each token's text; the blank's is ""
    network: "OnnxCTC | OnnxTransducer | OnnxAttention"
    sessions: dict          # graph name -> onnxruntime session


def open_folder(path: str | Path, threads: int | None = None) -> ExportedFolder:
    """Read an exported folder, or raise :class:`CheckpointError` naming what is missing or wrong."""
    path = Path(path)
    config = path / CONFIG_FILE
    if not config.is_file():
        raise CheckpointError(f"{path} holds no {CONFIG_FILE}: it is not a folder `asrforge export --format onnx` "
                              "wrote (export one with `asrforge export EXP --format onnx --out DIR`)")
    try:
        info = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{config} cannot be read ({e}); export the model again") from None
    if info.get("format") != FORMAT or info.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{config} describes format {info.get('format')!r} version {info.get('version')}; this "
                              f"runtime reads {FORMAT} up to version {FORMAT_VERSION}: upgrade asrforge-runtime")
    if info.get("layout") == "sherpa-onnx-online":
        raise CheckpointError(f"{path} is a streaming model in the layout sherpa-onnx's OnlineRecognizer loads; "
                              "asrforge-runtime streams the same model exported with --format onnx")
    tokens = path / TOKENS_FILE
    if not tokens.is_file():
        raise CheckpointError(f"{path} holds no {TOKENS_FILE}; export the model again")
    pieces = read_tokens(tokens)
    if len(pieces) != info["vocab_size"]:
        raise CheckpointError(f"{tokens} holds {len(pieces)} tokens but {config} says {info['vocab_size']}; "
                              "export the model again")
    pieces[info["blank_id"]] = ""
    graphs = {}
    for name, file in info["graphs"].items():
        if not (path / file).is_file():
            raise CheckpointError(f"{path} lacks the graph {file} that {CONFIG_FILE} lists; export the model again")
        graphs[name] = _session(path / file, threads)
    kinds = {"ctc": OnnxCTC, "transducer": OnnxTransducer, "attention": OnnxAttention}
    if info["objective"] not in kinds:
        raise CheckpointError(f"{config}: objective {info['objective']!r} is not one this runtime decodes "
                              f"({', '.join(kinds)})")
    return ExportedFolder(path, info, pieces, kinds[info["objective"]](graphs, info), graphs)


def _run_encoder(session, feats: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out, out_lens = session.run(None, {"x": np.ascontiguousarray(feats, dtype=np.float32),
                                       "x_lens": np.asarray(lens, dtype=np.int64)})
    return out, out_lens


class OnnxCTC:
    """``model.onnx``: features ``(B, T, D)``, lengths ``(B,)`` -> log-probabilities ``(B, T', V)``, lengths."""

    def __init__(self, graphs: dict, info: dict):
        self.model = graphs["model"]

    def encode(self, feats: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_probs, out_lens = _run_encoder(self.model, feats, lens)
        return log_probs.astype(np.float32, copy=False), out_lens


class OnnxTransducer:
    """``encoder.onnx``, ``decoder.onnx``, ``joiner.onnx`` as a transducer network. Tables: ``(decoder_out, h, c)``
    for an LSTM predictor (``h, c (R, layers, H)``), ``(decoder_out, context)`` for a stateless one (``context (R,
    context_size)``: the last tokens, the blank before the first)."""

    def __init__(self, graphs: dict, info: dict):
        self.encoder, self.decoder, self.joiner = graphs["encoder"], graphs["decoder"], graphs["joiner"]
        self.blank = info["blank_id"]
        self.stateless = info["predictor"] == "stateless"
        self.context_size = info.get("context_size", 0)
        self.state_shape = tuple(info.get("predictor_state", ()))    # (layers, hidden) of an LSTM predictor

    def encode(self, feats: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _run_encoder(self.encoder, feats, lens)

    def start(self) -> tuple:
        if self.stateless:
            return self._stateless(np.full((1, self.context_size), self.blank, dtype=np.int64))
        zeros = np.zeros((1, *self.state_shape), dtype=np.float32)
        return self._lstm(np.array([self.blank], dtype=np.int64), zeros, zeros)

    def _stateless(self, context: np.ndarray) -> tuple:
        (out,) = self.decoder.run(None, {"y": context})
        return out, context

    def _lstm(self, y: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple:
        return tuple(self.decoder.run(None, {"y": y, "h": h, "c": c}))

    def joint(self, enc: np.ndarray, owners: list[int], t: int, table: tuple, rows: list[int]) -> np.ndarray:
        (logits,) = self.joiner.run(None, {"encoder_out": np.ascontiguousarray(enc[owners, t]),
                                           "decoder_out": np.ascontiguousarray(table[0][rows])})
        return log_softmax(logits)

    def step(self, table: tuple, rows: list[int], tokens: list[int]) -> tuple:
        y = np.asarray(tokens, dtype=np.int64)
        if self.stateless:
            return self._stateless(np.concatenate([table[1][rows, 1:], y[:, None]], axis=1))
        return self._lstm(y, np.ascontiguousarray(table[1][rows]), np.ascontiguousarray(table[2][rows]))

    def select(self, table: tuple, rows: list[int]) -> tuple:
        return tuple(a[rows] for a in table)

    def concat(self, tables: list[tuple]) -> tuple:
        return tuple(np.concatenate(parts) for parts in zip(*tables))

    def pad(self, frames: list[np.ndarray]) -> np.ndarray:
        enc = np.zeros((len(frames), max(f.shape[0] for f in frames), frames[0].shape[1]), dtype=np.float32)
        for b, f in enumerate(frames):
            enc[b, : f.shape[0]] = f
        return enc


class OnnxAttention:
    """``encoder.onnx`` and ``decoder_step.onnx`` (``asrforge.export.attention``) as an attention network. Memory:
    ``memory_lens``, ``memory`` and the decoder's per-utterance precomputation by graph name, and the CTC head's
    ``ctc_log_probs`` where the model has one; state: the step's ``state_*`` inputs by name."""

    def __init__(self, graphs: dict, info: dict):
        self.encoder, self.decoder = graphs["encoder"], graphs["decoder_step"]
        described = info["decoder"]
        self.memory_names = ["memory_lens", *described["memory"]]
        self.ctc_head = bool(described["ctc_head"])
        self.states = described["state"]            # name -> shape past the batch axis, dynamic dims named

    def encode(self, feats: np.ndarray, lens: np.ndarray) -> tuple[dict, np.ndarray]:
        """Features -> the memory (a dict, ``ctc_log_probs (B, T', V)`` in it for a CTC head) and ``(B,)`` frames."""
        outs = self.encoder.run(None, {"x": np.ascontiguousarray(feats, dtype=np.float32),
                                       "x_lens": np.asarray(lens, dtype=np.int64)})
        memory = dict(zip(self.memory_names + (["ctc_log_probs"] if self.ctc_head else []), outs))
        return memory, memory["memory_lens"]

    def select_memory(self, memory: dict, rows: np.ndarray) -> dict:
        return {k: v[rows] for k, v in memory.items()}

    def initial_state(self, memory: dict) -> dict:
        N, T = memory["memory"].shape[:2]
        sizes = {"L": 0, "T_out": T}            # the tokens so far (none yet), the memory's frames
        return {name: np.zeros((N, *[sizes.get(d, d) for d in shape]), dtype=np.float32)
                for name, shape in self.states.items()}

    def step(self, memory: dict, state: dict, history: np.ndarray) -> tuple[np.ndarray, dict]:
        feeds = {"history": np.ascontiguousarray(history, dtype=np.int64),
                 **{k: np.ascontiguousarray(memory[k]) for k in self.memory_names}, **state}
        logits, *following = self.decoder.run(None, feeds)
        return log_softmax(logits), dict(zip(self.states, following))

    def select_state(self, state: dict, rows: np.ndarray) -> dict:
        return {k: np.ascontiguousarray(v[rows]) for k, v in state.items()}

    def sequence_log_probs(self, memory: dict, sequences: list[list[int]]) -> np.ndarray:
        return stepwise_sequence_log_probs(self, memory, sequences)
