"""The model families: plain LightningModules that take batches."""

from instructrec.models.multitask import MultiTaskModule

__all__ = ["MultiTaskModule"]
