"""Where the shared public data sets live.

The data is never copied into the repository: it is read from ``$INSTRUCTREC_DATA``, by default
the ``shared/data`` folder beside the checkout.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from instructrec.errors import InputError

_DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "data"


def data_root() -> Path:
    """The folder holding the shared data sets (it may not exist on a fresh clone)."""
    return Path(os.environ.get("INSTRUCTREC_DATA", _DEFAULT))


def resolve_path(path: str | os.PathLike) -> Path:
    """Expand ``~`` and ``$VARS`` in a path; ``$INSTRUCTREC_DATA`` defaults to :func:`data_root`.

    Configs name shared data as ``${INSTRUCTREC_DATA}/sst2_glue/glue_dev.tsv`` so that they work on
    any machine that sets the variable.
    """
    text = os.fspath(path)
    if "INSTRUCTREC_DATA" in text and "INSTRUCTREC_DATA" not in os.environ:
        text = text.replace("${INSTRUCTREC_DATA}", str(data_root())).replace(
            "$INSTRUCTREC_DATA", str(data_root())
        )
    return Path(os.path.expandvars(os.path.expanduser(text)))


def writable_folder(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a folder that exists and takes files (created if needed), else an
    :class:`~instructrec.errors.InputError` naming ``what`` and the path: refused before any work
    is done, instead of a ``FileNotFoundError`` when the first file is written."""
    folder = resolve_path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InputError(
            f"{what} {folder} cannot be written: {error.strerror or error}",
            hint="choose a folder you can write to (e.g. --trainer.default_root_dir runs/NAME moves every output of a run)",
        ) from None
    return folder
