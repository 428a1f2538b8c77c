"""The hyper-parameters of a BERT model, with Hugging Face's field names.

:class:`BertConfig` is a plain dataclass. Its fields are named as in Hugging Face's ``BertConfig`` (and,
through it, as in Google's ``bert_config.json``), so the ``config.json`` of a Hugging Face checkpoint reads
straight into it and the ``config.json`` minibert writes is one that ``transformers`` loads.

The defaults are BERT-BASE (Devlin et al. 2019, Section 3: L=12, H=768, A=12, 110M parameters). The
presets add BERT-LARGE (L=24, H=1024, A=16) and the four compact models of Turc et al. (2019, "Well-Read
Students Learn Better"): tiny, mini, small and medium. As in the paper, the feed-forward size is 4H.

One naming trap: in Google's ``modeling.py`` the function called ``gelu`` is the *tanh approximation*
of GELU, while in Hugging Face (and here) ``hidden_act="gelu"`` is the exact, erf-based GELU. The tanh form
is available as ``"gelu_new"`` (alias ``"gelu_pytorch_tanh"``). The released checkpoints were trained with
the approximation; the two differ by less than 1e-3 everywhere, and Hugging Face, whose checkpoints we load,
uses the exact form.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text

# Activations understood by the feed-forward block and the MLM head transform (see model.ACT2FN).
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "tanh")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")

# (num_hidden_layers, hidden_size, num_attention_heads); intermediate_size = 4 * hidden_size.
PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 128, 2),      # Turc et al. 2019, BERT-Tiny   (L=2,  H=128)
    "mini": (4, 256, 4),      # Turc et al. 2019, BERT-Mini   (L=4,  H=256)
    "small": (4, 512, 8),     # Turc et al. 2019, BERT-Small  (L=4,  H=512)
    "medium": (8, 512, 8),    # Turc et al. 2019, BERT-Medium (L=8,  H=512)
    "base": (12, 768, 12),    # Devlin et al. 2019, Section 3, BERT-BASE
    "large": (24, 1024, 16),  # Devlin et al. 2019, Section 3, BERT-LARGE
}


MODEL_TYPE = "bert"     # config.json's "model_type" (transformers' name for the architecture)


def read_config_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``path`` (a config.json); ValueError naming the file when it cannot be read, is
    not UTF-8, is empty, is not valid JSON (with the line and column) or holds something other than an
    object (a list, a string, a number)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a JSON file") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        what = "is empty" if not text.strip() else f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise ValueError(f"{path} {what}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} holds a JSON {JSON_TYPES.get(type(values), type(values).__name__)}, not an "
                         "object of settings such as {\"hidden_size\": 768, ...}")
    return values


JSON_TYPES = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


@dataclass
class BertConfig:
    """Hyper-parameters of BERT. Defaults are BERT-BASE, uncased vocabulary.

    Fields follow Hugging Face's ``BertConfig``. minibert adds nothing new in meaning, but it keeps
    ``num_labels``, ``id2label``/``label2id``, ``problem_type`` and ``classifier_dropout`` (which the task
    heads read) and ``attn_implementation`` ("sdpa" for ``F.scaled_dot_product_attention``, "eager" for
    the explicit softmax(QK^T/sqrt(d) + mask) V that can return the attention probabilities).

    ``is_decoder=True`` makes self-attention causal (left-to-right): the "LTR" model of the paper's ablation
    (Devlin et al. 2019, Section 5.1, Table 5: "a left-context-only model", like OpenAI GPT). Same name and
    meaning as Hugging Face's ``BertConfig.is_decoder`` (minibert has no cross-attention, so nothing else
    changes); the pooler then reads the last non-padding token instead of [CLS] (see ``BertModel``).
    """
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    # Task heads.
    num_labels: int = 2
    classifier_dropout: float | None = None
    problem_type: str | None = None
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    # Attention kernel: "sdpa" or "eager" (explicit; forced whenever output_attentions=True).
    attn_implementation: str = "sdpa"
    # The MLM decoder is the word-embedding matrix (Google's get_masked_lm_output); False gives the decoder
    # its own weight, as transformers does for a config.json with "tie_word_embeddings": false.
    tie_word_embeddings: bool = True
    # Left-to-right (causal) self-attention: position t attends to positions <= t only. Hugging Face's name
    # (its BertModel applies the same causal mask when is_decoder=True). The paper's "LTR & No NSP" ablation.
    is_decoder: bool = False
    # Keys of a config.json that minibert does not use but keeps, so a round trip loses nothing.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("id2label", "label2id"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"BertConfig.{name} must be a mapping (a JSON object), got {type(value).__name__} "
                                 f"{value!r:.60}")
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            if len(self.id2label) != self.num_labels:
                raise ValueError(f"BertConfig.id2label has {len(self.id2label)} labels but "
                                 f"num_labels={self.num_labels}")
        if self.label2id is not None:
            self.label2id = {str(k): int(v) for k, v in self.label2id.items()}
        self.validate()

    @property
    def head_dim(self) -> int:
        """Size of one attention head, H / A (64 in BERT-BASE and BERT-LARGE)."""
        return self.hidden_size // self.num_attention_heads

    def validate(self) -> None:
        """Raise ValueError naming the first field whose value cannot describe a BERT model."""
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size", "num_labels")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"BertConfig.{name} must be an int, got {value!r}")
            if value <= 0:
                raise ValueError(f"BertConfig.{name} must be positive, got {value}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"BertConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})")
        probs = ("hidden_dropout_prob", "attention_probs_dropout_prob")
        for name in probs + (("classifier_dropout",) if self.classifier_dropout is not None else ()):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"BertConfig.{name} must be a probability in [0, 1), got {value!r}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"BertConfig.hidden_act={self.hidden_act!r} is not supported; choose one of {ACTIVATIONS}")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"BertConfig.attn_implementation={self.attn_implementation!r} is not "
                             f"supported; choose one of {ATTN_IMPLEMENTATIONS}")
        if not isinstance(self.is_decoder, bool):
            raise ValueError(f"BertConfig.is_decoder must be a bool, got {self.is_decoder!r}")
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"BertConfig.problem_type={self.problem_type!r} is not one of {PROBLEM_TYPES}")
        if not (isinstance(self.initializer_range, (int, float)) and self.initializer_range > 0):
            raise ValueError(f"BertConfig.initializer_range must be positive, got {self.initializer_range!r}")
        if not (isinstance(self.layer_norm_eps, (int, float)) and self.layer_norm_eps > 0):
            raise ValueError(f"BertConfig.layer_norm_eps must be positive, got {self.layer_norm_eps!r}")
        if not isinstance(self.tie_word_embeddings, bool):
            raise ValueError(f"BertConfig.tie_word_embeddings must be true or false, got {self.tie_word_embeddings!r}")
        if not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"BertConfig.pad_token_id must be an id in [0, vocab_size), got {self.pad_token_id!r}")

    # ----------------------------------------------------------------------------------- constructors
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "BertConfig":
        """A named size: tiny, mini, small, medium (Turc et al. 2019), base or large (Devlin et al. 2019).

        >>> BertConfig.from_preset("tiny", vocab_size=1000).intermediate_size
        512
        """
        if name not in PRESETS:
            raise ValueError(f"unknown BertConfig preset {name!r}; choose one of {tuple(PRESETS)}")
        layers, hidden, heads = PRESETS[name]
        values = dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                      intermediate_size=4 * hidden)
        values.update(overrides)
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "BertConfig":
        """Build from a dict such as a parsed config.json. Keys minibert does not use are kept in ``extra``.

        Raises ValueError for a ``model_type`` other than "bert" (another architecture's config.json, which
        would otherwise load as a BERT of the wrong shape; an absent model_type, as in Google's
        bert_config.json, is fine) and TypeError for ``values`` that are not a dict."""
        if not isinstance(values, dict):
            raise TypeError(f"a BertConfig is built from a dict (a JSON object), got {type(values).__name__}")
        model_type = values.get("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(f"model_type is {model_type!r}, not {MODEL_TYPE!r}: this is not a BERT model's "
                             "config (minibert builds only BERT)")
        for name in ("id2label", "label2id"):
            if values.get(name) is not None and not isinstance(values[name], dict):
                raise ValueError(f"BertConfig.{name} must be a mapping (a JSON object), got "
                                 f"{type(values[name]).__name__} {values[name]!r:.60}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in values.items() if k in names}
        extra = {k: v for k, v in values.items() if k not in names}
        extra.pop("extra", None)
        # transformers writes the attention kernel as "_attn_implementation" in some versions.
        attn = extra.pop("_attn_implementation", None)
        if "attn_implementation" not in known and attn in ATTN_IMPLEMENTATIONS:
            known["attn_implementation"] = attn
        if "num_labels" not in known and known.get("id2label"):
            known["num_labels"] = len(known["id2label"])
        if known.get("id2label") and all(str(v) == f"LABEL_{k}" for k, v in known["id2label"].items()):
            # The generic names transformers (and to_dict) write when there are none: no label names.
            known["id2label"] = known["label2id"] = None
        return cls(**known, extra=extra)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "BertConfig":
        """Read a config.json (Hugging Face or Google ``bert_config.json``); every error names the file."""
        values = read_config_json(path)
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> "BertConfig":
        """Read ``directory/config.json`` (or a config.json path), then apply ``overrides``."""
        path = Path(directory)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"no config.json at {path}")
        config = cls.from_json_file(path)
        return config.replace(**overrides) if overrides else config

    def replace(self, **changes: Any) -> "BertConfig":
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"BertConfig has no field(s) {sorted(unknown)}")
        if "num_labels" in changes and "id2label" not in changes:
            changes["id2label"] = None     # a new label count drops the old label names
            changes.setdefault("label2id", None)
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------------------------- writing
    def to_dict(self) -> dict[str, Any]:
        """The config.json contents: our fields plus what transformers needs to recognise a BERT."""
        values = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name != "extra":
                values[f.name] = getattr(self, f.name)
        id2label = self.id2label or {i: f"LABEL_{i}" for i in range(self.num_labels)}
        values["id2label"] = {str(i): name for i, name in id2label.items()}
        values["label2id"] = self.label2id or {name: i for i, name in id2label.items()}
        values["model_type"] = "bert"
        values.setdefault("position_embedding_type", "absolute")
        values.setdefault("architectures", ["BertModel"])
        return dict(sorted(values.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        """Write config.json atomically (a temporary file in the same folder, then os.replace)."""
        atomic_write_text(Path(path), self.to_json_string())

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.to_json_file(directory / "config.json")
