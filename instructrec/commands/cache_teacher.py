"""``instructrec cache-teacher``: run the teacher once and store its logits beside the data cache.

It reads the YAML that ``instructrec fit`` reads (``instructrec cache-teacher FIT.yaml``) (its ``data`` section, with the model's ``backbone``
as the tokenizer and the model's ``teacher``/``teacher_dtype`` unless the data section sets its
own), builds a :class:`~instructrec.distill.data.TeacherLogitsDataModule` and runs its
``prepare_data``; the later ``fit`` finds the cache and never runs the teacher for training.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING

from instructrec.commands import command_parser

if TYPE_CHECKING:  # the data module pulls in torch: imported when the command runs
    from instructrec.distill.data import TeacherCacheOptions

DATA_CLASS = "instructrec.distill.TeacherLogitsDataModule"


def parser():
    parser = command_parser(
        "cache-teacher", "Run the teacher once over the data's splits and cache its logits (float16, full or top-k)."
    )
    parser.add_argument("fit_config", metavar="FIT.yaml", help="a fit config (YAML) with `model` and `data` sections")
    # Each option's dest is the TeacherCacheOptions field it sets (also its key in a --config file).
    parser.add_argument("--teacher", default=None, help="teacher folder or .ckpt (default: model.init_args.teacher)")
    parser.add_argument("--top-k", dest="teacher_top_k", metavar="K", type=int, default=None,
                        help="keep the K largest logits per row (default: all)")
    parser.add_argument("--splits", dest="teacher_splits", metavar="SPLIT", nargs="+", default=None,
                        help="splits to cache (default: the data's teacher_splits, else train)")
    parser.add_argument("--teacher-dtype", dest="teacher_dtype", choices=("float32", "bfloat16", "float16"), default=None)
    parser.add_argument("--batch-size", dest="teacher_batch_size", metavar="N", type=int, default=None, help="rows per teacher forward pass")
    parser.add_argument("--device", dest="teacher_device", metavar="DEVICE", default=None,
                        help="where the teacher runs (default: cuda when available)")
    return parser


def data_arguments(config: dict, args) -> tuple[dict, TeacherCacheOptions]:
    """The ``TeacherLogitsDataModule`` arguments a fit config describes, and its teacher options:
    each from the command line, else the data section, else (``teacher``, ``teacher_dtype``) the
    model's. A misspelt ``teacher*`` key in the data section is refused by name."""
    from instructrec.distill.data import TeacherCacheOptions

    model = (config.get("model") or {}).get("init_args") or {}
    data = config.get("data") or {}
    class_path = data.get("class_path", DATA_CLASS)
    if class_path not in (DATA_CLASS, "instructrec.distill.data.TeacherLogitsDataModule",
                          "instructrec.data.InstructionDataModule", "instructrec.data.datamodule.InstructionDataModule"):
        raise ValueError(f"cache-teacher works on InstructionDataModule-style data, not {class_path}")
    arguments = dict(data.get("init_args") or {})
    arguments.setdefault("tokenizer", model.get("backbone", "tiny-bert"))
    from_model = {"teacher": model.get("teacher"), "teacher_dtype": model.get("teacher_dtype")}
    from_data = {key: arguments.pop(key) for key in list(arguments) if key.startswith("teacher")}
    from_flags = {f.name: getattr(args, f.name) for f in fields(TeacherCacheOptions)}
    options = TeacherCacheOptions.of(
        {key: value for layer in (from_model, from_data, from_flags) for key, value in layer.items() if value is not None}
    )
    if not options.teacher:
        raise ValueError("no teacher: give --teacher or set model.init_args.teacher")
    return arguments, options


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
        arguments, options = data_arguments(config, args)
        from instructrec.distill.data import TeacherLogitsDataModule

        datamodule = TeacherLogitsDataModule(**arguments, **asdict(options))
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
