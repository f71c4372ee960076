"""Serving throughput of ``instructrec serve`` against calling the model directly: requests/s and
p50/p95 latency with 1, 8 and 32 concurrent clients (dynamic batching on), and the ratio of served
throughput to the direct one on the same inputs in one process (goal: >= 0.8 at 32 clients).

    python experiments/benchmarks/serve.py --checkpoint CKPT [--requests 256] [--max-batch-size 16]
    python experiments/benchmarks/serve.py --tiny          # a random tiny-bert classifier, in seconds

The inputs are Financial PhraseBank-style classification instructions built from the quickstart
reviews that ship with the package. "Direct" runs the same model in this process on the same
instructions in batches of ``--max-batch-size`` (encoding included), the best a server could do.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401  (offline defaults, set before instructrec is imported)

ROOT = Path(__file__).resolve().parents[2]


def tiny_checkpoint(folder: Path) -> Path:
    import torch

    from instructrec.models import MultiTaskModule

    torch.manual_seed(0)
    model = MultiTaskModule({"sentiment": {"type": "classification", "labels": ["positive", "negative", "neutral"]}},
                            backbone="tiny-bert")
    path = folder / "tiny.ckpt"
    torch.save({"state_dict": model.state_dict(),
                "hyper_parameters": {**dict(model.hparams), "_class_path": "instructrec.models.MultiTaskModule"}}, path)
    return path


def post(url: str, instruction: str) -> float:
    started = time.perf_counter()
    request = urllib.request.Request(url, data=json.dumps({"instruction": instruction}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
    return time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--tiny", action="store_true", help="a random tiny-bert classifier")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    checkpoint = str(tiny_checkpoint(scratch) if args.tiny or not args.checkpoint else args.checkpoint)
    rows = [json.loads(line)["text"] for line in (ROOT / "instructrec" / "resources" / "quickstart" / "test.jsonl").read_text().splitlines()]
    instructions = [rows[i % len(rows)].split("\nAnswer:")[0] for i in range(args.requests)]

    from instructrec.data import InstructionDataModule
    from instructrec.predictions import predict_texts
    from instructrec.serving import load_served, model_tasks

    model = load_served(checkpoint)
    (task, spec), = model_tasks(model).items()
    encoder = InstructionDataModule.for_inputs(model.hparams["backbone"], "classification", spec["labels"], task_name=task, max_length=256)
    started = time.perf_counter()
    for first in range(0, len(instructions), args.max_batch_size):
        predict_texts(model, encoder, instructions[first : first + args.max_batch_size])
    direct = len(instructions) / (time.perf_counter() - started)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "instructrec.cli", "serve", checkpoint, "--port", str(port),
                               "--max-batch-size", str(args.max_batch_size)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        for instruction in instructions[:8]:
            post(url + "/predict", instruction)  # warm-up
        print(f"direct (in process, batches of {args.max_batch_size}): {direct:.1f} requests/s; checkpoint {checkpoint}")
        print(f"{'clients':>8} {'requests/s':>11} {'p50 ms':>8} {'p95 ms':>8} {'served/direct':>14}")
        for clients in args.clients:
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                latencies = sorted(pool.map(lambda text: post(url + "/predict", text), instructions))
            rate = len(instructions) / (time.perf_counter() - started)
            p50 = 1000 * statistics.median(latencies)
            p95 = 1000 * latencies[int(0.95 * (len(latencies) - 1))]
            print(f"{clients:>8} {rate:>11.1f} {p50:>8.1f} {p95:>8.1f} {rate / direct:>13.2f}x")
    finally:  # the whole group: LitServe's workers outlive a terminated server otherwise
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
