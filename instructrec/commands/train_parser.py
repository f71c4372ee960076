"""``instructrec train-parser``: train the learned instruction parser into the model cache (see
:mod:`instructrec.models.instruction_parser`)."""

from __future__ import annotations

from instructrec.commands import command_parser
from instructrec.errors import InputError
from instructrec.instructions.corpus import TRAIN_CONTEXT_CHARS

def parser():
    parser = command_parser(
        "train-parser",
        "Train the learned instruction parser (task classifier + span tagger) on instructions generated from the "
        "promptsource and built-in templates and marker-free paraphrases, and write it to the model cache "
        "($INSTRUCTREC_MODELS/instruction-parser, default ~/.cache/instructrec/models).",
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's, DEFAULT_STEPS "
                        "in instructrec.models.instruction_parser)")
    parser.add_argument("--backbone", default="auto", help="encoder: auto (MiniLM-L6 when installed), minilm-l6, tiny-bert, a folder")
    parser.add_argument("--output", default=None, help="folder to write (default: the model cache)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=256, help="training window in tokens (default 256)")
    parser.add_argument("--init-from", default=None, help="a parser folder to continue training from")
    parser.add_argument("--max-context-chars", type=int, default=TRAIN_CONTEXT_CHARS,
                        help=f"cut training passages to the sentences around their answer, at most this many characters "
                             f"(default {TRAIN_CONTEXT_CHARS}: a CPU budget; 0 keeps them whole, as the held-out sets have them; "
                             "use a --max-length that holds them)")
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be at least 1, got {args.steps}")
    if args.max_context_chars < 0:
        raise InputError(f"--max-context-chars must be 0 (whole passages) or more, got {args.max_context_chars}")
    from instructrec.models.instruction_parser import train_parser

    steps = {} if args.steps is None else {"max_steps": args.steps}
    output = train_parser(
        args.output, seed=args.seed, backbone=args.backbone, max_length=args.max_length, init_from=args.init_from,
        max_context_chars=args.max_context_chars or None, **steps,
    )
    print(f"instruction parser written to {output}")
    return 0
