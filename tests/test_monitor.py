"""`instructrec monitor`: windows, the z-score alert rule, its files, and located errors."""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timedelta, timezone

import pytest

from instructrec.cli import main
from instructrec.errors import InputError
from instructrec.monitoring import AlertRule, detect, evaluate, parse_window, read_stream, windows_of

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def stream(tmp_path, negatives_per_window: list[int], per_window: int = 10, topic: str = "Business"):
    """``per_window`` texts an hour in ``topic`` (and as many in Sports, never negative), the given
    number of them negative."""
    records = []
    for window, negatives in enumerate(negatives_per_window):
        for i in range(per_window):
            time = (START + timedelta(hours=window, minutes=i)).isoformat()
            records.append({"timestamp": time, "text": f"b{window}-{i}", "topic": topic,
                            "sentiment": "negative" if i < negatives else "neutral"})
            records.append({"timestamp": time, "text": f"s{window}-{i}", "topic": "Sports", "sentiment": "positive"})
    path = tmp_path / "stream.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_jump_past_the_historys_z_score_alerts_and_nothing_else_does(tmp_path):
    history = [1, 2, 1, 2, 1, 2, 1, 2]  # 10% or 20% negative
    records = read_stream(stream(tmp_path, history + [6, 2]))
    rows = windows_of(records, [r["sentiment"] for r in records], [r["topic"] for r in records], 3600)
    alerts = detect(rows, AlertRule(z=3.0, history=8, min_history=6, min_count=5, min_std=0.05))
    assert [(a["index"], a["topic"]) for a in alerts] == [(8, "Business")]
    mean, std = 0.15, 0.05
    expected = (0.6 - mean) / math.sqrt(std**2 + mean * (1 - mean) / 10)
    assert alerts[0]["z"] == pytest.approx(expected)
    assert [r["texts"] for r in rows if r["topic"] == "Business"] == [10] * 10
    assert evaluate(alerts, [{"topic": "Business", "start": 8, "end": 9}]) == {"alerts": 1, "precision": 1.0, "recall": 1.0, "delay": 0.0}


def test_the_command_writes_windows_alerts_and_a_plot(tmp_path, capsys):
    path = stream(tmp_path, [1, 2, 1, 2, 1, 2, 1, 2, 7])
    main(["monitor", "--stream", str(path), "--labels", "stream", "--window", "1h", "--history", "8", "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "1 alerts" in printed and "Business: negative share 0.70" in printed
    rows = list(csv.DictReader((tmp_path / "out" / "windows.csv").open()))
    assert len(rows) == 18 and rows[0]["window"] == START.isoformat()
    assert [json.loads(line)["index"] for line in (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()] == [8]
    assert (tmp_path / "out" / "trend.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_stream_records_and_windows_are_located_errors(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"timestamp": "2026-01-01T00:00:00", "text": "a"}\n{"timestamp": "yesterday", "text": "b"}\n')
    with pytest.raises(InputError, match="bad.jsonl, record 2: timestamp 'yesterday'"):
        read_stream(path)
    path.write_text('{"text": "no time"}\n')
    with pytest.raises(InputError, match='record 1: a stream record needs "timestamp"'):
        read_stream(path)
    assert parse_window("30m") == 1800 and parse_window("1d") == 86400 and parse_window("90") == 90
    with pytest.raises(InputError, match="expected a length such as 30m"):
        parse_window("soon")
