"""The data layer: instruction files and raw data sets -> encoded batches (never a model).

``InstructionDataModule`` is imported lazily, so that the plain readers here load without
Lightning.
"""

__all__ = ["InstructionDataModule"]


def __getattr__(name: str):
    if name == "InstructionDataModule":
        from instructrec.data.datamodule import InstructionDataModule

        return InstructionDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
