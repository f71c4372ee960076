"""Where things live: the shared data sets, the model cache, and folders a run writes to.

Data is never copied into the repository: it is read from ``$INSTRUCTREC_DATA``, by default the
first ``shared/data`` folder found beside the working directory or the installed package (a checkout
with the project's ``shared/`` next to it). Models built or converted once (the mpnet teacher, the
learned instruction parser) are kept under ``$INSTRUCTREC_MODELS``, by default
``~/.cache/instructrec/models``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from instructrec.errors import InputError

DATA_VARIABLE = "INSTRUCTREC_DATA"
MODELS_VARIABLE = "INSTRUCTREC_MODELS"


def data_root() -> Path:
    """The folder holding the shared data sets (it may not exist on a fresh clone)."""
    if DATA_VARIABLE in os.environ:
        return Path(os.environ[DATA_VARIABLE]).expanduser()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / "shared" / "data").is_dir():
                return folder / "shared" / "data"
    return Path.cwd() / "shared" / "data"


def models_root() -> Path:
    """The user's model cache (``$INSTRUCTREC_MODELS``, default ``~/.cache/instructrec/models``)."""
    return Path(os.environ.get(MODELS_VARIABLE, "~/.cache/instructrec/models")).expanduser()


def resolve_path(path: str | os.PathLike) -> Path:
    """Expand ``~`` and ``$VARS`` in a path; ``$INSTRUCTREC_DATA`` defaults to :func:`data_root`.

    Configs name shared data as ``${INSTRUCTREC_DATA}/sst2_glue/glue_dev.tsv`` so that they work on
    any machine that sets the variable.
    """
    text = os.fspath(path)
    if DATA_VARIABLE in text and DATA_VARIABLE not in os.environ:
        text = text.replace("${INSTRUCTREC_DATA}", str(data_root())).replace("$INSTRUCTREC_DATA", str(data_root()))
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
