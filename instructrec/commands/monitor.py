"""``instructrec monitor --ckpt CKPT --stream FILE.jsonl``: topic x sentiment shares per window of
a stream of texts, and alerts when a topic's negative share jumps (:mod:`instructrec.monitoring`)."""

from __future__ import annotations

from instructrec.commands import command_parser


def parser():
    parser = command_parser(
        "monitor",
        "Label a stream of timestamped texts with a multi-task checkpoint's sentiment and topic heads, aggregate "
        "per window and raise an alert when a topic's negative share jumps beyond its recent history (z-score); "
        "writes windows.csv, alerts.jsonl and trend.png.",
    )
    parser.add_argument("--stream", required=True, help='JSONL: one {"timestamp": ISO 8601 or epoch seconds, "text": ...} a line')
    parser.add_argument("--ckpt", default=None, help="a multi-task checkpoint with a sentiment and a topic head")
    parser.add_argument("--labels", default="model", choices=["model", "stream"],
                        help='"stream": take each record\'s own "sentiment" and "topic" (gold labels, for evaluation)')
    parser.add_argument("--window", default="1h", help="window length: 30m, 1h, 1d, or seconds")
    parser.add_argument("--z", type=float, default=3.0, help="alert when the negative share's z-score reaches this")
    parser.add_argument("--history", type=int, default=24, help="previous windows the z-score compares with")
    parser.add_argument("--min-history", type=int, default=6, help="windows of history needed before any alert")
    parser.add_argument("--min-count", type=int, default=5, help="texts a topic needs in a window to be judged")
    parser.add_argument("--min-std", type=float, default=0.05, help="the smallest standard deviation the z-score divides by")
    parser.add_argument("--sentiment-task", default="sentiment")
    parser.add_argument("--topic-task", default="topic")
    parser.add_argument("--sentiment-template", default="financial_phrasebank", help="the template the sentiment head was trained on")
    parser.add_argument("--topic-template", default="agnews", help="the template the topic head was trained on")
    parser.add_argument("--negative-label", default="negative")
    parser.add_argument("--out", default="runs/monitor", help="folder for windows.csv, alerts.jsonl and trend.png")
    return parser


def main(argv: list[str]) -> int:
    from instructrec.errors import InputError
    from instructrec.monitoring import AlertRule, ModelLabeller, monitor, parse_window, read_stream, stream_labels, write_outputs

    args = parser().parse_args(argv)
    window = parse_window(args.window)
    records = read_stream(args.stream)
    if args.labels == "stream":
        labels = stream_labels(records)
    else:
        if not args.ckpt:
            raise InputError("--ckpt is needed to label the stream (or --labels stream for the records' own labels)")
        labeller = ModelLabeller(args.ckpt, args.sentiment_task, args.topic_task, args.sentiment_template, args.topic_template)
        labels = labeller([r["text"] for r in records])
    rule = AlertRule(args.z, args.history, args.min_history, args.min_count, args.min_std)
    rows, alerts = monitor(records, labels, window, rule, args.negative_label)
    paths = write_outputs(args.out, rows, alerts, args.negative_label)
    print(f"{len(records)} texts, {len({r['index'] for r in rows})} windows, {len(alerts)} alerts")
    for alert in alerts:
        print(f"  {alert['window']}  {alert['topic']}: negative share {alert['negative_share']:.2f} "
              f"(history {alert['history_mean']:.2f} ± {alert['history_std']:.2f}, z = {alert['z']:.1f}, {alert['texts']} texts)")
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0
