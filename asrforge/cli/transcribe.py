"""``transcribe``: files, folders or standard input to text and subtitles, or a whole manifest to an output
manifest (resumable, and shared between processes under torchrun)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asrforge.cli.args import (DECODE_OVERRIDE_HELP, add_diarize_arguments, add_lm_arguments, boolean, count,
                               decode_overrides, diarize_options, is_decode_override, lm_options, positive)
from asrforge.errors import AsrforgeError

STDIN = "-"


def add_parsers(sub) -> None:
    r = sub.add_parser("transcribe", help="transcribe audio files or a manifest (asrforge or Whisper checkpoints)")
    r.add_argument("audio", nargs="*", help="audio files, or folders (every audio file below them; --output-dir keeps "
                   "their layout), or - for a WAV/FLAC stream on standard input (ffmpeg -i talk.mp4 -f wav - | ...); "
                   "asrforge models also take decode.KEY=VALUE here: " + DECODE_OVERRIDE_HELP)
    r.add_argument("--model", required=True, help="asrforge checkpoint/experiment folder, or a Whisper checkpoint: "
                   "OpenAI .pt, Hugging Face folder or CTranslate2 (faster-whisper) folder")
    r.add_argument("--beam-size", type=count, default=None, help="default: the recipe's decode.beam_size; Whisper: greedy")
    r.add_argument("--output-format", choices=["txt", "srt", "vtt", "tsv", "json", "all"], default="txt")
    r.add_argument("--output-dir", help="write <audio stem>.<format> files here instead of printing")
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (under torchrun, cuda is each "
                   "process's own GPU)")
    r.add_argument("--same-speaker", action="store_true",
                   help="models trained with features.cmvn=speaker: the files are one speaker, so normalize them with "
                        "statistics pooled over all of them (without it, each file is normalized on its own)")
    r.add_argument("--max-segment-s", type=positive, default=None,
                   help="asrforge models: a longer file is cut at its pauses (voice activity) into stretches of speech "
                        "of at most this many seconds, each decoded as an utterance (default: 20)")
    m = r.add_argument_group("a whole manifest (bulk; under torchrun each process takes its share)")
    m.add_argument("--manifest", help="JSONL manifest of the audio to transcribe, instead of files")
    m.add_argument("--output-manifest", help="with --manifest: the manifest's lines with pred_text (and words) added; "
                   "utterances already in it are skipped, so a stopped job continues where it stopped")
    m.add_argument("--batch-seconds", type=positive, default=None,
                   help="with --manifest: audio seconds transcribed and written together (default: 120)")
    r.add_argument("--diarize", action="store_true",
                   help="find who spoke when: every segment and word gets a speaker, subtitles are split where the "
                        "speaker changes and led by [SPEAKER_1] (extra diarize; options below)")
    add_diarize_arguments(r)
    add_lm_arguments(r)
    w = r.add_argument_group("Whisper options (as in openai-whisper)")
    w.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "int8"],
                   help="float16/bfloat16 need a GPU; int8 quantizes linear layers for the CPU")
    w.add_argument("--tokenizer", help="folder holding tokenizer.json, if not beside the weights")
    w.add_argument("--language", help="language code or name; default or 'auto': detect")
    w.add_argument("--task", choices=["transcribe", "translate"])
    w.add_argument("--temperature", type=float, help="first sampling temperature (default 0)")
    w.add_argument("--temperature-increment-on-fallback", type=float, default=0.2,
                   help="raise the temperature by this on a failed window, up to 1.0 (0: no fallback)")
    w.add_argument("--best-of", type=count, help="samples per window at temperature > 0")
    w.add_argument("--patience", type=float)
    w.add_argument("--length-penalty", type=float)
    w.add_argument("--compression-ratio-threshold", type=float)
    w.add_argument("--logprob-threshold", type=float)
    w.add_argument("--no-speech-threshold", type=float)
    w.add_argument("--initial-prompt")
    w.add_argument("--condition-on-previous-text", type=boolean, help="True or False (default True)")
    w.add_argument("--suppress-tokens", help="comma-separated ids; -1: non-speech symbols (the default)")
    w.add_argument("--without-timestamps", action="store_true", default=None)
    w.add_argument("--word-timestamps", action="store_true", default=None,
                   help="align each word to the audio (cross-attention + DTW); JSON output gets segments[].words")
    w.add_argument("--batch-size", type=count, help="batched mode: cut the audio at pauses found by Silero VAD and "
                   "decode this many 30-s chunks at once (chunks are not conditioned on each other)")
    w.add_argument("--prepend-punctuations", help="with --word-timestamps: marks joined to the following word")
    w.add_argument("--append-punctuations", help="with --word-timestamps: marks joined to the preceding word")
    r.set_defaults(func=transcribe, parser=r, trailing="audio")


def model_options(args, overrides: list[str]) -> dict:
    """The command line's transcription options, as ``Recognizer.transcribe`` takes them (None: the model's default)."""
    temperature = None
    if args.temperature is not None:
        step = args.temperature_increment_on_fallback
        temperature = (args.temperature,) if not step else tuple(
            round(args.temperature + i * step, 4) for i in range(int(round((1.0 - args.temperature) / step)) + 1))
    options = dict(
        beam_size=args.beam_size, language=args.language, task=args.task, temperature=temperature,
        best_of=args.best_of, patience=args.patience, length_penalty=args.length_penalty,
        compression_ratio_threshold=args.compression_ratio_threshold, logprob_threshold=args.logprob_threshold,
        no_speech_threshold=args.no_speech_threshold, initial_prompt=args.initial_prompt,
        condition_on_previous_text=args.condition_on_previous_text, suppress_tokens=args.suppress_tokens,
        without_timestamps=args.without_timestamps, word_timestamps=args.word_timestamps,
        prepend_punctuations=args.prepend_punctuations, append_punctuations=args.append_punctuations,
        batch_size=args.batch_size, max_segment_s=args.max_segment_s, **decode_overrides(overrides))
    return {k: v for k, v in options.items() if v is not None}


def transcribe(args) -> int:
    overrides = [a for a in args.audio if is_decode_override(a)]
    audio = [a for a in args.audio if not is_decode_override(a)]
    if args.manifest or args.output_manifest:
        return transcribe_manifest(args, audio, overrides)
    if args.batch_seconds is not None:
        raise AsrforgeError("--batch-seconds applies to --manifest")
    speaker_flags = args.num_speakers or args.min_speakers or args.max_speakers or args.embedding_model != "resemblyzer"
    if speaker_flags and not args.diarize:
        raise AsrforgeError("--num-speakers, --min-speakers, --max-speakers and --embedding-model go with --diarize")
    if not audio:
        raise AsrforgeError("give the audio to transcribe: files, folders or - (standard input), or --manifest M "
                            "--output-manifest OUT.jsonl")
    return transcribe_files(args, audio, overrides)


def transcribe_manifest(args, audio: list[str], overrides: list[str]) -> int:
    from asrforge import distributed as D
    from asrforge.inference import load_model
    from asrforge.inference.bulk import BATCH_SECONDS, skip_report, transcribe_manifest as run

    if not (args.manifest and args.output_manifest):
        raise AsrforgeError("--manifest and --output-manifest go together: the manifest to read and the one to write")
    if args.diarize:
        raise AsrforgeError("--diarize transcribes files or folders; a manifest's utterances are one speaker each")
    if audio or args.output_dir or args.same_speaker:
        raise AsrforgeError("--manifest transcribes the manifest's audio into --output-manifest; leave out audio "
                            "files, --output-dir and --same-speaker (speaker CMVN uses the manifest's speakers)")
    if Path(args.output_manifest).resolve() == Path(args.manifest).resolve():
        raise AsrforgeError("--output-manifest must be another file than --manifest")
    dist = D.init_distributed(args.device, option="--device")
    try:
        recognizer = load_model(args.model, str(dist.device), args.dtype, args.tokenizer, lm_options(args))
        summary = run(recognizer, args.manifest, args.output_manifest, model_options(args, overrides), dist,
                      args.batch_seconds or BATCH_SECONDS)
    finally:
        D.shutdown(dist)
    if not dist.is_main:
        return 0
    for item in summary.skipped[:5]:
        print(f"asrforge: skipped {item['item']}: {item['reason']}", file=sys.stderr)
    print(f"{summary.output}: {summary.done_before + summary.transcribed} of {summary.utterances} utterances "
          f"transcribed ({summary.done_before} by an earlier run); this run: "
          f"{summary.transcribed} in {summary.seconds:.1f} s with {summary.processes} process(es), "
          f"{summary.utterances_per_second:.1f} utt/s, {summary.audio_hours_per_hour:.0f} h of audio per hour"
          + (f"; {len(summary.skipped)} skipped, listed in {skip_report(Path(summary.output))}" if summary.skipped else ""),
          file=sys.stderr)
    if summary.utterances and not summary.transcribed and not summary.done_before:
        raise AsrforgeError(f"none of the {summary.utterances} utterances of {args.manifest} could be transcribed")
    return len(summary.skipped)


def audio_inputs(paths: list[str]) -> list[tuple[str, str]]:
    """Command-line inputs -> ``(audio file, output name)``: a file is itself, named by its stem; a folder is
    every audio file below it, sorted, named by its path inside the folder (so results mirror its layout);
    ``-`` is an audio stream on standard input, named ``stdin``."""
    from asrforge_runtime.audio import AUDIO_SUFFIXES

    if paths.count(STDIN) > 1:
        raise AsrforgeError("- (standard input) can be given once")
    inputs = []
    for given in paths:
        if given == STDIN:
            inputs.append((STDIN, "stdin"))
            continue
        folder = Path(given)
        if not folder.is_dir():
            inputs.append((given, folder.stem))
            continue
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise AsrforgeError(f"folder {folder} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
        inputs += [(str(p), p.relative_to(folder).with_suffix("").as_posix()) for p in files]
    return inputs


def transcribe_files(args, audio: list[str], overrides: list[str]) -> int:
    """Transcribe each file; a bad file is reported and skipped, the rest still run. Returns the failures."""
    from asrforge_runtime.audio import decode_audio_bytes, load_audio
    from asrforge.inference import load_model
    from asrforge.inference.speakers import transcribe_with_speakers
    from asrforge_runtime.writers import WRITERS, write_result
    from asrforge.progress import progress_bar

    inputs = audio_inputs(audio)
    output_dir, output_format = args.output_dir, args.output_format
    names: dict[str, str] = {}
    for path, name in inputs:
        if output_dir and names.setdefault(name, path) != path:
            raise AsrforgeError(f"{names[name]} and {path} would both be written as {Path(output_dir) / name}.*; "
                                "give their common folder instead (its layout is kept) or transcribe them apart")
    if not output_dir and output_format == "all":
        raise AsrforgeError("--output-format all writes five files per recording (txt, srt, vtt, tsv, json); "
                            "give --output-dir, or choose one format to print")
    if not output_dir and len(inputs) > 1 and output_format in ("srt", "vtt", "tsv"):
        # printed one after another, the documents could not be told apart (each starts again at cue 1)
        raise AsrforgeError(f"--output-format {output_format} prints one document per recording; for "
                            f"{len(inputs)} recordings give --output-dir (one .{output_format} file each), or use "
                            "txt or json, which name each file")
    files = [path for path, _ in inputs]
    recognizer = load_model(args.model, args.device, args.dtype, args.tokenizer, lm_options(args))
    options = model_options(args, overrides)
    recognizer.check_options(**options)       # a wrong option fails once, before any file
    speaker_cmvn = getattr(recognizer, "speaker_cmvn", False)
    if args.same_speaker:
        if not speaker_cmvn:
            raise AsrforgeError(f"--same-speaker applies to models trained with features.cmvn=speaker; {args.model} "
                                "normalizes each file on its own, so leave the flag out")
        options["speaker_stats"] = recognizer.pooled_speaker_stats(files)
    elif speaker_cmvn:
        print(f"asrforge: {args.model} was trained with speaker CMVN; each file is normalized on its own, which costs "
              "accuracy (on FSDD, 17 % WER became 56 %). Give 20 or more files of one speaker with --same-speaker.",
              file=sys.stderr)
    diarizer = None
    if args.diarize:
        from asrforge.inference.diarization import load_diarizer

        diarizer = load_diarizer(args.embedding_model, args.device, diarize_options(args))
    failures, written = 0, 0
    # many files into a folder: one bar over the files instead of a line per file written
    many = bool(output_dir) and len(inputs) > 1
    bar = progress_bar(total=len(inputs), desc="transcribing", unit="file", disable=not many)
    for path, name in inputs:
        try:
            source = decode_audio_bytes(sys.stdin.buffer.read()) if path == STDIN else path
            progress = len(files) == 1 and sys.stderr.isatty()
            if diarizer is None:
                result = recognizer.transcribe(source, progress=progress, **options)
            else:
                result = transcribe_with_speakers(recognizer, diarizer, load_audio(source) if isinstance(source, str)
                                                  else source, progress=progress, **options)
        except AsrforgeError as e:
            bar.write(f"asrforge: skipped {path}: {e}", file=sys.stderr)
            failures += 1
            bar.update()
            continue
        if output_dir:
            for file in write_result(result, name, output_dir, output_format):
                written += 1
                if not many:
                    print(f"wrote {file}", file=sys.stderr)
        elif output_format == "json":
            print(json.dumps({"file": path, **result.to_dict()}, ensure_ascii=False))
        elif output_format == "txt":
            text = result.text.strip()
            print(f"{path}\t{text}" if len(files) > 1 else text)
        else:
            print(WRITERS[output_format](result), end="")
        bar.update()
    bar.close()
    if many:
        print(f"wrote {written} file(s) for {len(inputs) - failures} of {len(inputs)} recordings to {output_dir}"
              + (f"; {failures} skipped (above)" if failures else ""), file=sys.stderr)
    if failures == len(files):
        raise AsrforgeError(f"none of the {len(files)} file(s) could be transcribed")
    return failures
