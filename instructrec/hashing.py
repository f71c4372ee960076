"""Hashes that are the same in every process and on every machine: what seeds, splits, caches and
teacher identities are keyed by (Python's ``hash()`` is salted per process)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` (by their ``str``) that is the same in every process."""
    text = "\x1f".join(map(str, parts))
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes (read in 1 MiB chunks), hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
