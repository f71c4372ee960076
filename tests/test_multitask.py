"""The multi-task data module and model: schedules in batches, heads, metrics, bf16, DDP, export."""

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from instructrec.cli import main
from instructrec.data.datamodule import InstructionDataModule
from instructrec.data.multitask import MultiTaskDataModule
from instructrec.models import MultiTaskModule

from helpers import write_classification

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ["sports", "politics", "science"]


def two_sources(tmp_path, **kwargs):
    sentiment = write_classification(tmp_path / "sentiment.jsonl", [(f"review {i}", ["positive", "negative"][i % 2]) for i in range(40)])
    topic = write_classification(tmp_path / "topic.jsonl", [(f"news {i}", TOPICS[i % 3]) for i in range(18)], TOPICS)
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    return MultiTaskDataModule(
        sources={
            "sentiment": {"train": str(sentiment), "val_fraction": 0.25, "batch_size": 4},
            "topic": {"train": str(topic), "val": str(topic), "test": str(topic), "batch_size": 3, "max_length": 32},
        },
        **kwargs,
    )


def test_single_source_tasks_holdouts_and_subsample(tmp_path):
    rows = [(f"text {i}", "positive" if i % 2 else "negative") for i in range(300)]
    train = write_classification(tmp_path / "train.jsonl", rows)
    dm = InstructionDataModule(
        train=str(train), val_fraction=0.1, test_fraction=0.2, max_examples={"train": 50},
        tokenizer="tiny-bert", cache_dir=str(tmp_path / "cache"), task_name="sent",
    )
    assert dm.tasks == {"sent": {"type": "classification", "labels": ["positive", "negative"]}}
    dm.setup("fit")
    ids = {split: set(dm.example_ids(split)) for split in ("train", "val", "test")}
    assert len(ids["train"]) == 50
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert 15 <= len(ids["val"]) <= 45 and 40 <= len(ids["test"]) <= 80
    assert next(iter(dm.test_dataloader()))["task"] == "sent"
    again = InstructionDataModule(train=str(train), val_fraction=0.1, test_fraction=0.2, max_examples={"train": 50},
                                  tokenizer="tiny-bert", cache_dir=str(tmp_path / "cache2"))
    again.setup("fit")
    assert set(again.example_ids("train")) == ids["train"]  # the same subset in every run
    assert again.tasks == {"classification": {"type": "classification", "labels": ["positive", "negative"]}}


def test_multitask_batches_follow_the_schedule_and_shard_by_rank(tmp_path):
    dm = two_sources(tmp_path, sampling="round_robin", epoch_length="largest")
    assert dm.tasks == {
        "sentiment": {"type": "classification", "labels": ["positive", "negative"]},
        "topic": {"type": "classification", "labels": TOPICS},
    }
    dm.setup("fit")
    batches = dm.train_batches()
    sentiment_rows = len(dm.sources["sentiment"].datasets["train"])
    assert len(batches) == 2 * max(-(-sentiment_rows // 4), 6)  # sources x the largest's batches
    seen = list(batches)
    assert [b["task"] for b in seen[:4]] == ["sentiment", "topic", "sentiment", "topic"]
    assert all(len(b["input_ids"]) <= (4 if b["task"] == "sentiment" else 3) for b in seen)
    # Two ranks: the same task at every step, disjoint rows.
    ranks = [list(dm.train_batches(rank=r, world_size=2).batch_plan(0)) for r in range(2)]
    assert [t for t, _ in ranks[0]] == [t for t, _ in ranks[1]]
    first_pass = [set(rows) for (task, rows), _ in zip(ranks[0], range(2))]
    other = [set(rows) for (task, rows), _ in zip(ranks[1], range(2))]
    assert all(not a & b for a, b in zip(first_pass, other))
    # The next epoch continues each source's stream instead of restarting it.
    plan0, plan1 = batches.batch_plan(0), batches.batch_plan(1)
    assert plan0 != plan1
    with pytest.raises(ValueError, match="sampling"):
        two_sources(tmp_path, sampling="greedy")


def head_batch(kind, size=4, seq=6):
    batch = {"input_ids": torch.randint(5, 50, (size, seq)), "attention_mask": torch.ones(size, seq, dtype=torch.long), "task": kind}
    if kind == "qa":
        batch["start_positions"] = torch.tensor([1, 2, 3, 0])
        batch["end_positions"] = torch.tensor([2, 2, 4, 0])
    elif kind == "classification":
        batch["labels"] = torch.tensor([0, 1, 2, 1])
    else:
        batch["labels"] = torch.tensor([0.5, 1.0, 2.0, 0.0])
    return batch


def test_every_head_type_trains_and_leaves_other_heads_untouched():
    tasks = {"classification": {"type": "classification", "labels": ["a", "b", "c"]}, "qa": {"type": "qa"},
             "regression": {"type": "regression"}, "ranking": {"type": "ranking"}}
    model = MultiTaskModule(tasks, backbone="tiny-bert", loss_weighting="uncertainty")
    for kind in tasks:
        model.zero_grad(set_to_none=True)
        batch = head_batch(kind)
        loss = model.heads[kind].loss(model._outputs(batch, kind), batch)
        model.loss_weighting(loss, model.task_names.index(kind)).backward()
        assert torch.isfinite(loss)
        for other, head in model.heads.items():
            assert (head.linear.weight.grad is None) == (other != kind)
    with pytest.raises(ValueError, match="ambiguous"):
        model.task_of({"input_ids": None})
    with pytest.raises(ValueError, match="unknown task type"):
        MultiTaskModule({"x": {"type": "generation"}}, backbone="tiny-bert")


def test_mean_pooling_reads_real_tokens_only_and_travels_with_the_checkpoint(tmp_path):
    from instructrec.distill.teacher import load_teacher
    from instructrec.models.heads import build_head

    tasks = {"sentiment": {"type": "classification", "labels": ["positive", "negative"]}, "qa": {"type": "qa"}}
    model = MultiTaskModule(tasks, backbone="tiny-bert", pooling="mean").eval()
    assert model.tasks["sentiment"]["pooling"] == "mean" and "pooling" not in model.tasks["qa"]
    ids = torch.tensor([[2, 40, 41, 42, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    head = model.heads["sentiment"]
    with torch.no_grad():
        logits = model(ids, mask, task="sentiment")
        unpadded = model(ids[:, :5], mask[:, :5], task="sentiment")
        states = model.encoder(input_ids=ids[:, :5]).last_hidden_state.mean(1)
    torch.testing.assert_close(logits, unpadded)
    torch.testing.assert_close(logits, states @ head.linear.weight.T + head.linear.bias)
    with pytest.raises(ValueError, match="pooling must be one of"):
        MultiTaskModule(tasks, backbone="tiny-bert", pooling="max")

    path = tmp_path / "teacher.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    teacher = load_teacher(str(path), tasks={"sentiment": tasks["sentiment"]})  # the data's spec has no pooling
    assert teacher.tasks["sentiment"]["pooling"] == "mean"
    assert build_head(teacher.tasks["sentiment"], 64, 0.0).pooling == "mean"  # a student pools like its teacher


def fit(tmp_path, dm, **trainer_args):
    L.seed_everything(0)
    model = MultiTaskModule(dm.tasks, backbone="tiny-bert", loss_weighting=trainer_args.pop("loss_weighting", "static"))
    trainer = L.Trainer(default_root_dir=tmp_path / "run", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, accelerator="cpu", devices=1,
                        **trainer_args)
    trainer.fit(model, datamodule=dm)
    return trainer, model


def test_fit_logs_each_task_and_the_score(tmp_path):
    dm = two_sources(tmp_path, epoch_length=6, sampling="uniform")
    trainer, model = fit(tmp_path, dm, max_epochs=2, loss_weighting="dwa")
    metrics = trainer.callback_metrics
    for task in ("sentiment", "topic"):
        assert {f"val/{task}/acc", f"val/{task}/f1", f"val/{task}/loss", f"train/{task}/weight"} <= set(metrics)
    assert metrics["val/score"].item() == pytest.approx((metrics["val/sentiment/acc"].item() + metrics["val/topic/acc"].item()) / 2)
    assert trainer.global_step == 12  # 2 epochs x 6 steps: set by epoch_length, not by the smaller source
    assert model.loss_weighting.weights.tolist() != [1.0, 1.0]  # DWA moved after two epochs
    results = trainer.test(model, datamodule=two_sources(tmp_path), verbose=False)
    assert "test/score" in results[0]


def test_bf16_mixed_fit(tmp_path):
    dm = two_sources(tmp_path, epoch_length=4)
    trainer, model = fit(tmp_path, dm, max_epochs=1, precision="bf16-mixed", loss_weighting="uncertainty")
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert model.encoder.embeddings.word_embeddings.weight.dtype == torch.float32  # mixed: weights stay fp32
    assert 0.0 <= trainer.callback_metrics["val/score"].item() <= 1.0


def test_export_reloads_with_transformers_and_gives_the_same_logits(tmp_path, capsys):
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    dm = two_sources(tmp_path, epoch_length=2)
    trainer, model = fit(tmp_path, dm, max_epochs=1, limit_val_batches=0)
    checkpoint = tmp_path / "model.ckpt"
    trainer.save_checkpoint(checkpoint)
    with pytest.raises(SystemExit) as exit:
        main(["export", "--help"])
    assert exit.value.code == 0 and "save_pretrained" in capsys.readouterr().out
    main(["export", str(checkpoint), str(tmp_path / "export")])

    out = tmp_path / "export"
    encoder = AutoModel.from_pretrained(out, add_pooling_layer=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    heads = load_file(out / "heads.safetensors")
    manifest = json.loads((out / "heads.json").read_text())
    assert manifest["tasks"]["topic"]["labels"] == TOPICS
    assert manifest["tasks"]["topic"]["tensors"] == {"topic.weight": [3, 64], "topic.bias": [3]}
    batch = tokenizer(["Text: a close match\nOptions: sports, politics, science"], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        expected = model(**batch, task="topic")
        states = encoder(**batch).last_hidden_state[:, 0]
        logits = states @ heads["topic.weight"].T + heads["topic.bias"]
    torch.testing.assert_close(logits, expected)


@pytest.mark.slow
def test_multitask_ddp_on_two_cpu_processes(tmp_path):
    """Two gloo ranks, two tasks: every rank steps the same task; unused heads are allowed."""
    dm = two_sources(tmp_path)  # the source files the CLI run reads
    sources = json.dumps({name: {k: v for k, v in {
        "train": s.paths["train"][0], "val": (s.paths["val"] or [None])[0], "val_fraction": s.val_fraction,
        "batch_size": s.batch_size}.items() if v is not None} for name, s in dm.sources.items()})
    args = [
        "fit", "--config", str(ROOT / "configs" / "multitask" / "financial.yaml"),
        "--config", str(ROOT / "configs" / "trainer" / "ddp.yaml"),
        "--model.init_args.backbone", "tiny-bert", "--trainer.accelerator", "cpu", "--trainer.logger", "false",
        "--data.init_args.sources", sources, "--data.init_args.cache_dir", str(tmp_path / "cache"),
        "--data.init_args.epoch_length", "6", "--trainer.max_epochs", "1",
        "--trainer.default_root_dir", str(tmp_path / "run"), "--test_after_fit", "false",
        "--trainer.enable_progress_bar", "false",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", "instructrec.cli", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr + result.stdout
    checkpoint = next((tmp_path / "run").rglob("last.ckpt"))
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["global_step"] == 6  # epoch_length steps on each rank: no rank ran out or hung
    assert set(saved["hyper_parameters"]["tasks"]) == {"sentiment", "topic"}


def test_source_options_are_typed_so_a_misspelt_key_is_refused(tmp_path, capsys, monkeypatch):
    from instructrec.data.multitask import SourceOptions
    from instructrec.errors import InputError

    with pytest.raises(InputError, match=r"source 'topic': unknown option\(s\) \['trian'\]"):
        MultiTaskDataModule({"topic": {"trian": "x.jsonl"}})
    options = SourceOptions.of("topic", {"train": "a.jsonl", "batch_size": 8, "val_fraction": 0.0})
    assert options.arguments({"max_length": 64, "batch_size": 16, "num_workers": 0, "cache_dir": "c", "on_error": "raise"}) == {
        "max_length": 64, "batch_size": 8, "num_workers": 0, "cache_dir": "c", "on_error": "raise",
        "train": "a.jsonl", "val_fraction": 0.0}
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", "configs/multitask/financial.yaml", "--model.init_args.backbone", "tiny-bert",
              "--data.init_args.sources", '{"sentiment": {"trian": "x.txt", "template": "financial_phrasebank"}}'])
    assert exit.value.code == 2
    assert "instructrec: error: source 'sentiment': unknown option(s) ['trian']" in capsys.readouterr().err
