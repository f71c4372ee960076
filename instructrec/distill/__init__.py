"""Knowledge distillation: a smaller student learns from a frozen teacher (see :mod:`.module`).

``DistillationModule``, ``TeacherLogitsDataModule``, ``MultiTaskTeacherLogitsDataModule`` and, for
causal language models (:mod:`.generation`), ``GenerationDistillationModule`` and
``SequenceKDDataModule`` are imported lazily so the losses and
schedules load without Lightning's data stack.
"""

__all__ = [
    "DistillationModule",
    "GenerationDistillationModule",
    "MultiTaskTeacherLogitsDataModule",
    "SequenceKDDataModule",
    "TeacherLogitsDataModule",
]


def __getattr__(name: str):
    if name == "DistillationModule":
        from instructrec.distill.module import DistillationModule

        return DistillationModule
    if name == "GenerationDistillationModule":
        from instructrec.distill.generation import GenerationDistillationModule

        return GenerationDistillationModule
    if name == "SequenceKDDataModule":
        from instructrec.distill.sequence_kd import SequenceKDDataModule

        return SequenceKDDataModule
    if name in ("TeacherLogitsDataModule", "MultiTaskTeacherLogitsDataModule"):
        from instructrec.distill import data

        return getattr(data, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
