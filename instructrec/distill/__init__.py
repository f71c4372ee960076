"""Knowledge distillation: a smaller student learns from a frozen teacher (see :mod:`.module`).

``DistillationModule``, ``TeacherLogitsDataModule`` and ``MultiTaskTeacherLogitsDataModule`` are
imported lazily so the losses and
schedules load without Lightning's data stack.
"""

__all__ = ["DistillationModule", "MultiTaskTeacherLogitsDataModule", "TeacherLogitsDataModule"]


def __getattr__(name: str):
    if name == "DistillationModule":
        from instructrec.distill.module import DistillationModule

        return DistillationModule
    if name in ("TeacherLogitsDataModule", "MultiTaskTeacherLogitsDataModule"):
        from instructrec.distill import data

        return getattr(data, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
