"""`instructrec serve`: the real server in a subprocess, queried over HTTP with a real client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from instructrec.data import InstructionDataModule
from instructrec.models import MultiTaskModule
from instructrec.predictions import predict_texts

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["positive", "negative", "neutral"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, payload: dict | None = None) -> tuple[int, dict | str]:
    """``(status, body)``: a POST of ``payload`` as JSON (a GET without one); the body as JSON when it is."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    try:
        return status, json.loads(body)
    except json.JSONDecodeError:
        return status, body.decode()


@pytest.fixture
def classifier(tmp_path):
    torch.manual_seed(0)
    model = MultiTaskModule({"sentiment": {"type": "classification", "labels": LABELS}}, backbone="tiny-bert")
    path = tmp_path / "classifier.ckpt"
    hparams = {**dict(model.hparams), "_class_path": "instructrec.models.MultiTaskModule"}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams}, path)
    return model.eval(), path


@pytest.fixture
def server(tmp_path):
    processes = []

    def start(*args: str) -> str:
        port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        # its own process group: LitServe's worker processes outlive a terminated server otherwise
        process = subprocess.Popen([sys.executable, "-m", "instructrec.cli", "serve", *args, "--port", str(port)],
                                   cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            if process.poll() is not None:
                raise AssertionError(process.stdout.read())
            try:
                if call(url + "/health")[0] == 200:
                    return url
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        raise AssertionError("the server did not come up")

    yield start
    for process in processes:
        stop_group(process)


def stop_group(process: subprocess.Popen) -> None:
    """Stop a server and every process it started (its session's group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=20)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def review(text: str, options=LABELS) -> str:
    return f"Classify the sentiment of the following review: {text}\nOptions: {', '.join(options)}"


def test_a_classifier_answers_over_http_and_bad_instructions_get_400(classifier, server):
    model, path = classifier
    url = server(str(path), "--max-batch-size", "4")
    texts = [review("The battery died in a day."), review("Great screen, fast delivery.")]
    expected = predict_texts(model, InstructionDataModule.for_inputs("tiny-bert", "classification", LABELS,
                                                                      task_name="sentiment", max_length=256), texts)
    for text, want in zip(texts, expected):
        status, answer = call(url + "/predict", {"instruction": text})
        assert status == 200 and answer["task"] == "sentiment" and answer["label"] == want["label"]
        assert answer["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)

    status, answer = call(url + "/predict", {"instruction": "Text: hello\nOptions: a, a"})
    assert status == 400 and answer["detail"] == {"error": "options 'a, a' repeat a value", "offset": 12}
    status, answer = call(url + "/predict", {"instruction": review("ok", ["yes", "no"])})
    assert status == 400 and "no task of this model has the options ['no', 'yes']" in answer["detail"]["error"]
    status, answer = call(url + "/predict", {"text": "no instruction key"})
    assert status == 400 and '"instruction" string' in answer["detail"]["error"]
    status, info = call(url + "/info")
    assert status == 200
    assert info["model"]["tasks"] == {"sentiment": {"type": "classification", "labels": LABELS}}
    assert info["model"]["family"] == "classification" and info["model"]["backbone"] == "tiny-bert"


@pytest.mark.slow
def test_a_generation_model_answers_over_http(tmp_path, server):
    from instructrec.models import GenerationModule
    from instructrec.models.generation import DecodingOptions
    from test_generation import sharpened

    model = sharpened(GenerationModule({"generation": {"type": "generation"}}, decoding=DecodingOptions(max_new_tokens=6)))
    path = tmp_path / "generator.ckpt"
    torch.save({"state_dict": model.state_dict(),
                "hyper_parameters": {**dict(model.hparams), "_class_path": "instructrec.models.GenerationModule"}}, path)
    url = server(str(path))
    status, answer = call(url + "/predict", {"instruction": "Translate English to German: A dog runs."})
    data = InstructionDataModule.for_inputs("tiny-llama", "translation", task_name="generation", max_length=256)
    expected = model.predict_step(data.batch_from_texts(["Translate English to German: A dog runs."]), 0)[0]["prediction"]
    assert status == 200 and answer == {"task": "generation", "answer": expected}
