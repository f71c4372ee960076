"""instructrec: instruction-driven NLP on PyTorch Lightning.

The instruction language (:mod:`instructrec.instructions`) is plain Python; importing this package
does not import torch or Lightning.
"""

__version__ = "0.1.0"
