"""minibert: BERT built step by step, faithful to Devlin et al. (2019) and Google's reference code."""
__version__ = "0.1.0"

from .data import load_dataset, pretrained_path, vocab_path  # noqa: F401
