"""Using a trained model: ``minibert.pipeline(task, model=DIR)``, with transformers' inputs and outputs.

Four tasks, each the inference half of a chapter:

* ``"fill-mask"`` (Chapters 5 and 7): the most likely tokens for each ``[MASK]``;
  ``[{"score", "token", "token_str", "sequence"}, ...]``, ``top_k`` (default 5) per mask;
* ``"text-classification"`` (Chapter 8; alias ``"sentiment-analysis"``): a sentence, or a pair given as
  ``{"text": ..., "text_pair": ...}``; ``{"label", "score"}`` with the label names saved by fine-tuning
  (``config.id2label``), the score a softmax probability (none applied for regression, STS-B);
* ``"token-classification"`` (Chapter 10; alias ``"ner"``): entities with character offsets,
  ``[{"entity_group", "score", "word", "start", "end"}, ...]``, word pieces grouped as transformers'
  ``aggregation_strategy="simple"`` (:func:`minibert.ner.entity_groups`), or one dict per piece with
  ``aggregation_strategy="none"``;
* ``"question-answering"`` (Chapter 9): ``pipe(question=..., context=...)`` gives
  ``{"score", "start", "end", "answer"}``; the span is the one :func:`minibert.squad.postprocess_predictions`
  picks (long passages in overlapping windows, Google's max-context rule, at most ``max_answer_len`` = 30
  tokens), and ``score`` is its probability ``p_start(i) * p_end(j)``, each a softmax over the passage tokens
  of the window it comes from.

Inputs and outputs follow transformers' pipelines: one input gives one result, a list gives a list (and
text classification wraps a single result in a list, as transformers does). Inputs are run in batches of
``batch_size``, on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, or an int as in transformers: -1 for the
CPU, k for GPU k; default: the GPU when there is one). Texts longer than the model's positions are cut,
with one warning per call (the "minibert" logger) naming the inputs and how many tokens were dropped;
question answering cuts the passage into overlapping windows instead, so no context is lost.

Where we differ from transformers: transformers 5 has no question-answering pipeline any more (its
4.x pipeline normalised the start and end softmax over [CLS] too, and ranked spans across windows by
that probability, not by Google's rule); token offsets cover combining accents that lower-casing removed
(see :mod:`minibert.tokenizer`), so an entity cut from accented text keeps its accents.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

TASK_HEADS = {
    "fill-mask": "BertForMaskedLM",
    "text-classification": "BertForSequenceClassification",
    "token-classification": "BertForTokenClassification",
    "question-answering": "BertForQuestionAnswering",
}
logger = logging.getLogger("minibert")

ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}
# The task a checkpoint was trained for, from config.json's "architectures".
ARCHITECTURE_TASKS = {
    "BertForMaskedLM": "fill-mask", "BertForPreTraining": "fill-mask",
    "BertForSequenceClassification": "text-classification",
    "BertForTokenClassification": "token-classification",
    "BertForQuestionAnswering": "question-answering",
}
# The weights a task needs from the checkpoint: a fresh head would answer at random.
HEAD_PREFIXES = {
    "fill-mask": ("cls.predictions.",),
    "text-classification": ("classifier.", "bert.pooler."),
    "token-classification": ("classifier.",),
    "question-answering": ("qa_outputs.",),
}


# What each architecture is, and each task's head, in words (for the error when a head is missing).
ARCHITECTURE_NAMES = {
    "BertModel": "bare encoder", "BertForPreTraining": "pre-training model (MLM + NSP)",
    "BertForMaskedLM": "masked language model", "BertForSequenceClassification": "sequence classifier",
    "BertForTokenClassification": "token classifier", "BertForQuestionAnswering": "question-answering model",
}
HEAD_NAMES = {"fill-mask": "an MLM head", "text-classification": "a trained classification head",
              "token-classification": "a trained token-classification head",
              "question-answering": "a trained span (question-answering) head"}


def missing_head_message(model: str, task: str, fresh: Sequence[str], architectures) -> str:
    """The error for a checkpoint without ``task``'s head: what the folder holds (config.json's
    ``architectures``), the head weights it lacks (``fresh``), and what to do: use the task the checkpoint
    was trained for; fill-mask needs a pre-trained checkpoint saved with its MLM head (fine-tuning does not
    give one); another task needs fine-tuning."""
    found = next((a for a in architectures if isinstance(a, str)), None) if isinstance(architectures, list) else None
    own_task = ARCHITECTURE_TASKS.get(found)
    shown = list(fresh) if len(fresh) <= 3 else [p + "*" for p in HEAD_PREFIXES[task]
                                                 if any(k.startswith(p) for k in fresh)]
    keys = f"{', '.join(shown)} not in the checkpoint"
    if task == "fill-mask":
        fix = ("fill-mask needs a pre-trained checkpoint saved with its MLM head (BertForMaskedLM or "
               "BertForPreTraining, e.g. the --out of python -m minibert.pretrain)")
    else:
        fix = "fine-tune it first (python -m minibert.finetune)"
    if own_task is not None and own_task != task:
        fix = f"{fix}; this folder's task is {own_task!r}"
    if found is None or (own_task is None and task != "fill-mask"):
        return f"model {model!r} has no trained {task} head ({keys}): {fix}"
    return (f"model {model!r} holds a {ARCHITECTURE_NAMES.get(found, found)} ({found}, from config.json) "
            f"without {HEAD_NAMES[task]} ({keys}): {fix}")


def infer_task(model: str | os.PathLike) -> str:
    """The task of a checkpoint directory, from the ``architectures`` its config.json names. ValueError
    naming the file for a config.json that is not a BERT model's (see :meth:`BertConfig.from_json_file`)."""
    from .config import BertConfig

    path = Path(model) / "config.json"
    if not path.is_file():
        raise ValueError(f"model {str(model)!r} has no config.json; pass a checkpoint directory")
    architectures = BertConfig.from_json_file(path).extra.get("architectures") or []
    if isinstance(architectures, str):
        architectures = [architectures]
    if not isinstance(architectures, list):
        raise ValueError(f"{path}: architectures must be a list of class names, got {architectures!r:.60}")
    for name in architectures:
        if name in ARCHITECTURE_TASKS:
            return ARCHITECTURE_TASKS[name]
    raise ValueError(f"cannot tell the task of {str(model)!r} (config.json architectures: {architectures}); "
                     f"pass one of {', '.join(TASK_HEADS)}")


def resolve_device(device) -> torch.device:
    """``None`` (the GPU if there is one), a name ("cpu", "cuda:0"), a torch.device, or transformers' int."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, bool):
        raise ValueError(f"device must be a name, a torch.device or an int, got {device!r}")
    if isinstance(device, int):
        device = "cpu" if device < 0 else f"cuda:{device}"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a device name such as 'cpu' or 'cuda' ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for but no CUDA GPU is available; use device='cpu'")
    return device


def pipeline(task: str | None = None, model: str | os.PathLike | None = None, *, tokenizer=None, device=None,
             batch_size: int = 8) -> "Pipeline":
    """A ready-to-call pipeline for ``task`` (see the module docstring) on the checkpoint directory ``model``.

    ``task`` None reads it from the checkpoint's config.json. ``tokenizer``: a BertTokenizer, a vocab.txt
    or a directory holding one (default: the model's own vocab.txt, else bert-base-uncased's). Raises
    ValueError for an unknown task, a directory that is not a checkpoint, a checkpoint without the task's
    trained head (a pre-trained encoder must be fine-tuned first), or a tokenizer whose vocabulary size is
    not the model's.

    >>> classify = pipeline("text-classification", model="runs/sst2")
    >>> classify("a gripping, funny film")
    [{'label': 'positive', 'score': 0.97...}]
    """
    from . import model as modeling
    from .finetuning import load_tokenizer
    from .tokenizer import BertTokenizer

    if model is None:
        raise ValueError("pipeline needs model=DIR, a checkpoint directory (config.json and weights)")
    path = Path(model)
    if not path.is_dir():
        raise ValueError(f"model {str(model)!r} is not a directory; pass a checkpoint directory "
                         f"(config.json and model.safetensors), e.g. the --out of python -m minibert.finetune")
    task = infer_task(path) if task is None else ALIASES.get(task, task)
    if task not in TASK_HEADS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASK_HEADS)} "
                         f"(or the aliases {', '.join(ALIASES)})")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = resolve_device(device)
    try:
        net = getattr(modeling, TASK_HEADS[task]).from_pretrained(path)
    except FileNotFoundError as exc:       # config.json without weights: not a checkpoint (yet)
        raise ValueError(f"model {str(model)!r} is not a complete checkpoint: {exc}") from None
    fresh = [k for k in net.loading_info["initialized"] if k.startswith(HEAD_PREFIXES[task])]
    if fresh:
        raise ValueError(missing_head_message(str(model), task, fresh, net.config.extra.get("architectures")))
    if not isinstance(tokenizer, BertTokenizer):
        tokenizer = load_tokenizer(path, tokenizer)
    if tokenizer.vocab_size != net.config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} entries but the model has vocab_size "
                         f"{net.config.vocab_size}; use the model's own vocab.txt")
    cls = {"fill-mask": FillMaskPipeline, "text-classification": TextClassificationPipeline,
           "token-classification": TokenClassificationPipeline,
           "question-answering": QuestionAnsweringPipeline}[task]
    return cls(task, net.to(device).eval(), tokenizer, device, batch_size)


class Pipeline:
    """What the four pipelines share: the model, its tokenizer, the device and the batching."""

    def __init__(self, task: str, model: torch.nn.Module, tokenizer, device: torch.device, batch_size: int):
        self.task, self.model, self.tokenizer, self.device, self.batch_size = task, model, tokenizer, device, batch_size
        self.max_length = min(tokenizer.model_max_length, model.config.max_position_embeddings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, device={str(self.device)!r}, batch_size={self.batch_size})"

    @torch.no_grad()
    def _run(self, rows: Sequence[dict]) -> list:
        """The model's outputs for tokenized ``rows`` (dicts of id lists), in batches; one output per row,
        each cut to the row's length (logits as float32 numpy arrays)."""
        from .finetuning import pad_collate

        out = []
        for i in range(0, len(rows), self.batch_size):
            chunk = rows[i:i + self.batch_size]
            batch = pad_collate(chunk, self.tokenizer.pad_token_id)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            result = self.model(**batch)
            for j, row in enumerate(chunk):
                n = len(row["input_ids"])
                out.append(self._take(result, j, n))
        return out

    def _take(self, result, j: int, n: int):
        return result.logits[j, :n].float().cpu().numpy() if result.logits.dim() == 3 else \
            result.logits[j].float().cpu().numpy()

    @staticmethod
    def _listify(inputs, what: str) -> tuple[list, bool]:
        if isinstance(inputs, (list, tuple)):
            if len(inputs) == 0:
                raise ValueError(f"no {what} to run: the list is empty")
            return list(inputs), True
        return [inputs], False

    def _encode(self, text, text_pair=None, dropped: dict | None = None, index: int = 0, **kwargs):
        """The tokenized input, cut to ``max_length``; the tokens cut off are counted in ``dropped[index]``."""
        enc = self.tokenizer(text, text_pair, truncation=True, max_length=self.max_length, **kwargs)
        if dropped is not None and len(enc["input_ids"]) == self.max_length:      # cut, or exactly full
            full = len(self.tokenizer(text, text_pair)["input_ids"])
            if full > self.max_length:
                dropped[index] = full - self.max_length
        return enc if kwargs else {k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask")}

    def _warn_truncated(self, dropped: dict) -> None:
        """One warning per call for the inputs longer than the model takes (transformers warns too)."""
        if dropped:
            listed = ", ".join(f"input {i}: {n}" for i, n in list(sorted(dropped.items()))[:5])
            more = ", ..." if len(dropped) > 5 else ""
            logger.warning("%s: %d input(s) longer than the model's %d tokens were cut; %d token(s) dropped "
                           "(%s%s)", self.task, len(dropped), self.max_length, sum(dropped.values()), listed, more)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class FillMaskPipeline(Pipeline):
    """``pipe("the cat [MASK] on the mat", top_k=5)`` -> [{"score", "token", "token_str", "sequence"}, ...]."""

    def _take(self, result, j, n):
        return result.logits[j, :n].float().cpu().numpy()                          # (S, V)

    def __call__(self, inputs: str | Sequence[str], top_k: int = 5):
        texts, batched = self._listify(inputs, "texts")
        if not isinstance(top_k, int) or top_k <= 0:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        rows, dropped = [], {}
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"fill-mask input {i} must be a str, got {type(text).__name__}")
            row = self._encode(text, dropped=dropped, index=i)
            if self.tokenizer.mask_token_id not in row["input_ids"]:
                raise ValueError(f"fill-mask input {i} has no {self.tokenizer.mask_token} token: {text!r}")
            rows.append(row)
        self._warn_truncated(dropped)
        results = []
        for row, logits in zip(rows, self._run(rows)):
            ids = np.asarray(row["input_ids"])
            masked = np.flatnonzero(ids == self.tokenizer.mask_token_id)
            single = len(masked) == 1
            per_mask = []
            for m in masked:
                probs = _softmax(logits[m])                                         # (V,)
                best = np.argsort(-probs, kind="stable")[:top_k]
                options = []
                for token in best:
                    filled = ids.copy()
                    filled[m] = token
                    options.append({"score": float(probs[token]), "token": int(token),
                                    "token_str": self.tokenizer.decode([int(token)]),
                                    "sequence": self.tokenizer.decode(filled.tolist(), skip_special_tokens=single)})
                per_mask.append(options)
            results.append(per_mask[0] if single else per_mask)
        return results if batched and len(results) > 1 else results[0]


class TextClassificationPipeline(Pipeline):
    """``pipe("a fine film")`` -> [{"label", "score"}]; ``pipe({"text": a, "text_pair": b})`` for a pair;
    ``top_k=None`` for every label, best first."""

    _ALL = object()

    def __call__(self, inputs, top_k: Any = _ALL, function_to_apply: str | None = None):
        items, batched = self._listify(inputs, "texts")
        rows, dropped = [], {}
        for i, item in enumerate(items):
            if isinstance(item, str):
                rows.append(self._encode(item, dropped=dropped, index=i))
            elif isinstance(item, dict) and set(item) <= {"text", "text_pair"} and isinstance(item.get("text"), str):
                pair = item.get("text_pair")
                if pair is not None and not isinstance(pair, str):
                    raise TypeError(f"input {i}: text_pair must be a str, got {type(pair).__name__}")
                rows.append(self._encode(item["text"], pair, dropped=dropped, index=i))
            else:
                raise TypeError(f"input {i} must be a str or a dict {{'text': str, 'text_pair': str}}, "
                                f"got {item!r:.80}")
        self._warn_truncated(dropped)
        config = self.model.config
        if function_to_apply is None:
            function_to_apply = ("none" if config.problem_type == "regression" else
                                 "sigmoid" if config.problem_type == "multi_label_classification"
                                 or config.num_labels == 1 else "softmax")
        if function_to_apply not in ("softmax", "sigmoid", "none"):
            raise ValueError(f"function_to_apply must be 'softmax', 'sigmoid' or 'none', got {function_to_apply!r}")
        legacy = top_k is self._ALL
        if not legacy and top_k is not None and (not isinstance(top_k, int) or top_k <= 0):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        names = config.id2label or {i: f"LABEL_{i}" for i in range(config.num_labels)}
        results = []
        for logits in self._run(rows):
            scores = (_softmax(logits) if function_to_apply == "softmax" else
                      1 / (1 + np.exp(-logits)) if function_to_apply == "sigmoid" else logits)
            if legacy:
                best = int(scores.argmax())
                results.append({"label": names[best], "score": float(scores[best])})
            else:
                order = np.argsort(-scores, kind="stable")[:top_k]
                results.append([{"label": names[int(k)], "score": float(scores[k])} for k in order])
        # transformers: a single str gives a list of one result (unless top_k is given); a list gives a list.
        if batched or (legacy and isinstance(inputs, str)):
            return results
        return results[0]


AGGREGATION_STRATEGIES = ("none", "simple")


class TokenClassificationPipeline(Pipeline):
    """``pipe("George Washington went to Washington")`` -> [{"entity_group", "score", "word", "start",
    "end"}, ...] (see :func:`minibert.ner.entity_groups`).

    ``aggregation_strategy`` as transformers': "simple" (the default) groups word pieces into entities;
    "none" gives one dict per word piece, ``{"entity", "score", "index", "word", "start", "end"}`` (``index``
    the piece's position in the input ids, [CLS] being 0). transformers' "first", "average" and "max" are
    not implemented and raise ValueError. Tokens or groups labelled with one of ``ignore_labels`` are dropped."""

    def __call__(self, inputs: str | Sequence[str], ignore_labels: Sequence[str] = ("O",),
                 aggregation_strategy: str = "simple"):
        from .ner import entity_groups

        if aggregation_strategy not in AGGREGATION_STRATEGIES:
            raise ValueError(f"aggregation_strategy must be one of {', '.join(map(repr, AGGREGATION_STRATEGIES))}, "
                             f"got {aggregation_strategy!r} (transformers' 'first', 'average' and 'max' are not "
                             "supported)")
        texts, batched = self._listify(inputs, "texts")
        rows, encodings, dropped = [], [], {}
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"token-classification input {i} must be a str, got {type(text).__name__}")
            enc = self._encode(text, dropped=dropped, index=i, return_offsets_mapping=True)
            encodings.append(enc)
            rows.append({k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask")})
        self._warn_truncated(dropped)
        names = self.model.config.id2label or {i: f"LABEL_{i}" for i in range(self.model.config.num_labels)}
        results = []
        for text, enc, logits in zip(texts, encodings, self._run(rows)):
            probs = _softmax(logits)                                                    # (S, K)
            keep = [t for t, w in enumerate(enc.word_ids()) if w is not None]          # not [CLS]/[SEP]
            best = probs.argmax(-1)
            if aggregation_strategy == "none":
                tokens = self.tokenizer.convert_ids_to_tokens(enc["input_ids"])
                results.append([{"entity": names[int(best[t])], "score": float(probs[t, best[t]]), "index": t,
                                 "word": tokens[t], "start": int(enc["offset_mapping"][t][0]),
                                 "end": int(enc["offset_mapping"][t][1])}
                                for t in keep if names[int(best[t])] not in ignore_labels])
                continue
            results.append(entity_groups(
                text, self.tokenizer.convert_ids_to_tokens([enc["input_ids"][t] for t in keep]),
                [names[int(best[t])] for t in keep], [probs[t, best[t]] for t in keep],
                [tuple(enc["offset_mapping"][t]) for t in keep], self.tokenizer, ignore=tuple(ignore_labels)))
        return results if batched else results[0]


class QuestionAnsweringPipeline(Pipeline):
    """``pipe(question=q, context=c)`` -> {"score", "start", "end", "answer"}; also a dict
    {"question", "context"} or a list of them; ``top_k`` > 1 gives the best ``top_k`` spans.

    ``max_seq_len`` (384, cut to the model's positions) and ``doc_stride`` (default 128, at most a third of
    the window) cut a long passage into windows as :func:`minibert.squad.prepare_features` does; an answer
    has at most ``max_answer_len`` tokens (Google's 30; transformers 4 used 15)."""

    def _take(self, result, j, n):
        return (result.start_logits[j, :n].float().cpu().numpy(), result.end_logits[j, :n].float().cpu().numpy())

    def __call__(self, inputs=None, *, question: str | Sequence[str] | None = None,
                 context: str | Sequence[str] | None = None, top_k: int = 1, max_answer_len: int = 30,
                 doc_stride: int | None = None, max_seq_len: int = 384, n_best_size: int = 20):
        from .squad import prepare_features, span_candidates

        if inputs is None:
            if question is None or context is None:
                raise ValueError("question-answering needs question= and context= (or dicts with both)")
            if isinstance(question, str) != isinstance(context, str):
                raise TypeError("question and context must both be str or both lists")
            inputs = ({"question": question, "context": context} if isinstance(question, str) else
                      [{"question": q, "context": c} for q, c in zip(question, context, strict=True)])
        items, batched = self._listify(inputs, "questions")
        for i, item in enumerate(items):
            if not (isinstance(item, dict) and isinstance(item.get("question"), str)
                    and isinstance(item.get("context"), str)):
                raise TypeError(f"question-answering input {i} must be a dict with str 'question' and 'context'")
            if not item["question"].strip() or not item["context"].strip():
                raise ValueError(f"question-answering input {i} has an empty question or context")
        if not isinstance(top_k, int) or top_k <= 0:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        max_seq_len = min(max_seq_len, self.max_length)      # windows of 384 tokens (SQuAD's), or fewer
        if doc_stride is None:                                # tokens two windows share: 128, at most a third
            doc_stride = min(128, max_seq_len // 3)
        examples = [{"id": i, "question": it["question"], "context": it["context"]} for i, it in enumerate(items)]
        features = prepare_features({"question": [e["question"] for e in examples],
                                     "context": [e["context"] for e in examples]}, self.tokenizer,
                                    max_length=max_seq_len, doc_stride=doc_stride, with_labels=False)
        outputs = self._run([{k: f[k] for k in ("input_ids", "token_type_ids", "attention_mask")} for f in features])
        width = max(len(f["input_ids"]) for f in features)
        pad = lambda a: np.pad(a, (0, width - len(a)), constant_values=-np.inf)  # noqa: E731
        starts = np.stack([pad(s) for s, _ in outputs])
        ends = np.stack([pad(e) for _, e in outputs])
        spans = span_candidates(examples, features, starts, ends, n_best_size=max(n_best_size, top_k),
                                max_answer_length=max_answer_len)
        results = []
        for candidates in spans:
            answers = []
            for c in candidates[:top_k]:
                k = c["feature"]
                passage = np.array([o is not None for o in features[k]["offset_mapping"]])
                p_start = _softmax(np.where(passage, starts[k][:len(passage)], -np.inf))
                p_end = _softmax(np.where(passage, ends[k][:len(passage)], -np.inf))
                answers.append({"score": float(p_start[c["start_token"]] * p_end[c["end_token"]]),
                                "start": int(c["start"]), "end": int(c["end"]), "answer": c["text"]})
            if not answers:
                answers = [{"score": 0.0, "start": 0, "end": 0, "answer": ""}]
            results.append(answers[0] if top_k == 1 else answers)
        return results if batched else results[0]
