"""The pre-training heads that sit on top of the encoder (Devlin et al. 2019, Section 3.1, Appendix A.2).

* :class:`BertLMPredictionHead` — the masked-LM head: a dense layer, GELU and LayerNorm ("transform"),
  then a projection back onto the vocabulary whose weight *is* the word-embedding matrix (weight tying,
  as in Google's ``get_masked_lm_output``) plus a per-token output bias. A config with
  ``tie_word_embeddings=False`` (transformers' flag) gives the projection a weight of its own, which
  checkpoints then store as ``cls.predictions.decoder.weight``.
* :class:`BertPreTrainingHeads` — the MLM head and the next-sentence classifier, a 2-way linear layer on
  the pooled [CLS] vector (Section 3.1, Task #2).

Module names are Hugging Face's (``cls.predictions.transform.dense``, ``cls.predictions.decoder``,
``cls.predictions.bias``, ``cls.seq_relationship``) so that checkpoints load without renaming. As in Hugging
Face, ``cls.predictions.bias`` and ``cls.predictions.decoder.bias`` are one and the same parameter.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import BertConfig


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    # The tanh approximation used by Google's modeling.py (their function is called `gelu`).
    return F.gelu(x, approximate="tanh")


# Activation functions by config name. "gelu" is the exact erf form, as in Hugging Face.
ACT2FN = {
    "gelu": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


class BertPredictionHeadTransform(nn.Module):
    """dense -> activation -> LayerNorm, applied to each hidden vector before the vocabulary projection."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # hidden_states: (..., H) -> (..., H)
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    """Masked-LM head: transform, then logits over the vocabulary with the (tied) word embeddings."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        # decoder.weight is replaced by the word-embedding matrix in BertPreTrainedModel.tie_weights()
        # (unless config.tie_word_embeddings is False).
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        # The output bias, one per vocabulary entry. The same Parameter object as decoder.bias, registered
        # under both names so the state_dict has Hugging Face's keys.
        self.bias = self.decoder.bias

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # hidden_states: (..., H) -> logits (..., V)
        return self.decoder(self.transform(hidden_states))


class BertOnlyMLMHead(nn.Module):
    """Just the masked-LM head (BertForMaskedLM): ``cls.predictions``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)  # (..., V)


class BertPreTrainingHeads(nn.Module):
    """Masked-LM head and next-sentence-prediction head (BertForPreTraining): ``cls.*``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)  # IsNext / NotNext

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor):
        # sequence_output: (B, S, H) or gathered (B, P, H); pooled_output: (B, H)
        prediction_scores = self.predictions(sequence_output)         # (B, S or P, V)
        seq_relationship_score = self.seq_relationship(pooled_output)  # (B, 2)
        return prediction_scores, seq_relationship_score


def gather_positions(sequence_output: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Pick the hidden vectors at ``positions``: Google's ``gather_indexes`` in run_pretraining.py.

    sequence_output: (B, S, H); positions: (B, P) long -> (B, P, H). Padded entries of ``positions``
    (any valid index, conventionally 0) are gathered too; their labels are -100 so they add no loss.
    """
    if positions.dim() != 2 or positions.shape[0] != sequence_output.shape[0]:
        raise ValueError(f"masked_lm_positions must have shape (batch, num_predictions) = "
                         f"({sequence_output.shape[0]}, P), got {tuple(positions.shape)}")
    if positions.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"masked_lm_positions must be an integer tensor, got {positions.dtype}")
    index = positions.long().unsqueeze(-1).expand(-1, -1, sequence_output.shape[-1])  # (B, P, H)
    return torch.gather(sequence_output, 1, index)                                  # (B, P, H)
