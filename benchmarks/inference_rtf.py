"""Inference real-time factor of a trained model: greedy and prefix beam search, and pyctcdecode's beam
search (if installed) on the same network outputs as a peer; with --lm, both also with that word n-gram
fused (pyctcdecode needs the kenlm module for it).

    python benchmarks/inference_rtf.py --model EXPDIR [--manifest test.jsonl] [--beam-size 8] [--lm lm.arpa]

RTF = processing seconds / audio seconds (lower is faster). The network forward pass is measured
separately from each search, so the searches are compared on identical log-probabilities.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from asrforge.data.dataset import SpeechDataset, collate  # noqa: E402
from asrforge.data.manifest import read_manifest  # noqa: E402
from asrforge.data.sampler import DurationBatchSampler  # noqa: E402
from asrforge_runtime.search.ctc import ctc_greedy, ctc_prefix_beam_search  # noqa: E402
from asrforge_runtime.search.ngram import NGramLM  # noqa: E402
from asrforge_runtime.search.config import ctc_beam_options  # noqa: E402
from asrforge.inference.transcriber import Transcriber  # noqa: E402
from asrforge.metrics import wer  # noqa: E402


def pyctcdecode_search(transcriber: Transcriber, outputs, beam_size: int, lm: str | None = None):
    try:
        from pyctcdecode import build_ctcdecoder
        if lm:
            import kenlm  # noqa: F401
    except ImportError:
        return None
    labels = ["" if i == transcriber.tokenizer.blank_id else s for i, s in enumerate(transcriber.tokenizer.symbols)]
    decoder = (build_ctcdecoder(labels, kenlm_model_path=lm, alpha=transcriber.lm.weight, beta=transcriber.lm.word_bonus)
               if lm else build_ctcdecoder(labels))
    start = time.perf_counter()
    hyps = [decoder.decode(lp[:n].numpy(), beam_width=beam_size) for lp, n in outputs]
    return hyps, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--beam-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--lm", help="also decode with this ARPA word n-gram (weights: the recipe's lm.*)")
    args = ap.parse_args()
    tr = Transcriber.from_checkpoint(args.model, args.device, lm=False)
    if tr.model.objective != "ctc":
        sys.exit(f"{args.model} is a {tr.recipe.model.family!r} model; this benchmark compares CTC searches. "
                 "Use benchmarks/families.py for every family's WER and real-time factor.")
    utts, _ = read_manifest(args.manifest)
    ds = SpeechDataset(utts, tr.features, None, tr.normalizer)
    sampler = DurationBatchSampler(ds.durations, 200.0, shuffle=False)
    batches = [collate([ds[i] for i, _ in b]) for b in sampler]
    audio = sum(float(b.feat_lens.sum()) for b in batches) * tr.recipe.features.hop_ms / 1000
    refs = [t for b in batches for t in b.texts]

    # the network's output, by the general decoding path (greedy: its search is an argmax, next to nothing)
    start = time.perf_counter()
    outputs = []
    for b in batches:
        decoded = tr.decode(b.feats, b.feat_lens, tr.decode_config(beam_size=1))
        outputs += [(decoded.ctc_log_probs[i], int(decoded.out_lens[i])) for i in range(len(decoded.out_lens))]
    forward_s = time.perf_counter() - start

    def run(beam):
        """The searches alone, on those outputs: what the decoding path runs after the network."""
        options = ctc_beam_options(tr.decode_config(beam_size=beam))
        t = time.perf_counter()
        if beam <= 1:
            tokens = [ctc_greedy(lp[None], torch.tensor([n]))[0] for lp, n in outputs]
        else:
            tokens = [ctc_prefix_beam_search(lp, n, options, lm=tr.lm)[0].tokens for lp, n in outputs]
        return [tr.tokenizer.decode(x).strip() for x in tokens], time.perf_counter() - t

    greedy, greedy_s = run(1)
    beam, beam_s = run(args.beam_size)
    result = {"name": "inference_rtf", "model": args.model, "utts": len(refs), "audio_s": audio,
              "rtf_forward": forward_s / audio,
              "rtf_greedy": (forward_s + greedy_s) / audio, "rtf_beam": (forward_s + beam_s) / audio,
              "search_rtf_greedy": greedy_s / audio, "search_rtf_beam": beam_s / audio,
              "wer_greedy": wer(refs, greedy), "wer_beam": wer(refs, beam), "beam_size": args.beam_size}
    peer = pyctcdecode_search(tr, outputs, args.beam_size)
    if peer:
        hyps, peer_s = peer
        result.update(pyctcdecode_search_rtf=peer_s / audio, pyctcdecode_wer=wer(refs, [h.strip() for h in hyps]),
                      beam_speed_vs_pyctcdecode=peer_s / beam_s)
    if args.lm:
        lm = NGramLM.load(args.lm)
        tr.use_lm(lm)
        beam_lm, beam_lm_s = run(args.beam_size)
        result.update(lm=args.lm, lm_order=lm.order, lm_weight=tr.lm.weight, word_bonus=tr.lm.word_bonus,
                      wer_beam_lm=wer(refs, beam_lm), search_rtf_beam_lm=beam_lm_s / audio)
        peer = pyctcdecode_search(tr, outputs, args.beam_size, args.lm)
        if peer:
            hyps, peer_s = peer
            result.update(pyctcdecode_lm_search_rtf=peer_s / audio, pyctcdecode_lm_wer=wer(refs, [h.strip() for h in hyps]))
    result["machine"] = machine()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
