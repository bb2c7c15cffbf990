"""transformers' Seq2SeqTrainer fine-tuning a Whisper folder: the peer of benchmarks/whisper_finetune_vs_hf.py.

Runs in the peer's own venv (transformers, accelerate, torch, soundfile): it never imports asrforge.

    PEER/bin/python benchmarks/peers/hf_seq2seq_finetune.py --model HF_DIR --train train.jsonl --out OUT \\
        --batch 8 --steps 38 --lr 1e-5 --warmup 4 [--freeze-encoder] [--threads 2]

The recipe is the community's (the Hugging Face blog's fine-tune-Whisper recipe): log-mel features computed
once by WhisperFeatureExtractor before training, labels ``<|notimestamps|> text <|endoftext|>`` (the start token
is prepended by the model), padding ignored by the loss; no evaluation during training. Writes OUT (the trained
model) and prints one JSON line: samples per second over trainer.train(), its wall time, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time

import numpy as np
import soundfile as sf
import torch


def read_wave(path: str) -> np.ndarray:
    wave, sr = sf.read(path, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if sr != 16000:   # FSDD is 8 kHz: soxr, the resampler asrforge reads audio with
        import soxr
        wave = soxr.resample(wave, sr, 16000, quality="HQ")
    return wave.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--freeze-encoder", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from tokenizers import Tokenizer
    from transformers import (Seq2SeqTrainer, Seq2SeqTrainingArguments, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration)

    model = WhisperForConditionalGeneration.from_pretrained(args.model)
    if args.freeze_encoder:
        model.model.encoder.requires_grad_(False)
    extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    words = Tokenizer.from_file(f"{args.model}/tokenizer.json")
    eot, no_timestamps = words.token_to_id("<|endoftext|>"), words.token_to_id("<|notimestamps|>")
    rows = [json.loads(line) for line in open(args.train) if line.strip()]
    base = args.train.rsplit("/", 1)[0]
    items = []
    for row in rows:
        path = row["audio_filepath"] if row["audio_filepath"].startswith("/") else f"{base}/{row['audio_filepath']}"
        features = extractor(read_wave(path), sampling_rate=16000, return_tensors="np").input_features[0]
        labels = [no_timestamps, *words.encode(" " + row["text"].strip(), add_special_tokens=False).ids, eot]
        items.append({"input_features": features, "labels": labels})

    def collate(batch):
        feats = torch.tensor(np.stack([b["input_features"] for b in batch]))
        n = max(len(b["labels"]) for b in batch)
        labels = torch.full((len(batch), n), -100, dtype=torch.long)
        for i, b in enumerate(batch):
            labels[i, : len(b["labels"])] = torch.tensor(b["labels"])
        return {"input_features": feats, "labels": labels}

    training = Seq2SeqTrainingArguments(
        output_dir=args.out, per_device_train_batch_size=args.batch, learning_rate=args.lr, warmup_steps=args.warmup,
        max_steps=args.steps, lr_scheduler_type="cosine", weight_decay=0.0, max_grad_norm=1.0, logging_steps=5,
        save_strategy="no", report_to=[], dataloader_num_workers=0, use_cpu=True, remove_unused_columns=False,
        seed=0, disable_tqdm=True)
    trainer = Seq2SeqTrainer(model=model, args=training, train_dataset=items, data_collator=collate)
    start = time.perf_counter()
    metrics = trainer.train().metrics
    wall = time.perf_counter() - start
    trainer.save_model(args.out)
    shutil.copy(f"{args.model}/tokenizer.json", args.out)      # the trainer saves no tokenizer it was not given
    print(json.dumps({"system": "transformers Seq2SeqTrainer", "samples_per_s": args.steps * args.batch / wall,
                      "hf_train_samples_per_second": metrics.get("train_samples_per_second"), "train_s": wall,
                      "steps": args.steps, "batch": args.batch, "mean_loss": metrics.get("train_loss"),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
                      "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
