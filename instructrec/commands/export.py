"""``instructrec export CKPT DIR``: a trained model of any family as transformers folder(s) with a
model card (see :mod:`instructrec.export` for what each family becomes)."""

from __future__ import annotations

from instructrec.commands import command_parser


def parser():
    parser = command_parser(
        "export",
        "Export a checkpoint (loaded with weights_only=True): an extractive QA reader as an "
        "AutoModelForQuestionAnswering folder; a multi-task model or a distilled student as the encoder and "
        "tokenizer in transformers' save_pretrained format (AutoModel.from_pretrained(DIR)) plus "
        "heads.safetensors and heads.json; each with a model card (README.md).",
    )
    parser.add_argument("checkpoint", help="a .ckpt written by `instructrec fit`")
    parser.add_argument("output_dir", help="folder to write (created; existing files are overwritten)")
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from instructrec.export import export_checkpoint

    written = export_checkpoint(args.checkpoint, args.output_dir)
    print(f"exported {args.checkpoint} -> {written}")
    return 0
