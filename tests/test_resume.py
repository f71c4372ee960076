"""Kill and resume: a fit killed with SIGKILL mid-epoch and resumed with ``--ckpt_path last`` ends
with the weights of an uninterrupted fit, bit for bit (data order, task schedule, dropout and
optimizer included); every shipped config keeps a ``last.ckpt``."""

import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import TensorDataset

from instructrec.callbacks import AtomicCheckpointIO, make_resumable
from instructrec.data.resumable import EpochShuffleSampler, ResumableLoader, TrainPosition

from helpers import write_classification

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
# Every config a user runs, and the overlays that replace a base config's callbacks.
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if "trainer" not in p.parts)


def fit(tmp_path, run: str, config: str, *extra: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    """``instructrec fit`` in a fresh process on the tiny backbone, ``last.ckpt`` every 2 steps."""
    overlay = tmp_path / "resume.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"logger": False, "callbacks": [
        {"class_path": "instructrec.callbacks.ResumeCheckpoint", "init_args": {"every_n_train_steps": 2}}]}}))
    args = [
        "fit", "--config", str(ROOT / config), "--config", str(overlay),
        "--model.init_args.backbone", "tiny-bert", "--data.init_args.cache_dir", str(tmp_path / "cache"),
        "--trainer.default_root_dir", str(tmp_path / run), "--trainer.enable_progress_bar", "false",
        "--trainer.deterministic", "true", "--test_after_fit", "false", *extra,
    ]
    if kill_at is not None:
        args.append("--trainer.callbacks+=" + json.dumps({"class_path": "helpers.KillAtStep", "init_args": {"step": kill_at}}))
    path = [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]  # tests/: helpers.KillAtStep
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "instructrec.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def last_checkpoint(tmp_path, run: str) -> dict:
    return torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)


def kill_resume_and_compare(tmp_path, config: str, *extra: str, kill_at: int, steps: int) -> None:
    whole = fit(tmp_path, "whole", config, *extra)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = fit(tmp_path, "killed", config, *extra, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert last_checkpoint(tmp_path, "killed")["global_step"] == kill_at - kill_at % 2
    assert not list((tmp_path / "killed" / "checkpoints").glob("*.tmp"))

    resumed = fit(tmp_path, "killed", config, *extra, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr
    expected, got = last_checkpoint(tmp_path, "whole"), last_checkpoint(tmp_path, "killed")
    assert expected["global_step"] == got["global_step"] == steps
    assert expected["state_dict"].keys() == got["state_dict"].keys()
    different = [name for name, tensor in expected["state_dict"].items() if not torch.equal(tensor, got["state_dict"][name])]
    assert not different


@pytest.mark.slow
def test_quickstart_killed_mid_epoch_resumes_bit_identical(tmp_path):
    """38 batches an epoch: killed after step 5 (last checkpoint: step 4), resumed to step 8."""
    kill_resume_and_compare(
        tmp_path, "configs/quickstart.yaml", "--trainer.max_steps", "8", "--trainer.val_check_interval", "3",
        "--trainer.limit_val_batches", "2", "--show_predictions", "[]", kill_at=5, steps=8,
    )


@pytest.mark.slow
def test_multitask_killed_mid_epoch_resumes_bit_identical(tmp_path):
    """Two tasks, 5-step epochs of an annealed schedule: killed in the second epoch after step 7
    (last checkpoint: step 6), resumed to step 10; the schedule and each source's stream continue."""
    topics = ["sports", "politics", "science"]
    sentiment = write_classification(tmp_path / "sentiment.jsonl",
                                     [(f"review {i}", ["positive", "negative"][i % 2]) for i in range(40)])
    topic = write_classification(tmp_path / "topic.jsonl", [(f"news {i}", topics[i % 3]) for i in range(18)], topics)
    sources = {"sentiment": {"train": str(sentiment), "val_fraction": 0.25, "batch_size": 4},
               "topic": {"train": str(topic), "val": str(topic), "batch_size": 3}}
    kill_resume_and_compare(
        tmp_path, "configs/multitask/financial.yaml", "--data.init_args.sources", json.dumps(sources),
        "--data.init_args.sampling", "annealed", "--data.init_args.anneal_steps", "10",
        "--data.init_args.epoch_length", "5", "--trainer.max_steps", "10", "--trainer.max_epochs", "-1",
        "--trainer.limit_val_batches", "2", kill_at=7, steps=10,
    )


def test_resumable_loader_continues_its_pass_and_then_the_next():
    """The loader's state after k batches starts a new loader at batch k of the same pass; a
    finished pass resumes at the next one. The order is a function of (seed, epoch) only."""
    data = TensorDataset(torch.arange(10))

    def loader(position):
        return ResumableLoader(data, batch_size=3, sampler=EpochShuffleSampler(data, seed=1), position=position)

    whole = loader(TrainPosition())
    passes = [[batch[0].tolist() for batch in whole] for _ in range(2)]
    assert sorted(sum(passes[0], [])) == list(range(10)) and passes[0] != passes[1]

    first = loader(TrainPosition())
    iterator = iter(first)
    seen = [next(iterator)[0].tolist() for _ in range(2)]
    resumed = loader(TrainPosition())
    resumed.load_state_dict(first.state_dict())
    assert seen + [batch[0].tolist() for batch in resumed] == passes[0]
    assert [batch[0].tolist() for batch in resumed] == passes[1]

    after_pass = loader(TrainPosition())
    after_pass.load_state_dict({"epoch": 0, "batches": len(whole)})
    assert [batch[0].tolist() for batch in after_pass] == passes[1]


def test_length_grouped_pass_cuts_sorted_pools_into_batches_and_resumes():
    """Within one pool every loader batch is a run of the length order (no two batches interleave);
    the short batch comes last; the pass is a function of (seed, epoch) and resumes mid-pass."""
    lengths = [(7 * i) % 23 for i in range(43)]
    data = TensorDataset(torch.arange(43))

    def loader(position, seed=1):
        sampler = EpochShuffleSampler(data, seed=seed, lengths=lengths, batch_size=4)
        return ResumableLoader(data, batch_size=4, sampler=sampler, position=position)

    whole = loader(TrainPosition())
    passes = [[batch[0].tolist() for batch in whole] for _ in range(2)]
    batches = passes[0]
    assert sorted(sum(batches, [])) == list(range(43)) and passes[0] != passes[1]
    assert [len(b) for b in batches] == [4] * 10 + [3]
    # 43 rows < one pool of 50 batches: the batches are the length-sorted rows cut in fours, so
    # no two batches' length ranges interleave.
    ranges = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    assert all(high <= next_low for (_, high), (next_low, _) in zip(ranges, ranges[1:]))
    assert passes[0] != [batch[0].tolist() for batch in loader(TrainPosition(), seed=2)]

    first = loader(TrainPosition())
    iterator = iter(first)
    seen = [next(iterator)[0].tolist() for _ in range(3)]
    resumed = loader(TrainPosition())
    resumed.load_state_dict(first.state_dict())
    assert seen + [batch[0].tolist() for batch in resumed] == passes[0]
    with pytest.raises(ValueError, match="42 lengths for 43 rows"):
        EpochShuffleSampler(data, lengths=lengths[:-1])


@pytest.mark.parametrize("pool", [1, 2, 3])
def test_length_pools_group_only_rows_a_shuffled_pass_puts_together(pool):
    """Every batch comes from one pool: ``pool`` consecutive batches' rows of the plain shuffled
    pass (same seed and epoch), sorted by length, so a pool's batches do not interleave in length;
    with a pool of one batch the batches are the shuffled pass's own."""
    lengths = [(7 * i) % 23 for i in range(43)]
    data = TensorDataset(torch.arange(43))
    shuffled = list(EpochShuffleSampler(data, seed=3))
    grouped = list(EpochShuffleSampler(data, seed=3, lengths=lengths, batch_size=4, pool=pool))
    assert sorted(grouped) == list(range(43))
    batches = [grouped[i : i + 4] for i in range(0, 43, 4)]
    pools = [set(shuffled[i : i + 4 * pool]) for i in range(0, 43, 4 * pool)]
    for rows in pools:
        inside = [b for b in batches if set(b) <= rows]
        assert sorted(sum(inside, [])) == sorted(rows)
        ranges = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in inside)
        assert all(high <= next_low for (_, high), (next_low, _) in zip(ranges, ranges[1:]))
    if pool == 1:
        assert sorted(map(sorted, batches)) == sorted(sorted(shuffled[i : i + 4]) for i in range(0, 43, 4))


def test_atomic_checkpoint_io_never_leaves_a_partial_file(tmp_path, monkeypatch):
    """A write that fails halfway leaves the previous checkpoint whole and no partial file in its
    place; the CLI's trainers write this way."""
    trainer = make_resumable(L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False))
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def fail(*args, **kwargs):
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(RuntimeError):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    io.save_checkpoint({"step": 3}, path)
    assert torch.load(path, weights_only=True) == {"step": 3}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_keeps_a_last_checkpoint(config):
    """A run stopped early (max_steps, max_time, Ctrl-C, a kill) leaves a last.ckpt to resume from."""
    callbacks = (yaml.safe_load(config.read_text(encoding="utf-8")).get("trainer") or {}).get("callbacks")
    if callbacks is None:
        assert "variants" in config.parts, f"{config} has no callbacks"  # an overlay keeps its base's
        return
    keeping = []
    for callback in callbacks:
        module, name = callback["class_path"].rsplit(".", 1)
        if issubclass(getattr(importlib.import_module(module), name), ModelCheckpoint):
            keeping.append((callback.get("init_args") or {}).get("save_last"))
    assert True in keeping, f"{config}: no ModelCheckpoint with save_last: true"
