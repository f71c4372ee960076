"""``instructrec monitor``: a stream of timestamped texts -> topic x sentiment shares per window,
and alerts when a topic's negative share jumps.

Each stream record (JSONL) has a ``timestamp`` (ISO 8601, or seconds since the epoch) and a
``text``. A multi-task checkpoint labels every text twice, with its sentiment head and its topic
head, each through the instruction its training template writes (the template's first phrasing;
``financial_phrasebank`` and ``agnews`` by default); or, for evaluation, the record's own
``sentiment`` and ``topic`` fields are taken as the labels (``labels="stream"``).

Alert rule (a z-score against the topic's own recent history): in each window, a topic's negative
share is compared with the mean ``m`` and standard deviation ``s`` of its previous ``history``
windows; an alert is raised when ``(share - m) / max(sqrt(s^2 + m (1 - m) / n), min_std) >= z``,
where ``n`` is the window's number of texts (a share of few texts is noisy: its binomial variance
is added), and the topic has at least ``min_count`` texts in the window. The threshold is learnt from the history, so a topic whose news
is usually gloomy does not alert on an ordinary gloomy hour.

Outputs: ``windows.csv`` (window start, topic, texts, each sentiment's count and share, z),
``alerts.jsonl`` (window, topic, share, history mean and std, z, texts) and ``trend.png`` (the
negative share per topic over time, alerts marked).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from instructrec.errors import InputError


@dataclass(frozen=True)
class AlertRule:
    """The z-score rule (see the module docstring)."""

    z: float = 3.0
    history: int = 24
    min_history: int = 6
    min_count: int = 5
    min_std: float = 0.05


def parse_timestamp(value, source: str, record: int) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise InputError(f"timestamp {value!r} is neither ISO 8601 nor seconds since the epoch", source=source, record=record)


def read_stream(path: str | Path) -> list[dict]:
    """The stream's records in file order, each with a parsed ``time``; a bad line is a located error."""
    from instructrec.data.files import decoded_lines
    from instructrec.paths import resolve_path

    path = resolve_path(path)
    if not path.is_file():
        raise InputError(f"stream file {path} does not exist")
    records = []
    for number, line, problem in decoded_lines(path):
        if problem is not None:
            raise InputError(problem, source=str(path), record=number)
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"not JSON: {error.msg}", source=str(path), record=number) from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or "timestamp" not in record:
            raise InputError('a stream record needs "timestamp" and a "text" string', source=str(path), record=number)
        records.append({**record, "time": parse_timestamp(record["timestamp"], str(path), number), "record": number})
    if not records:
        raise InputError("the stream has no records", source=str(path))
    return records


def parse_window(window: str) -> int:
    """``30m``, ``1h``, ``1d`` (or a number of seconds) -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = str(window).strip()
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise InputError(f"window {window!r}: expected a length such as 30m, 1h or 1d") from None
    if seconds <= 0:
        raise InputError(f"window {window!r} must be positive")
    return int(seconds)


class ModelLabeller:
    """Labels texts with a multi-task checkpoint's sentiment and topic heads."""

    def __init__(self, checkpoint: str, sentiment_task: str = "sentiment", topic_task: str = "topic",
                 sentiment_template: str = "financial_phrasebank", topic_template: str = "agnews",
                 max_length: int = 128, batch_size: int = 64) -> None:
        from instructrec.data import InstructionDataModule
        from instructrec.instructions.templates import get_template
        from instructrec.models.checkpoints import load_module

        self.model = load_module(checkpoint).eval()
        tasks = getattr(self.model, "tasks", {})
        for task in (sentiment_task, topic_task):
            if tasks.get(task, {}).get("type") != "classification":
                raise InputError(f"the checkpoint has no classification task {task!r}; its tasks: {sorted(tasks)}", source=checkpoint)
        self.tasks = {"sentiment": sentiment_task, "topic": topic_task}
        self.templates = {"sentiment": get_template(sentiment_template), "topic": get_template(topic_template)}
        self.encoders = {role: InstructionDataModule.for_inputs(self.model.hparams["backbone"], "classification",
                                                                tasks[task]["labels"], task_name=task, max_length=max_length)
                         for role, task in self.tasks.items()}
        self.labels = {role: tasks[task]["labels"] for role, task in self.tasks.items()}
        self.batch_size = batch_size

    def instruction(self, role: str, text: str) -> str:
        """The instruction the role's template writes for ``text`` (its first phrasing)."""
        from instructrec.instructions import Instruction, render

        template = self.templates[role]
        fields = {"text": text, "options": list(self.labels[role])}
        if template.variants and template.variants[0] is not None:
            fields["instruction"] = template.variants[0]
        return render(Instruction("classification", template.language, fields))

    def __call__(self, texts: list[str]) -> dict[str, list[str]]:
        from tqdm.auto import tqdm

        from instructrec.predictions import predict_texts

        labels: dict[str, list[str]] = {"sentiment": [], "topic": []}
        for first in tqdm(range(0, len(texts), self.batch_size), desc="Labelling", unit="batch"):
            chunk = texts[first : first + self.batch_size]
            for role in labels:
                rows = predict_texts(self.model, self.encoders[role], [self.instruction(role, t) for t in chunk])
                labels[role] += [row["label"] for row in rows]
        return labels


def windows_of(records: list[dict], sentiments: list[str], topics: list[str], window_seconds: int,
               negative: str = "negative") -> list[dict]:
    """Counts per (window, topic): texts, each sentiment's count and share; every topic in every
    window from the first to the last (an empty window has 0 texts)."""
    start = min(r["time"] for r in records).timestamp()
    start -= start % window_seconds
    cells: dict[tuple[int, str], dict[str, int]] = {}
    for record, sentiment, topic in zip(records, sentiments, topics):
        index = int((record["time"].timestamp() - start) // window_seconds)
        counts = cells.setdefault((index, topic), {})
        counts[sentiment] = counts.get(sentiment, 0) + 1
    last = max(index for index, _ in cells)
    names = sorted({s for s in sentiments} | {negative})
    rows = []
    for topic in sorted(set(topics)):
        for index in range(last + 1):
            counts = cells.get((index, topic), {})
            total = sum(counts.values())
            row = {"window": datetime.fromtimestamp(start + index * window_seconds, tz=timezone.utc).isoformat(),
                   "index": index, "topic": topic, "texts": total}
            for name in names:
                row[f"{name}_count"] = counts.get(name, 0)
                row[f"{name}_share"] = counts.get(name, 0) / total if total else 0.0
            rows.append(row)
    return rows


def detect(rows: list[dict], rule: AlertRule, negative: str = "negative") -> list[dict]:
    """The alerts of :class:`AlertRule` over :func:`windows_of`'s rows (each row also gets ``z``)."""
    alerts = []
    for topic in sorted({r["topic"] for r in rows}):
        series = sorted((r for r in rows if r["topic"] == topic), key=lambda r: r["index"])
        for position, row in enumerate(series):
            past = [r[f"{negative}_share"] for r in series[max(0, position - rule.history):position] if r["texts"] >= rule.min_count]
            row["z"] = None
            if len(past) < rule.min_history or row["texts"] < rule.min_count:
                continue
            mean, std = statistics.fmean(past), statistics.pstdev(past)
            # the history's spread, plus the sampling noise of a share of this window's few texts
            spread = math.sqrt(std**2 + mean * (1 - mean) / row["texts"])
            z = (row[f"{negative}_share"] - mean) / max(spread, rule.min_std)
            row["z"] = round(z, 4)
            if z >= rule.z:
                alerts.append({"window": row["window"], "index": row["index"], "topic": topic,
                               "negative_share": row[f"{negative}_share"], "history_mean": mean, "history_std": std,
                               "z": z, "texts": row["texts"]})
    return sorted(alerts, key=lambda a: (a["index"], a["topic"]))


def write_outputs(out: str | Path, rows: list[dict], alerts: list[dict], negative: str = "negative") -> dict[str, Path]:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from instructrec.paths import writable_folder

    out = writable_folder(out, "the monitor's output folder")
    paths = {"windows": out / "windows.csv", "alerts": out / "alerts.jsonl", "plot": out / "trend.png"}
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with paths["windows"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    paths["alerts"].write_text("".join(json.dumps(a) + "\n" for a in alerts), encoding="utf-8")
    figure, axes = plt.subplots(figsize=(9, 3.6), dpi=100)
    for topic in sorted({r["topic"] for r in rows}):
        series = sorted((r for r in rows if r["topic"] == topic), key=lambda r: r["index"])
        line, = axes.plot([r["index"] for r in series], [r[f"{negative}_share"] for r in series], label=topic, linewidth=1.2)
        marked = [a for a in alerts if a["topic"] == topic]
        axes.scatter([a["index"] for a in marked], [a["negative_share"] for a in marked], color=line.get_color(),
                     marker="v", s=60, zorder=3)
    axes.set_xlabel("window")
    axes.set_ylabel(f"{negative} share")
    axes.set_title("negative share per topic (triangles: alerts)")
    axes.legend(fontsize=8, ncols=4)
    figure.tight_layout()
    figure.savefig(paths["plot"])
    plt.close(figure)
    return paths


def monitor(records: list[dict], labels: dict[str, list[str]], window_seconds: int, rule: AlertRule,
            negative: str = "negative") -> tuple[list[dict], list[dict]]:
    rows = windows_of(records, labels["sentiment"], labels["topic"], window_seconds, negative)
    return rows, detect(rows, rule, negative)


def stream_labels(records: list[dict]) -> dict[str, list[str]]:
    """The records' own ``sentiment`` and ``topic`` fields (gold labels, for evaluation)."""
    missing = next((r for r in records if not {"sentiment", "topic"} <= set(r)), None)
    if missing is not None:
        raise InputError('labels from the stream need "sentiment" and "topic" in every record', record=missing["record"])
    return {"sentiment": [r["sentiment"] for r in records], "topic": [r["topic"] for r in records]}


def evaluate(alerts: list[dict], bursts: list[dict], slack: int = 0) -> dict[str, float]:
    """Alerts against known bursts (``{"topic", "start", "end"}`` window indices, end exclusive):
    a burst is detected by its first alert in ``[start, end + slack)`` (delay = that window -
    start); an alert is right when it falls in some burst of its topic."""
    right = sum(any(a["topic"] == b["topic"] and b["start"] <= a["index"] < b["end"] + slack for b in bursts) for a in alerts)
    delays = []
    for burst in bursts:
        hits = [a["index"] for a in alerts if a["topic"] == burst["topic"] and burst["start"] <= a["index"] < burst["end"] + slack]
        if hits:
            delays.append(min(hits) - burst["start"])
    return {"alerts": len(alerts), "precision": right / len(alerts) if alerts else math.nan,
            "recall": len(delays) / len(bursts) if bursts else math.nan,
            "delay": statistics.fmean(delays) if delays else math.nan}
