"""The `instructrec` command: configs parse, fit runs end to end, checkpoints reload safely."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from instructrec.cli import main
from instructrec.data.files import write_jsonl
from instructrec.models import MultiTaskModule

from helpers import classification_text

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if not {"trainer", "variants"} & set(p.parts))
TRAINER_SNIPPETS = sorted((ROOT / "configs" / "trainer").glob("*.yaml"))
# A variants/ folder holds overlays of the one base config beside it (named in each file's header).
VARIANTS = sorted((ROOT / "configs").rglob("variants/*.yaml"))
LABELS = ["positive", "negative", "neutral"]


def tiny_fit_args(tmp_path, *extra):
    return [
        "fit",
        "--config", str(ROOT / "configs" / "quickstart.yaml"),
        "--model.init_args.backbone", "tiny-bert",
        "--data.init_args.cache_dir", str(tmp_path / "cache"),
        "--trainer.default_root_dir", str(tmp_path / "run"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "run"),
        *extra,
    ]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_parses(config, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: instructrec." in printed


def test_a_command_line_run_prints_no_warning_about_args_beside_sys_argv(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    command = ["fit", "--config", "configs/quickstart.yaml", "--print_config"]
    monkeypatch.setattr(sys, "argv", ["instructrec", *command])  # as `instructrec fit ...` runs it
    with warnings.catch_warnings(record=True) as caught, pytest.raises(SystemExit):
        warnings.simplefilter("always")
        main(command)
    assert not [w for w in caught if "args parameter" in str(w.message)]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_variant_merges_onto_its_base(variant, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    header = variant.read_text(encoding="utf-8").split("\n", 1)[0]
    base = next(word for word in header.split() if word.startswith("configs/")).rstrip(":.,")
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", base, "--config", str(variant), "--print_config"])
    assert exit.value.code == 0
    printed = capsys.readouterr().out
    overlay = yaml.safe_load(variant.read_text(encoding="utf-8"))
    merged = yaml.safe_load(printed)
    for key, value in overlay["model"]["init_args"].items():
        assert merged["model"]["init_args"][key] == value, key


@pytest.mark.parametrize("snippet", TRAINER_SNIPPETS, ids=lambda p: p.name)
def test_trainer_snippets_merge(snippet, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", "configs/quickstart.yaml", "--config", str(snippet), "--print_config"])
    assert exit.value.code == 0
    printed = capsys.readouterr().out
    assert ("strategy: ddp" in printed) or ("precision: bf16-mixed" in printed)


def test_fit_test_and_predict_end_to_end(tmp_path, capsys, monkeypatch):
    """Fit a few steps on the quickstart data, test the best checkpoint, predict a raw instruction."""
    monkeypatch.chdir(ROOT)
    main(tiny_fit_args(tmp_path, "--trainer.max_steps", "6", "--trainer.val_check_interval", "3",
                       "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2"))
    out = capsys.readouterr().out
    assert "test/sentiment/acc" in out and "test/score" in out and "Predictions" in out
    assert any(label in out for label in ("positive", "negative", "neutral"))
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("*.ckpt"), key=lambda p: p.name)  # best first
    assert [p.name for p in checkpoints] == ["best.ckpt", "last.ckpt"]  # where the README's commands look
    config = next((tmp_path / "run").rglob("config.yaml")).read_text()
    assert "instructrec.models.MultiTaskModule" in config  # the full config is kept with the run

    model = MultiTaskModule.load_from_checkpoint(checkpoints[0], weights_only=True)
    assert model.tasks == {"sentiment": {"type": "classification", "labels": ["positive", "negative", "neutral"], "pooling": "first"}}
    assert model.hparams.backbone == "tiny-bert"
    saved = torch.load(checkpoints[0], weights_only=True)
    torch.testing.assert_close(model.heads["sentiment"].linear.weight, saved["state_dict"]["heads.sentiment.linear.weight"])

    # `predict` on a file of instructions without answers writes one JSONL line per example.
    inputs = tmp_path / "inputs.jsonl"
    write_jsonl(inputs, [{"id": "a", "text": classification_text("The food was great.", None, LABELS)},
                         {"id": "b", "text": classification_text("The screen was broken.", None, LABELS)}])
    main(["predict", "--config", str(ROOT / "configs" / "quickstart.yaml"), "--ckpt_path", str(checkpoints[0]),
          "--model.init_args.backbone", "tiny-bert", "--data.init_args.cache_dir", str(tmp_path / "cache"),
          "--data.init_args.predict", str(inputs), "--trainer.logger", "false",
          "--trainer.callbacks.output_dir", str(tmp_path / "predictions")])
    rows = [json.loads(line) for line in (tmp_path / "predictions" / "predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == ["a", "b"]
    assert all(row["task"] == "sentiment" for row in rows)
    assert all(row["label"] in LABELS and abs(sum(row["probabilities"].values()) - 1) < 1e-5 for row in rows)


def test_fast_dev_run(tmp_path, monkeypatch):
    """Two training and two validation batches, and nothing written: Lightning's smoke test; without
    the deprecation line torch prints about Lightning's batch flattening."""
    import warnings

    from instructrec.cli import run_lightning

    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = run_lightning(tiny_fit_args(tmp_path, "--trainer.fast_dev_run", "2", "--test_after_fit", "false",
                                          "--show_predictions", "[]"))
    assert cli.trainer.global_step == 2 and cli.trainer.fit_loop.epoch_loop.val_loop.batch_progress.total.completed == 2
    assert not list(tmp_path.rglob("*.ckpt"))
    assert not [w for w in caught if "LeafSpec" in str(w.message)]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path):
    """Lightning's DDP (gloo) runs the same CLI in two processes; both must agree and finish."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = tiny_fit_args(
        tmp_path,
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.max_steps", "4", "--trainer.limit_val_batches", "2", "--test_after_fit", "false",
        "--show_predictions", "[]",
    )
    result = subprocess.run(
        [sys.executable, "-m", "instructrec.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr + result.stdout
    assert len(list((tmp_path / "run").rglob("last.ckpt"))) == 1


def test_extra_commands_dispatch(tmp_path, capsys):
    """`instructrec evaluate-squad` goes to the SQuAD scorer; bad input exits non-zero."""
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "Ada wrote it.", "qas": [
        {"id": "q1", "question": "Who?", "answers": [{"text": "Ada", "answer_start": 0}]}]}]}]}
    (tmp_path / "data.json").write_text(json.dumps(data))
    (tmp_path / "preds.json").write_text(json.dumps({"q1": "ada"}))
    main(["evaluate-squad", str(tmp_path / "data.json"), str(tmp_path / "preds.json")])
    assert json.loads(capsys.readouterr().out) == {"exact_match": 100.0, "f1": 100.0}
    with pytest.raises(SystemExit) as exit:
        main(["evaluate-squad", str(tmp_path / "preds.json"), str(tmp_path / "preds.json")])
    assert exit.value.code == 2
