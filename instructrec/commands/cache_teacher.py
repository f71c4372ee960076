"""``instructrec cache-teacher``: run the teacher once and store its logits beside the data cache.

It reads the YAML that ``instructrec fit`` reads (``instructrec cache-teacher FIT.yaml``) (its ``data`` section, with the model's ``backbone``
as the tokenizer and the model's ``teacher``/``teacher_dtype`` unless the data section sets its
own), builds a :class:`~instructrec.distill.data.TeacherLogitsDataModule` and runs its
``prepare_data``; the later ``fit`` finds the cache and never runs the teacher for training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from instructrec.commands import command_parser

DATA_CLASS = "instructrec.distill.TeacherLogitsDataModule"


def parser():
    parser = command_parser(
        "cache-teacher", "Run the teacher once over the data's splits and cache its logits (float16, full or top-k)."
    )
    parser.add_argument("fit_config", metavar="FIT.yaml", help="a fit config (YAML) with `model` and `data` sections")
    parser.add_argument("--teacher", default=None, help="teacher folder or .ckpt (default: model.init_args.teacher)")
    parser.add_argument("--top-k", type=int, default=None, help="keep the K largest logits per row (default: all)")
    parser.add_argument("--splits", nargs="+", default=None, help="splits to cache (default: the data's teacher_splits, else train)")
    parser.add_argument("--teacher-dtype", choices=("float32", "bfloat16", "float16"), default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="rows per teacher forward pass")
    parser.add_argument("--device", default=None, help="where the teacher runs (default: cuda when available)")
    return parser


def data_arguments(config: dict, args) -> dict:
    """The ``TeacherLogitsDataModule`` arguments a fit config and the options describe."""
    model = (config.get("model") or {}).get("init_args") or {}
    data = config.get("data") or {}
    class_path = data.get("class_path", DATA_CLASS)
    if class_path not in (DATA_CLASS, "instructrec.distill.data.TeacherLogitsDataModule",
                          "instructrec.data.InstructionDataModule", "instructrec.data.datamodule.InstructionDataModule"):
        raise ValueError(f"cache-teacher works on InstructionDataModule-style data, not {class_path}")
    arguments = dict(data.get("init_args") or {})
    arguments.setdefault("tokenizer", model.get("backbone", "tiny-bert"))
    overrides = {
        "teacher": args.teacher,
        "teacher_top_k": args.top_k,
        "teacher_splits": args.splits,
        "teacher_dtype": args.teacher_dtype,
        "teacher_batch_size": args.batch_size,
        "teacher_device": args.device,
    }
    arguments.update({k: v for k, v in overrides.items() if v is not None})
    arguments.setdefault("teacher", model.get("teacher"))
    if model.get("teacher_dtype") is not None:
        arguments.setdefault("teacher_dtype", model["teacher_dtype"])
    if not arguments.get("teacher"):
        raise ValueError("no teacher: give --teacher or set model.init_args.teacher")
    return arguments


def main(argv: list[str]) -> int:
    """``instructrec cache-teacher FIT.yaml [--teacher T] [--top-k K] [--splits train val]
    [--teacher-dtype bfloat16] [--batch-size N] [--device cuda]``.

    Prints one JSON line per cached split (``split``, ``folder``, ``rows``) and returns 0; returns 2
    with a message on stderr for a config or teacher it cannot use.
    """
    args = parser().parse_args(argv)
    try:
        import yaml

        config = yaml.safe_load(Path(args.fit_config).read_text(encoding="utf-8")) or {}
        arguments = data_arguments(config, args)
        from instructrec.distill.data import TeacherLogitsDataModule

        datamodule = TeacherLogitsDataModule(**arguments)
        super(TeacherLogitsDataModule, datamodule).prepare_data()
        cached = datamodule.cache_teacher()
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"cache-teacher: error: {error}", file=sys.stderr)
        return 2
    if not cached:
        print("cache-teacher: error: none of the requested splits is configured", file=sys.stderr)
        return 2
    for split, dataset in cached.items():
        print(json.dumps({"split": split, "folder": str(datamodule.teacher_folders[split]), "rows": len(dataset)}))
    return 0
