"""``instructrec evaluate-squad`` is the official SQuAD evaluation in our package: it takes the same
arguments as ``evaluate-v1.1.py`` / ``evaluate-v2.0.py`` and prints the same JSON (v1.1 on one line,
v2.0 indented, as the official scripts print them), so numbers can be compared with published ones.
Nothing here imports torch or Lightning.
"""

from __future__ import annotations

import json
import sys

from instructrec.commands import command_parser
from instructrec.qa.squad_metrics import evaluate


def parser():
    parser = command_parser(
        "evaluate-squad", "Score SQuAD predictions exactly as the official v1.1 / v2.0 evaluation scripts do."
    )
    parser.add_argument("data_file", metavar="DATA.json", help="SQuAD-format data file (v1.1 or v2.0)")
    parser.add_argument("pred_file", metavar="PREDICTIONS.json", help="JSON object: question id -> answer text")
    parser.add_argument(
        "--version",
        choices=("1.1", "2.0"),
        default=None,
        help="scoring rules; default: the data file's 'version' field (2.0 for 'v2.0', else 1.1)",
    )
    parser.add_argument(
        "--na-prob-file", "-n", default=None, help="v2.0: JSON question id -> no-answer probability (or score)"
    )
    parser.add_argument(
        "--na-prob-thresh",
        "-t",
        type=float,
        default=1.0,
        help="v2.0: predict '' where the no-answer probability exceeds this (default 1.0)",
    )
    parser.add_argument("--out-file", "-o", default=None, help="write the JSON here instead of stdout")
    return parser


def main(argv: list[str]) -> int:
    """``instructrec evaluate-squad DATA.json PREDICTIONS.json [--version 2.0] [--na-prob-file F]``.

    Prints the metrics as JSON and returns 0; returns 2 with a message on stderr for unreadable
    input or predictions the official script could not score (argparse errors exit with 2 too).
    """
    args = parser().parse_args(argv)
    try:
        document = _read_json(args.data_file)
        predictions = _read_json(args.pred_file)
        na_probs = _read_json(args.na_prob_file) if args.na_prob_file else None
        if not isinstance(document, dict) or not isinstance(document.get("data"), list):
            raise ValueError(f"{args.data_file}: not a SQuAD file (no top-level 'data' list)")
        if not isinstance(predictions, dict):
            raise ValueError(f"{args.pred_file}: expected a JSON object question id -> answer text")
        version = args.version or ("2.0" if str(document.get("version", "")).lstrip("v") == "2.0" else "1.1")
        if version == "1.1" and na_probs is not None:
            raise ValueError("--na-prob-file needs --version 2.0")
        metrics = evaluate(
            document["data"], predictions, version=version, na_probs=na_probs, na_prob_thresh=args.na_prob_thresh
        )
    except (OSError, ValueError, KeyError) as error:
        print(f"evaluate-squad: error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(metrics) if version == "1.1" else json.dumps(metrics, indent=2)
    if args.out_file:
        with open(args.out_file, "w", encoding="utf-8") as file:
            file.write(text + "\n")
    else:
        print(text)
    return 0


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from None
