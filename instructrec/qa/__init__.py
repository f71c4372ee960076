"""Extractive question answering: SQuAD scoring, span post-processing and the reader module.

``squad_metrics`` and ``postprocess`` are plain libraries (no Lightning): the training loop, the CLI
and notebooks all score and decode through them, so a number logged in validation is the number
``instructrec evaluate-squad`` prints.
"""
