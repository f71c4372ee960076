"""A run never trains on NaN silently, and never writes where it cannot or where it was not asked."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from instructrec.callbacks import NonFiniteLoss, NonFiniteLossError
from instructrec.cli import main
from instructrec.paths import writable_folder
from instructrec.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


class LossGoesBad(L.LightningModule):
    """A linear model whose loss is NaN on the batches listed in ``bad`` (by batch index)."""

    def __init__(self, bad: set[int]) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.bad = bad
        self.before_bad_step: dict[str, torch.Tensor] = {}

    def training_step(self, batch, batch_idx):
        loss = self.linear(batch["x"]).pow(2).mean()
        if batch_idx in self.bad:
            self.before_bad_step = {k: v.clone() for k, v in self.state_dict().items()}
            loss = loss * float("nan")
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.1)


def batches(n: int = 4):
    torch.manual_seed(0)
    return [{"x": torch.randn(3, 4), "example_id": [f"r{i}-{j}" for j in range(3)], "task": "toy"} for i in range(n)]


def fit(module, callback, n=4):
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[callback])
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches(n), batch_size=None))
    return trainer


def test_a_nan_loss_stops_the_run_naming_step_task_and_records():
    with pytest.raises(NonFiniteLossError) as error:
        fit(LossGoesBad({2}), NonFiniteLoss())
    assert str(error.value) == "the training loss is nan at step 2 (epoch 0, batch 2, task toy); records: r2-0, r2-1, r2-2"
    assert "--non_finite_loss.action skip" in error.value.hint


def test_skip_leaves_the_weights_as_they_were_before_the_bad_step():
    module, callback = LossGoesBad({1}), NonFiniteLoss(action="skip")
    trainer = fit(module, callback, n=2)  # the bad step is the last: nothing trains after it
    assert callback.skipped == 1 and trainer.global_step == 2
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, module.before_bad_step[name]), name
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_an_unknown_action_is_refused():
    with pytest.raises(InputError, match="must be 'stop' or 'skip', got 'ignore'"):
        NonFiniteLoss(action="ignore")


def test_the_cli_stops_a_diverging_run_with_exit_2_and_keeps_no_bad_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", "configs/quickstart.yaml", "--model.init_args.backbone", "tiny-bert",
              "--data.init_args.cache_dir", str(tmp_path / "cache"), "--trainer.default_root_dir", str(tmp_path / "run"),
              "--model.init_args.learning_rate", "1e30", "--trainer.max_steps", "4", "--trainer.logger", "false"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "\ninstructrec: error: the training loss is nan at step " in err and "records: synthetic-" in err
    for checkpoint in (tmp_path / "run").rglob("*.ckpt"):
        state = torch.load(checkpoint, weights_only=True)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()), checkpoint


def test_writable_folder_refuses_impossible_places(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(InputError, match=rf"^the cache {blocker}/sub cannot be written: Not a directory$"):
        writable_folder(blocker / "sub", "the cache")
    assert writable_folder(tmp_path / "new" / "deep", "x") == tmp_path / "new" / "deep"
    assert (tmp_path / "new" / "deep").is_dir() and not list((tmp_path / "new" / "deep").iterdir())


@pytest.mark.parametrize("option, where, reason", [
    ("--trainer.default_root_dir", "/proc/instructrec-x", "trainer.default_root_dir /proc/instructrec-x cannot be written"),
    ("--data.init_args.cache_dir", "{blocker}/cache", "data.init_args.cache_dir {blocker}/cache cannot be written: Not a directory"),
    ("--trainer.callbacks.output_dir", "{blocker}/p",
     "trainer.callbacks JsonlPredictionWriter.output_dir {blocker}/p cannot be written: Not a directory"),
])
def test_unwritable_output_places_are_refused_before_training(tmp_path, capsys, monkeypatch, option, where, reason):
    monkeypatch.chdir(ROOT)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = ["fit", "--config", "configs/quickstart.yaml", "--model.init_args.backbone", "tiny-bert",
            "--data.init_args.cache_dir", str(tmp_path / "cache"), "--trainer.default_root_dir", str(tmp_path / "run"),
            option, where.format(blocker=blocker)]
    with pytest.raises(SystemExit) as exit:
        main(args)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert reason.format(blocker=blocker) in err and "Traceback" not in err
    assert not (tmp_path / "cache").exists(), "nothing was encoded before the refusal"


def test_a_relative_default_root_dir_is_not_repeated_in_the_logger_folder(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from instructrec.cli import place_outputs

    monkeypatch.chdir(tmp_path)
    logger = SimpleNamespace(class_path="lightning.pytorch.loggers.WandbLogger", init_args={"save_dir": None})
    checkpoint = SimpleNamespace(class_path="lightning.pytorch.callbacks.ModelCheckpoint", init_args={"dirpath": "checkpoints"})
    config = {"trainer": {"default_root_dir": "runs/a", "logger": logger, "callbacks": [checkpoint]}}
    place_outputs(config)
    assert logger.init_args["save_dir"] == "runs/a"
    assert checkpoint.init_args["dirpath"] == str(Path("runs/a/checkpoints"))


def test_one_default_root_dir_moves_everything_a_run_writes(tmp_path, monkeypatch):
    """The shipped quickstart config with only `--trainer.default_root_dir` changed: checkpoints,
    the saved config, the logger's folder and `predict`'s output all land under it."""
    monkeypatch.chdir(ROOT)
    run = tmp_path / "elsewhere"
    common = ["--config", "configs/quickstart.yaml", "--model.init_args.backbone", "tiny-bert",
              "--data.init_args.cache_dir", str(tmp_path / "cache"), "--trainer.default_root_dir", str(run)]
    main(["fit", *common, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
          "--test_after_fit", "false",
          "--show_predictions", "[]"])
    assert (run / "checkpoints" / "last.ckpt").is_file()
    best = sorted(run.rglob("best*.ckpt"))
    assert best and all(run in p.parents for p in best)
    assert list(run.rglob("config.yaml"))
    main(["predict", *common, "--ckpt_path", str(best[0]),
          "--data.init_args.predict", "instructrec/resources/quickstart/val.jsonl", "--trainer.limit_predict_batches", "1"])
    rows = (run / "predictions" / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == 32  # one batch of the quickstart's batch size


def test_an_error_in_a_constructor_is_printed_as_input_error(tmp_path, capsys, monkeypatch):
    """jsonargparse wraps what a model's or data module's constructor raises; the CLI still prints
    the input error itself, in two lines, with exit status 2."""
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", "configs/quickstart.yaml", "--model.init_args.backbone", "no-such-backbone",
              "--trainer.default_root_dir", str(tmp_path / "run")])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "instructrec: error: backbone 'no-such-backbone' is neither a registered name" in err
    assert "Traceback" not in err and "Union subtypes" not in err
