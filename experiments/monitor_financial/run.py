"""Financial monitoring, evaluated on streams with known bursts: how fast and how cleanly does
``instructrec monitor`` catch a burst of negative news in one topic, with gold labels and with a
model's labels?

Each of ``--streams`` seeded streams has ``--windows`` hourly windows of about ``--per-window``
news items. An item is an AG News test headline (its topic: World, Sports, Business, Sci/Tech) and
a Financial PhraseBank sentence (its sentiment) from the rows the multi-task config holds out for
test (``configs/multitask/financial.yaml``: 20% by seeded hash), joined: "<headline>. <sentence>".
Neither ever trains a model. Sentiments follow the corpus' own shares, except in one burst per
stream: a random topic, from a random window, for ``--burst`` windows, draws negative sentences
with probability ``--burst-negative``. An alert is right when it falls in the burst (its topic, its
windows); delay is the first right alert's window minus the burst's first.

    python experiments/monitor_financial/run.py                       # gold labels
    python experiments/monitor_financial/run.py --checkpoint runs/multitask_financial/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent
FIELDS = ["labels", "streams", "alerts_per_stream", "precision", "recall", "delay_windows"]


def held_out_sentences(seed: int = 0, low: float = 0.1, high: float = 0.3) -> dict[str, list[str]]:
    """Financial PhraseBank (all agree) sentences in the config's test range, by sentiment."""
    from instructrec.data.loading import holdout_position
    from instructrec.data.sources import read_records
    from instructrec.paths import data_root

    records = read_records([data_root() / "financial_phrasebank" / "Sentences_AllAgree.txt"], "financial_phrasebank", {})
    by_label: dict[str, list[str]] = {}
    for record in records:
        if low <= holdout_position(str(record["id"]), seed) < high:
            by_label.setdefault(record["label"], []).append(record["sentence"])
    return by_label


def headlines() -> dict[str, list[str]]:
    from instructrec.data.sources import read_records
    from instructrec.paths import data_root

    by_topic: dict[str, list[str]] = {}
    for record in read_records([data_root() / "agnews" / "test.csv"], "agnews", {}):
        by_topic.setdefault(record["label"], []).append(record["title"].strip().rstrip("."))
    return by_topic


def make_stream(seed: int, sentences: dict, titles: dict, args) -> tuple[list[dict], dict]:
    rng = random.Random(seed)
    labels = sorted(sentences)
    weights = [len(sentences[label]) for label in labels]
    topics = sorted(titles)
    burst = {"topic": rng.choice(topics), "start": rng.randrange(args.history, args.windows - args.burst)}
    burst["end"] = burst["start"] + args.burst
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    records = []
    for window in range(args.windows):
        for _ in range(args.per_window):
            topic = rng.choice(topics)
            in_burst = topic == burst["topic"] and burst["start"] <= window < burst["end"]
            sentiment = "negative" if in_burst and rng.random() < args.burst_negative else rng.choices(labels, weights)[0]
            time = start + timedelta(hours=window, seconds=rng.randrange(3600))
            records.append({"timestamp": time.isoformat(), "text": f"{rng.choice(titles[topic])}. {rng.choice(sentences[sentiment])}",
                            "topic": topic, "sentiment": sentiment})
    return records, burst


def main(argv=None) -> None:
    from instructrec.monitoring import AlertRule, ModelLabeller, evaluate, monitor, read_stream, stream_labels

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="a multi-task checkpoint (sentiment + topic heads) to label with")
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--windows", type=int, default=96)
    parser.add_argument("--per-window", type=int, default=40)
    parser.add_argument("--burst", type=int, default=6, help="windows a burst lasts")
    parser.add_argument("--burst-negative", type=float, default=0.5)
    parser.add_argument("--history", type=int, default=24)
    parser.add_argument("--z", type=float, default=3.0)
    args = common.parse(parser, argv, HERE)
    sentences, titles = held_out_sentences(), headlines()
    rule = AlertRule(z=args.z, history=args.history)
    labeller = ModelLabeller(args.checkpoint) if args.checkpoint else None
    scores: dict[str, list[dict]] = {"gold": [], "model": []}
    scratch = Path(tempfile.mkdtemp(prefix="monitor-streams-"))
    for seed in range(args.streams):
        records, burst = make_stream(seed, sentences, titles, args)
        path = scratch / f"stream-{seed:02d}.jsonl"  # built from the data sets: never beside the results
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        stream = read_stream(path)
        for name, labels in (("gold", stream_labels(stream)), ("model", labeller([r["text"] for r in stream]) if labeller else None)):
            if labels is not None:
                _, alerts = monitor(stream, labels, 3600, rule)
                scores[name].append(evaluate(alerts, [burst]))
    rows = []
    for name, results in scores.items():
        if results:
            rows.append({"labels": name, "streams": len(results),
                         "alerts_per_stream": round(statistics.fmean(r["alerts"] for r in results), 2),
                         "precision": round(statistics.fmean(r["precision"] for r in results if r["alerts"]), 3),
                         "recall": round(statistics.fmean(r["recall"] for r in results), 3),
                         "delay_windows": round(statistics.fmean(r["delay"] for r in results if r["recall"]), 2)})
    common.write_csv(args.out / "results.csv", rows, FIELDS)
    print(common.write_markdown(args.out / "results.md", common.markdown_table(
        ["labels", "streams", "alerts per stream", "precision", "recall", "delay (windows)"],
        [[r[f] for f in FIELDS] for r in rows])))


if __name__ == "__main__":
    main()
