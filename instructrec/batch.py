"""The batch contract: the names of a batch's columns and its markers, read by the data layer that
builds batches and by the models, students, teachers and QA decoding that read them.

Plain Python (no torch, no data layer), so that importing a model never imports the parser, the
templates or the data loaders.
"""

from __future__ import annotations

# What an encoder reads of a batch (models, students and teachers alike).
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# The columns a model reads; the rest (ids, offsets) stay in the data set for post-processing.
MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels", "start_positions", "end_positions",
                 "answer_class", "support_labels")
# Per-token label columns: padded with IGNORE_LABEL to the batch's width (the tokenizer pads the inputs).
TOKEN_LABEL_COLUMNS = ("support_labels",)
# What turns a QA feature's logits into an answer text and scores it: evaluation and prediction
# batches carry these as lists (one entry per feature) beside the model's tensors.
TEXT_COLUMNS = ("offset_mapping", "example_id", "context", "answers")
IGNORE_LABEL = -100  # examples without an answer (prediction input) carry no label
# A QA reader with closed answers (yes/no, counts, lists: see ``InstructionDataModule.closed_answers``)
# labels each feature's ``answer_class``: SPAN_CLASS when the answer is extracted from the context,
# else 1 + the closed answer's index.
SPAN_CLASS = 0
NO_OFFSET = (-1, -1)  # the offset of a token that is not part of the context


def encoder_inputs(batch: dict) -> dict:
    """The batch's tensors an encoder reads (``token_type_ids`` only where the tokenizer makes them)."""
    return {key: batch[key] for key in ENCODER_INPUTS if key in batch}

# Generation batches (a causal language model's): ``input_ids``/``attention_mask``/``labels`` are the
# prompt and answer right-padded, ``labels`` IGNORE_LABEL on the prompt; evaluation and prediction
# batches also carry the prompt alone, left-padded, for ``generate``, and as lists (one per row) the
# rendered prompt and the reference answers that score a generated text.
PROMPT_INPUTS = ("prompt_ids", "prompt_mask")
GENERATION_TEXT_COLUMNS = ("example_id", "prompt", "references")
