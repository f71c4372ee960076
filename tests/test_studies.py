"""`instructrec tune` and `instructrec ablate` on the tiny backbone: a study that prunes, is killed
and resumes, shared by two processes; an ablation's files and its resume; the tables' numbers."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from instructrec.cli import main
from instructrec.errors import InputError
from instructrec.studies import tables
from instructrec.studies.runs import apply_overrides, cli_arguments
from instructrec.studies.tuning import read_space

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path: Path, monitor: str = "val/sentiment/loss", mode: str = "min", epochs: int = 2) -> Path:
    """The quickstart on the tiny backbone and a slice of its data, monitoring the validation loss."""
    config = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    config["trainer"].update(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_model_summary=False)
    config["trainer"]["callbacks"] = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                       "init_args": {"monitor": monitor, "mode": mode, "filename": "best"}}]
    config["model"]["init_args"]["backbone"] = "tiny-bert"
    for split in ("train", "val", "test"):
        config["data"]["init_args"][split] = str(ROOT / config["data"]["init_args"][split])
    config["data"]["init_args"].update(cache_dir=str(tmp_path / "cache"), max_examples={"train": 96, "val": 48, "test": 48})
    config["show_predictions"] = []
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_space(tmp_path: Path, space: dict) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def test_overrides_set_dotted_keys_both_as_arguments_and_in_yaml():
    config = {"model": {"init_args": {"learning_rate": 1e-4}}, "trainer": {"max_epochs": 2}}
    values = {"model.init_args.learning_rate": 3e-4, "model.init_args.pooling": "mean", "data.init_args.max_examples": {"train": 5}}
    assert apply_overrides(config, values) == {
        "model": {"init_args": {"learning_rate": 3e-4, "pooling": "mean"}}, "trainer": {"max_epochs": 2},
        "data": {"init_args": {"max_examples": {"train": 5}}}}
    assert config["model"]["init_args"] == {"learning_rate": 1e-4}  # not changed in place
    assert cli_arguments(values) == ["--model.init_args.learning_rate=0.0003", "--model.init_args.pooling=mean",
                                     '--data.init_args.max_examples={"train": 5}']
    with pytest.raises(InputError, match="'max_epochs' is int, not a mapping"):
        apply_overrides(config, {"trainer.max_epochs.x": 1})
    # Strings that YAML would read as something else are quoted (a variant named "single: sentiment").
    assert cli_arguments({"a": "single: sentiment", "b": "42", "c": "runs/x.ckpt", "d": "é: x"}) == [
        '--a="single: sentiment"', '--b="42"', "--c=runs/x.ckpt", '--d="é: x"']


def test_a_bad_search_space_is_refused_by_key(tmp_path):
    with pytest.raises(InputError, match="'model.init_args.learning_rate': unknown field\\(s\\) \\['lg'\\]"):
        read_space(write_space(tmp_path, {"model.init_args.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "lg": True}}))
    with pytest.raises(InputError, match="low > 0 on a log scale"):
        read_space(write_space(tmp_path, {"x": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}))
    with pytest.raises(InputError, match="type must be float, int or categorical"):
        read_space(write_space(tmp_path, {"x": {"type": "uniform"}}))


def test_significance_pairs_seeds_and_marks_clear_differences():
    base = {0: 0.80, 1: 0.81, 2: 0.79, 3: 0.80}
    better = {0: 0.90, 1: 0.92, 2: 0.89, 3: 0.89}
    p, mark = tables.significance(base, better)
    from scipy import stats

    assert p == pytest.approx(stats.ttest_rel([0.90, 0.92, 0.89, 0.89], [0.80, 0.81, 0.79, 0.80]).pvalue) and mark == "**"
    assert tables.significance(base, {0: 0.8})[1] == ""  # one run: no test
    cells = tables.summarise({"base": {s: {"acc": v} for s, v in base.items()},
                              "better": {s: {"acc": v} for s, v in better.items()}}, ["acc"], "base", {"acc": True})
    assert cells["better"]["acc"].best and not cells["base"]["acc"].best
    assert cells["better"]["acc"].delta == pytest.approx(0.1)
    text = tables.render_markdown(cells, ["acc"], scale=100, digits=1)
    assert "| better | 4 | **90.0 ± 1.4** (+10.0**) |" in text
    assert "\\textbf{90.0 $\\pm$ 1.4} (+10.0**)" in tables.render_latex(cells, ["acc"], scale=100, digits=1)


def test_a_tune_study_prunes_writes_a_best_config_that_fits_and_tests_it(tmp_path, monkeypatch):
    from instructrec.studies.tuning import Tuner

    monkeypatch.chdir(tmp_path)
    base = tiny_config(tmp_path, epochs=3)
    space = write_space(tmp_path, {"model.init_args.learning_rate": {"type": "float", "low": 1e-9, "high": 1e-2, "log": True}})
    tuner = Tuner(str(base), str(space), 3, tmp_path / "study", study_name="tiny", pruner="median")
    for rate in (3e-3, 2e-3, 1e-9):  # the third barely moves: worse than the median at an epoch
        tuner.study.enqueue_trial({"model.init_args.learning_rate": rate})
    tuner.optimize(progress=False)
    states = [t.state.name for t in tuner.study.trials]
    assert states[:2] == ["COMPLETE", "COMPLETE"] and states[2] == "PRUNED"
    rows = list(csv.DictReader((tmp_path / "study" / "trials.csv").open()))
    assert [r["state"] for r in rows] == states
    assert [r["last_step"] for r in rows[:2]] == ["2", "2"]  # completed trials reported all three epochs
    assert all(float(r["seconds"]) > 0 for r in rows)
    best = tuner.best_config()
    assert yaml.safe_load(best.read_text())["model"]["init_args"]["learning_rate"] == tuner.study.best_trial.params["model.init_args.learning_rate"]
    metrics = tuner.test_best()
    assert set(metrics) >= {"test/sentiment/acc", "test/score"}
    assert json.loads((tmp_path / "study" / "best-test.json").read_text())["trial"] == tuner.study.best_trial.number
    main(["fit", "--config", str(best), "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path / "refit")])
    assert list((tmp_path / "refit").rglob("best.ckpt"))


def _tune_process(tmp_path: Path, base: Path, space: Path, n: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "instructrec.cli", "tune", "--config", str(base), "--space", str(space),
                             "--n-trials", str(n), "--out", str(tmp_path / "study"), "--study-name", "shared",
                             "--pruner", "none", "--sampler", "random", "--test", "false", "--no-progress", *extra],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _states(tmp_path: Path) -> list[str]:
    database = tmp_path / "study" / "study.db"
    if not database.is_file():
        return []
    with sqlite3.connect(database) as connection:
        try:
            return [row[0] for row in connection.execute("select state from trials order by number")]
        except sqlite3.OperationalError:
            return []


@pytest.mark.slow
def test_two_tune_processes_share_one_study_without_duplicated_or_lost_trials(tmp_path):
    base = tiny_config(tmp_path, epochs=1)
    space = write_space(tmp_path, {"model.init_args.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
                                   "model.init_args.pooling": {"type": "categorical", "choices": ["first", "mean"]}})
    first = _tune_process(tmp_path, base, space, 4)
    time.sleep(3)  # the first creates the study's tables
    second = _tune_process(tmp_path, base, space, 4)
    try:
        outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    finally:
        for process in (first, second):
            process.kill()
    assert first.returncode == 0 and second.returncode == 0, outputs
    states = _states(tmp_path)
    assert states.count("COMPLETE") == 4, (states, outputs)
    folders = sorted(p.name for p in (tmp_path / "study").glob("trial-*") if list(p.rglob("best.ckpt")))
    assert len(folders) == 4  # every finished trial ran once, in its own folder


@pytest.mark.slow
def test_a_killed_study_resumes_and_finishes_its_trials(tmp_path):
    # 20 epochs of 6 steps: a trial lasts seconds, so the kill below lands inside the second one.
    base = tiny_config(tmp_path, epochs=20)
    space = write_space(tmp_path, {"model.init_args.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}})
    process = _tune_process(tmp_path, base, space, 3, "--heartbeat-interval", "1")
    deadline = time.time() + 300
    while not ("COMPLETE" in (states := _states(tmp_path)) and "RUNNING" in states) and time.time() < deadline:
        time.sleep(0.05)
    # After the trial's first heartbeat (Optuna records it as the trial starts). A trial killed
    # before it has none, so Optuna never finds it stale and it keeps a place in n_trials: a known
    # gap of `tune`, not what this test is about.
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    before = _states(tmp_path)
    assert "COMPLETE" in before and before.count("COMPLETE") < 3
    time.sleep(2.5)  # past the grace period: the killed trial's heartbeat is stale
    resumed = _tune_process(tmp_path, base, space, 3, "--heartbeat-interval", "1")
    try:
        output = resumed.communicate(timeout=600)[0]
    finally:
        resumed.kill()
    assert resumed.returncode == 0, output
    after = _states(tmp_path)
    assert after.count("COMPLETE") == 3, (before, after)
    assert "RUNNING" not in after
    assert (tmp_path / "study" / "best.yaml").is_file()


def write_ablation(tmp_path: Path, base: Path) -> Path:
    spec = {"name": "tiny_ablation", "base": str(base), "seeds": [0, 1], "metrics": ["test/sentiment/acc", "test/score"],
            "scale": 100, "digits": 1, "out": str(tmp_path / "ablation"),
            "variants": {"full": {}, "slow_lr": {"overrides": {"model.init_args.learning_rate": 1e-6}}}}
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_trial_that_died_before_its_objective_began_is_failed_not_counted(tmp_path):
    from optuna.trial import TrialState

    from instructrec.studies.tuning import create_study, fail_abandoned_trials

    study = create_study("s", f"sqlite:///{tmp_path / 'study.db'}", "maximize", "random", "none", [], 0, 60)
    died = study.ask()  # RUNNING without a heartbeat or a root: its process died right after asking
    alive = study.ask()
    alive.set_user_attr("root", str(tmp_path / "trial-0001"))  # its objective began
    assert fail_abandoned_trials(study, grace_period=3600) == [], "too young to be called dead"
    assert fail_abandoned_trials(study, grace_period=0) == [died.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {died.number: TrialState.FAIL, alive.number: TrialState.RUNNING}


def test_an_ablation_writes_its_table_files_and_a_rerun_skips_finished_runs(tmp_path, monkeypatch, capsys):
    from instructrec.studies import ablation

    monkeypatch.chdir(tmp_path)
    spec = write_ablation(tmp_path, tiny_config(tmp_path, monitor="val/score", mode="max", epochs=1))
    main(["ablate", str(spec), "--no-progress"])
    out = tmp_path / "ablation"
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["variant"], r["seed"]) for r in rows] == [("full", "0"), ("full", "1"), ("slow_lr", "0"), ("slow_lr", "1")]
    recorded = json.loads((out / "runs" / "slow_lr" / "seed-1" / "metrics.json").read_text())
    assert float(rows[3]["test/sentiment/acc"]) == recorded["metrics"]["test/sentiment/acc"]
    assert "--model.init_args.learning_rate=1e-06" in recorded["arguments"] and "--seed_everything=1" in recorded["arguments"]
    repository = Path(ablation.__file__).resolve().parents[2]
    if (repository / ".git").exists():  # the code version: the checkout's commit (None from a wheel)
        head = subprocess.run(["git", "-C", str(repository), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        assert recorded["code"]["commit"] == head and isinstance(recorded["code"]["dirty"], bool)
    else:
        assert recorded["code"] is None
    markdown = (out / "results.md").read_text()
    assert "| variant | n | test/sentiment/acc | test/score |" in markdown and "| slow_lr | 2 |" in markdown
    assert "\\begin{tabular}" in (out / "results.tex").read_text()
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    ran = []
    monkeypatch.setattr(ablation, "run", lambda spec, callbacks=None: ran.append(spec) or {})
    main(["ablate", str(spec), "--no-progress"])
    assert ran == []  # all four finished before
    main(["ablate", str(spec), "--report-only"])
    assert ran == [] and f"instructrec ablate {spec}\n" in (out / "results.md").read_text()  # the command that runs it
    assert list(csv.DictReader((out / "results.csv").open())) == rows


def test_an_ablation_variant_may_start_from_its_own_config_and_seed_keys_follow_the_seed(tmp_path):
    from instructrec.studies.ablation import Ablation, AblationSpec

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({
        "name": "multi_vs_single", "base": "multi.yaml", "seeds": [3, 4], "seed_keys": ["data.init_args.seed"],
        "overrides": {"trainer.max_epochs": 2},
        "variants": {"multi-task": {}, "single": {"base": "single.yaml", "overrides": {"trainer.max_epochs": 1}}}}))
    runs = Ablation(AblationSpec.read(path), out=tmp_path / "out").run_specs()
    assert [(variant, seed, spec.config, spec.overrides) for variant, seed, spec in runs] == [
        ("multi-task", 3, "multi.yaml", {"trainer.max_epochs": 2, "data.init_args.seed": 3}),
        ("single", 3, "single.yaml", {"trainer.max_epochs": 1, "data.init_args.seed": 3}),
        ("multi-task", 4, "multi.yaml", {"trainer.max_epochs": 2, "data.init_args.seed": 4}),
        ("single", 4, "single.yaml", {"trainer.max_epochs": 1, "data.init_args.seed": 4}),
    ]
    path.write_text(yaml.safe_dump({"name": "x", "base": "b.yaml", "variants": {"v": {"config": "c.yaml"}}}))
    with pytest.raises(InputError, match=r"variant 'v': unknown key\(s\) \['config'\]; a variant takes \['base', 'overlays', 'overrides'\]"):
        AblationSpec.read(path)


def test_the_live_view_survives_runs_that_draw_a_rich_progress_bar(tmp_path, monkeypatch, capsys):
    """Lightning's RichProgressBar clears the console's live display; the study's view pauses
    around each in-process run instead of crashing at its end ("pop from empty list")."""
    monkeypatch.chdir(tmp_path)
    base = tiny_config(tmp_path, monitor="val/score", mode="max", epochs=1)
    config = yaml.safe_load(base.read_text())
    config["trainer"]["enable_progress_bar"] = True
    config["trainer"]["callbacks"].append({"class_path": "lightning.pytorch.callbacks.RichProgressBar"})
    base.write_text(yaml.safe_dump(config, sort_keys=False))
    spec = yaml.safe_load(write_ablation(tmp_path, base).read_text())
    spec.update(seeds=[0], variants={"full": {}})
    (tmp_path / "ablation.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    main(["ablate", str(tmp_path / "ablation.yaml")])
    assert "1/1" in capsys.readouterr().out  # the view's last table: one run of one done
    assert [r["variant"] for r in csv.DictReader((tmp_path / "ablation" / "results.csv").open())] == ["full"]


def test_a_resumed_fit_continues_its_wandb_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    base = yaml.safe_load(tiny_config(tmp_path).read_text())
    base["trainer"]["logger"] = {"class_path": "lightning.pytorch.loggers.WandbLogger",
                                 "init_args": {"project": "instructrec-test", "save_dir": str(tmp_path / "wandb")}}
    base["trainer"]["callbacks"].append({"class_path": "instructrec.callbacks.ResumeCheckpoint", "init_args": {"every_n_train_steps": 2}})
    base["test_after_fit"] = False
    config = tmp_path / "wandb.yaml"
    config.write_text(yaml.safe_dump(base))
    from instructrec.cli import run_lightning

    first = run_lightning(["fit", "--config", str(config), "--trainer.max_steps", "2", "--trainer.default_root_dir", str(tmp_path / "run")])
    run_id = first.trainer.logger.version
    first.trainer.logger.experiment.finish()
    assert run_id
    second = run_lightning(["fit", "--config", str(config), "--trainer.max_steps", "4", "--trainer.default_root_dir", str(tmp_path / "run"),
                            "--ckpt_path", "last"])
    assert second.trainer.global_step == 4
    assert second.trainer.logger.version == run_id
    second.trainer.logger.experiment.finish()
