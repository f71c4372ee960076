"""The data layer: instruction files and raw data sets -> encoded batches (never a model)."""
