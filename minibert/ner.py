"""Named entity recognition on CoNLL-2003 (Devlin et al. 2019, Section 5.3, Figure 4d, Table 7).

The data come as words with one IOB2 tag per word (B-PER, I-PER, ..., O). WordPiece splits a word into one
or more sub-tokens; as in the paper, "we use the representation of the first sub-token as the input to the
token-level classifier over the NER label set": the first sub-token of each word carries the word's label
and the others get -100, which the loss ignores (:func:`align_labels`; its ``label_all_tokens`` option
labels the other sub-tokens too, with I-X after a B-X first piece). At prediction time the tag of a word
is the tag predicted at its first sub-token. Scores are entity-level precision, recall and F1, computed by
seqeval (CoNLL's conlleval rules: an entity counts only when its type and both boundaries are right).

Two ways of using BERT are compared, as in Section 5.3:

* **fine-tuning**: ``BertForTokenClassification``, a linear layer on every final hidden vector, all weights
  trained (:func:`finetune_ner`);
* **feature-based**: BERT frozen; for every word the hidden vectors of its first sub-token are taken from
  some layers (:func:`extract_word_features`; Table 7's best, the last four hidden layers concatenated, is
  the default), and only a small tagger on top is trained (:class:`BiLSTMTagger`; the paper uses a
  two-layer 768-dimensional BiLSTM, we use a smaller one).

Differences from the paper: the paper uses a *cased* model and document context ("maximal document context
provided by the data"); our weights are uncased and each sentence is encoded on its own. Words past
``max_seq_length`` sub-tokens are cut off and predicted "O".
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .finetuning import (DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_WARMUP, DEFAULT_WEIGHT_DECAY,
                         fit, make_loader, predict, set_seed)


# ----------------------------------------------------------------------------------------- alignment
def tokenize_words(words: Sequence[str], tokenizer, max_seq_length: int = 128,
                   cache: dict | None = None) -> tuple[list[int], list[int | None]]:
    """``[CLS] pieces of word 0 ... pieces of word n [SEP]`` as ids, with the word index of every token
    (None for [CLS], [SEP]). Sub-tokens beyond ``max_seq_length - 2`` are dropped. A word that WordPiece
    turns into nothing (e.g. only control characters) gets no token.

    The same as the tokenizer's own word-level call, transformers' convention, which new code should use::

        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_seq_length)
        enc["input_ids"], enc.word_ids()

    ``cache`` is accepted for older callers and no longer used (the tokenizer's fast path needs none).
    """
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length must be at least 3, got {max_seq_length}")
    enc = tokenizer(list(words), is_split_into_words=True, truncation=True, max_length=max_seq_length)
    return list(enc["input_ids"]), enc.word_ids()


# CoNLL-2003's tags in the order of its ClassLabel (the ids of the ``ner_tags`` column).
CONLL2003_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


def begin_to_inside(label_names: Sequence[str]) -> dict[int, int]:
    """{id of B-X: id of I-X} for every B-X tag whose I-X tag is in ``label_names`` (IOB2 tags)."""
    index = {name: i for i, name in enumerate(label_names)}
    return {i: index["I-" + name[2:]] for i, name in enumerate(label_names)
            if name.startswith("B-") and "I-" + name[2:] in index}


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int], label_all_tokens: bool = False,
                 ignore_index: int = -100, label_names: Sequence[str] | None = None) -> list[int]:
    """One label per token: the word's label on its first sub-token, ``ignore_index`` on special tokens and
    on the other sub-tokens.

    With ``label_all_tokens`` the other sub-tokens are labelled too: with the word's label, except that a
    B-X word's continuation pieces get I-X (``johan ##son`` tagged B-PER gets B-PER, I-PER), since
    a second B-PER would start a second entity (transformers' example scripts fixed the same bug).
    ``label_names`` names the label ids (e.g. :func:`label_names` of the data set) so that B-X can be turned
    into I-X; it defaults to CoNLL-2003's tags (:data:`CONLL2003_TAGS`). Raises ValueError for a word
    index outside ``word_labels`` or, with ``label_all_tokens``, a label id outside ``label_names``.
    """
    inside: dict[int, int] = {}
    if label_all_tokens:
        names = CONLL2003_TAGS if label_names is None else label_names
        inside = begin_to_inside(names)
        bad = sorted({int(t) for t in word_labels if not 0 <= int(t) < len(names)})
        if bad:
            raise ValueError(f"label ids {bad} are not in label_names ({len(names)} names"
                             f"{', CoNLL-2003 by default' if label_names is None else ''}); pass label_names=")
    labels, previous = [], None
    for w in word_ids:
        if w is None:
            labels.append(ignore_index)
        elif w != previous:
            if not 0 <= w < len(word_labels):
                raise ValueError(f"word index {w} is out of range for {len(word_labels)} word labels")
            labels.append(int(word_labels[w]))
        elif label_all_tokens:
            label = int(word_labels[w])
            labels.append(inside.get(label, label))
        else:
            labels.append(ignore_index)
        previous = w
    return labels


def encode_ner(dataset, tokenizer, max_seq_length: int = 128, tag_column: str = "ner_tags") -> list[dict]:
    """Tokenize a split of word-tagged sentences into features with aligned ``labels`` and ``word_ids``."""
    for column in ("tokens", tag_column):
        if column not in dataset.column_names:
            raise ValueError(f"NER data need a {column!r} column; got {dataset.column_names}")
    features = []
    names = getattr(getattr(dataset, "features", {}).get(tag_column, None), "feature", None)
    n_tags = getattr(names, "num_classes", None)
    for row, tags in enumerate(dataset[tag_column]):  # checked before any training: name the row
        bad = [t for t in tags if not isinstance(t, int) or t < 0 or (n_tags is not None and t >= n_tags)]
        if bad:
            raise ValueError(f"NER data row {row}: tag(s) {bad[:3]} are not class ids"
                             + (f" in 0..{n_tags - 1}" if n_tags is not None else ""))
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length must be at least 3, got {max_seq_length}")
    sentences = [list(words) for words in dataset["tokens"]]
    enc = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_seq_length)
    for i, (words, tags) in enumerate(zip(sentences, dataset[tag_column])):
        ids, word_ids = enc["input_ids"][i], enc.word_ids(i)
        features.append({"input_ids": ids, "token_type_ids": [0] * len(ids), "attention_mask": [1] * len(ids),
                         "labels": align_labels(word_ids, tags), "word_ids": word_ids, "num_words": len(words)})
    return features


def word_predictions(logits: np.ndarray, features: Sequence[dict]) -> list[list[int]]:
    """Per-word class ids from per-token logits (N, S, K): the argmax at each word's first sub-token.
    Words without a token (cut off by max_seq_length) get class 0 ("O")."""
    out = []
    for k, f in enumerate(features):
        pred = [0] * f["num_words"]
        seen = set()
        best = logits[k].argmax(-1)
        for t, w in enumerate(f["word_ids"]):
            if w is not None and w not in seen:
                pred[w] = int(best[t])
                seen.add(w)
        out.append(pred)
    return out


def split_tag(tag: str) -> tuple[str, str]:
    """("B" or "I", entity type) of an IOB2 tag: "B-PER" -> ("B", "PER"), "I-LOC" -> ("I", "LOC"); a tag
    without a prefix ("O", or a plain "PER") counts as a continuation of its own type: ("I", tag)."""
    if tag.startswith(("B-", "I-")):
        return tag[0], tag[2:]
    return "I", tag


def entity_groups(text: str, tokens: Sequence[str], tags: Sequence[str], scores: Sequence[float],
                  offsets: Sequence[tuple[int, int]], tokenizer=None, ignore: Sequence[str] = ("O",)) -> list[dict]:
    """Entities of a raw ``text`` from per-token predictions: transformers' ``aggregation_strategy="simple"``.

    ``tokens`` are the text's word pieces (no [CLS]/[SEP]), ``tags`` the predicted tag of each, ``scores``
    its probability and ``offsets`` its (start, end) characters in ``text``. Consecutive tokens of the same
    entity type form one entity unless a token's tag is B-X, which starts a new one; so ``johan ##son``
    tagged B-PER I-PER is one PER. Each entity is a dict ``entity_group`` (the type, without B-/I-),
    ``score`` (the mean probability of its tokens), ``word`` (its pieces joined by ``tokenizer``'s
    ``convert_tokens_to_string``, an [UNK] piece replaced by the text it covers), ``start`` and ``end``
    (``text[start:end]`` is the entity). Groups whose type is in ``ignore`` are dropped.

    Unlike :func:`word_predictions` (the evaluation's rule: a word takes the tag of its first piece), every
    piece votes here, as in transformers' pipeline; a word may then be split between two entities.
    """
    if not len(tokens) == len(tags) == len(scores) == len(offsets):
        raise ValueError(f"{len(tokens)} tokens, {len(tags)} tags, {len(scores)} scores and {len(offsets)} offsets; "
                         f"they must be as many")
    unk = getattr(tokenizer, "unk_token", "[UNK]")

    def group(members):
        pieces = [text[s:e] if tok == unk else tok for tok, _, _, (s, e) in members]
        word = tokenizer.convert_tokens_to_string(pieces) if tokenizer is not None else " ".join(pieces)
        return {"entity_group": split_tag(members[0][1])[1],
                "score": float(np.mean(np.asarray([m[2] for m in members], dtype=np.float32))),
                "word": word, "start": int(members[0][3][0]), "end": int(members[-1][3][1])}

    groups, current = [], []
    for member in zip(tokens, tags, scores, offsets):
        if current:
            bi, kind = split_tag(member[1])
            if kind == split_tag(current[-1][1])[1] and bi != "B":
                current.append(member)
                continue
            groups.append(group(current))
        current = [member]
    if current:
        groups.append(group(current))
    return [g for g in groups if g["entity_group"] not in ignore]


def ner_metrics(gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 (seqeval's default, conlleval-compatible), plus token accuracy."""
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    if len(gold_tags) != len(pred_tags):
        raise ValueError(f"{len(gold_tags)} gold sequences but {len(pred_tags)} predicted")
    for i, (g, p) in enumerate(zip(gold_tags, pred_tags)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold tags but {len(p)} predicted")
    gold, pred = [list(g) for g in gold_tags], [list(p) for p in pred_tags]
    # A model that predicts no entity has precision 0/0: count it as 0 (conlleval does), without a warning.
    return {"precision": float(precision_score(gold, pred, zero_division=0)),
            "recall": float(recall_score(gold, pred, zero_division=0)),
            "f1": float(f1_score(gold, pred, zero_division=0)), "accuracy": float(accuracy_score(gold, pred))}


def label_names(dataset, tag_column: str = "ner_tags") -> list[str]:
    """The tag names of a ClassLabel sequence column (O, B-PER, I-PER, ...)."""
    feature = dataset.features[tag_column]                 # Sequence/List of ClassLabel
    inner = feature[0] if isinstance(feature, list) else getattr(feature, "feature", None)
    names = getattr(inner, "names", None)
    if not names:
        raise ValueError(f"column {tag_column!r} has no ClassLabel names")
    return list(names)


# ------------------------------------------------------------------------------------------ fine-tuning
def evaluate_ner(model, features: Sequence[dict], dataset, names: Sequence[str], *, batch_size: int = 64,
                 device=None, tag_column: str = "ner_tags") -> dict:
    """Entity-level scores (:func:`ner_metrics`) of ``model`` on encoded ``features`` of ``dataset``, whose tag
    ids ``names`` turns into strings; each word is tagged at its first sub-token."""
    logits = predict(model, make_loader(features, batch_size, shuffle=False), device=device)  # (N, S, K)
    pred = word_predictions(logits, features)
    gold = [[names[t] for t in tags] for tags in dataset[tag_column]]
    return ner_metrics(gold, [[names[t] for t in p] for p in pred])


def finetune_ner(model, tokenizer, *, train=None, eval=None, task: str = "conll2003",
                 max_train_examples: int | None = None, max_eval_examples: int | None = None,
                 eval_split: str = "validation", max_seq_length: int = 128, lr: float = DEFAULT_LR,
                 epochs: float = DEFAULT_EPOCHS, batch_size: int = DEFAULT_BATCH_SIZE,
                 warmup_proportion: float = DEFAULT_WARMUP, weight_decay: float = DEFAULT_WEIGHT_DECAY,
                 seed: int = 42, eval_every: int | None = None, log_every: int = 10, device=None,
                 group_by_length: bool = False,
                 log: Callable[[str], None] | None = None) -> dict:
    """Fine-tune a BertForTokenClassification (``num_labels`` = number of tags) and score it with seqeval.
    The tag names become the model's ``id2label``/``label2id`` unless it has names already."""
    from .data import load_dataset
    from .glue import name_labels, subsample

    train = load_dataset(task, "train") if train is None else train
    eval = load_dataset(task, eval_split) if eval is None else eval
    names = label_names(train)
    if model.config.num_labels != len(names):
        raise ValueError(f"{task} has {len(names)} tags but the model has num_labels={model.config.num_labels}")
    name_labels(model.config, names)
    train = subsample(train, max_train_examples, seed)
    if max_eval_examples is not None:
        eval = eval.select(range(min(max_eval_examples, len(eval))))
    train_features = encode_ner(train, tokenizer, max_seq_length)
    eval_features = encode_ner(eval, tokenizer, max_seq_length)
    if device is not None:
        model.to(device)
    set_seed(seed)
    loader = make_loader(_model_inputs(train_features), batch_size, shuffle=True, seed=seed,
                         pad_token_id=tokenizer.pad_token_id,
                         group_by_length=group_by_length)
    history = fit(model, loader, log_every=log_every, epochs=epochs, lr=lr, warmup_proportion=warmup_proportion,
                  weight_decay=weight_decay, device=device, log=log, eval_every=eval_every,
                  eval_fn=lambda: evaluate_ner(model, eval_features, eval, names, device=device))
    return {"metrics": history.evals[-1][1], "history": history, "num_train": len(train),
            "num_eval": len(eval), "labels": names}


def _model_inputs(features):
    keep = ("input_ids", "token_type_ids", "attention_mask", "labels")
    return [{k: f[k] for k in keep} for f in features]


def run_ner(args, *, device=None, log=print):
    """The command line's NER path."""
    from .data import load_dataset
    from .finetuning import load_model, load_tokenizer

    set_seed(args.seed)
    train = load_dataset(args.task, "train")
    names = label_names(train)
    tokenizer = load_tokenizer(args.model, args.tokenizer)
    model = load_model("token_classification", args.model, num_labels=len(names),
                       id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
                       ignore_mismatched_sizes=getattr(args, "ignore_mismatched_sizes", False))
    model.to(device)
    out = finetune_ner(model, tokenizer, train=train, eval=load_dataset(args.task, args.eval_split),
                       task=args.task, max_train_examples=args.max_train_examples,
                       max_eval_examples=args.max_eval_examples, max_seq_length=args.max_seq_length,
                       lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                       warmup_proportion=args.warmup_proportion, weight_decay=args.weight_decay,
                       seed=args.seed, device=device, log=log,
                        log_every=getattr(args, "log_every", 10),
                        group_by_length=getattr(args, "group_by_length", False))
    metrics = {"task": args.task, "split": args.eval_split, "num_train": out["num_train"],
               "num_eval": out["num_eval"], **out["metrics"]}
    return model, tokenizer, metrics


# ---------------------------------------------------------------------------------------- feature-based
@torch.no_grad()
def extract_word_features(model, features: Sequence[dict], layers: Sequence[int] = (-1, -2, -3, -4),
                          combine: str = "concat", batch_size: int = 64, device=None) -> list[torch.Tensor]:
    """Frozen-BERT word vectors (Section 5.3, Table 7): for each sentence a (num_words, D) tensor.

    ``model`` is a BertModel (or any model whose ``.bert`` is one). ``layers`` index ``hidden_states``
    (0 = the embeddings, -1 = the last layer); ``combine`` is "concat" (D = len(layers) * H) or "sum"
    (D = H). Each word gets the vector of its first sub-token; words without a token get zeros.
    """
    if combine not in ("concat", "sum"):
        raise ValueError(f"combine must be 'concat' or 'sum', got {combine!r}")
    bert = getattr(model, "bert", model)
    bert.eval()
    device = device or next(bert.parameters()).device
    loader = make_loader(_model_inputs(features), batch_size, shuffle=False)
    out, k = [], 0
    for batch in loader:
        batch = {key: batch[key].to(device) for key in ("input_ids", "token_type_ids", "attention_mask")}
        hidden = bert(**batch, output_hidden_states=True).hidden_states       # L+1 tensors (B, S, H)
        if any(not -len(hidden) <= i < len(hidden) for i in layers):
            raise ValueError(f"layers {tuple(layers)} out of range: the model has {len(hidden)} hidden states "
                             f"(the embeddings and {len(hidden) - 1} layers)")
        chosen = [hidden[i] for i in layers]
        vectors = torch.cat(chosen, -1) if combine == "concat" else torch.stack(chosen).sum(0)  # (B, S, D)
        for row in vectors.float().cpu():
            f = features[k]
            words = torch.zeros(f["num_words"], row.shape[-1])                   # (W, D)
            seen = set()
            for t, w in enumerate(f["word_ids"]):
                if w is not None and w not in seen:
                    words[w] = row[t]
                    seen.add(w)
            out.append(words)
            k += 1
    return out


class BiLSTMTagger(nn.Module):
    """A bidirectional LSTM over frozen word vectors, then a linear layer to the tags (Section 5.3)."""

    def __init__(self, input_size: int, num_labels: int, hidden_size: int = 128, num_layers: int = 1,
                 dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                            bidirectional=True, dropout=dropout if num_layers > 1 else 0.0)
        self.classifier = nn.Linear(2 * hidden_size, num_labels)

    def forward(self, vectors: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # vectors: (B, W, D), lengths: (B,) -> logits (B, W, num_labels)
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(vectors), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        hidden, _ = self.lstm(packed)
        hidden, _ = nn.utils.rnn.pad_packed_sequence(hidden, batch_first=True, total_length=vectors.shape[1])
        return self.classifier(self.dropout(hidden))                             # (B, W, K)


def _word_batches(vectors, tags, batch_size, generator=None):
    order = torch.randperm(len(vectors), generator=generator) if generator is not None else torch.arange(len(vectors))
    for start in range(0, len(vectors), batch_size):
        idx = order[start:start + batch_size].tolist()
        lengths = torch.tensor([len(vectors[i]) for i in idx])
        x = nn.utils.rnn.pad_sequence([vectors[i] for i in idx], batch_first=True)          # (B, W, D)
        y = None
        if tags is not None:
            y = nn.utils.rnn.pad_sequence([torch.tensor(tags[i]) for i in idx], batch_first=True,
                                          padding_value=-100)                               # (B, W)
        yield x, lengths, y


def train_tagger(tagger: nn.Module, vectors: Sequence[torch.Tensor], tags: Sequence[Sequence[int]], *,
                 epochs: int = 5, lr: float = 1e-3, batch_size: int = 32, seed: int = 42) -> list[float]:
    """Train the tagger with Adam and cross-entropy on frozen word vectors; returns the mean loss per epoch."""
    if len(vectors) != len(tags):
        raise ValueError(f"{len(vectors)} sentences of vectors but {len(tags)} of tags")
    set_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(tagger.parameters(), lr=lr)
    losses = []
    tagger.train()
    for _ in range(epochs):
        total, n = 0.0, 0
        for x, lengths, y in _word_batches(vectors, tags, batch_size, generator):
            logits = tagger(x, lengths)                                                     # (B, W, K)
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                               ignore_index=-100)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, n = total + loss.item(), n + 1
        losses.append(total / n)
    tagger.eval()
    return losses


@torch.no_grad()
def tagger_predictions(tagger: nn.Module, vectors: Sequence[torch.Tensor], batch_size: int = 64) -> list[list[int]]:
    """Per-word class ids for each sentence."""
    tagger.eval()
    out = []
    for x, lengths, _ in _word_batches(vectors, None, batch_size):
        best = tagger(x, lengths).argmax(-1)                                                # (B, W)
        out.extend(best[i, :n].tolist() for i, n in enumerate(lengths.tolist()))
    return out
