"""The data layer: instruction files and raw data sets -> encoded batches (never a model).

``InstructionDataModule`` and ``MultiTaskDataModule`` are imported lazily, so that the plain readers here load without
Lightning.
"""

__all__ = ["InstructionDataModule", "MultiTaskDataModule"]


def __getattr__(name: str):
    if name == "InstructionDataModule":
        from instructrec.data.datamodule import InstructionDataModule

        return InstructionDataModule
    if name == "MultiTaskDataModule":
        from instructrec.data.multitask import MultiTaskDataModule

        return MultiTaskDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
