"""``instructrec tune``: an Optuna study over config keys, each trial an ordinary ``fit`` run.

The search space is a YAML mapping from dotted config keys to distributions::

    model.init_args.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
    model.init_args.warmup_ratio: {type: float, low: 0.0, high: 0.2}
    data.init_args.batch_size: {type: categorical, choices: [16, 32, 64]}
    model.init_args.pooling: {type: categorical, choices: [first, mean]}
    trainer.max_epochs: {type: int, low: 2, high: 4}

A trial's value is the best value of the config's checkpoint monitor (its ``ModelCheckpoint``:
``monitor`` and ``mode``), reported after every validation to Optuna's Lightning pruning callback,
which stops a trial the pruner finds unpromising. The study lives in an RDB storage (default
SQLite beside the runs), so it resumes after a crash (a trial whose process died is failed by the
storage's heartbeat and tried again) and several ``instructrec tune`` processes, on one machine or
many (a PostgreSQL/MySQL URL), share it; together they finish ``n_trials`` trials (completed or
pruned). The best trial's config is written as a YAML that ``instructrec fit --config`` accepts,
and only then is its checkpoint scored on the test split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from instructrec.errors import InputError
from instructrec.studies.runs import RunSpec, apply_overrides, read_yaml, run

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
GRACE_HEARTBEATS = 2  # a trial silent for this many heartbeat intervals is dead


@dataclass(frozen=True)
class Parameter:
    """One searched key and its distribution."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None

    def suggest(self, trial):
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_categorical(self.key, list(self.choices))

    def grid(self) -> list:
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        raise InputError(f"search space {self.key!r}: the grid sampler needs categorical or int parameters, not float")


def read_space(path: str | Path) -> list[Parameter]:
    """The search space file, checked: a misspelt field or type is refused with the key's name."""
    space = read_yaml(path, "search space")
    parameters = []
    for key, spec in space.items():
        if not isinstance(spec, dict):
            raise InputError(f"search space {key!r}: expected a mapping like {{type: float, low: 0.0, high: 1.0}}", source=str(path))
        kind = spec.get("type")
        allowed = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
                   "categorical": {"type", "choices"}}
        if kind not in allowed:
            raise InputError(f"search space {key!r}: type must be float, int or categorical, got {kind!r}", source=str(path))
        unknown = sorted(set(spec) - allowed[kind])
        if unknown:
            raise InputError(f"search space {key!r}: unknown field(s) {unknown} for type {kind}", source=str(path))
        if kind == "categorical":
            if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                raise InputError(f"search space {key!r}: choices must be a non-empty list", source=str(path))
            parameters.append(Parameter(key, kind, choices=tuple(spec["choices"])))
            continue
        try:
            low, high = float(spec["low"]), float(spec["high"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"search space {key!r}: {kind} needs numeric low and high", source=str(path)) from None
        if not low <= high or (spec.get("log") and low <= 0):
            raise InputError(f"search space {key!r}: needs low <= high (and low > 0 on a log scale)", source=str(path))
        step = spec.get("step")
        parameters.append(Parameter(key, kind, low, high, bool(spec.get("log", False)), None if step is None else float(step)))
    if not parameters:
        raise InputError("the search space is empty", source=str(path))
    return parameters


def checkpoint_monitor(config: str | Path) -> tuple[str, str]:
    """``(monitor, direction)`` of the config's ModelCheckpoint (default ``val/score``, maximise)."""
    trainer = read_yaml(config, "config").get("trainer") or {}
    for callback in trainer.get("callbacks") or []:
        if isinstance(callback, dict) and str(callback.get("class_path", "")).endswith("ModelCheckpoint"):
            args = callback.get("init_args") or {}
            if args.get("monitor"):
                return args["monitor"], "minimize" if args.get("mode", "min") == "min" else "maximize"
    return "val/score", "maximize"


def create_study(name: str, storage: str, direction: str, sampler: str, pruner: str, parameters: list[Parameter],
                 seed: int, heartbeat_interval: int):
    """The study (created, or loaded when it exists): the storage's heartbeat fails a trial whose
    process died, and retries it once."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if sampler not in SAMPLERS:
        raise InputError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if pruner not in PRUNERS:
        raise InputError(f"pruner must be one of {PRUNERS}, got {pruner!r}")
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "grid": lambda: optuna.samplers.GridSampler({p.key: p.grid() for p in parameters}, seed=seed),
    }
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    rdb = RDBStorage(storage, heartbeat_interval=heartbeat_interval, grace_period=GRACE_HEARTBEATS * heartbeat_interval,
                     heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    return optuna.create_study(study_name=name, storage=rdb, direction=direction, sampler=samplers[sampler](),
                               pruner=pruners[pruner](), load_if_exists=True)


def fail_abandoned_trials(study, grace_period: float) -> list[int]:
    """Fail the trials whose process died before their objective began (RUNNING, started more than
    ``grace_period`` seconds ago, without the ``root`` the objective sets first); their numbers.

    Why: Optuna's heartbeat fails only trials that recorded a heartbeat, so a process killed between
    creating a trial and its first heartbeat leaves it RUNNING for good, and a RUNNING trial counts
    against the budget (:meth:`Tuner._objective`): the study would never finish its trials."""
    from datetime import datetime

    from optuna.trial import TrialState

    now, failed = datetime.now(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start
        if "root" not in trial.user_attrs and started is not None and (now - started).total_seconds() > grace_period:
            study.tell(trial.number, state=TrialState.FAIL)
            failed.append(trial.number)
    return failed


class OverBudget(Exception):
    """A trial asked for after the study's budget was taken (see :meth:`Tuner.optimize`)."""


class Tuner:
    """One ``instructrec tune`` process (see the module docstring).

    Args:
        config: the base config (``fit``'s YAML); its ModelCheckpoint's monitor is the objective.
        space: the search space YAML.
        n_trials: trials (completed or pruned) the study should have in all, over every process.
        out: where trials run (``trial-<n>/``), and the study's files (``best.yaml``, ``trials.csv``).
        storage: an Optuna RDB URL (default ``sqlite:///<out>/study.db``).
        study_name: the study's name in the storage (default: the config's file name).
        sampler, pruner, seed: Optuna's (the sampler's seed).
        test: score the best trial's checkpoint on the test split after the search.
        heartbeat_interval: seconds between a running trial's heartbeats; a trial silent for twice
            as long is failed (its process died) and retried.
        overlays: more ``--config`` files merged onto ``config`` in every trial.
    """

    def __init__(self, config: str, space: str, n_trials: int, out: str | Path, *, storage: str | None = None,
                 study_name: str | None = None, sampler: str = "tpe", pruner: str = "median", seed: int = 0,
                 test: bool = True, heartbeat_interval: int = 60, overlays: list[str] | None = None) -> None:
        if n_trials < 1:
            raise InputError(f"n_trials must be at least 1, got {n_trials}")
        self.config, self.overlays = config, list(overlays or [])
        self.parameters = read_space(space)
        self.n_trials = n_trials
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.name = study_name or Path(config).stem
        self.monitor, self.direction = checkpoint_monitor(config)
        self.test = test
        self.grace_period = GRACE_HEARTBEATS * heartbeat_interval  # the storage's: silent this long, a trial is dead
        self.study = create_study(self.name, storage or f"sqlite:///{(self.out / 'study.db').resolve()}", self.direction,
                                  sampler, pruner, self.parameters, seed, heartbeat_interval)

    # -- the search ------------------------------------------------------------------------------

    def optimize(self, progress: bool = True) -> None:
        """Run trials until the study has ``n_trials`` finished ones, counting every process's.

        Optuna's own loop runs them: it keeps each trial's heartbeat, fails the trials of dead
        processes and retries them (and :func:`fail_abandoned_trials` those that died before
        their first heartbeat). A trial that starts when the budget is already taken by
        earlier trials (another process asked at the same moment) gives way: it is failed with
        ``over_budget`` set, before any work."""
        from optuna.study import MaxTrialsCallback
        from optuna.trial import TrialState

        from instructrec.studies.progress import StudyProgress

        with StudyProgress(self.name, self.n_trials, self.direction, enabled=progress) as view:

            def objective(trial) -> float:
                with view.paused():  # the trial's own progress bar draws meanwhile
                    return self._objective(trial)

            fail_abandoned_trials(self.study, self.grace_period)
            view.update(self.study)
            if self._count(TrialState.COMPLETE, TrialState.PRUNED) < self.n_trials:
                self.study.optimize(
                    objective,
                    callbacks=[MaxTrialsCallback(self.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                               lambda study, trial: view.update(study)],
                    catch=(OverBudget,),
                )
            view.update(self.study)
        self.write_trials()

    def _count(self, *states) -> int:
        return len(self.study.get_trials(deepcopy=False, states=states))

    def _objective(self, trial) -> float:
        from optuna.trial import TrialState
        from optuna_integration import PyTorchLightningPruningCallback

        taken = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
                 if t.number < trial.number]
        if len(taken) >= self.n_trials:
            trial.set_user_attr("over_budget", True)
            self.study.stop()
            raise OverBudget(f"trial {trial.number}: the study's {self.n_trials} trials are taken")
        values = {p.key: p.suggest(trial) for p in self.parameters}
        root = self.out / f"trial-{trial.number:04d}"
        trial.set_user_attr("root", str(root))
        spec = RunSpec(self.config, root, overlays=self.overlays, overrides=values,
                       logger={"group": self.name, "job_type": "trial", "name": f"{self.name}-trial-{trial.number}"})
        metrics = run(spec, callbacks=[PyTorchLightningPruningCallback(trial, monitor=self.monitor)])
        if "best_model_path" in metrics:
            trial.set_user_attr("checkpoint", metrics["best_model_path"])
        value = metrics.get("best", metrics.get(self.monitor))
        if value is None:
            raise InputError(f"trial {trial.number} logged no {self.monitor!r}, the config's checkpoint monitor")
        return float(value)

    # -- results ---------------------------------------------------------------------------------

    def best_config(self) -> Path:
        """``best.yaml``: the base config with the best trial's values, for ``instructrec fit --config``."""
        import yaml

        best = self.study.best_trial
        config = read_yaml(self.config, "config")
        for overlay in self.overlays:  # as the trials merged them: overlays first, the searched values last
            config = _merge(config, read_yaml(overlay, "config"))
        config = apply_overrides(config, best.params)
        path = self.out / "best.yaml"
        header = (f"# instructrec tune: study {self.name!r}, best of {self._count_finished()} trials "
                  f"(trial {best.number}, {self.monitor} = {best.value:.6g}); the base config with:\n"
                  + "".join(f"#   {key}: {value}\n" for key, value in best.params.items()))
        path.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    def _count_finished(self) -> int:
        from optuna.trial import TrialState

        return self._count(TrialState.COMPLETE, TrialState.PRUNED)

    def write_trials(self) -> Path:
        """``trials.csv``: every trial's number, state, value, last reported step (the epoch a
        pruned trial stopped at), wall time, parameters and run folder."""
        import csv

        keys = [p.key for p in self.parameters]
        path = self.out / "trials.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["trial", "state", self.monitor, "last_step", "seconds", *keys, "root"])
            for trial in self.study.get_trials(deepcopy=False):
                steps = trial.intermediate_values
                seconds = "" if trial.duration is None else round(trial.duration.total_seconds(), 1)
                writer.writerow([trial.number, trial.state.name, "" if trial.value is None else trial.value,
                                 max(steps) if steps else "", seconds,
                                 *(trial.params.get(k, "") for k in keys), trial.user_attrs.get("root", "")])
        return path

    def test_best(self, config: Path | None = None) -> dict[str, float]:
        """The best trial's checkpoint on the test split (after the search: never tuned on it),
        run with ``config`` (the :meth:`best_config` already written; written here when None)."""
        best = self.study.best_trial
        checkpoint = best.user_attrs.get("checkpoint")
        if not checkpoint:
            raise InputError(f"the best trial ({best.number}) left no checkpoint to test")
        spec = RunSpec(str(config or self.best_config()), self.out / "best-test", command="test",
                       overrides={"ckpt_path": checkpoint})
        metrics = {k: v for k, v in run(spec).items() if k.startswith("test/")}
        (self.out / "best-test.json").write_text(json.dumps({"trial": best.number, "checkpoint": checkpoint, **metrics},
                                                            indent=2) + "\n", encoding="utf-8")
        return metrics


def _merge(base: dict, overlay: dict) -> dict:
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged
