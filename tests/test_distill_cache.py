"""Teacher-logits cache: computed once, keyed by teacher + data + settings, equal to online."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from instructrec.commands.cache_teacher import data_arguments
from instructrec.commands.cache_teacher import main as cache_teacher_main
from instructrec.commands.cache_teacher import parser as cache_teacher_parser
from instructrec.distill import teacher_cache
from instructrec.distill.data import TeacherBatchCollator, TeacherCacheOptions, TeacherLogitsDataModule
from instructrec.distill.module import DistillationModule
from instructrec.distill.teacher import load_teacher
from instructrec.distill.teacher_cache import CACHE_LOSS_ATOL, CACHE_LOSS_RTOL
from instructrec.errors import InputError

from distill_helpers import save_classification_teacher, save_qa_teacher
from helpers import write_classification


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return save_classification_teacher(root / "a", seed=0), save_classification_teacher(root / "b", seed=1)


def data_module(tmp_path, teacher, rows=24, **kwargs):
    train = write_classification(tmp_path / "train.jsonl", [(f"review number {i}", ["positive", "negative"][i % 2]) for i in range(rows)])
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    return TeacherLogitsDataModule(train=str(train), val_fraction=0.0, tokenizer="tiny-bert", batch_size=8,
                                   max_length=48, teacher=str(teacher), **kwargs)


def close(a, b):
    return abs(float(a) - float(b)) <= CACHE_LOSS_ATOL + CACHE_LOSS_RTOL * abs(float(b))


def test_cached_loss_equals_online_loss_on_the_same_batch(tmp_path, teachers):
    dm = data_module(tmp_path, teachers[0])
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["teacher_logits"].shape == (8, 2)
    assert dm.datasets["train"].features["teacher_logits"].feature.dtype == "float16"  # stored as float16
    assert batch["teacher_logits"].std(0).min() > 0  # rows differ: a real test of alignment
    module = DistillationModule(teacher=str(teachers[0]), tasks=dm.tasks, student_layers=[0, 2, 4], temperature=2.0).eval()
    weights = {"soft": 1.0, "hard": 0.0, "hidden": 0.0, "attention": 0.0}
    with torch.no_grad():
        student = module.student(batch, dm.name)
        cached = module.losses(batch, student, None, weights, 2.0)["soft"]
        online_batch = {k: v for k, v in batch.items() if not k.startswith("teacher_")}
        online = module.losses(online_batch, student, module.teacher(online_batch, dm.name), weights, 2.0)["soft"]
    assert online > 0 and close(cached, online), (cached, online)
    # The cached logits are the teacher's, rounded to float16.
    assert torch.allclose(batch["teacher_logits"].float(), module.teacher(online_batch, dm.name).logits, atol=1e-2)


def test_prepare_data_and_setup_in_one_process_load_the_teacher_once(tmp_path, teachers, monkeypatch):
    from instructrec.distill import data as distill_data

    loads = []

    def counted(*args, **kwargs):
        loads.append(args[0])
        return load_teacher(*args, **kwargs)

    monkeypatch.setattr(distill_data, "load_teacher", counted)
    dm = data_module(tmp_path, teachers[0])
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("validate")
    assert loads == [str(teachers[0])] and "teacher_logits" in dm.datasets["train"].column_names
    fresh = data_module(tmp_path, teachers[0])  # another module (another rank): loads its own, reads the cache
    fresh.setup("fit")
    assert len(loads) == 2 and fresh.teacher_folders["train"] == dm.teacher_folders["train"]


def test_the_teacher_runs_once_and_stale_caches_are_not_reused(tmp_path, teachers, monkeypatch):
    dm = data_module(tmp_path, teachers[0])
    dm.prepare_data()
    folder = dm.teacher_folders["train"]
    meta = json.loads((folder / "meta.json").read_text())
    assert folder.parent == dm.cache_dir and meta["rows"] == 24 and meta["data_cache"].startswith("train-")

    def fail(*args, **kwargs):
        raise AssertionError("the teacher ran again")

    # Same teacher, data and settings: read from the cache.
    monkeypatch.setattr(teacher_cache, "run_teacher", fail)
    again = data_module(tmp_path, teachers[0])
    again.setup("fit")
    assert again.teacher_folders["train"] == folder and "teacher_logits" in again.datasets["train"].column_names
    # Another teacher, other data, other settings: each is another entry, so the run is needed.
    for other in (
        data_module(tmp_path, teachers[1]),
        data_module(tmp_path / "more", teachers[0], rows=30, cache_dir=str(tmp_path / "cache")),
        data_module(tmp_path, teachers[0], teacher_top_k=1),
    ):
        with pytest.raises(AssertionError, match="ran again"):
            other.prepare_data()
    # An entry whose meta disagrees (copied or corrupted) is rebuilt, not read.
    meta["teacher"] = "folder:someone-else"
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(AssertionError, match="ran again"):
        data_module(tmp_path, teachers[0]).prepare_data()


def test_top_k_cache_with_all_classes_gives_the_full_loss(tmp_path, teachers):
    dm = data_module(tmp_path, teachers[0], teacher_top_k=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["teacher_logits_topk_indices"].shape == (8, 2) and "teacher_logits" not in batch
    module = DistillationModule(teacher=str(teachers[0]), tasks=dm.tasks, student_layers=[0, 2]).eval()
    weights = {"soft": 1.0, "hard": 0.0, "hidden": 0.0, "attention": 0.0}
    with torch.no_grad():
        student = module.student(batch, dm.name)
        topk = module.losses(batch, student, None, weights, 1.0)["soft"]
        plain = {k: v for k, v in batch.items() if not k.startswith("teacher_")}
        online = module.losses(plain, student, module.teacher(plain, dm.name), weights, 1.0)["soft"]
    assert close(topk, online)


def test_qa_logits_are_cached_per_row_and_padded_back(tmp_path):
    from datasets import Dataset

    folder = save_qa_teacher(tmp_path / "qa")
    teacher = load_teacher(str(folder), tasks={"squad": {"type": "qa"}})
    lengths = [9, 5, 7]
    gen = torch.Generator().manual_seed(0)
    rows = {
        "input_ids": [[2] + torch.randint(5, 90, (n - 1,), generator=gen).tolist() for n in lengths],
        "attention_mask": [[1] * n for n in lengths],
        "token_type_ids": [[0] * 3 + [1] * (n - 3) for n in lengths],
        "start_positions": [3, 0, 4],
        "end_positions": [5, 0, 6],
    }
    dataset = Dataset.from_dict(rows)
    cached, _ = teacher_cache.cache_teacher_outputs(teacher, dataset, "squad", tmp_path / "cache", batch_size=2)
    assert [len(x) for x in cached["teacher_start_logits"]] == lengths
    topk, _ = teacher_cache.cache_teacher_outputs(teacher, dataset, "squad", tmp_path / "cache", top_k=6)
    assert [sum(v != float("-inf") for v in row) for row in topk["teacher_end_logits_topk_values"]] == [6, 5, 6]

    from instructrec.backbones import load_tokenizer
    from instructrec.data.datamodule import ModelBatchCollator

    joined = teacher_cache.attach(dataset, cached).with_format("torch")
    columns = ["teacher_start_logits", "teacher_end_logits"]
    batch = TeacherBatchCollator(ModelBatchCollator(load_tokenizer("tiny-bert")), columns)([joined[i] for i in range(3)])
    assert batch["teacher_start_logits"].shape == (3, 9) and torch.isinf(batch["teacher_start_logits"][1, 5:]).all()
    module = DistillationModule(teacher=str(folder), tasks={"squad": {"type": "qa"}}, student_layers=[0, 2]).eval()
    weights = {"soft": 1.0, "hard": 1.0, "hidden": 0.0, "attention": 0.0}
    with torch.no_grad():
        student = module.student(batch, "squad")
        from_cache = module.losses(batch, student, None, weights, 2.0)
        plain = {k: v for k, v in batch.items() if not k.startswith("teacher_")}
        online = module.losses(plain, student, module.teacher(plain, "squad"), weights, 2.0)
    assert close(from_cache["soft"], online["soft"]) and torch.isfinite(from_cache["soft"])
    assert torch.equal(from_cache["hard"], online["hard"])


def test_rows_are_read_in_length_order_and_cached_in_their_own(tmp_path, teachers):
    from datasets import Dataset

    teacher = load_teacher(str(teachers[0]), tasks={"sst2": {"type": "classification", "labels": ["positive", "negative"]}})
    gen = torch.Generator().manual_seed(0)
    lengths = [12, 3, 9, 5, 12, 4, 7]  # batches of 2 by length: (3, 4), (5, 7), (9, 12), (12)
    dataset = Dataset.from_dict({
        "input_ids": [[2] + torch.randint(5, 90, (n - 1,), generator=gen).tolist() for n in lengths],
        "attention_mask": [[1] * n for n in lengths],
    })
    seen = []
    original = teacher.forward
    teacher.forward = lambda batch, task: seen.append(batch["input_ids"].shape[1]) or original(batch, task)
    outputs = teacher_cache.run_teacher(teacher, dataset, "sst2", batch_size=2)
    assert seen == [4, 7, 12, 12]  # each batch padded to its own longest row, never to 12 but the last two
    teacher.forward = original
    with torch.no_grad():
        alone = [teacher({k: torch.tensor([dataset[i][k]]) for k in ("input_ids", "attention_mask")}, "sst2").logits[0]
                 for i in range(len(lengths))]
    for cached_row, row in zip(outputs["teacher_logits"], alone):
        assert torch.allclose(torch.as_tensor(cached_row).float(), row, atol=1e-2)


def fit_config(tmp_path, teacher, data_options: str = "") -> Path:
    """A fit config as ``instructrec cache-teacher`` reads it: the teacher in the model section."""
    train = write_classification(tmp_path / "train.jsonl", [(f"text {i}", "positive") for i in range(6)])
    config = tmp_path / "run.yaml"
    config.write_text(
        "model:\n  class_path: instructrec.distill.DistillationModule\n  init_args:\n"
        f"    teacher: {teacher}\n    backbone: tiny-bert\n    teacher_dtype: bfloat16\n"
        "data:\n  class_path: instructrec.distill.TeacherLogitsDataModule\n  init_args:\n"
        f"    train: {train}\n    val_fraction: 0.0\n    cache_dir: {tmp_path / 'cache'}\n{data_options}"
    )
    return config


def test_cache_teacher_command(tmp_path, teachers, capsys):
    config = fit_config(tmp_path, teachers[0])
    assert cache_teacher_main([str(config), "--top-k", "1"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["split"] == "train" and line["rows"] == 6 and "teacher-train-" in line["folder"]
    assert cache_teacher_main([str(config), "--teacher", str(tmp_path / "missing")]) == 2


def test_teacher_options_come_from_the_flags_then_the_data_then_the_model(tmp_path, teachers):
    config = yaml.safe_load(fit_config(tmp_path, teachers[0], "    teacher_top_k: 3\n    teacher_batch_size: 5\n").read_text())
    arguments, options = data_arguments(config, cache_teacher_parser().parse_args(["run.yaml", "--top-k", "2"]))
    assert options == TeacherCacheOptions(teacher=str(teachers[0]), teacher_top_k=2, teacher_dtype="bfloat16",
                                          teacher_splits=["train"], teacher_batch_size=5)
    assert not any(key.startswith("teacher") for key in arguments) and arguments["tokenizer"] == "tiny-bert"


def test_a_misspelt_teacher_option_is_refused_by_name(tmp_path, teachers, capsys):
    with pytest.raises(InputError, match=r"unknown teacher option\(s\) \['teacher_topk'\]; .*'teacher_top_k'"):
        TeacherCacheOptions.of({"teacher": "t.ckpt", "teacher_topk": 4})
    with pytest.raises(InputError, match="teacher_top_k must be positive"):
        TeacherCacheOptions.of({"teacher": "t.ckpt", "teacher_top_k": 0})
    # In a fit config's data section: refused before any data is read or the teacher is run.
    assert cache_teacher_main([str(fit_config(tmp_path, teachers[0], "    teacher_topk: 1\n"))]) == 2
    assert "unknown teacher option(s) ['teacher_topk']" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()
