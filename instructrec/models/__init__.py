"""The model families: plain LightningModules that take batches."""

from instructrec.models.classifier import InstructionClassifier

__all__ = ["InstructionClassifier"]
