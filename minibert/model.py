"""BERT: the encoder and its task heads (Devlin et al. 2019, Section 3, Figures 1-2, Appendix A).

Shapes in comments: B batch, S sequence length, H hidden size, A attention heads, D = H / A head size,
I intermediate (feed-forward) size, V vocabulary size, P masked positions per sequence, C choices.

Faithful to Google's modeling.py (post-LayerNorm Transformer encoder, learned absolute position
embeddings, segment embeddings, tanh pooler on [CLS]) with Hugging Face's module names
(modeling_bert.py), so HF checkpoints load key for key. Where minibert differs:

* ``hidden_act="gelu"`` is the exact erf GELU (Hugging Face's meaning); Google's modeling.py uses the tanh
  approximation under that name. Use ``"gelu_new"`` for Google's.
* Masked attention scores get ``torch.finfo(dtype).min`` (as Hugging Face) instead of Google's -10000.0,
  so a masked key gets exactly zero probability. A sequence that is all padding attends to all its
  (padding) keys instead of none, which keeps it finite in fp32, fp16 and bf16 and makes the SDPA and
  explicit kernels agree in value and gradient (see :func:`keep_mask`); such rows are never read.
* The word-embedding matrix has no ``padding_idx`` (Google has none; Hugging Face sets one, which only
  zeroes that row at initialisation and blocks its gradient).
* Initialisation is Google's truncated normal (std = initializer_range, cut at 2 std), where Hugging
  Face uses a plain normal.
* ``BertForPreTraining`` also returns ``mlm_loss`` and ``nsp_loss``, and gives a loss when only one of the
  two label sets is passed (Hugging Face gives none unless both are).
* ``BertForPreTraining``/``BertForMaskedLM`` take ``masked_lm_positions`` (B, P): Google's sparse MLM head,
  which computes vocabulary logits only at the masked positions (``gather_indexes`` in run_pretraining.py).
* Outputs are always dataclasses (``return_dict`` is accepted and ignored); ``out[0]`` and ``out["loss"]``
  work as in Hugging Face. No decoder / cross-attention / KV-cache machinery: BERT is an encoder.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import ATTN_IMPLEMENTATIONS, BertConfig
from .heads import ACT2FN, BertOnlyMLMHead, BertPreTrainingHeads, gather_positions

__all__ = [
    "BertConfig", "BertModel", "BertForPreTraining", "BertForMaskedLM", "BertForSequenceClassification",
    "BertForTokenClassification", "BertForQuestionAnswering", "BertForMultipleChoice",
    "BertPreTrainedModel", "extended_attention_mask", "keep_mask", "additive_mask",
    "BertLMHeadModel", "BertWithBiLSTMForSequenceClassification", "causal_keep_mask", "last_token_index",
]


# ======================================================================================= outputs
class ModelOutput:
    """Base for output dataclasses: attribute access, plus ``out[0]``/``out["logits"]`` like Hugging Face."""

    def to_tuple(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return getattr(self, key)
        return self.to_tuple()[key]

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


@dataclass
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: torch.Tensor = None          # (B, S, H)
    pooler_output: torch.Tensor | None = None       # (B, H); None without a pooler
    hidden_states: tuple | None = None              # L + 1 tensors (B, S, H): embeddings, then each layer
    attentions: tuple | None = None                 # L tensors (B, A, S, S)


@dataclass
class BertForPreTrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None                # mlm_loss + nsp_loss (those that were asked for)
    prediction_logits: torch.Tensor = None          # (B, S, V), or (B, P, V) with masked_lm_positions
    seq_relationship_logits: torch.Tensor = None    # (B, 2)
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    mlm_loss: torch.Tensor | None = None
    nsp_loss: torch.Tensor | None = None


@dataclass
class MaskedLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor = None                     # (B, S, V), or (B, P, V) with masked_lm_positions
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class CausalLMOutput(ModelOutput):
    loss: torch.Tensor | None = None                # mean next-token cross-entropy
    logits: torch.Tensor = None                     # (B, S, V): at position t, the scores for token t + 1
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class SequenceClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor = None                     # (B, num_labels)
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class TokenClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor = None                     # (B, S, num_labels)
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    loss: torch.Tensor | None = None
    start_logits: torch.Tensor = None               # (B, S)
    end_logits: torch.Tensor = None                 # (B, S)
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class MultipleChoiceModelOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor = None                     # (B, C)
    hidden_states: tuple | None = None
    attentions: tuple | None = None


# ======================================================================================= masks
def keep_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """attention_mask (B, S), 1 = attend / 0 = padding, or (B, S, S) one row per query -> bool (B, 1, 1|S, S).

    A query with no key to attend to (a sequence that is all padding) is given all its keys instead:
    a softmax over nothing has no meaning, such rows are padding whose outputs nobody reads, and this way
    no row is fully masked, so every kernel and dtype gives the same finite values and gradients. (With
    every key masked, softmax(scores + finfo.min) is uniform in the forward pass, but a fused kernel's
    backward recomputes it from a log-sum-exp that cannot hold finfo.min + log(S) and gets it wrong.)
    """
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
    if attention_mask.dim() == 2:
        keep = attention_mask[:, None, None, :]     # (B, 1, 1, S): broadcasts over heads and queries
    elif attention_mask.dim() == 3:
        keep = attention_mask[:, None, :, :]        # (B, 1, S, S)
    else:
        raise ValueError(f"attention_mask must have shape (B, S) or (B, S, S), got {tuple(attention_mask.shape)}")
    keep = keep if keep.dtype == torch.bool else keep != 0
    return keep | ~keep.any(dim=-1, keepdim=True)  # rows with no key left: attend to every key


def additive_mask(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool keep-mask -> additive mask in ``dtype``: 0 where kept, ``torch.finfo(dtype).min`` where masked.

    Added to the attention scores before the softmax, it gives masked keys exactly zero weight. Every row
    keeps at least one key (see :func:`keep_mask`), so the softmax always has a finite maximum, even when a
    masked score plus finfo(fp16).min rounds to -inf.
    """
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)


def causal_keep_mask(seq_len: int, device=None) -> torch.Tensor:
    """bool (1, 1, S, S), True on and below the diagonal: query t may attend to keys 0..t (left to right).

    Combined (``&``) with :func:`keep_mask` when ``config.is_decoder``; as in Hugging Face's decoder mask and
    OpenAI GPT. Every row keeps at least its own position, so no row is ever fully masked.
    """
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()[None, None]


def last_token_index(attention_mask: torch.Tensor | None, batch: int, seq_len: int, device=None) -> torch.Tensor:
    """(B,) index of each sequence's last non-padding token (S - 1 without a mask). Assumes right padding,
    as every minibert collator pads; a sequence that is all padding gives 0."""
    if attention_mask is None:
        return torch.full((batch,), seq_len - 1, dtype=torch.long, device=device)
    if attention_mask.dim() != 2:
        raise ValueError(f"a left-to-right model needs a (B, S) attention_mask, got {tuple(attention_mask.shape)}")
    return (attention_mask.long().sum(dim=1) - 1).clamp(min=0)


def extended_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, S) 1/0 mask -> (B, 1, 1, S) additive mask (Google's ``create_attention_mask_from_input_mask``
    followed by its ``adder``, with finfo(dtype).min in place of -10000)."""
    return additive_mask(keep_mask(attention_mask), dtype)


# ======================================================================================= encoder
class BertEmbeddings(nn.Module):
    """Token + segment + position embeddings, then LayerNorm and dropout (Section 3.2, Figure 2)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.max_position_embeddings = config.max_position_embeddings

    def forward(self, input_ids: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)            # (B, S, H)
        batch, seq_len = inputs_embeds.shape[:2]
        if seq_len == 0:
            raise ValueError(f"the input has no tokens (shape {tuple(inputs_embeds.shape[:2])}); "
                             "a sequence needs at least one token, e.g. [CLS]")
        if seq_len > self.max_position_embeddings:
            raise ValueError(
                f"input sequence length {seq_len} exceeds max_position_embeddings "
                f"({self.max_position_embeddings}); truncate the input (e.g. tokenizer(..., truncation=True, "
                f"max_length={self.max_position_embeddings}))")
        device = inputs_embeds.device
        if position_ids is None:
            position_ids = torch.arange(seq_len, device=device).unsqueeze(0)   # (1, S)
        elif position_ids.numel() and not 0 <= int(position_ids.min()) <= int(position_ids.max()) < self.max_position_embeddings:
            raise ValueError(f"position_ids must be in [0, {self.max_position_embeddings}) "
                             f"(max_position_embeddings), got values from {int(position_ids.min())} "
                             f"to {int(position_ids.max())}")
        if token_type_ids is None:
            token_type_ids = torch.zeros(batch, seq_len, dtype=torch.long, device=device)  # (B, S)
        embeddings = (inputs_embeds
                      + self.token_type_embeddings(token_type_ids)             # (B, S, H)
                      + self.position_embeddings(position_ids))                # (1 or B, S, H)
        return self.dropout(self.LayerNorm(embeddings))                        # (B, S, H)


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention (Vaswani et al. 2017; BERT Section 3).

    Two interchangeable kernels compute softmax(Q K^T / sqrt(D) + mask) V:

    * explicit ("eager"): the formula written out; it can return the attention probabilities.
    * "sdpa": ``torch.nn.functional.scaled_dot_product_attention``, fused and memory-efficient.

    ``config.attn_implementation`` picks one; ``output_attentions=True`` forces the explicit kernel.

    ``fused_qkv`` (off by default; :meth:`BertPreTrainedModel.set_fused_qkv`) computes Q, K and V with one
    matmul against the three weights concatenated in ``forward`` ((3H, H): one large GEMM instead of three
    small ones). The parameters stay ``query``/``key``/``value`` (transformers' names), so checkpoints load
    unchanged; the result equals the three projections up to float rounding.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads   # D
        self.all_head_size = self.num_attention_heads * self.attention_head_size      # A * D = H
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.attn_implementation = config.attn_implementation
        self.fused_qkv = False

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq_len, _ = x.shape                                              # (B, S, H)
        x = x.view(batch, seq_len, self.num_attention_heads, self.attention_head_size)  # (B, S, A, D)
        return x.transpose(1, 2)                                                  # (B, A, S, D)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, S, H); attention_mask: bool keep-mask (B, 1, 1|S, S) or None.

        Returns the context (B, S, H) and, when ``output_attentions``, the probabilities (B, A, S, S).
        """
        if self.fused_qkv:
            weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])   # (3H, H)
            bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])           # (3H,)
            qkv = F.linear(hidden_states, weight, bias)                                   # (B, S, 3H)
            q, k, v = (self._split_heads(x) for x in qkv.split(self.all_head_size, dim=-1))   # (B, A, S, D)
        else:
            q = self._split_heads(self.query(hidden_states))   # (B, A, S, D)
            k = self._split_heads(self.key(hidden_states))     # (B, A, S, D)
            v = self._split_heads(self.value(hidden_states))   # (B, A, S, D)
        # The additive mask in the dtype the scores are computed in (bf16/fp16 under autocast).
        mask = None if attention_mask is None else additive_mask(attention_mask, q.dtype)  # (B, 1, 1|S, S)

        probs = None
        if output_attentions or self.attn_implementation == "eager":
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)  # (B, A, S, S)
            if mask is not None:
                scores = scores + mask                     # masked keys: finfo.min (may round to -inf in fp16)
            probs = torch.softmax(scores, dim=-1)          # (B, A, S, S), rows sum to 1
            context = torch.matmul(self.dropout(probs), v)  # (B, A, S, D)
        else:
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout.p if self.training else 0.0)  # (B, A, S, D)
        batch, _, seq_len, _ = context.shape
        context = context.transpose(1, 2).reshape(batch, seq_len, self.all_head_size)  # (B, S, H)
        return context, (probs if output_attentions else None)


class BertSelfOutput(nn.Module):
    """Output projection of attention, dropout, residual, LayerNorm (post-LN, as in the paper)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        # (B, S, H), residual (B, S, H) -> (B, S, H)
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertAttention(nn.Module):
    """``attention.self`` (multi-head attention) followed by ``attention.output`` (Add & Norm)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states, attention_mask=None, output_attentions=False):
        context, probs = self.self(hidden_states, attention_mask, output_attentions)  # (B, S, H)
        return self.output(context, hidden_states), probs                           # (B, S, H)


class BertIntermediate(nn.Module):
    """First half of the position-wise feed-forward network: H -> I (= 4H) and GELU."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))  # (B, S, H) -> (B, S, I)


class BertOutput(nn.Module):
    """Second half of the feed-forward network: I -> H, dropout, residual, LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        # (B, S, I), residual (B, S, H) -> (B, S, H)
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertLayer(nn.Module):
    """One Transformer encoder block: attention sub-layer then feed-forward sub-layer, each post-LN."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states, attention_mask=None, output_attentions=False):
        attention_output, probs = self.attention(hidden_states, attention_mask, output_attentions)  # (B, S, H)
        layer_output = self.output(self.intermediate(attention_output), attention_output)          # (B, S, H)
        return layer_output, probs


class BertEncoder(nn.Module):
    """A stack of ``num_hidden_layers`` identical blocks: ``encoder.layer.N``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states, attention_mask=None, output_attentions=False, output_hidden_states=False):
        all_hidden = (hidden_states,) if output_hidden_states else None  # embeddings output first
        all_attn = () if output_attentions else None
        for layer in self.layer:
            hidden_states, probs = layer(hidden_states, attention_mask, output_attentions)  # (B, S, H)
            if output_hidden_states:
                all_hidden += (hidden_states,)
            if output_attentions:
                all_attn += (probs,)
        return hidden_states, all_hidden, all_attn


class BertPooler(nn.Module):
    """tanh(W h_[CLS] + b): the sequence summary used by NSP and classification (Section 3, Figure 1's C).

    It reads position 0. A left-to-right model (``config.is_decoder``) has ``BertModel`` pass it the last
    non-padding token's vector instead, the only one that has seen the whole input.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))  # (B, S, H) -> (B, H)


# ======================================================================================= base class
_SKIP_INIT = False


@contextlib.contextmanager
def skip_init():
    """Inside this block, new models skip minibert's (slow) initialisation; PyTorch's default stays."""
    global _SKIP_INIT
    previous, _SKIP_INIT = _SKIP_INIT, True
    try:
        yield
    finally:
        _SKIP_INIT = previous


@torch.no_grad()
def truncated_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Fill ``tensor`` from N(0, std^2), redrawing every value beyond two standard deviations.

    This is TensorFlow's ``truncated_normal_initializer``, which Google's BERT uses for every weight
    matrix. It gives the same distribution as ``torch.nn.init.trunc_normal_(t, 0, std, -2 std, 2 std)``
    (which samples through the inverse CDF) at a fraction of the cost on a CPU.
    """
    tensor.normal_(0.0, std)
    if tensor.is_meta or tensor.numel() == 0:
        return tensor
    flat = tensor.view(-1)                                          # parameters are contiguous
    idx = torch.nonzero(flat.abs() > 2 * std).squeeze(1)            # about 4.6% of the entries
    while idx.numel():
        values = torch.empty(idx.numel(), dtype=tensor.dtype, device=tensor.device).normal_(0.0, std)
        flat[idx] = values
        idx = idx[values.abs() > 2 * std]
    return tensor


class BertPreTrainedModel(nn.Module):
    """Shared machinery: Google's initialisation, weight tying, parameter counts, loading and saving."""

    def __init__(self, config: BertConfig):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"{type(self).__name__} needs a minibert BertConfig, got {type(config).__name__}")
        config.validate()
        self.config = config

    # ----------------------------------------------------------------------------------- init
    @torch.no_grad()
    def init_parameter(self, module: nn.Module, name: str) -> None:
        """Google's create_initializer for one parameter: truncated normal (std = initializer_range, redrawn
        beyond 2 std) for Linear and Embedding weights, zero biases, LayerNorm weight 1 and bias 0."""
        param = getattr(module, name)
        if isinstance(module, nn.LayerNorm):
            param.fill_(1.0 if name == "weight" else 0.0)
        elif name == "bias":
            param.zero_()
        else:
            truncated_normal_(param, std=self.config.initializer_range)

    def post_init(self) -> None:
        """Initialise every parameter once (tied ones included once), then tie the MLM decoder."""
        self.tie_weights()
        if _SKIP_INIT:     # from_pretrained: the checkpoint is about to overwrite these weights
            return
        seen: set[int] = set()
        for module in self.modules():
            for name, param in module.named_parameters(recurse=False):
                if id(param) not in seen:
                    seen.add(id(param))
                    self.init_parameter(module, name)

    def init_parameters(self, names: list[str]) -> None:
        """(Re-)initialise the parameters with these state_dict names, e.g. heads a checkpoint lacked."""
        for full_name in names:
            module_name, _, name = full_name.rpartition(".")
            self.init_parameter(self.get_submodule(module_name), name)

    def tie_weights(self) -> None:
        """Make ``cls.predictions.decoder.weight`` the very same Parameter as the word embeddings, unless
        ``config.tie_word_embeddings`` is False: then the decoder keeps a weight of its own, which is loaded
        from and saved to ``cls.predictions.decoder.weight`` (as transformers does)."""
        cls = getattr(self, "cls", None)
        if cls is not None:
            decoder = cls.predictions.decoder
            embeddings = self.bert.embeddings.word_embeddings.weight
            if self.config.tie_word_embeddings:
                decoder.weight = embeddings
            elif decoder.weight is embeddings:   # untie: a copy the decoder owns from now on
                decoder.weight = nn.Parameter(embeddings.detach().clone())
            cls.predictions.bias = decoder.bias

    # ----------------------------------------------------------------------------------- helpers
    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Number of distinct parameters (tied weights counted once)."""
        params = {id(p): p for p in self.parameters()}    # parameters() already deduplicates
        if exclude_embeddings:
            for m in self.modules():
                if isinstance(m, nn.Embedding):
                    params.pop(id(m.weight), None)
        return sum(p.numel() for p in params.values() if p.requires_grad or not only_trainable)

    def set_attn_implementation(self, impl: str) -> "BertPreTrainedModel":
        """Switch every attention layer to "sdpa" or "eager" (explicit) in place; updates the config."""
        if impl not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation={impl!r} is not supported; choose one of {ATTN_IMPLEMENTATIONS}")
        self.config.attn_implementation = impl
        for module in self.modules():
            if isinstance(module, BertSelfAttention):
                module.attn_implementation = impl
        return self

    def set_fused_qkv(self, fused: bool = True) -> "BertPreTrainedModel":
        """Compute Q, K, V with one matmul per layer (see :class:`BertSelfAttention`); same parameters."""
        for module in self.modules():
            if isinstance(module, BertSelfAttention):
                module.fused_qkv = bool(fused)
        return self

    def get_input_embeddings(self) -> nn.Embedding:
        base = self if isinstance(self, BertModel) else self.bert
        return base.embeddings.word_embeddings

    # ----------------------------------------------------------------------------------- checkpoints
    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, *, dtype: torch.dtype | None = None,
                        output_loading_info: bool = False, ignore_mismatched_sizes: bool = False,
                        **config_overrides: Any):
        """Load a Hugging Face-format directory (config.json + model.safetensors or pytorch_model.bin).

        ``config_overrides`` change config fields (e.g. ``num_labels=3``, ``attn_implementation="eager"``).
        Heads missing from the checkpoint are left at their initialisation and listed in
        ``model.loading_info``; with ``ignore_mismatched_sizes=True`` (transformers' flag) so are head
        weights whose shape differs from the checkpoint's (``loading_info["mismatched"]``), e.g. a classifier
        fine-tuned with 2 labels re-used for a 3-label task; see :func:`minibert.checkpoint.load_pretrained`.
        """
        from .checkpoint import load_pretrained
        return load_pretrained(cls, directory, dtype=dtype, output_loading_info=output_loading_info,
                               ignore_mismatched_sizes=ignore_mismatched_sizes, **config_overrides)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write config.json and model.safetensors (atomically) in a form transformers can load."""
        from .checkpoint import save_pretrained
        save_pretrained(self, directory)


def _check_ids(input_ids, inputs_embeds, dims: int = 2, config: BertConfig | None = None,
               token_type_ids=None) -> None:
    """Clear errors for the usual input mistakes. Id ranges are checked for CPU tensors only (on a GPU
    that check would stall the device; an out-of-range id there fails inside the embedding kernel), and
    not under ``torch.compile`` (reading the ids' range would break the graph and specialise it on the
    values, one recompilation per batch)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids or inputs_embeds")
    if input_ids is None:
        return
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.dim() != dims:
        raise ValueError(f"input_ids must have {dims} dimensions, got shape {tuple(input_ids.shape)}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"input_ids must be an integer tensor, got {input_ids.dtype}")
    if (config is not None and input_ids.device.type == "cpu" and input_ids.numel()
            and not torch.compiler.is_compiling()):
        low, high = input_ids.min().item(), input_ids.max().item()
        if low < 0 or high >= config.vocab_size:
            raise ValueError(f"input_ids must be in [0, vocab_size={config.vocab_size}), got values in "
                             f"[{low}, {high}]: do the tokenizer's vocabulary and the model's config agree?")
        if token_type_ids is not None and token_type_ids.numel():
            low, high = token_type_ids.min().item(), token_type_ids.max().item()
            if low < 0 or high >= config.type_vocab_size:
                raise ValueError(f"token_type_ids must be in [0, type_vocab_size={config.type_vocab_size}), "
                                 f"got values in [{low}, {high}]")


# ======================================================================================= models
class BertModel(BertPreTrainedModel):
    """The bare encoder: embeddings, ``num_hidden_layers`` blocks and (optionally) the pooler.

    With ``config.is_decoder`` (the paper's left-to-right ablation, Section 5.1, Table 5) every block uses a
    causal mask (:func:`causal_keep_mask`), so the output at position t depends on tokens 0..t only, and the
    pooler reads the *last non-padding token* (right padding assumed) instead of [CLS], which under a causal
    mask sees nothing but itself. This is how OpenAI GPT, which the paper's LTR model is designed to match,
    classifies a sequence: from the final token's representation (Radford et al. 2018, Section 3.3).
    Hugging Face's pooler reads [CLS] even when ``is_decoder`` is set: there the two differ.
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True, init_weights: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        if init_weights:  # a task model initialises everything, its BertModel included, once
            self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False, return_dict: bool = True) -> BaseModelOutputWithPooling:
        """input_ids (B, S); attention_mask (B, S) 1 = token, 0 = padding; token_type_ids (B, S) 0/1."""
        _check_ids(input_ids, inputs_embeds, config=self.config, token_type_ids=token_type_ids)
        shape = tuple(input_ids.shape) if input_ids is not None else tuple(inputs_embeds.shape[:2])
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if t is not None and tuple(t.shape[:2]) != shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)} but input_ids has shape {shape}")
        embedding_output = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, S, H)
        keep = None if attention_mask is None else keep_mask(attention_mask)                     # (B, 1, 1, S)
        if self.config.is_decoder:                                 # left to right: (B or 1, 1, S, S)
            causal = causal_keep_mask(shape[1], embedding_output.device)
            keep = causal if keep is None else keep & causal
        sequence_output, hidden_states, attentions = self.encoder(
            embedding_output, keep, output_attentions, output_hidden_states)                     # (B, S, H)
        pooled_output = None
        if self.pooler is not None and self.config.is_decoder:
            last = last_token_index(attention_mask, shape[0], shape[1], sequence_output.device)  # (B,)
            rows = torch.arange(shape[0], device=sequence_output.device)
            pooled_output = self.pooler(sequence_output[rows, last].unsqueeze(1))               # (B, H)
        elif self.pooler is not None:
            pooled_output = self.pooler(sequence_output)                                          # (B, H)
        return BaseModelOutputWithPooling(sequence_output, pooled_output, hidden_states, attentions)


def cross_entropy_over_labelled(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy averaged over the positions whose label is not ``ignore_index``; 0 when there are none.

    logits: (N, C), labels: (N,). The mean of PyTorch's (and Hugging Face's) ``F.cross_entropy`` is NaN
    (0 / 0) when every label is ignored, e.g. a masked-LM batch in which no token was chosen; one such step
    would turn every weight into NaN. Google's ``get_masked_lm_output`` divides by ``sum(weights) + 1e-5``
    and so gives 0; here the sum is divided by ``max(count, 1)``: the same 0 in that case, and exactly the
    mean otherwise. The 0 keeps the graph, so ``backward()`` gives zero gradients.
    """
    labels = labels.reshape(-1)
    total = F.cross_entropy(logits.reshape(labels.shape[0], -1).float(), labels, ignore_index=ignore_index,
                            reduction="sum")
    return total / (labels != ignore_index).sum().clamp(min=1)


def _mlm_logits_and_loss(model, sequence_output, labels, masked_lm_positions):
    """Shared by BertForPreTraining and BertForMaskedLM: dense or sparse (gathered) MLM logits and loss."""
    if masked_lm_positions is not None:
        sequence_output = gather_positions(sequence_output, masked_lm_positions)  # (B, P, H)
    logits = model.cls.predictions(sequence_output)                            # (B, S or P, V)
    loss = None
    if labels is not None:
        if tuple(labels.shape) != tuple(logits.shape[:2]):
            what = "masked_lm_positions" if masked_lm_positions is not None else "input_ids"
            raise ValueError(f"labels have shape {tuple(labels.shape)} but {what} gives {tuple(logits.shape[:2])}")
        # Mean over the positions whose label is not -100, 0 when there are none (Google: sum(w * nll) /
        # (sum(w) + 1e-5)); see cross_entropy_over_labelled.
        loss = cross_entropy_over_labelled(logits, labels)
    return logits, loss


class BertForPreTraining(BertPreTrainedModel):
    """BERT with both pre-training heads: masked LM and next-sentence prediction (Section 3.1)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, init_weights=False)
        self.cls = BertPreTrainingHeads(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, next_sentence_label=None, masked_lm_positions=None,
                output_attentions=False, output_hidden_states=False, return_dict=True) -> BertForPreTrainingOutput:
        """labels: (B, S) with -100 at unmasked tokens, or (B, P) with ``masked_lm_positions`` (B, P); the MLM
        loss is their mean, 0 when no position is labelled (as Google's, where PyTorch's mean gives NaN).
        next_sentence_label: (B,) 0 = B follows A (IsNext), 1 = random (NotNext)."""
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions, output_hidden_states)
        prediction_logits, mlm_loss = _mlm_logits_and_loss(self, out.last_hidden_state, labels, masked_lm_positions)
        seq_relationship_logits = self.cls.seq_relationship(out.pooler_output)      # (B, 2)
        nsp_loss = None
        if next_sentence_label is not None:
            nsp_loss = cross_entropy_over_labelled(seq_relationship_logits, next_sentence_label)
        losses = [x for x in (mlm_loss, nsp_loss) if x is not None]
        loss = sum(losses) if losses else None
        return BertForPreTrainingOutput(loss, prediction_logits, seq_relationship_logits, out.hidden_states,
                                        out.attentions, mlm_loss, nsp_loss)


class BertForMaskedLM(BertPreTrainedModel):
    """BERT with the masked-LM head only (no pooler, as in Hugging Face)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False, init_weights=False)
        self.cls = BertOnlyMLMHead(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, masked_lm_positions=None, output_attentions=False,
                output_hidden_states=False, return_dict=True) -> MaskedLMOutput:
        """labels: (B, S) with -100 at unmasked tokens, or (B, P) with ``masked_lm_positions`` (B, P). The loss
        is the mean over labelled positions, 0 when there are none (Google's; PyTorch's mean gives NaN)."""
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions, output_hidden_states)
        logits, loss = _mlm_logits_and_loss(self, out.last_hidden_state, labels, masked_lm_positions)
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


class BertForSequenceClassification(BertPreTrainedModel):
    """A linear classifier on the pooled [CLS] vector (Section 4.1, Figure 4a/b).

    Loss as Hugging Face: MSE when ``num_labels == 1`` (regression, e.g. STS-B), cross-entropy for integer
    labels, BCE-with-logits for float multi-hot labels (``problem_type="multi_label_classification"``).
    """

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, init_weights=False)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                return_dict=True) -> SequenceClassifierOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions, output_hidden_states)
        logits = self.classifier(self.dropout(out.pooler_output))   # (B, num_labels)
        loss = None
        if labels is not None:
            problem = self.config.problem_type
            if problem is None:
                if self.num_labels == 1:
                    problem = "regression"
                elif labels.dtype in (torch.long, torch.int):
                    problem = "single_label_classification"
                else:
                    problem = "multi_label_classification"
            if problem == "regression":
                loss = F.mse_loss(logits.float().reshape(labels.shape) if self.num_labels == 1 else logits.float(),
                                  labels.float())
            elif problem == "single_label_classification":
                loss = cross_entropy_over_labelled(logits, labels)   # -100 = no label; 0 if none
            else:
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class BertForTokenClassification(BertPreTrainedModel):
    """A linear classifier on every token's final hidden vector (Section 4.3 / 5.3, Figure 4d); no pooler."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False, init_weights=False)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                return_dict=True) -> TokenClassifierOutput:
        """labels: (B, S) class ids, -100 where no label (padding, sub-word continuations). The loss is the
        mean over labelled tokens, 0 (not Hugging Face's NaN) when no token has a label."""
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions, output_hidden_states)
        logits = self.classifier(self.dropout(out.last_hidden_state))   # (B, S, num_labels)
        loss = None
        if labels is not None:
            loss = cross_entropy_over_labelled(logits, labels)   # 0 when every label is -100
        return TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class BertForQuestionAnswering(BertPreTrainedModel):
    """Span prediction (Section 4.2, Figure 4c): a start vector S and an end vector E, ``qa_outputs``.

    ``start_positions``/``end_positions`` (B,) outside [0, S) are clamped to S and ignored in the loss,
    as in Hugging Face; the loss is the mean of the start and end cross-entropies (0, not HF's NaN, when
    every position of the batch is ignored).
    """

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False, init_weights=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)  # num_labels = 2: start, end
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=False,
                output_hidden_states=False, return_dict=True) -> QuestionAnsweringModelOutput:
        if self.num_labels != 2:
            raise ValueError(f"BertForQuestionAnswering needs num_labels=2 (start, end), got {self.num_labels}")
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions, output_hidden_states)
        logits = self.qa_outputs(out.last_hidden_state)          # (B, S, 2)
        start_logits, end_logits = logits.unbind(dim=-1)         # (B, S) each
        start_logits, end_logits = start_logits.contiguous(), end_logits.contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            ignored = start_logits.shape[1]                       # S: "no answer in this window"
            start_positions = start_positions.reshape(-1).clamp(0, ignored)
            end_positions = end_positions.reshape(-1).clamp(0, ignored)
            start_loss = cross_entropy_over_labelled(start_logits, start_positions, ignore_index=ignored)
            end_loss = cross_entropy_over_labelled(end_logits, end_positions, ignore_index=ignored)
            loss = (start_loss + end_loss) / 2
        return QuestionAnsweringModelOutput(loss, start_logits, end_logits, out.hidden_states, out.attentions)


class BertForMultipleChoice(BertPreTrainedModel):
    """One score per (context, choice) pair from the pooled vector, softmax over choices (SWAG, Section 4.4)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, init_weights=False)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                return_dict=True) -> MultipleChoiceModelOutput:
        """input_ids, attention_mask, token_type_ids: (B, C, S); labels (B,) index of the right choice."""
        if inputs_embeds is None:
            _check_ids(input_ids, inputs_embeds, dims=3)
        num_choices = input_ids.shape[1] if input_ids is not None else inputs_embeds.shape[1]

        def flat(t):  # (B, C, S, ...) -> (B * C, S, ...)
            return None if t is None else t.reshape(-1, *t.shape[2:])

        out = self.bert(flat(input_ids), flat(attention_mask), flat(token_type_ids), flat(position_ids),
                        flat(inputs_embeds), output_attentions, output_hidden_states)
        logits = self.classifier(self.dropout(out.pooler_output)).view(-1, num_choices)  # (B, C)
        loss = cross_entropy_over_labelled(logits, labels) if labels is not None else None
        return MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions)


# ======================================================================================= ablation models
class BertLMHeadModel(BertPreTrainedModel):
    """A left-to-right language model on BERT's architecture: the paper's "LTR & No NSP" (Section 5.1, Table 5).

    The same encoder with a causal mask (``config.is_decoder=True``, required) and the same MLM head
    (``cls.predictions``, tied to the word embeddings), trained to predict token t + 1 at every position t:
    "a standard Left-to-Right (LTR) LM, rather than an MLM", on the same data, with no NSP. Name and head
    as Hugging Face's ``BertLMHeadModel`` (no pooler), so its weights load into a causal
    ``BertForSequenceClassification`` for fine-tuning, which stays causal "as the paper did".

    ``labels`` (B, S) are usually the ``input_ids`` with -100 at padding; the model shifts them (the logits at
    position t are scored against ``labels[:, t + 1]``), so the loss is the mean next-token cross-entropy and
    exp(loss) the perplexity per predicted token.

    ``prediction_positions`` (B, P), optional: score only these positions (the head runs on P vectors, like
    the sparse MLM head); ``labels`` are then (B, P), the token that *follows* each position, -100 for
    padding. Not in the paper, whose LTR model scores every token: it lets a small budget give the LTR model
    as many predictions per step as the masked LM (:class:`minibert.pretraining.DataCollatorForCausalLM`).
    """

    def __init__(self, config: BertConfig):
        if not config.is_decoder:
            raise ValueError("BertLMHeadModel needs BertConfig(is_decoder=True): without the causal mask the "
                             "token to predict is visible in the input")
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False, init_weights=False)
        self.cls = BertOnlyMLMHead(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, prediction_positions=None, output_attentions=False,
                output_hidden_states=False, return_dict=True) -> CausalLMOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions, output_hidden_states)
        if prediction_positions is not None:                                      # sparse: (B, P, V)
            logits = self.cls(gather_positions(out.last_hidden_state, prediction_positions))
            loss = None
            if labels is not None:
                if tuple(labels.shape) != tuple(logits.shape[:2]):
                    raise ValueError(f"labels have shape {tuple(labels.shape)} but prediction_positions "
                                     f"{tuple(logits.shape[:2])}")
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                       ignore_index=-100)
            return CausalLMOutput(loss, logits, out.hidden_states, out.attentions)
        logits = self.cls(out.last_hidden_state)                                  # (B, S, V)
        loss = None
        if labels is not None:
            if tuple(labels.shape) != tuple(logits.shape[:2]):
                raise ValueError(f"labels have shape {tuple(labels.shape)} but input_ids {tuple(logits.shape[:2])}")
            shifted = logits[:, :-1].reshape(-1, logits.shape[-1]).float()        # (B * (S-1), V)
            loss = F.cross_entropy(shifted, labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutput(loss, logits, out.hidden_states, out.attentions)


class BertWithBiLSTMForSequenceClassification(BertPreTrainedModel):
    """The "+ BiLSTM" row of Table 5 (Section 5.1): a randomly initialised BiLSTM on top of the encoder for
    fine-tuning, then a linear classifier on the concatenated last forward and last backward LSTM states.

    The paper added it to the LTR model to give it back some right context at fine-tuning time; the encoder
    stays as configured (causal for an LTR checkpoint), the BiLSTM sees the whole sequence. Shapes: input
    (B, S) -> encoder (B, S, H) -> BiLSTM over the non-padding tokens, ``lstm_hidden_size`` per direction
    (``config.extra["lstm_hidden_size"]``, default H / 2) -> logits (B, num_labels). Loss: cross-entropy
    for integer labels, MSE when ``num_labels == 1``. The LSTM keeps PyTorch's initialisation,
    U(-1/sqrt(h), 1/sqrt(h)), instead of BERT's truncated normal. No pooler (it is not used).
    """

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False, init_weights=False)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        hidden = int(config.extra.get("lstm_hidden_size", max(1, config.hidden_size // 2)))
        self.lstm = nn.LSTM(config.hidden_size, hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden, config.num_labels)
        self.post_init()

    @torch.no_grad()
    def init_parameter(self, module: nn.Module, name: str) -> None:
        if isinstance(module, nn.LSTM):
            bound = 1.0 / math.sqrt(module.hidden_size)
            getattr(module, name).uniform_(-bound, bound)
        else:
            super().init_parameter(module, name)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                return_dict=True) -> SequenceClassifierOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions, output_hidden_states)
        sequence = self.dropout(out.last_hidden_state)                              # (B, S, H)
        batch, seq_len = sequence.shape[:2]
        lengths = last_token_index(attention_mask, batch, seq_len, sequence.device) + 1   # (B,)
        packed = nn.utils.rnn.pack_padded_sequence(sequence, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)                                             # h_n (2, B, h)
        final = torch.cat([h_n[0], h_n[1]], dim=-1)                                 # (B, 2h): forward, backward
        logits = self.classifier(self.dropout(final))                               # (B, num_labels)
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = F.mse_loss(logits.float().reshape(labels.shape), labels.float())
            else:
                loss = F.cross_entropy(logits.float(), labels.view(-1))
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)
