"""Several passages read as one text, and a character of that text mapped back to its passage:
what a bAbI story's context and a retrieved chain of passages both are. A leaf module, so that the
data layer, retrieval and QA can all use it without importing each other."""

from __future__ import annotations


def join_passages(texts: list[str]) -> tuple[str, list[int]]:
    """Several passages read as one context (facts of a story, a retrieved chain): joined by
    spaces, with each passage's character start, so that an answer span maps back to its passage."""
    starts, position = [], 0
    for text in texts:
        starts.append(position)
        position += len(text) + 1
    return " ".join(texts), starts


def passage_at(starts: list[int], lengths: list[int], char: int) -> int | None:
    """The index of the passage of :func:`join_passages` that character ``char`` lies in (None for
    a joining space or a character outside the context)."""
    inside = [i for i, (start, length) in enumerate(zip(starts, lengths)) if start <= char < start + length]
    return inside[0] if inside else None
