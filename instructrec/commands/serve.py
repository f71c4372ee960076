"""``instructrec serve CKPT [--kb FILES] [--port N]``: a trained model behind an HTTP endpoint
(LitServe); requests are raw instructions (see :mod:`instructrec.serving`)."""

from __future__ import annotations

from instructrec.commands import command_parser


def parser():
    parser = command_parser(
        "serve",
        'Serve a checkpoint of any family (or an exported generation model) over HTTP: POST /predict with '
        '{"instruction": "..."}; /health and /info. A bad instruction is answered with HTTP 400 and the reason.',
    )
    parser.add_argument("model", help="a .ckpt written by `instructrec fit`, or a causal-LM folder / smollm2-135m-instruct")
    parser.add_argument("--kb", nargs="*", default=[], help="QA: knowledge-base files for questions without a context")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=8, help="requests batched together (dynamic batching)")
    parser.add_argument("--batch-timeout", type=float, default=0.01, help="seconds a batch waits to fill up")
    parser.add_argument("--max-length", type=int, default=256, help="tokens per encoded input")
    parser.add_argument("--system-prompt", default=None, help="generation: the chat template's system turn (default: the one the checkpoint was trained with)")
    parser.add_argument("--workers", type=int, default=1, help="model copies serving in parallel")
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--timeout", type=float, default=30, help="seconds before a request times out")
    return parser


def main(argv: list[str]) -> int:
    import litserve as ls

    from instructrec.serving import InstructionAPI, server_metadata

    args = parser().parse_args(argv)
    api = InstructionAPI(args.model, kb=args.kb, max_length=args.max_length, system_prompt=args.system_prompt,
                         max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    server = ls.LitServer(api, accelerator=args.accelerator, devices=1, workers_per_device=args.workers,
                          timeout=args.timeout, model_metadata=server_metadata(args.model, args.kb), fast_queue=True)
    server.run(host=args.host, port=args.port, generate_client_file=False)
    return 0
