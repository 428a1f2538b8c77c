"""Extractive question answering on SQuAD v1.1 (Devlin et al. 2019, Section 4.2, Figure 4c).

The question is segment A and the passage segment B: ``[CLS] question [SEP] passage [SEP]``. Fine-tuning
adds only two vectors, a start vector S and an end vector E (one linear layer with two outputs,
``BertForQuestionAnswering.qa_outputs``). The probability that token i starts the answer is a softmax of
``S . T_i`` over the passage, likewise for the end; a span (i, j) with j >= i scores ``S . T_i + E . T_j``
and the best-scoring valid span is the prediction. The loss is the mean of the two cross-entropies.

Passages longer than the window are cut into overlapping windows (Google's ``run_squad.py`` "doc spans").
Here the tokenizer does it (``truncation="only_second"``, ``return_overflowing_tokens=True``) and keeps, for
every token, its character span in the passage (``return_offsets_mapping=True``): the predicted token span
maps straight back to text. Two conventions differ from Google's and are worth knowing:

* ``doc_stride`` here is the number of tokens two consecutive windows *share* (Hugging Face's ``stride``);
  in Google's code it is the distance between the *starts* of two windows. Both give overlapping windows;
  the defaults (384 tokens, stride 128) are the same numbers with different meanings.
* A token that appears in several windows is only allowed to start an answer in the window where it has the
  most context on both sides (Google's ``_check_is_max_context``), scored by the token's position in the
  tokenized passage (``passage_start`` of the window plus its index there), never by character offsets:
  two pieces of one character (a Hangul syllable can be ``ᄀ`` + ``##ᅳ``) share offsets but not positions.
  Questions are not truncated to 64 tokens (SQuAD's are far shorter); answer text is cut from the passage
  by character offsets rather than Google's whitespace-token realignment (``get_final_text``). Offsets
  cover the combining accents that lower-casing stripped (see minibert.tokenizer), so a cut keeps them.

Training labels: the gold character span is mapped to the first and last token that cover it, then
tightened to the sub-span whose tokens are exactly the tokenized answer text, as Google's
``_improve_answer_span`` does: an ``answer_start`` one character off, or a span that runs into a comma,
still labels just the answer's tokens. Whitespace around the answer text is dropped first (SQuAD has such
answers; Google drops it by mapping onto whitespace-separated words).

The evaluation is our implementation of the rules of the official SQuAD v1.1 script: both strings are
lower-cased, punctuation and the articles a/an/the removed and whitespace collapsed; exact match (EM) is
string equality, F1 the harmonic mean of token precision and recall; each score is the maximum over the gold
answers, averaged over questions and reported in percent.
"""
from __future__ import annotations

import collections
import re
import string
from typing import Callable, Iterable, Sequence

import numpy as np

from .finetuning import (DEFAULT_BATCH_SIZE, DEFAULT_LR, DEFAULT_WARMUP, DEFAULT_WEIGHT_DECAY, fit,
                         make_loader, predict, set_seed)

# ------------------------------------------------------------------------------------ official metrics
_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower-case, drop punctuation, drop the articles a/an/the, and collapse
    runs of whitespace to single spaces (in that order)."""
    if not isinstance(text, str):
        raise TypeError(f"normalize_answer expects a str, got {type(text).__name__}")
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens F1 between the normalised strings (0.0 when they share no token)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) of one prediction: the best over the gold answers."""
    if isinstance(golds, str) or len(golds) == 0:
        raise ValueError("golds must be a non-empty list of answer strings")
    return max(exact_match(prediction, g) for g in golds), max(token_f1(prediction, g) for g in golds)


def squad_evaluate(predictions: dict[str, str], examples) -> dict[str, float]:
    """Exact match and F1 in percent over ``examples`` (rows with ``id`` and ``answers["text"]``).
    A question without a prediction counts as wrong, as in the official script."""
    em = f1 = 0.0
    n = 0
    for ex in examples:
        n += 1
        pred = predictions.get(ex["id"])
        if pred is None:
            continue
        e, f = squad_scores(pred, ex["answers"]["text"])
        em, f1 = em + e, f1 + f
    if n == 0:
        raise ValueError("no examples to evaluate")
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


# ------------------------------------------------------------------------------------------- windows
def prepare_features(examples, tokenizer, *, max_length: int = 384, doc_stride: int = 128,
                     with_labels: bool = True) -> list[dict]:
    """Tokenize SQuAD rows into windows (features).

    Each feature holds ``input_ids``, ``token_type_ids``, ``attention_mask``; ``example_index`` (which row it
    came from); ``offset_mapping``, the (start, end) characters of each token in the passage, or None for
    question and special tokens; ``max_context``, a flag per token (True where this window gives the token
    its most context); and, with ``with_labels``, ``start_positions``/``end_positions``: the token span of
    the first gold answer, or (0, 0) — the [CLS] token — when the answer is not wholly inside the window,
    as Google does when training on SQuAD v1.1 (tightened to the answer's own tokens, see
    :func:`answer_token_span`); ``passage_start``, the position in the tokenized passage of the window's
    first passage token (windows share ``doc_stride`` tokens), which the max-context rule scores by.
    """
    if doc_stride >= max_length:
        raise ValueError(f"doc_stride ({doc_stride}) must be smaller than max_length ({max_length})")
    questions = [q.lstrip() for q in examples["question"]]
    contexts = list(examples["context"])
    enc = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=doc_stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    sep = tokenizer.sep_token_id
    answers = examples["answers"] if with_labels else None
    if with_labels:                                   # checked before any training: name the row
        for row, answer in enumerate(answers):
            if not answer.get("text") or not answer.get("answer_start"):
                raise ValueError(f"SQuAD training row {row} (id {examples['id'][row] if 'id' in examples else '?'}) "
                                 f"has no answer; SQuAD v1.1 training needs one per question")
        golds = [_strip_answer(a["answer_start"][0], a["text"][0]) for a in answers]
        answer_ids = tokenizer([text for _, text in golds], add_special_tokens=False)["input_ids"]
    features = []
    previous = None   # (example, passage_start, passage length) of the window before
    for i in range(len(enc["input_ids"])):
        ids, types = list(enc["input_ids"][i]), list(enc["token_type_ids"][i])
        sample = int(enc["overflow_to_sample_mapping"][i])
        # Passage tokens: segment B, minus the final [SEP].
        offsets = [tuple(o) if (t == 1 and tok != sep) else None
                   for tok, t, o in zip(ids, types, enc["offset_mapping"][i])]
        # Where the window starts in the tokenized passage: windows of one example follow each other and
        # consecutive ones share doc_stride tokens (the tokenizer's stride).
        n_passage = sum(o is not None for o in offsets)
        start = 0 if previous is None or previous[0] != sample else previous[1] + previous[2] - doc_stride
        previous = (sample, start, n_passage)
        feature = {"input_ids": ids, "token_type_ids": types, "attention_mask": list(enc["attention_mask"][i]),
                   "example_index": sample, "offset_mapping": offsets, "passage_start": start}
        if with_labels:
            feature["start_positions"], feature["end_positions"] = answer_token_span(
                offsets, *golds[sample], input_ids=ids, answer_ids=answer_ids[sample])
        features.append(feature)
    _mark_max_context(features)
    return features


def _strip_answer(start_char: int, answer_text: str) -> tuple[int, str]:
    """(start, text) without the whitespace around the answer text; the start moves past what was dropped."""
    stripped = answer_text.lstrip()
    start_char += len(answer_text) - len(stripped)
    return start_char, stripped.rstrip()


def answer_token_span(offsets: Sequence, start_char: int, answer_text: str, *, input_ids: Sequence[int] | None = None,
                      answer_ids: Sequence[int] | None = None) -> tuple[int, int]:
    """The (first, last) token of the window covering characters [start_char, start_char + len(answer)),
    or (0, 0) when the answer is not wholly inside the window's passage tokens.

    Whitespace around ``answer_text`` is dropped first (``start_char`` moves with it). With the window's
    ``input_ids`` and the tokenized answer text ``answer_ids`` (no special tokens), the span is then tightened
    to its outermost sub-span whose ids equal ``answer_ids`` (Google's ``_improve_answer_span``): an
    ``answer_start`` one character late, inside "Pure", still covers the word "pure" but no longer the comma
    after "Land". When no sub-span matches (an answer that starts or ends inside a word) the covering span is
    kept, as in Google's code.
    """
    start_char, answer_text = _strip_answer(start_char, answer_text)
    end_char = start_char + len(answer_text)
    ctx = [k for k, o in enumerate(offsets) if o is not None]
    if not ctx or offsets[ctx[0]][0] > start_char or offsets[ctx[-1]][1] < end_char:
        return 0, 0
    start = max(k for k in ctx if offsets[k][0] <= start_char)   # last token starting at or before the answer
    end = min(k for k in ctx if offsets[k][1] >= end_char)       # first token ending at or after it
    if input_ids is not None and answer_ids is not None:
        want = list(answer_ids)
        for s in range(start, end + 1):
            for e in range(end, s - 1, -1):
                if list(input_ids[s:e + 1]) == want:
                    return s, e
    return start, end


def span_text(context: str, offsets: Sequence, start: int, end: int) -> str:
    """The passage text covered by tokens start..end (inclusive), through their character offsets."""
    if offsets[start] is None or offsets[end] is None:
        raise ValueError(f"tokens {start}..{end} are not both passage tokens")
    return context[offsets[start][0]:offsets[end][1]]


def _passage_positions(feature: dict) -> list[int | None]:
    """The position in the tokenized passage of each token of a window (None for non-passage tokens)."""
    out, p = [], feature["passage_start"]
    for o in feature["offset_mapping"]:
        out.append(None if o is None else p)
        p += o is not None
    return out


def _mark_max_context(features: list[dict]) -> None:
    """Google's ``_check_is_max_context``: a passage token shared by several windows counts, for answer
    starts, only in the window where min(tokens to its left, tokens to its right) + 0.01 * window length
    is largest (the first such window on ties). Tokens are told apart by their position in the passage
    (``passage_start``), as Google indexes them, not by offsets, which pieces of one character share."""
    by_example: dict[int, list[dict]] = collections.defaultdict(list)
    for f in features:
        by_example[f["example_index"]].append(f)
    for feats in by_example.values():
        positions = [_passage_positions(f) for f in feats]
        best: dict[int, tuple[float, int]] = {}   # passage position -> (score, window number)
        for w, doc in enumerate(positions):
            doc = [p for p in doc if p is not None]
            if not doc:
                continue
            first, length = doc[0], len(doc)
            for p in doc:
                score = min(p - first, first + length - 1 - p) + 0.01 * length
                if p not in best or score > best[p][0]:
                    best[p] = (score, w)
        for w, (f, doc) in enumerate(zip(feats, positions)):
            f["max_context"] = [p is not None and best[p][1] == w for p in doc]


# -------------------------------------------------------------------------------------- post-processing
def span_candidates(examples, features: Sequence[dict], start_logits: np.ndarray, end_logits: np.ndarray,
                    *, n_best_size: int = 20, max_answer_length: int = 30) -> list[list[dict]]:
    """The answer spans of each question, best first: the search of :func:`postprocess_predictions`.

    For each window, the ``n_best_size`` highest start and end logits are paired; a pair (i, j) is kept when
    both are passage tokens, i has its maximum context in this window, j >= i and the span has at most
    ``max_answer_length`` tokens. Returns, for each row of ``examples`` (dicts with ``context``), a list of
    dicts sorted by ``logit`` (``start_logit + end_logit``, larger first), each with the answer ``text``,
    its ``start``/``end`` characters in the passage (``text == context[start:end]``), the ``feature`` (window)
    it comes from and its ``start_token``/``end_token`` there. A question with no valid span gets [].
    """
    if len(features) != len(start_logits) or len(features) != len(end_logits):
        raise ValueError(f"{len(features)} features but {len(start_logits)} start and {len(end_logits)} "
                         f"end logit rows")
    by_example: dict[int, list[int]] = collections.defaultdict(list)
    for k, f in enumerate(features):
        by_example[f["example_index"]].append(k)
    out = []
    for index, ex in enumerate(examples):
        candidates = []
        for k in by_example.get(index, []):
            offsets, max_ctx = features[k]["offset_mapping"], features[k]["max_context"]
            n = len(offsets)
            starts = np.argsort(start_logits[k][:n])[::-1][:n_best_size]
            ends = np.argsort(end_logits[k][:n])[::-1][:n_best_size]
            for s in starts:
                if offsets[s] is None or not max_ctx[s]:
                    continue
                for e in ends:
                    if offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    candidates.append({"logit": float(start_logits[k][s] + end_logits[k][e]),
                                       "text": span_text(ex["context"], offsets, int(s), int(e)),
                                       "start": offsets[s][0], "end": offsets[e][1], "feature": k,
                                       "start_token": int(s), "end_token": int(e)})
        candidates.sort(key=lambda c: -c["logit"])
        out.append(candidates[:n_best_size])
    return out


def postprocess_predictions(examples, features: Sequence[dict], start_logits: np.ndarray, end_logits: np.ndarray,
                            *, n_best_size: int = 20, max_answer_length: int = 30,
                            return_nbest: bool = False):
    """Turn per-window start/end logits into one answer string per question.

    The spans are those of :func:`span_candidates`: for each window, the ``n_best_size`` highest start and
    end logits are paired; a pair (i, j) is kept when both are passage tokens, i has its maximum context in
    this window, j >= i and the span has at most ``max_answer_length`` tokens. Over all windows of a
    question the pair with the largest ``start_logit + end_logit`` wins and its text is cut from the passage
    by character offsets. Returns {id: text} (and {id: n-best list of (logit sum, text)} with
    ``return_nbest``). A question with no valid span gets "".
    """
    spans = span_candidates(examples, features, start_logits, end_logits, n_best_size=n_best_size,
                            max_answer_length=max_answer_length)
    predictions, nbest = {}, {}
    for ex, candidates in zip(examples, spans):
        predictions[ex["id"]] = candidates[0]["text"] if candidates else ""
        nbest[ex["id"]] = [(c["logit"], c["text"]) for c in candidates]
    return (predictions, nbest) if return_nbest else predictions


# -------------------------------------------------------------------------------------------- training
def finetune_squad(model, tokenizer, *, train=None, eval=None, max_train_examples: int | None = None,
                   max_eval_examples: int | None = None, max_length: int = 384, doc_stride: int = 128,
                   lr: float = 5e-5, epochs: float = 3, batch_size: int = DEFAULT_BATCH_SIZE,
                   warmup_proportion: float = DEFAULT_WARMUP, weight_decay: float = DEFAULT_WEIGHT_DECAY,
                   seed: int = 42, n_best_size: int = 20, max_answer_length: int = 30,
                   eval_every: int | None = None, log_every: int = 10, device=None,
                   group_by_length: bool = False,
                   log: Callable[[str], None] | None = None) -> dict:
    """Fine-tune a BertForQuestionAnswering on SQuAD rows and evaluate EM/F1.

    Defaults follow Section 4.2: 3 epochs, learning rate 5e-5, batch 32, windows of 384 tokens. With
    ``eval_every`` the evaluation set is also scored every that many steps (``history.evals``, a learning
    curve). Returns ``metrics`` (EM and F1 in percent, after the last step), ``predictions`` ({id: text})
    and ``history``.
    """
    from .data import load_dataset
    from .glue import subsample

    train = load_dataset("squad", "train") if train is None else train
    eval = load_dataset("squad", "validation") if eval is None else eval
    train = subsample(train, max_train_examples, seed)
    if max_eval_examples is not None:
        eval = eval.select(range(min(max_eval_examples, len(eval))))
    train_features = prepare_features(train, tokenizer, max_length=max_length, doc_stride=doc_stride)
    eval_features = prepare_features(eval, tokenizer, max_length=max_length, doc_stride=doc_stride,
                                     with_labels=False)
    if device is not None:
        model.to(device)
    set_seed(seed)
    loader = make_loader(train_features, batch_size, shuffle=True, seed=seed, pad_token_id=tokenizer.pad_token_id,
                         group_by_length=group_by_length)
    latest: dict = {}

    def evaluate() -> dict:
        starts, ends = predict(model, make_loader(eval_features, 64, shuffle=False), device=device,
                               output="start_end")
        latest["predictions"] = postprocess_predictions(eval, eval_features, starts, ends,
                                                        n_best_size=n_best_size,
                                                        max_answer_length=max_answer_length)
        return squad_evaluate(latest["predictions"], eval)

    history = fit(model, loader, log_every=log_every, epochs=epochs, lr=lr, warmup_proportion=warmup_proportion,
                  weight_decay=weight_decay, device=device, log=log, eval_fn=evaluate, eval_every=eval_every)
    return {"metrics": history.evals[-1][1], "predictions": latest["predictions"], "history": history,
            "num_train": len(train), "num_train_features": len(train_features), "num_eval": len(eval),
            "num_eval_features": len(eval_features)}


def run_squad(args, *, device=None, log=print):
    """The command line's SQuAD path."""
    from .finetuning import load_model, load_tokenizer

    set_seed(args.seed)
    tokenizer = load_tokenizer(args.model, args.tokenizer)
    model = load_model("question_answering", args.model,
                       ignore_mismatched_sizes=getattr(args, "ignore_mismatched_sizes", False))
    if model.config.max_position_embeddings < args.max_seq_length:
        raise ValueError(f"--max-seq-length {args.max_seq_length} exceeds the model's "
                         f"max_position_embeddings={model.config.max_position_embeddings}")
    if args.doc_stride >= args.max_seq_length:
        raise ValueError(f"--doc-stride ({args.doc_stride}) must be smaller than --max-seq-length "
                         f"({args.max_seq_length})")
    model.to(device)
    from .data import load_dataset
    out = finetune_squad(model, tokenizer, eval=load_dataset("squad", args.eval_split),
                         max_train_examples=args.max_train_examples, max_eval_examples=args.max_eval_examples,
                         max_length=args.max_seq_length, doc_stride=args.doc_stride, lr=args.lr,
                         epochs=args.epochs, batch_size=args.batch_size, warmup_proportion=args.warmup_proportion,
                         weight_decay=args.weight_decay, seed=args.seed, device=device, log=log,
                        log_every=getattr(args, "log_every", 10),
                        group_by_length=getattr(args, "group_by_length", False))
    metrics = {"task": "squad", "split": args.eval_split, "num_train": out["num_train"],
               "num_eval": out["num_eval"], **out["metrics"]}
    return model, tokenizer, metrics
