"""The encoded-data cache: Arrow folders keyed by everything that changes their content.

The key hashes the data files' bytes (not their names or times), the template and its options,
the tokenizer's identity and the encoding settings. An entry is written to a temporary folder and
renamed into place, so concurrent writers (DDP ranks) and interrupted runs never leave a
half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from instructrec.hashing import file_digest
from instructrec.paths import writable_folder

# Bump when the encoding itself changes, so old entries stop matching.
CACHE_VERSION = 3  # 2: QA features keep their context and reference answers; 3: QA labels at the reference's position
META_FILE = "meta.json"


def cache_key(files: list[Path], settings: dict[str, Any]) -> str:
    """A stable hex key for the files' contents plus the (JSON-serialisable) settings."""
    payload = {
        "version": CACHE_VERSION,
        "files": [file_digest(path) for path in files],
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def load_entry(folder: Path):
    """The cached ``(dataset, meta)`` pair, or None when the entry does not exist."""
    if not (folder / META_FILE).is_file():
        return None
    from datasets import load_from_disk

    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    return load_from_disk(str(folder / "dataset")), meta


def save_entry(folder: Path, dataset, meta: dict, extra_files: dict[str, Any] | None = None) -> None:
    """Write dataset, meta and extra files (name -> callable(path)) atomically into ``folder``."""
    writable_folder(folder.parent, "the data cache folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        dataset.save_to_disk(str(tmp / "dataset"))
        for name, write in (extra_files or {}).items():
            write(tmp / name)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / META_FILE).is_file():  # not a concurrent writer that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
