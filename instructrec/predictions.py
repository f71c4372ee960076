"""Predictions for raw instruction texts, and their display."""

from __future__ import annotations

import torch


def predict_texts(model, datamodule, texts: list[str]) -> list:
    """Run ``model.predict_step`` on instructions encoded by ``datamodule`` as its files are."""
    return predict_batch(model, datamodule.batch_from_texts(texts))


@torch.no_grad()
def predict_batch(model, batch: dict) -> list:
    """``model.predict_step`` on an encoded batch (``batch_from_texts``), in eval mode, on the model's device."""
    batch = {key: value.to(model.device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
    was_training = model.training
    model.eval()
    try:
        return model.predict_step(batch, 0)
    finally:
        model.train(was_training)


def print_predictions(texts: list[str], predictions: list) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Predictions", show_lines=True)
    table.add_column("instruction", overflow="fold")
    table.add_column("prediction")
    for text, prediction in zip(texts, predictions):
        shown = prediction.get("label") if isinstance(prediction, dict) else prediction
        table.add_row(text, str(shown))
    Console().print(table)
