"""`asrforge serve` against faster-whisper-server under load, same CTranslate2 Whisper weights, same requests.

    python benchmarks/serve_load.py --model PATH/TO/ct2-whisper --peer-python PEER_VENV/bin/python \
        [--compute int8] [--clients 1 2 4 8] [--requests 24] [--soak 500] [--threads 2]

Starts each server in turn as its own process on a loopback port (asrforge: `asrforge serve`; the peer:
`faster-whisper-server` 0.0.3 from the package index, in its own environment, given the same model, compute type,
thread count and beam size 5 through its YAML config) and drives it with the official `openai` client:

- for 1, 2, 4 and 8 concurrent clients, ``--requests`` transcriptions of the real recordings (the shared English
  sentences and FSDD digits, in a fixed order); audio-seconds per second of wall time, p50/p95 latency, failures;
- short behind long: a 3-s request sent 5 s after a 10-minute request (once that one is being decoded), against
  the same 3-s request alone;
- memory: the server's resident set after 50 requests and after ``--soak`` requests (4 clients), and its peak.

Prints one JSON line per server and concurrency, then one summary line. Needs ../shared/data (not in a user's
clone); both servers decode the same files with beam 5 and language en.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
SR = 16000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def recordings(tmp: Path) -> tuple[list[Path], Path, Path]:
    """The request files (English sentences and 20 FSDD digits), one 10-minute file and the 3-s file."""
    from asrforge_runtime.audio import load_audio

    english = [SHARED / "english" / "jfk.flac", SHARED / "english" / "LDC93S1.wav"]
    digits = sorted((SHARED / "fsdd" / "recordings").glob("*.wav"))[::100][:20]
    files = [p for pair in zip(english * 10, digits) for p in pair]
    pause = np.zeros(SR // 2, dtype=np.float32)
    waves = [load_audio(p) for p in english + digits]
    long_wave = np.concatenate([np.concatenate([w, pause]) for w in waves * 40])[: 600 * SR]
    sf.write(tmp / "long.wav", long_wave, SR)
    return files, tmp / "long.wav", SHARED / "english" / "LDC93S1.wav"


def start(command: list[str], env: dict, url: str, ready_path: str, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(url + ready_path, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{command[:3]} did not start; see {log}:\n{log.read_text()[-2000:]}")
        time.sleep(0.25)


def run_level(client, model: str, files: list[Path], clients: int, requests: int, extra: dict) -> dict:
    """``requests`` transcriptions from ``clients`` threads -> throughput, latencies, failures."""
    from asrforge_runtime.audio import audio_info

    seconds = {str(p): audio_info(p)[1] / audio_info(p)[0] for p in set(files)}
    order = [files[i % len(files)] for i in range(requests)]

    def one(path: Path) -> tuple[float, bool]:
        start = time.perf_counter()
        try:
            with open(path, "rb") as f:
                client.audio.transcriptions.create(file=f, model=model, language="en", extra_body=extra)
            return time.perf_counter() - start, True
        except Exception:
            return time.perf_counter() - start, False

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(one, order))
    wall = time.perf_counter() - start
    latencies = sorted(t for t, ok in done if ok)
    audio = sum(seconds[str(p)] for p, (_, ok) in zip(order, done) if ok)
    return {"clients": clients, "requests": requests, "audio_seconds_per_second": round(audio / wall, 2),
            "p50_s": round(statistics.median(latencies), 3) if latencies else None,
            "p95_s": round(latencies[max(0, int(0.95 * len(latencies)) - 1)], 3) if latencies else None,
            "failed": sum(not ok for _, ok in done), "wall_s": round(wall, 2)}


def short_behind_long(client, model: str, long: Path, short: Path, extra: dict) -> dict:
    def timed(path: Path) -> tuple[float, str]:
        start = time.perf_counter()
        with open(path, "rb") as f:
            text = client.audio.transcriptions.create(file=f, model=model, language="en", extra_body=extra).text
        return time.perf_counter() - start, text

    alone, text = min(timed(short) for _ in range(3))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(timed, long)
        time.sleep(5.0)
        behind, text_behind = timed(short)
        long_s, _ = pending.result()
    return {"short_alone_s": round(alone, 3), "short_behind_long_s": round(behind, 3),
            "ratio": round(behind / alone, 2), "long_s": round(long_s, 2), "same_text": text_behind == text}


def soak(client, model: str, files: list[Path], pid: int, total: int, extra: dict) -> dict:
    done = 0
    out = {}
    with ThreadPoolExecutor(4) as pool:
        for target in (50, total):
            paths = [files[i % len(files)] for i in range(done, target)]
            list(pool.map(lambda p: client.audio.transcriptions.create(file=open(p, "rb"), model=model, language="en",
                                                                       extra_body=extra), paths))
            done = target
            out[f"rss_mb_after_{target}"] = round(rss_mb(pid)[0])
    out["rss_growth"] = round(out[f"rss_mb_after_{total}"] / out["rss_mb_after_50"] - 1, 3)
    out["peak_rss_mb"] = round(rss_mb(pid)[1])
    return out


def main() -> None:
    import openai

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a CTranslate2 Whisper folder (both servers read it)")
    ap.add_argument("--peer-python", required=True, help="a Python with faster-whisper-server installed")
    ap.add_argument("--compute", default="int8", choices=["float32", "int8"])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--requests", type=int, default=24, help="requests per concurrency level")
    ap.add_argument("--soak", type=int, default=500, help="requests of the memory check (0: skip it)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--servers", nargs="+", default=["asrforge", "faster-whisper-server"])
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit("serve_load.py drives the servers with ../shared/data's recordings, which are not here")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    summary = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files, long, short = recordings(tmp)
        for name in args.servers:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            if name == "asrforge":
                command = [str(Path(sys.executable).with_name("asrforge")), "serve", "--model", f"whisper={args.model}",
                           "--dtype", args.compute, "--port", str(port), "--log-level", "warning"]
                ready, extra = "/ready", {"beam_size": 5}
            else:
                config = tmp / "fws.yaml"
                config.write_text(json.dumps({"models": [{
                    "name": "whisper", "path": args.model, "batch_size": 1,
                    "model_options": {"device": "cpu", "compute_type": args.compute, "cpu_threads": args.threads},
                    "transcribe_options": {"beam_size": 5}}]}))
                command = [args.peer_python, "-m", "faster_whisper_server", "--config", str(config), "--host",
                           "127.0.0.1", "--port", str(port)]
                ready, extra = "/health", {"model_name": "whisper"}     # its form field for the model's name
            proc = start(command, env, url, ready, tmp / f"{name}.log")
            try:
                client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)
                run_level(client, "whisper", files[:2], 1, 2, extra)       # warm-up
                rows = summary[name] = {"levels": []}
                for clients in args.clients:
                    row = run_level(client, "whisper", files, clients, args.requests, extra)
                    rows["levels"].append(row)
                    print(json.dumps({"server": name, **row}), flush=True)
                rows["short_behind_long"] = short_behind_long(client, "whisper", long, short, extra)
                print(json.dumps({"server": name, "short_behind_long": rows["short_behind_long"]}), flush=True)
                if args.soak:
                    rows["memory"] = soak(client, "whisper", files, proc.pid, args.soak, extra)
                    print(json.dumps({"server": name, "memory": rows["memory"]}), flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    print(json.dumps({"name": "serve_load", "model": Path(args.model).name, "compute": args.compute,
                      "threads": args.threads, "servers": summary}))


if __name__ == "__main__":
    main()
