"""Sentence and sentence-pair tasks of GLUE (Devlin et al. 2019, Section 4.1, Figure 4a and 4b).

A single sentence becomes ``[CLS] sentence [SEP]`` (segment A only); a pair becomes
``[CLS] sentence1 [SEP] sentence2 [SEP]`` with segment B on the second part. The final hidden vector of
[CLS], through the pooler, feeds one new layer W of shape (K, H): ``softmax(C W^T)`` for K classes — or, for
the regression task STS-B, a single output trained with mean squared error (as in Hugging Face's
``BertForSequenceClassification`` with ``num_labels=1``; Google's released code has no STS-B processor).

Metrics are the ones GLUE reports and the paper's Table 1 uses, computed with scikit-learn and SciPy:
accuracy for SST-2 and RTE, the Matthews correlation for CoLA, F1 (of the positive class, "equivalent") and
accuracy for MRPC, the Pearson and Spearman correlations for STS-B.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .finetuning import (DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_WARMUP, DEFAULT_WEIGHT_DECAY,
                         fit, make_loader, predict, set_seed)


@dataclass(frozen=True)
class GlueTask:
    """How one GLUE task reads its data and scores predictions."""
    name: str
    text_columns: tuple[str, ...]   # one column: single sentence; two: a pair
    num_labels: int                 # 1 means regression
    metric: str                     # the headline metric (the one in the paper's Table 1)

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1


GLUE_TASKS: dict[str, GlueTask] = {
    "sst2": GlueTask("sst2", ("sentence",), 2, "accuracy"),
    "cola": GlueTask("cola", ("sentence",), 2, "matthews"),
    "mrpc": GlueTask("mrpc", ("sentence1", "sentence2"), 2, "f1"),
    "stsb": GlueTask("stsb", ("sentence1", "sentence2"), 1, "spearman"),
    "rte": GlueTask("rte", ("sentence1", "sentence2"), 2, "accuracy"),
}


def get_task(name: str) -> GlueTask:
    if name not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; choose one of {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[name]


def class_names(dataset, column: str = "label") -> list[str] | None:
    """The names of a data set's class ids (its ``ClassLabel`` column: SST-2's ["negative", "positive"]),
    or None when the column has none (STS-B's real-valued scores)."""
    names = getattr(getattr(dataset, "features", {}).get(column), "names", None)
    return list(names) if names else None


def name_labels(config, names: Sequence[str] | None, *, regression: bool = False) -> None:
    """Write label names into a model's config, so that the saved checkpoint answers "positive" rather
    than "LABEL_1" (here and in transformers' ``pipeline``): ``id2label``/``label2id`` from ``names`` when the
    config has none yet, and ``problem_type="regression"`` for a regression task. Raises ValueError when
    the names do not fit ``num_labels``."""
    if regression and config.problem_type is None:
        config.problem_type = "regression"
    if not names or config.id2label is not None:
        return
    if len(names) != config.num_labels:
        raise ValueError(f"{len(names)} label names {list(names)} but the model has num_labels={config.num_labels}")
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}


# ------------------------------------------------------------------------------------------------ metrics
def glue_metrics(task: str, predictions, labels) -> dict[str, float]:
    """Score ``predictions`` against ``labels`` with GLUE's metrics for ``task``.

    ``predictions`` are either class ids (N,), logits (N, K) (argmax is taken), or for STS-B real-valued
    scores (N,) or (N, 1). Returns plain floats: ``accuracy``; ``matthews`` (CoLA); ``f1`` and ``accuracy``
    (MRPC); ``pearson`` and ``spearman`` (STS-B).
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    spec = get_task(task)
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if spec.is_regression:
        predictions = predictions.reshape(-1)
    elif predictions.ndim == 2:
        predictions = predictions.argmax(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions and labels differ in shape: {predictions.shape} vs {labels.shape}")
    if len(labels) == 0:
        raise ValueError("cannot score an empty set of predictions")
    if spec.is_regression:
        return {"pearson": float(pearsonr(predictions, labels)[0]),
                "spearman": float(spearmanr(predictions, labels)[0])}
    out = {"accuracy": float(accuracy_score(labels, predictions))}
    if task == "cola":
        out["matthews"] = float(matthews_corrcoef(labels, predictions))
    if task == "mrpc":
        out["f1"] = float(f1_score(labels, predictions))
    return out


# ----------------------------------------------------------------------------------------------- features
def encode_glue(task: str, dataset, tokenizer, max_seq_length: int = 128) -> list[dict]:
    """Tokenize a GLUE split into feature dicts (``input_ids``, ``token_type_ids``, ``attention_mask``,
    ``labels``), unpadded. Pairs that do not fit are truncated longest-first, one token at a time, as
    Google's ``_truncate_seq_pair``."""
    spec = get_task(task)
    missing = [c for c in spec.text_columns + ("label",) if c not in dataset.column_names]
    if missing:
        raise ValueError(f"the {task} data set lacks column(s) {missing}; it has {dataset.column_names}")
    texts = [dataset[c] for c in spec.text_columns]
    enc = tokenizer(*texts, truncation=True, max_length=max_seq_length)
    labels = dataset["label"]
    where = f"{task} {getattr(dataset, 'split', None) or 'data'}"
    for i, label in enumerate(labels):                # checked before any training: name the row
        if spec.is_regression:
            if not isinstance(label, (int, float)) or not math.isfinite(label):
                raise ValueError(f"{where} row {i}: label {label!r} is not a finite number")
        elif isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < spec.num_labels:
            raise ValueError(f"{where} row {i}: label {label!r} is not a class id in 0..{spec.num_labels - 1}")
    features = []
    for i, label in enumerate(labels):
        features.append({"input_ids": list(enc["input_ids"][i]),
                         "token_type_ids": list(enc["token_type_ids"][i]),
                         "attention_mask": list(enc["attention_mask"][i]),
                         "labels": float(label) if spec.is_regression else int(label)})
    return features


def subsample(dataset, n: int | None, seed: int = 0):
    """The first ``n`` rows after a seeded shuffle (all rows, unshuffled, when ``n`` is None)."""
    if n is None or n >= len(dataset):
        return dataset
    if n <= 0:
        raise ValueError(f"subsample size must be positive, got {n}")
    return dataset.shuffle(seed=seed).select(range(n))


def evaluate_glue(task: str, model, features: list[dict], *, batch_size: int = 64, device=None) -> dict:
    """Predict on ``features`` and score with :func:`glue_metrics`."""
    logits = predict(model, make_loader(features, batch_size, shuffle=False), device=device)
    return glue_metrics(task, logits, [f["labels"] for f in features])


def finetune_glue(task: str, model, tokenizer, *, train=None, eval=None, max_train_examples: int | None = None,
                  max_eval_examples: int | None = None, eval_split: str = "validation",
                  max_seq_length: int = 128, lr: float = DEFAULT_LR, epochs: float = DEFAULT_EPOCHS,
                  batch_size: int = DEFAULT_BATCH_SIZE, warmup_proportion: float = DEFAULT_WARMUP,
                  weight_decay: float = DEFAULT_WEIGHT_DECAY, seed: int = 42, eval_every: int | None = None,
                  log_every: int = 10, group_by_length: bool = False, device=None,
                  log: Callable[[str], None] | None = None) -> dict:
    """Fine-tune ``model`` (a BertForSequenceClassification with the task's ``num_labels``) on a GLUE task.

    The data come from ``minibert.data.load_dataset(task)`` unless ``train``/``eval`` datasets are given;
    ``max_train_examples`` keeps a seeded random subset of the training set. The data's class names
    (``ClassLabel``) become the model's ``id2label``/``label2id`` unless it has names already. Returns a dict with the final
    ``metrics``, the ``history`` (:class:`~minibert.finetune.FitResult`, with the evaluation every
    ``eval_every`` steps: a learning curve) and the number of training examples.
    """
    from .data import load_dataset

    spec = get_task(task)
    num_labels = getattr(getattr(model, "config", None), "num_labels", spec.num_labels)
    if num_labels != spec.num_labels:
        raise ValueError(f"{task} needs a model with num_labels={spec.num_labels}, got {num_labels}")
    if train is None:
        train = load_dataset(task, "train")
    if eval is None:
        eval = load_dataset(task, eval_split)
    train = subsample(train, max_train_examples, seed)
    if max_eval_examples is not None:
        eval = eval.select(range(min(max_eval_examples, len(eval))))
    name_labels(model.config, class_names(train), regression=spec.is_regression)
    train_features = encode_glue(task, train, tokenizer, max_seq_length)
    eval_features = encode_glue(task, eval, tokenizer, max_seq_length)
    if device is not None:
        model.to(device)
    set_seed(seed)
    loader = make_loader(train_features, batch_size, shuffle=True, seed=seed, pad_token_id=tokenizer.pad_token_id,
                         group_by_length=group_by_length)
    history = fit(model, loader, log_every=log_every, epochs=epochs, lr=lr, warmup_proportion=warmup_proportion,
                  weight_decay=weight_decay, device=device, log=log, eval_every=eval_every,
                  eval_fn=lambda: evaluate_glue(task, model, eval_features, device=device))
    return {"metrics": history.evals[-1][1], "history": history, "num_train": len(train_features),
            "num_eval": len(eval_features)}


def run_glue(args, *, device=None, log=print):
    """The command line's GLUE path: load, fine-tune, evaluate."""
    from .finetuning import load_model, load_tokenizer

    spec = get_task(args.task)
    set_seed(args.seed)
    tokenizer = load_tokenizer(args.model, args.tokenizer)
    model = load_model("sequence_classification", args.model, num_labels=spec.num_labels,
                       ignore_mismatched_sizes=getattr(args, "ignore_mismatched_sizes", False))
    if model.config.max_position_embeddings < args.max_seq_length:
        raise ValueError(f"--max-seq-length {args.max_seq_length} exceeds the model's "
                         f"max_position_embeddings={model.config.max_position_embeddings}")
    model.to(device)
    out = finetune_glue(args.task, model, tokenizer, max_train_examples=args.max_train_examples,
                        max_eval_examples=args.max_eval_examples, eval_split=args.eval_split,
                        max_seq_length=args.max_seq_length, lr=args.lr, epochs=args.epochs,
                        batch_size=args.batch_size, warmup_proportion=args.warmup_proportion,
                        weight_decay=args.weight_decay, seed=args.seed, device=device, log=log,
                        log_every=getattr(args, "log_every", 10),
                        group_by_length=getattr(args, "group_by_length", False))
    metrics = {"task": args.task, "split": args.eval_split, "num_train": out["num_train"],
               "num_eval": out["num_eval"], **out["metrics"]}
    return model, tokenizer, metrics
