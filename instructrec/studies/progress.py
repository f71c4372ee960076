"""A live view of a study (rich): runs done, running and left, the best so far, elapsed time and
the ETA from the mean time of the runs finished so far."""

from __future__ import annotations

import contextlib
import time


class RunsProgress:
    """``with RunsProgress(title, total) as view: view.show(done, running, best)``; silent when
    ``enabled`` is False (tests, logs)."""

    def __init__(self, title: str, total: int, enabled: bool = True) -> None:
        self.title, self.total, self.enabled = title, total, enabled
        self.started = time.monotonic()
        self._live = None

    def __enter__(self) -> "RunsProgress":
        if self.enabled:
            from rich.live import Live

            self._live = Live(self._render(0, 0, "-"), refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    @contextlib.contextmanager
    def paused(self):
        """Stop the view (its last table stays printed) while a run in this process draws its own
        progress bar, and start it again after. Lightning's ``RichProgressBar`` takes the console's
        live display for itself (it clears the one it finds), so a view left running beside it
        would end with rich's "pop from empty list"."""
        if self._live is None:
            yield
            return
        self._live.stop()
        try:
            yield
        finally:
            self._live.start()

    def show(self, done: int, running: int, best: str) -> None:
        if self._live is not None:
            self._live.update(self._render(done, running, best))

    def _render(self, done: int, running: int, best: str):
        from rich.table import Table

        elapsed = time.monotonic() - self.started
        left = max(0, self.total - done - running)
        eta = elapsed / done * (self.total - done) if done else None
        table = Table(title=self.title, show_header=True, header_style="bold")
        for column in ("done", "running", "left", "best so far", "elapsed", "ETA"):
            table.add_column(column)
        table.add_row(f"{done}/{self.total}", str(running), str(left), best, _clock(elapsed), "-" if eta is None else _clock(eta))
        return table


class StudyProgress(RunsProgress):
    """:class:`RunsProgress` for an Optuna study (counts over every process sharing it)."""

    def __init__(self, name: str, total: int, direction: str, enabled: bool = True) -> None:
        super().__init__(f"instructrec tune: {name}", total, enabled)
        self.direction = direction

    def update(self, study) -> None:
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = "-"
        if complete:
            pick = max if self.direction == "maximize" else min
            trial = pick(complete, key=lambda t: t.value)
            best = f"{trial.value:.4g} (trial {trial.number})"
        self.show(done, running, best)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"
