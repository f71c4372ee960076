"""Serving throughput of ``instructrec serve`` against calling the model directly: requests/s and
p50/p95 latency with 1, 8 and 32 concurrent clients (dynamic batching on), and the ratio of served
throughput to the direct one on the same inputs in one process (goal: >= 0.8 at 32 clients).

    python experiments/benchmarks/serve.py --checkpoint CKPT [--requests 256] [--max-batch-size 16]
    python experiments/benchmarks/serve.py --tiny          # a random tiny-bert classifier, in seconds

The inputs are sentiment classification instructions: the quickstart reviews that ship with the
package, options positive, negative, neutral (a checkpoint's head with those labels answers them,
e.g. the sentiment head of configs/multitask/financial.yaml). "Direct" runs the same model in this
process on the same instructions in batches of ``--max-batch-size`` (encoding included), the best
a server could do.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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


_connections = threading.local()


def post(port: int, instruction: str) -> float:
    """One request over this thread's kept-alive connection (as an HTTP client pool does), so the
    benchmark's own CPU goes to requests, not to opening a TCP connection for each."""
    started = time.perf_counter()
    connection = getattr(_connections, "connection", None)
    if connection is None:
        connection = _connections.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request("POST", "/predict", body=json.dumps({"instruction": instruction}),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status} for {instruction!r}")
    return time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--tiny", action="store_true", help="a random tiny-bert classifier")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3, help="alternating direct/served measurements per client count")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    checkpoint = str(tiny_checkpoint(scratch) if args.tiny or not args.checkpoint else args.checkpoint)
    rows = [json.loads(line)["text"] for line in (ROOT / "instructrec" / "resources" / "quickstart" / "test.jsonl").read_text().splitlines()]
    instructions = [rows[i % len(rows)].split("\nAnswer:")[0] for i in range(args.requests)]

    from instructrec.data import InstructionDataModule
    from instructrec.instructions import parse_instruction
    from instructrec.predictions import predict_texts
    from instructrec.serving import load_served, model_tasks

    model = load_served(checkpoint)
    options = set(parse_instruction(instructions[0]).fields["options"])  # the head the server will pick
    task, spec = next(((name, spec) for name, spec in model_tasks(model).items() if set(spec.get("labels") or []) == options),
                      (None, None))
    if task is None:
        raise SystemExit(f"{checkpoint} has no classification head with the labels {sorted(options)}")
    encoder = InstructionDataModule.for_inputs(model.hparams["backbone"], "classification", spec["labels"], task_name=task, max_length=256)

    def direct() -> float:
        started = time.perf_counter()
        for first in range(0, len(instructions), args.max_batch_size):
            predict_texts(model, encoder, instructions[first : first + args.max_batch_size])
        return len(instructions) / (time.perf_counter() - started)

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
            post(port, instruction)  # warm-up
        # Direct and served alternate, `repeats` times per client count, so that both see the same
        # machine (these cores are shared and noisy); the table gives medians.
        results = {clients: {"direct": [], "served": [], "latencies": []} for clients in args.clients}
        for _ in range(args.repeats):
            for clients in args.clients:
                results[clients]["direct"].append(direct())
                started = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    latencies = list(pool.map(lambda text: post(port, text), instructions))
                results[clients]["served"].append(len(instructions) / (time.perf_counter() - started))
                results[clients]["latencies"] += latencies
        print(f"checkpoint {checkpoint}; {args.requests} requests per measurement, medians of {args.repeats} alternating "
              f"direct/served measurements; direct = in process, batches of {args.max_batch_size}")
        print(f"{'clients':>8} {'direct/s':>9} {'served/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'served/direct':>14}")
        for clients, measured in results.items():
            latencies = sorted(measured["latencies"])
            rate, baseline = statistics.median(measured["served"]), statistics.median(measured["direct"])
            p50 = 1000 * statistics.median(latencies)
            p95 = 1000 * latencies[int(0.95 * (len(latencies) - 1))]
            print(f"{clients:>8} {baseline:>9.1f} {rate:>9.1f} {p50:>8.1f} {p95:>8.1f} {rate / baseline:>13.2f}x")
    finally:  # the whole group: LitServe's workers outlive a terminated server otherwise
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
