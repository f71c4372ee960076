"""DistillationModule: a few Trainer steps on cached logits, the test report, losses, checkpoints."""

import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from instructrec.distill.data import TeacherLogitsDataModule
from instructrec.distill.module import DistillationModule
from instructrec.distill.teacher import expect_frozen_teacher
from instructrec.models.evaluation import count_parameters

from distill_helpers import random_batch, save_classification_teacher
from helpers import write_classification

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return save_classification_teacher(tmp_path_factory.mktemp("teacher") / "tiny6")


def test_fit_on_cached_logits_then_report(tmp_path, teacher, monkeypatch):
    rows = [(f"item {i} is {'good' if i % 2 else 'bad'}", ["positive", "negative"][i % 2]) for i in range(32)]
    train = write_classification(tmp_path / "train.jsonl", rows)
    dm = TeacherLogitsDataModule(train=str(train), val=str(train), test=str(train), tokenizer="tiny-bert",
                                 batch_size=8, max_length=40, cache_dir=str(tmp_path / "cache"), teacher=str(teacher))
    model = DistillationModule(teacher=str(teacher), tasks=dm.tasks, student_layers=[0, 2, 4],
                               soft_weight={"type": "linear", "start": 1.0, "end": 0.5},
                               hard_weight=0.5, temperature=2.0, learning_rate=1e-3)
    dm.prepare_data()  # the teacher runs here, once, into the cache
    # Training must read the cached logits: the teacher may run only at test time.
    calls = []
    original = type(model.teacher).forward
    monkeypatch.setattr(type(model.teacher), "forward", lambda self, *a, **k: calls.append(self.training) or original(self, *a, **k))
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=1)
    before = {k: v.clone() for k, v in model.student.state_dict().items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=dm)
    assert not [w for w in caught if "in eval mode" in str(w.message)]  # the frozen teacher is expected there
    assert calls == [] and trainer.global_step == 4
    assert any(not torch.equal(v, model.student.state_dict()[k]) for k, v in before.items())
    logged = trainer.callback_metrics
    assert logged["train/soft_weight"] == pytest.approx(1.0 - 0.5 * 3 / 4)  # linear over the 4 steps, at step 3
    assert "val/score" in logged and torch.isfinite(logged["train/loss"])

    trainer.test(model, datamodule=dm, verbose=False)
    report = model.test_report
    assert len(calls) == 4 and not any(calls)  # once per test batch, in eval mode
    assert report["student_params"] == count_parameters(model.student)
    assert report["teacher_params"] == sum(p.numel() for p in model.teacher.parameters())
    assert report["param_ratio"] == report["student_params"] / report["teacher_params"] < 1
    assert report["latency_batches"] == 4 and report["student_latency_ms"] > 0 and report["teacher_latency_ms"] > 0
    assert report["speedup"] == pytest.approx(report["teacher_latency_ms"] / report["student_latency_ms"])
    task = dm.name
    for key in (f"{task}/acc", f"teacher/{task}/acc", f"{task}/f1"):
        assert 0.0 <= report[key] <= 1.0
    assert report[f"{task}/acc_retention"] == pytest.approx(report[f"{task}/acc"] / report[f"teacher/{task}/acc"])
    assert report["retention"] == report[f"{task}/acc_retention"]
    assert trainer.callback_metrics["test/teacher_params"] == pytest.approx(report["teacher_params"], rel=1e-6)

    # The checkpoint leaves the teacher out and reloads it from its source.
    path = tmp_path / "student.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    assert not any(k.startswith("teacher.") for k in saved["state_dict"])
    again = DistillationModule.load_from_checkpoint(path)
    assert all(torch.equal(v, again.student.state_dict()[k]) for k, v in model.student.state_dict().items())


def test_all_four_parts_train_with_the_teacher_online(teacher):
    model = DistillationModule(teacher=str(teacher), student_layers=[1, 3], soft_weight=1.0, hard_weight=1.0,
                               hidden_weight=1.0, attention_weight=1.0, attention_style="minilm")
    assert model.layer_map == [[0, 0], [1, 3], [2, 6]] and model.attention_loss.layer_map == [(0, 2), (1, 5)]
    batch = random_batch()
    weights, temperature = model.current_weights()
    task = "classification"
    student = model.student(batch, task, hidden_states=True, attentions=True)
    parts = model.losses(batch, student, model.teacher(batch, task, hidden_states=True, attentions=True), weights, temperature)
    assert set(parts) == {"soft", "hard", "hidden", "attention"}
    assert all(torch.isfinite(v) and v >= 0 for v in parts.values())
    sum(parts.values()).backward()
    assert model.hidden_loss.projections[0].weight.grad is not None
    assert model.student.encoder.embeddings.word_embeddings.weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())


def test_distillation_config_parses_against_the_signature(teacher, tmp_path):
    """The draft config names real arguments (the CLI parses it without running anything)."""
    from instructrec.cli import run_lightning

    config = ROOT / "configs" / "distill" / "sst2_minilm6_to_3.yaml"
    with pytest.raises(SystemExit) as exit:
        run_lightning(["fit", "--config", str(config), "--model.init_args.teacher", str(teacher),
                       "--data.init_args.teacher", str(teacher), "--print_config"])
    assert exit.value.code in (0, None)


def test_multitask_student_distils_task_by_task_from_cached_logits(tmp_path, monkeypatch):
    from instructrec.distill.data import MultiTaskTeacherLogitsDataModule
    from instructrec.models import MultiTaskModule

    topics = ["sports", "politics", "science"]
    sentiment = write_classification(tmp_path / "sentiment.jsonl", [(f"review {i}", ["positive", "negative"][i % 2]) for i in range(16)])
    topic = write_classification(tmp_path / "topic.jsonl", [(f"news {i}", topics[i % 3]) for i in range(12)], topics)
    sources = {"sentiment": {"train": str(sentiment), "val": str(sentiment)}, "topic": {"train": str(topic), "val": str(topic)}}
    torch.manual_seed(0)
    tasks = {"sentiment": {"type": "classification", "labels": ["positive", "negative"]},
             "topic": {"type": "classification", "labels": topics}}
    path = tmp_path / "teacher.ckpt"
    multitask = MultiTaskModule(tasks, backbone="tiny-bert", pooling="mean")
    torch.save({"state_dict": multitask.state_dict(), "hyper_parameters": dict(multitask.hparams)}, path)

    dm = MultiTaskTeacherLogitsDataModule(sources, teacher=str(path), tokenizer="tiny-bert", batch_size=4,
                                          cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    dm.setup("fit")
    model = DistillationModule(teacher=str(path), tasks=dm.tasks, backbone="tiny-bert", student_layers=[0], learning_rate=1e-3)
    seen = set()
    for batch in dm.train_batches():
        task = batch["task"]
        seen.add(task)
        expected = model.teacher(batch, task).logits
        assert batch["teacher_logits"].shape == (len(batch["input_ids"]), len(tasks[task]["labels"]))
        torch.testing.assert_close(batch["teacher_logits"].float(), expected, atol=2e-3, rtol=2e-3)  # float16 cache
    assert seen == {"sentiment", "topic"}

    calls = []
    original = type(model.teacher).forward
    monkeypatch.setattr(type(model.teacher), "forward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert calls == [] and trainer.global_step == 7  # 4 + 3 batches, the teacher never run
    assert {"val/sentiment/acc", "val/topic/acc", "val/score"} <= set(trainer.callback_metrics)
    assert model.student.heads["topic"].pooling == "mean"  # the student pools like its teacher


def test_only_the_frozen_teachers_eval_mode_goes_unreported(teacher):
    model = DistillationModule(teacher=str(teacher), student_layers=[0, 2, 4]).train()
    teacher_modules = sum(1 for _ in model.teacher.modules())
    message = "Found {} module(s) in eval mode at the start of training. This may lead to unexpected behavior"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expect_frozen_teacher(model, model.teacher)
        warnings.warn(message.format(teacher_modules))
    assert caught == []
    model.student.heads.eval()  # a module of the student left in eval mode must still be reported
    in_eval = sum(1 for part in model.modules() if not part.training)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expect_frozen_teacher(model, model.teacher)
        warnings.warn(message.format(in_eval))
    assert in_eval > teacher_modules and len(caught) == 1
