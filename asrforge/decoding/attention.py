"""A PyTorch encoder-decoder as the network the attention searches run over (``asrforge_runtime.search.attention``).

Its memory is the decoder's :class:`~asrforge.models.decoders.DecoderMemory` and its state the decoder's dict of
``(N, ...)`` tensors, both on the model's device; each step's log-probabilities come back to the CPU for the search.
The searches themselves are the runtime's: the exported decoder-step graph is searched by the same code.
"""

from __future__ import annotations

import numpy as np
import torch

from asrforge.models.decoders import DecoderMemory
from asrforge.text.special import EOS_ID as EOS, SOS_ID as SOS


class TorchAttention:
    """An :class:`~asrforge_runtime.search.attention.AttentionNetwork` over a model's decoder
    (``asrforge.models.attention.EncoderDecoderModel``)."""

    def __init__(self, model):
        self.model = model
        self.device = next(model.parameters()).device

    def _index(self, rows: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(rows), dtype=torch.long, device=self.device)

    def select_memory(self, mem: DecoderMemory, rows: np.ndarray) -> DecoderMemory:
        index = self._index(rows)
        pick = lambda t: t.index_select(0, index)  # noqa: E731
        return DecoderMemory(pick(mem.memory), pick(mem.lens), pick(mem.mask), {k: pick(v) for k, v in mem.extra.items()})

    @torch.inference_mode()
    def initial_state(self, mem: DecoderMemory) -> dict:
        return self.model.decoder.initial_state(mem)

    @torch.inference_mode()
    def step(self, mem: DecoderMemory, state: dict, history: np.ndarray) -> tuple[np.ndarray, dict]:
        logits, state = self.model.decoder.step(mem, state, torch.from_numpy(history).to(self.device))
        return torch.log_softmax(logits.float(), dim=-1).cpu().numpy(), state

    def select_state(self, state: dict, rows: np.ndarray) -> dict:
        index = self._index(rows)
        return {k: v.index_select(0, index) for k, v in state.items()}

    @torch.inference_mode()
    def sequence_log_probs(self, mem: DecoderMemory, sequences: list[list[int]]) -> np.ndarray:
        """Teacher-forced: the decoder reads every sequence in one pass."""
        dev = self.device
        L = max(len(s) for s in sequences)
        tokens = torch.zeros(len(sequences), L, dtype=torch.long, device=dev)
        for i, s in enumerate(sequences):
            tokens[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        lens = torch.tensor([len(s) for s in sequences], device=dev)
        logits = self.model.decoder(mem, torch.nn.functional.pad(tokens, (1, 0), value=SOS))
        logp = torch.log_softmax(logits.float(), dim=-1)
        targets = torch.nn.functional.pad(tokens, (0, 1), value=0)
        targets[torch.arange(len(sequences), device=dev), lens] = EOS
        picked = logp.gather(2, targets[..., None])[..., 0]
        return (picked * (torch.arange(L + 1, device=dev)[None] <= lens[:, None])).sum(1).cpu().numpy()

    @torch.inference_mode()
    def memory(self, h: torch.Tensor, h_lens: torch.Tensor) -> DecoderMemory:
        return self.model.prepare(h, h_lens)

    @torch.inference_mode()
    def ctc(self, h: torch.Tensor) -> np.ndarray | None:
        """The CTC head's log-probabilities ``(B, T', V)`` on the CPU (None without a head)."""
        ctc = self.model.ctc_log_probs(h)
        return None if ctc is None else ctc.float().cpu().numpy()

