"""The model families: plain LightningModules that take batches."""

from instructrec.models.generation import GenerationModule
from instructrec.models.multitask import MultiTaskModule
from instructrec.models.qa_reasoning import QAReasoningModule

__all__ = ["GenerationModule", "MultiTaskModule", "QAReasoningModule"]
