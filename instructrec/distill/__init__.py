"""Knowledge distillation: a smaller student learns from a frozen teacher (see :mod:`.module`).

``DistillationModule`` and ``TeacherLogitsDataModule`` are imported lazily so the losses and
schedules load without Lightning's data stack.
"""

__all__ = ["DistillationModule", "TeacherLogitsDataModule"]


def __getattr__(name: str):
    if name == "DistillationModule":
        from instructrec.distill.module import DistillationModule

        return DistillationModule
    if name == "TeacherLogitsDataModule":
        from instructrec.distill.data import TeacherLogitsDataModule

        return TeacherLogitsDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
