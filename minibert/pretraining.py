"""Pre-training data: sentence pairs, masked LM and next sentence prediction (Devlin et al. 2019, Section 3.1).

Faithful to Google's ``create_pretraining_data.py``, working on token ids instead of token strings and making
the same calls on one ``random.Random`` in the same order, so for the same documents and seed it builds the same
instances (checked against Google's script on the book's corpora, with and without whole-word masking):

* The documents are shuffled, then visited ``dupe_factor`` times; each visit cuts a document into instances.
* Each instance has room for ``max_num_tokens = max_seq_length - 3`` tokens besides [CLS], [SEP], [SEP]. Its
  *target* length is that, except with probability ``short_seq_prob`` (0.1) a uniform length in
  ``[2, max_num_tokens]``, to soften the mismatch with short fine-tuning inputs.
* Whole sentences are added to a chunk until it reaches the target (or the document ends); a random
  number of its leading sentences become segment A. Segment B is the rest of the chunk (``next_sentence_label``
  0, "IsNext") or, with probability 0.5 -- and always when the chunk has one sentence -- text from a random
  other document (label 1, "NotNext"), in which case the chunk's unused sentences are *put back* to start
  the next chunk. (Hugging Face's convention: 0 = B follows A, 1 = B is random.)
* :func:`truncate_seq_pair` trims the longer segment one token at a time, from the front or the back at random.
* ``[CLS] A [SEP] B [SEP]`` with segment ids 0 for [CLS], A and the first [SEP], 1 for B and the last [SEP].
* Masking (:class:`MaskedLMPolicy`): never [CLS] or [SEP]; ``num_to_predict = min(max_predictions_per_seq,
  max(1, round(n * masked_lm_prob)))`` positions, n counting the special tokens; each chosen token becomes
  [MASK] 80% of the time, a random vocabulary token 10% and stays unchanged 10% (Section 3.1, Appendix C.2).
  Whole-word masking groups a word's "##" continuation pieces and chooses them together; the 80/10/10 draw
  stays per piece, as in Google's code, so a chosen word can be half [MASK], half unchanged. Google's README
  describes one decision for the whole word: ``per_word_decision=True`` (an option, off by default).

Masking is *static* (once, when instances are built: Google's format ``masked_lm_positions``/``masked_lm_ids``,
repeated ``dupe_factor`` times with different masks) or *dynamic* (at batch time in
:class:`DataCollatorForPreTraining`, as RoBERTa and Hugging Face's DataCollatorForLanguageModeling do, but with
the same fixed ``num_to_predict`` rule instead of an independent coin per token).

The sentence-level task is a parameter, ``sentence_task`` (for the ablations of Section 5.1, Table 5, and what
came after BERT):

* ``"nsp"`` (default): Google's segment pairs and next sentence prediction, as above.
* ``"none"``: no NSP. Each instance is one segment, ``[CLS] sentences [SEP]`` with segment ids all 0, packed
  with whole sentences of one document up to ``max_seq_length - 2`` tokens (RoBERTa's DOC-SENTENCES, Liu et al.
  2019, Section 4.2; the paper's "No NSP" row); ``next_sentence_label`` is -100 (ignored), and the collator then
  passes no NSP labels, so the model is trained with the masked LM loss alone. The same instances (unmasked)
  feed the left-to-right model (:class:`DataCollatorForCausalLM`).
* ``"sop"``: ALBERT's sentence-order prediction (Lan et al. 2020, Section 3.1; google-research/albert
  ``create_pretraining_data.py``): A and B are always consecutive text of one document, swapped with probability
  0.5 (label 1 = swapped, 0 = in order). Where ALBERT's script takes B from another document for a
  one-sentence chunk, minibert splits that sentence at a random token instead, so every label is an order label.

The masking mixture (``mask_prob``, ``random_prob``; Appendix C.2, Table 8) is a parameter of every builder.

Where minibert deviates from Google:

* fewer than two documents is an error (Google would silently take the "random" segment from the same document);
* for streamed corpora, instances are built per shard of documents (as Google per input file), shard k with
  ``random.Random(seed + k)``;
* instances are stored as an Arrow-backed ``datasets.Dataset`` instead of TFRecord files, unpadded: the collator
  pads each batch to its longest sequence. For training, :class:`InstanceArrays` holds them as padded NumPy
  arrays, so that collating a batch is slicing rows (no per-token Python loop), with the same batches.
"""
from __future__ import annotations

import random
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

from .corpus import _check_tokenizer, iter_documents, tokenize_corpus

__all__ = [
    "TrainingInstance", "MaskedLMPolicy", "truncate_seq_pair", "create_instances_from_document",
    "create_training_instances", "create_pretraining_dataset", "iter_training_instances",
    "DataCollatorForPreTraining", "masked_lm_accuracy", "next_sentence_accuracy", "accuracy_counts",
    "PretrainingMetrics", "IGNORE_INDEX", "SENTENCE_TASKS", "DataCollatorForCausalLM", "InstanceArrays", "InstanceRows",
]

IGNORE_INDEX = -100   # label of positions that carry no masked-LM loss (PyTorch's cross_entropy default)
SENTENCE_TASKS = ("nsp", "none", "sop")   # see the module docstring


@dataclass
class TrainingInstance:
    """One pre-training example, in Google's format but with ids.

    ``input_ids`` are the tokens *after* masking; ``masked_lm_ids`` the original ids at ``masked_lm_positions``
    (sorted). Both are empty when masking is left to the collator (dynamic masking).
    """
    input_ids: list[int]
    token_type_ids: list[int]
    next_sentence_label: int                     # 0: B follows A in the document, 1: B is from a random document
    #                                              (SOP: 1 = A and B swapped; single segment: -100, no label)
    masked_lm_positions: list[int] = field(default_factory=list)
    masked_lm_ids: list[int] = field(default_factory=list)

    @property
    def is_random_next(self) -> bool:
        return self.next_sentence_label == 1

    def to_dict(self) -> dict:
        return {"input_ids": self.input_ids, "token_type_ids": self.token_type_ids,
                "next_sentence_label": self.next_sentence_label,
                "masked_lm_positions": self.masked_lm_positions, "masked_lm_ids": self.masked_lm_ids}


def _check_prob(name: str, value, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in {'(0, 1]' if low_open else '[0, 1]'}, got {value}")


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


class MaskedLMPolicy:
    """Chooses and corrupts the masked-LM positions of one sequence (Google's ``create_masked_lm_predictions``).

    ``mask_prob``/``random_prob`` are the shares of chosen tokens replaced by [MASK] and by a random token; the
    rest (``1 - mask_prob - random_prob``) stay unchanged. The defaults are the paper's 80/10/10; other values
    reproduce the ablation of Appendix C.2 (Table 8). Random tokens are drawn uniformly from the *whole*
    vocabulary, special and unused entries included, as Google and Hugging Face do.

    ``whole_word_mask`` chooses whole words (a piece and its "##" continuations) as Google's code does; like
    Google's code it then still decides [MASK] / random / unchanged *for each piece*, so one word can come
    out half masked (``[MASK] ##son``). Google's README describes masking the whole word at once;
    ``per_word_decision=True`` (needs ``whole_word_mask``) does that: one 80/10/10 draw per word, applied to
    all its pieces (each random piece still gets its own random token). The default stays Google's code,
    which minibert reproduces instance for instance.
    """

    def __init__(self, vocab_size: int, mask_token_id: int, special_token_ids: Iterable[int], *,
                 masked_lm_prob: float = 0.15, max_predictions_per_seq: int = 20, whole_word_mask: bool = False,
                 continuation: Sequence[bool] | None = None, mask_prob: float = 0.8, random_prob: float = 0.1,
                 per_word_decision: bool = False):
        _check_int("vocab_size", vocab_size, 1)
        _check_prob("masked_lm_prob", masked_lm_prob, low_open=True)
        _check_int("max_predictions_per_seq", max_predictions_per_seq, 1)
        _check_prob("mask_prob", mask_prob)
        _check_prob("random_prob", random_prob)
        if mask_prob + random_prob > 1.0 + 1e-12:
            raise ValueError(f"mask_prob + random_prob must be <= 1, got {mask_prob} + {random_prob}")
        if whole_word_mask and continuation is None:
            raise ValueError("whole_word_mask=True needs `continuation` (which ids are '##' pieces); "
                             "build the policy with MaskedLMPolicy.from_tokenizer")
        if per_word_decision and not whole_word_mask:
            raise ValueError("per_word_decision=True needs whole_word_mask=True (without it every word is one piece)")
        if continuation is not None and len(continuation) != vocab_size:
            raise ValueError(f"continuation has {len(continuation)} entries, the vocabulary {vocab_size}")
        self.vocab_size = vocab_size
        self.mask_token_id = mask_token_id
        self.special_token_ids = frozenset(special_token_ids)
        self.masked_lm_prob = masked_lm_prob
        self.max_predictions_per_seq = max_predictions_per_seq
        self.whole_word_mask = whole_word_mask
        self.per_word_decision = per_word_decision
        self.continuation = continuation
        self.mask_prob = mask_prob
        self.random_prob = random_prob
        # Google draws "keep" vs "random" with a second coin of probability 0.5 once [MASK] is ruled out.
        rest = 1.0 - mask_prob
        self._keep_given_not_mask = round((1.0 - mask_prob - random_prob) / rest, 12) if rest > 0 else 0.0

    @classmethod
    def from_tokenizer(cls, tokenizer, **kwargs) -> "MaskedLMPolicy":
        """A policy for ``tokenizer``: its vocabulary size, [MASK] id, [CLS]/[SEP] ids and its "##" pieces."""
        _check_tokenizer(tokenizer)
        vocab_size = len(tokenizer.vocab)
        tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
        continuation = [t.startswith("##") for t in tokens]
        return cls(vocab_size, tokenizer.mask_token_id, (tokenizer.cls_token_id, tokenizer.sep_token_id),
                   continuation=continuation, **kwargs)

    def num_to_predict(self, num_tokens: int) -> int:
        """How many positions a sequence of ``num_tokens`` tokens (specials included) gets: Google's rule."""
        return min(self.max_predictions_per_seq, max(1, int(round(num_tokens * self.masked_lm_prob))))

    def candidates(self, input_ids: Sequence[int]) -> list[list[int]]:
        """Maskable positions (all but [CLS]/[SEP]), grouped by word when ``whole_word_mask``.

        As in Google's code, a "##" piece joins the group before it even across a [SEP]: when truncation from the
        front leaves segment B starting with a "##" piece, that piece is masked together with A's last word.
        """
        specials = self.special_token_ids
        if not self.whole_word_mask:
            return [[i] for i, tok in enumerate(input_ids) if tok not in specials]
        groups: list[list[int]] = []
        for i, tok in enumerate(input_ids):
            if tok in specials:
                continue
            if groups and self.continuation[tok]:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    def _draw(self, rng: random.Random) -> str:
        """'mask', 'keep' or 'random', with Google's two coins (and the same random numbers drawn)."""
        if rng.random() < self.mask_prob:
            return "mask"
        return "keep" if rng.random() < self._keep_given_not_mask else "random"

    def __call__(self, input_ids: Sequence[int], rng: random.Random) -> tuple[list[int], list[int], list[int]]:
        """Mask one sequence: returns (corrupted ids, sorted masked positions, original ids at those positions)."""
        groups = self.candidates(input_ids)
        rng.shuffle(groups)
        output = list(input_ids)
        budget = self.num_to_predict(len(input_ids))
        chosen: list[int] = []
        for group in groups:
            if len(chosen) >= budget:
                break
            if len(chosen) + len(group) > budget:       # a whole word that does not fit is skipped
                continue
            if self.per_word_decision:                   # one draw for the whole word
                action = self._draw(rng)
            for index in group:
                if not self.per_word_decision:           # Google: one draw per piece
                    action = self._draw(rng)
                if action == "mask":
                    output[index] = self.mask_token_id
                elif action == "random":
                    output[index] = rng.randint(0, self.vocab_size - 1)
                chosen.append(index)
        chosen.sort()
        return output, chosen, [input_ids[i] for i in chosen]


def truncate_seq_pair(tokens_a: Sequence[int], tokens_b: Sequence[int], max_num_tokens: int,
                      rng: random.Random) -> tuple[list[int], list[int]]:
    """Trim the longer of A and B (B on a tie) one token at a time, from the front or back at random, until
    ``len(A) + len(B) <= max_num_tokens``. Returns new lists (Google's edits in place)."""
    a0, a1, b0, b1 = 0, len(tokens_a), 0, len(tokens_b)
    while (a1 - a0) + (b1 - b0) > max_num_tokens:
        if (a1 - a0) > (b1 - b0):
            if rng.random() < 0.5:
                a0 += 1
            else:
                a1 -= 1
        else:
            if rng.random() < 0.5:
                b0 += 1
            else:
                b1 -= 1
    return list(tokens_a[a0:a1]), list(tokens_b[b0:b1])


def _pair(tokens_a, tokens_b, cls_token_id: int, sep_token_id: int) -> tuple[list[int], list[int]]:
    """``[CLS] A [SEP] B [SEP]`` and its segment ids (0 for [CLS] A [SEP], 1 for B [SEP])."""
    input_ids = [cls_token_id, *tokens_a, sep_token_id, *tokens_b, sep_token_id]
    return input_ids, [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)


def _instance(input_ids, token_type_ids, label, masking, rng) -> TrainingInstance:
    """One instance, masked now (static masking) or left for the collator (``masking`` None)."""
    if masking is None:
        return TrainingInstance(input_ids, token_type_ids, label)
    input_ids, positions, labels = masking(input_ids, rng)
    return TrainingInstance(input_ids, token_type_ids, label, positions, labels)


def create_instances_from_document(all_documents: Sequence[Sequence[Sequence[int]]], document_index: int,
                                   max_seq_length: int, short_seq_prob: float, rng: random.Random, *,
                                   cls_token_id: int, sep_token_id: int,
                                   masking: MaskedLMPolicy | None = None,
                                   stats: Counter | None = None, sentence_task: str = "nsp") -> list[TrainingInstance]:
    """Cut one document (a list of sentences of token ids) into instances. ``masking=None``: no static masking.

    ``sentence_task``: "nsp" (Google's pairs), "none" (single segments) or "sop" (ALBERT's sentence order);
    see the module docstring. "nsp" makes exactly Google's calls on ``rng``.

    ``stats``, when given, counts what happened (not in Google's code; for checking the pipeline):
    ``documents`` visited, ``short_target`` (short_seq_prob drew a short target), ``single_sentence_chunks``
    (B forced to be random), ``coin_random``/``coin_next`` (the 50/50 coin of multi-sentence chunks),
    ``truncated`` (pairs that truncate_seq_pair trimmed).
    """
    if sentence_task != "nsp":
        return _instances_other_task(all_documents[document_index], max_seq_length, short_seq_prob, rng,
                                     cls_token_id, sep_token_id, masking, stats, sentence_task)
    document = all_documents[document_index]
    max_num_tokens = max_seq_length - 3                      # room for [CLS] A [SEP] B [SEP]
    target_seq_length = max_num_tokens
    short = rng.random() < short_seq_prob
    if short:
        target_seq_length = rng.randint(2, max_num_tokens)
    if stats is not None:
        stats["documents"] += 1
        stats["short_target"] += short

    instances = []
    chunk: list[Sequence[int]] = []
    chunk_length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i])
        if i == len(document) - 1 or chunk_length >= target_seq_length:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1   # sentences in segment A
            tokens_a = [t for sentence in chunk[:a_end] for t in sentence]
            single = len(chunk) == 1
            if single or rng.random() < 0.5:
                label = 1                                    # NotNext: B from another document
                target_b_length = target_seq_length - len(tokens_a)
                for _ in range(10):
                    random_index = rng.randint(0, len(all_documents) - 1)
                    if random_index != document_index:
                        break
                random_document = all_documents[random_index]
                tokens_b = []
                for sentence in random_document[rng.randint(0, len(random_document) - 1):]:
                    tokens_b.extend(sentence)
                    if len(tokens_b) >= target_b_length:
                        break
                i -= len(chunk) - a_end                      # put the unused sentences back
            else:
                label = 0                                    # IsNext: B is the rest of the chunk
                tokens_b = [t for sentence in chunk[a_end:] for t in sentence]
            if stats is not None:
                stats["single_sentence_chunks" if single else ("coin_random" if label else "coin_next")] += 1
                stats["truncated"] += len(tokens_a) + len(tokens_b) > max_num_tokens
            tokens_a, tokens_b = truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            assert tokens_a and tokens_b

            input_ids, token_type_ids = _pair(tokens_a, tokens_b, cls_token_id, sep_token_id)
            instances.append(_instance(input_ids, token_type_ids, label, masking, rng))
            chunk, chunk_length = [], 0
        i += 1
    return instances


def _instances_other_task(document, max_seq_length, short_seq_prob, rng, cls_token_id, sep_token_id, masking,
                          stats, sentence_task) -> list[TrainingInstance]:
    """Single segments ("none") or sentence-order pairs ("sop") from one document; see the module docstring."""
    _check_task(sentence_task)
    single = sentence_task == "none"
    max_num_tokens = max_seq_length - (2 if single else 3)   # [CLS] X [SEP], or [CLS] A [SEP] B [SEP]
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)
    if stats is not None:
        stats["documents"] += 1
    instances = []
    chunk: list[Sequence[int]] = []
    chunk_length = 0
    for i, sentence in enumerate(document):
        chunk.append(sentence)
        chunk_length += len(sentence)
        if i < len(document) - 1 and chunk_length < target_seq_length:
            continue
        if single:
            tokens, _ = truncate_seq_pair([t for s in chunk for t in s], [], max_num_tokens, rng)
            input_ids = [cls_token_id, *tokens, sep_token_id]
            token_type_ids = [0] * len(input_ids)
            label = IGNORE_INDEX
            if stats is not None:
                stats["single_segment"] += 1
        else:
            if len(chunk) >= 2:
                a_end = rng.randint(1, len(chunk) - 1)
                tokens_a = [t for s in chunk[:a_end] for t in s]
                tokens_b = [t for s in chunk[a_end:] for t in s]
            else:                                            # one sentence: split it at a random token
                tokens = list(chunk[0])
                if len(tokens) < 2:
                    chunk, chunk_length = [], 0
                    continue
                cut = rng.randint(1, len(tokens) - 1)
                tokens_a, tokens_b = tokens[:cut], tokens[cut:]
            label = int(rng.random() < 0.5)                  # 1: swapped (ALBERT's is_random_next)
            if label:
                tokens_a, tokens_b = tokens_b, tokens_a
            if stats is not None:
                stats["sop_swapped" if label else "sop_in_order"] += 1
            tokens_a, tokens_b = truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            input_ids, token_type_ids = _pair(tokens_a, tokens_b, cls_token_id, sep_token_id)
        instances.append(_instance(input_ids, token_type_ids, label, masking, rng))
        chunk, chunk_length = [], 0
    return instances


def _check_creation_args(max_seq_length, dupe_factor, short_seq_prob, seed) -> None:
    _check_int("max_seq_length", max_seq_length, 5)
    _check_int("dupe_factor", dupe_factor, 1)
    _check_prob("short_seq_prob", short_seq_prob)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")


def _instances_of_shard(documents, tokenizer_ids, max_seq_length, dupe_factor, short_seq_prob, masking, rng, stats=None,
                        sentence_task="nsp"):
    """Google's create_training_instances minus the final shuffle: yields instances in creation order."""
    all_documents = [[list(s) for s in doc if len(s) > 0] for doc in documents]
    all_documents = [doc for doc in all_documents if doc]
    if len(all_documents) < 2:
        raise ValueError(f"need at least 2 non-empty documents to draw random next sentences, got {len(all_documents)}")
    rng.shuffle(all_documents)
    for _ in range(dupe_factor):
        for document_index in range(len(all_documents)):
            yield from create_instances_from_document(all_documents, document_index, max_seq_length, short_seq_prob,
                                                      rng, masking=masking, stats=stats, sentence_task=sentence_task,
                                                      **tokenizer_ids)


def _masking_policy(tokenizer, static_masking, masked_lm_prob, max_predictions_per_seq, whole_word_mask,
                    per_word_decision=False, mask_prob=0.8, random_prob=0.1):
    if not static_masking:
        return None
    return MaskedLMPolicy.from_tokenizer(tokenizer, masked_lm_prob=masked_lm_prob,
                                         max_predictions_per_seq=max_predictions_per_seq,
                                         whole_word_mask=whole_word_mask, per_word_decision=per_word_decision,
                                         mask_prob=mask_prob, random_prob=random_prob)


def _check_task(sentence_task) -> None:
    if sentence_task not in SENTENCE_TASKS:
        raise ValueError(f"sentence_task must be one of {SENTENCE_TASKS}, got {sentence_task!r}")


def create_training_instances(documents: Sequence[Sequence[Sequence[int]]], tokenizer, *, max_seq_length: int = 128,
                              dupe_factor: int = 10, short_seq_prob: float = 0.1, masked_lm_prob: float = 0.15,
                              max_predictions_per_seq: int = 20, whole_word_mask: bool = False,
                              static_masking: bool = True, seed: int = 12345,
                              stats: Counter | None = None, per_word_decision: bool = False,
                              sentence_task: str = "nsp", mask_prob: float = 0.8,
                              random_prob: float = 0.1) -> list[TrainingInstance]:
    """Google's ``create_training_instances`` on already tokenized documents: a shuffled list of instances.

    ``documents``: a list of documents, each a list of sentences, each a list of token ids (e.g. the
    ``sentence_ids`` column of :func:`minibert.corpus.tokenize_corpus`). Defaults are Google's flags
    (``dupe_factor`` 10, ``random_seed`` 12345). Keeps every instance as Python lists: for whole corpora prefer
    :func:`create_pretraining_dataset`, which gives the same instances in the same order, stored compactly.
    ``sentence_task`` ("nsp", "none", "sop") and the masking mixture ``mask_prob``/``random_prob`` (the rest is
    left unchanged) are the ablation options of the module docstring.
    """
    _check_tokenizer(tokenizer)
    _check_creation_args(max_seq_length, dupe_factor, short_seq_prob, seed)
    _check_task(sentence_task)
    rng = random.Random(seed)
    masking = _masking_policy(tokenizer, static_masking, masked_lm_prob, max_predictions_per_seq, whole_word_mask,
                              per_word_decision, mask_prob, random_prob)
    ids = {"cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id}
    instances = list(_instances_of_shard(documents, ids, max_seq_length, dupe_factor, short_seq_prob, masking, rng,
                                         stats, sentence_task))
    rng.shuffle(instances)
    return instances


class _InstanceColumns:
    """Instances accumulated as flat typed arrays + offsets, turned into one Arrow table (no per-instance objects)."""

    LIST_COLUMNS = ("input_ids", "token_type_ids", "masked_lm_positions", "masked_lm_ids")
    TYPES = {"input_ids": "i", "token_type_ids": "b", "masked_lm_positions": "i", "masked_lm_ids": "i"}

    def __init__(self, static_masking: bool):
        self.columns = self.LIST_COLUMNS if static_masking else self.LIST_COLUMNS[:2]
        self.values = {c: array(self.TYPES[c]) for c in self.columns}
        self.offsets = {c: array("q", [0]) for c in self.columns}
        self.labels = array("b")

    def add(self, inst: TrainingInstance) -> None:
        for c in self.columns:
            v = self.values[c]
            v.extend(getattr(inst, c))
            self.offsets[c].append(len(v))
        self.labels.append(inst.next_sentence_label)

    def __len__(self) -> int:
        return len(self.labels)

    def table(self, order: Sequence[int] | None = None):
        import numpy as np
        import pyarrow as pa

        arrow_type = {"i": pa.int32(), "b": pa.int8()}
        cols = {}
        for c in self.columns:
            values = pa.array(np.frombuffer(self.values[c], dtype=np.dtype(self.TYPES[c])), type=arrow_type[self.TYPES[c]])
            offsets = pa.array(np.frombuffer(self.offsets[c], dtype=np.int64), type=pa.int64())
            cols[c] = pa.LargeListArray.from_arrays(offsets, values).cast(pa.list_(arrow_type[self.TYPES[c]]))
        cols["next_sentence_label"] = pa.array(np.frombuffer(self.labels, dtype=np.int8), type=pa.int8())
        order_names = ["input_ids", "token_type_ids", "next_sentence_label", *self.columns[2:]]
        table = pa.table({name: cols[name] for name in order_names})
        if order is not None:
            table = table.take(pa.array(order, type=pa.int64()))
        return table


def iter_training_instances(corpus, tokenizer, *, max_seq_length: int = 128, dupe_factor: int = 10,
                            short_seq_prob: float = 0.1, masked_lm_prob: float = 0.15, max_predictions_per_seq: int = 20,
                            whole_word_mask: bool = False, static_masking: bool = True, seed: int = 12345,
                            documents_per_shard: int | None = None, num_proc: int | None = None,
                            per_word_decision: bool = False, sentence_task: str = "nsp", mask_prob: float = 0.8,
                            random_prob: float = 0.1):
    """Yield instances (as dicts) shard by shard, each shard shuffled as Google shuffles one output file.

    ``corpus`` is a ``Dataset``/``IterableDataset`` of documents, raw (a ``text`` column, tokenized here with
    :func:`minibert.corpus.tokenize_corpus`) or tokenized (a ``sentence_ids`` column). Memory holds one shard:
    the way to go through a streamed hub corpus.
    """
    _check_tokenizer(tokenizer)
    _check_creation_args(max_seq_length, dupe_factor, short_seq_prob, seed)
    _check_task(sentence_task)
    masking = _masking_policy(tokenizer, static_masking, masked_lm_prob, max_predictions_per_seq, whole_word_mask,
                              per_word_decision, mask_prob, random_prob)
    tokenized = _tokenized(corpus, tokenizer, num_proc)
    ids = {"cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id}
    for k, shard in enumerate(iter_documents(tokenized, documents_per_shard)):
        rng = random.Random(seed + k)
        instances = list(_instances_of_shard(shard, ids, max_seq_length, dupe_factor, short_seq_prob, masking, rng,
                                             sentence_task=sentence_task))
        rng.shuffle(instances)
        for inst in instances:
            d = inst.to_dict()
            if not static_masking:
                del d["masked_lm_positions"], d["masked_lm_ids"]
            yield d


def _tokenized(corpus, tokenizer, num_proc):
    import datasets

    if not isinstance(corpus, (datasets.Dataset, datasets.IterableDataset)):
        raise TypeError(f"corpus must be a datasets.Dataset or IterableDataset, got {type(corpus).__name__}")
    names = corpus.column_names
    if names is None:                       # a stream whose features are unknown: assume raw text documents
        return tokenize_corpus(corpus, tokenizer)
    if "sentence_ids" in names:
        return corpus
    if "text" not in names:
        raise ValueError(f"corpus needs a 'text' column (raw documents) or a 'sentence_ids' column "
                         f"(tokenize_corpus output); it has {names}")
    return tokenize_corpus(corpus, tokenizer, num_proc=num_proc)


def create_pretraining_dataset(corpus, tokenizer, *, max_seq_length: int = 128, dupe_factor: int = 10,
                               short_seq_prob: float = 0.1, masked_lm_prob: float = 0.15,
                               max_predictions_per_seq: int = 20, whole_word_mask: bool = False,
                               static_masking: bool = True, seed: int = 12345, documents_per_shard: int | None = None,
                               num_proc: int | None = None, stats: Counter | None = None,
                               per_word_decision: bool = False, sentence_task: str = "nsp",
                               mask_prob: float = 0.8, random_prob: float = 0.1):
    """Build pre-training instances for a whole corpus as a ``datasets.Dataset``.

    Columns: ``input_ids``, ``token_type_ids``, ``next_sentence_label`` and, with static masking,
    ``masked_lm_positions`` and ``masked_lm_ids`` (Google's names). Unpadded; feed batches through
    :class:`DataCollatorForPreTraining`. For an in-memory corpus and ``documents_per_shard=None`` the instances
    are exactly :func:`create_training_instances`' in the same order. An ``IterableDataset`` corpus gives an
    ``IterableDataset`` of instances built shard by shard (``documents_per_shard`` defaults to 10,000 then).
    ``num_proc`` parallelises the tokenization (instances are built in this process, from one random stream).
    ``stats``: a ``collections.Counter`` to fill (see :func:`create_instances_from_document`; in-memory corpora only).
    ``sentence_task``, ``mask_prob``, ``random_prob``: the ablation options (module docstring).
    """
    import datasets

    _check_tokenizer(tokenizer)
    _check_creation_args(max_seq_length, dupe_factor, short_seq_prob, seed)
    _check_task(sentence_task)
    kwargs = dict(max_seq_length=max_seq_length, dupe_factor=dupe_factor, short_seq_prob=short_seq_prob,
                  masked_lm_prob=masked_lm_prob, max_predictions_per_seq=max_predictions_per_seq,
                  whole_word_mask=whole_word_mask, static_masking=static_masking, seed=seed,
                  per_word_decision=per_word_decision, sentence_task=sentence_task, mask_prob=mask_prob,
                  random_prob=random_prob)
    if isinstance(corpus, datasets.IterableDataset):
        return datasets.IterableDataset.from_generator(
            iter_training_instances, gen_kwargs=dict(corpus=corpus, tokenizer=tokenizer,
                                                     documents_per_shard=documents_per_shard or 10_000, **kwargs))
    masking = _masking_policy(tokenizer, static_masking, masked_lm_prob, max_predictions_per_seq, whole_word_mask,
                              per_word_decision, mask_prob, random_prob)
    tokenized = _tokenized(corpus, tokenizer, num_proc)
    ids = {"cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id}
    tables = []
    for k, shard in enumerate(iter_documents(tokenized, documents_per_shard)):
        rng = random.Random(seed + k)
        columns = _InstanceColumns(static_masking)
        for inst in _instances_of_shard(shard, ids, max_seq_length, dupe_factor, short_seq_prob, masking, rng, stats,
                                        sentence_task):
            columns.add(inst)
        order = list(range(len(columns)))
        rng.shuffle(order)                                   # Google's final shuffle of the instances
        tables.append(columns.table(order))
    import pyarrow as pa
    from datasets.table import InMemoryTable

    table = pa.concat_tables(tables).combine_chunks()
    return datasets.Dataset(InMemoryTable(table))


# ============================================================================================ arrays
class InstanceRows(dict):
    """Rows of :class:`InstanceArrays` (a dict of NumPy arrays, one row per instance): what
    ``InstanceArrays.__getitems__`` returns and :class:`DataCollatorForPreTraining` turns into a batch.
    ``pad_token_id``: the id the ``input_ids`` rows are padded with."""

    pad_token_id: int = 0


def _ragged_to_matrix(offsets, values, width: int, fill: int, dtype) -> "np.ndarray":
    """A ragged column (offsets (N+1,), values) as an (N, width) matrix, each row padded with ``fill``."""
    import numpy as np

    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    out = np.full((len(lengths), width), fill, dtype=dtype)
    out[np.arange(width) < lengths[:, None]] = np.asarray(values)[offsets[0]:offsets[-1]]   # row-major fill
    return out


class InstanceArrays:
    """Pre-training instances with static masks as padded NumPy arrays: a batch is a slice of rows.

    Arrays (N instances, S the longest instance, P the most predictions of one instance):
    ``input_ids`` (N, S) int32 padded with ``pad_token_id``, ``token_type_ids`` (N, S) int8 padded with 0,
    ``lengths`` (N,), ``next_sentence_label`` (N,), ``masked_lm_positions`` (N, P) padded with 0,
    ``masked_lm_ids`` (N, P) padded with -100 and ``num_predictions`` (N,).

    ``arrays[i]`` is instance ``i`` as a dict of lists (the dataset's row); ``arrays.__getitems__(indices)``
    (what :class:`minibert.train.Batches` and ``DataLoader`` call) is an :class:`InstanceRows`, which
    :class:`DataCollatorForPreTraining` collates by slicing into exactly the batch it makes from the rows.
    About 5 bytes a token slot: 1.5 million instances of 128 tokens take 1 GB.
    """

    def __init__(self, arrays: dict, pad_token_id: int = 0):
        needed = ("input_ids", "token_type_ids", "lengths", "next_sentence_label", "masked_lm_positions",
                  "masked_lm_ids", "num_predictions")
        missing = [k for k in needed if k not in arrays]
        if missing:
            raise ValueError(f"InstanceArrays needs the arrays {', '.join(missing)}")
        self.arrays, self.pad_token_id = dict(arrays), pad_token_id

    @classmethod
    def from_dataset(cls, instances, pad_token_id: int = 0) -> "InstanceArrays":
        """From :func:`create_pretraining_dataset`'s ``datasets.Dataset`` (read column by column from Arrow,
        no Python loop over instances) or a list of instance dicts, with static masks."""
        import numpy as np

        if hasattr(instances, "data") and hasattr(instances, "column_names"):       # datasets.Dataset
            if getattr(instances, "_indices", None) is not None:
                instances = instances.flatten_indices()
            names = instances.column_names
            table = instances.data.table if hasattr(instances.data, "table") else instances.data

            def ragged(name):
                column = table.column(name).combine_chunks()
                return np.asarray(column.offsets), np.asarray(column.values)
            labels = np.asarray(table.column("next_sentence_label").to_numpy(), dtype=np.int64)
        else:                                                                          # a list of dicts
            instances = list(instances)
            names = list(instances[0]) if instances else []

            def ragged(name):
                rows = [list(inst[name]) for inst in instances]
                offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
                return offsets, np.asarray([v for r in rows for v in r], dtype=np.int64)
            labels = np.asarray([int(inst["next_sentence_label"]) for inst in instances], dtype=np.int64)
        if "masked_lm_positions" not in names or "masked_lm_ids" not in names:
            raise ValueError("InstanceArrays needs static masks (masked_lm_positions/masked_lm_ids): build the "
                             "instances with static_masking=True")
        ids_off, ids = ragged("input_ids")
        types_off, types = ragged("token_type_ids")
        pos_off, pos = ragged("masked_lm_positions")
        lab_off, lab = ragged("masked_lm_ids")
        lengths, predictions = np.diff(ids_off), np.diff(pos_off)
        if not np.array_equal(lengths, np.diff(types_off)) or not np.array_equal(predictions, np.diff(lab_off)):
            raise ValueError("instances whose token_type_ids (or masked_lm_ids) differ in length from their "
                             "input_ids (or masked_lm_positions)")
        S, P = max(1, int(lengths.max(initial=0))), max(1, int(predictions.max(initial=0)))
        return cls({"input_ids": _ragged_to_matrix(ids_off, ids, S, pad_token_id, np.int32),
                    "token_type_ids": _ragged_to_matrix(types_off, types, S, 0, np.int8),
                    "lengths": lengths.astype(np.int32), "next_sentence_label": labels,
                    "masked_lm_positions": _ragged_to_matrix(pos_off, pos, P, 0, np.int32),
                    "masked_lm_ids": _ragged_to_matrix(lab_off, lab, P, IGNORE_INDEX, np.int32),
                    "num_predictions": predictions.astype(np.int32)}, pad_token_id)

    def __len__(self) -> int:
        return len(self.arrays["lengths"])

    def __getitem__(self, i: int) -> dict:
        a, n, p = self.arrays, int(self.arrays["lengths"][i]), int(self.arrays["num_predictions"][i])
        return {"input_ids": a["input_ids"][i, :n].tolist(), "token_type_ids": a["token_type_ids"][i, :n].tolist(),
                "next_sentence_label": int(a["next_sentence_label"][i]),
                "masked_lm_positions": a["masked_lm_positions"][i, :p].tolist(),
                "masked_lm_ids": a["masked_lm_ids"][i, :p].tolist()}

    def __getitems__(self, indices) -> InstanceRows:
        import numpy as np

        rows = np.asarray(indices, dtype=np.int64)
        out = InstanceRows({k: v[rows] for k, v in self.arrays.items()})
        out.pad_token_id = self.pad_token_id
        return out

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.arrays.values())


# ============================================================================================ collator
class DataCollatorForPreTraining:
    """Turn a list of instances into a padded batch of tensors for ``BertForPreTraining``.

    Output: ``input_ids``, ``token_type_ids``, ``attention_mask`` (B, S), S the longest sequence of the batch
    (rounded up to ``pad_to_multiple_of``); ``next_sentence_label`` (B,) when the instances have it (and it is not -100 throughout:
    single segments, no NSP); and the
    masked-LM targets, either ``labels`` (B, S) with -100 at unmasked positions (``mlm_format="dense"``, Hugging
    Face's format) or ``masked_lm_positions`` (B, P) and ``labels`` (B, P), P the most predictions in the batch,
    padded with position 0 and label -100 (``"sparse"``, Google's gather format: the head runs on P vectors only).

    Static shapes (for ``torch.compile``, CUDA graphs): ``pad_to_length`` pads every batch to that length (the
    phase's ``max_seq_length``) and ``pad_predictions_to`` the sparse format's P to that many predictions.
    ``omit_full_mask=True`` leaves ``attention_mask`` out of a batch that has no padding at all (the model then
    attends everywhere, and SDPA may take its flash kernel); decided on the host, no device read.

    An :class:`InstanceRows` (rows of :class:`InstanceArrays`) is collated by array slicing into the same batch
    its instances give as a list (static masking only).

    ``dynamic_masking=False`` reads the static masks of the instances (``masked_lm_positions``/``masked_lm_ids``).
    ``dynamic_masking=True`` masks unmasked instances anew at every batch with :class:`MaskedLMPolicy` (same rule)
    and its own ``random.Random(seed)``. In DataLoader workers the generator is re-seeded from ``seed`` and the
    worker's torch seed, which the DataLoader draws afresh each epoch: masks differ between workers and epochs
    and are reproducible under ``torch.manual_seed`` (or a DataLoader ``generator``).
    """

    def __init__(self, tokenizer, *, mlm_format: str = "dense", dynamic_masking: bool = False,
                 masked_lm_prob: float = 0.15, max_predictions_per_seq: int = 20, whole_word_mask: bool = False,
                 mask_prob: float = 0.8, random_prob: float = 0.1, seed: int = 0, pad_to_multiple_of: int | None = None,
                 per_word_decision: bool = False, pad_to_length: int | None = None,
                 pad_predictions_to: int | None = None, omit_full_mask: bool = False):
        _check_tokenizer(tokenizer)
        for name, value in (("pad_to_length", pad_to_length), ("pad_predictions_to", pad_predictions_to)):
            if value is not None:
                _check_int(name, value, 1)
        self.pad_to_length, self.pad_predictions_to, self.omit_full_mask = pad_to_length, pad_predictions_to, omit_full_mask
        if mlm_format not in ("dense", "sparse"):
            raise ValueError(f"mlm_format must be 'dense' or 'sparse', got {mlm_format!r}")
        if pad_to_multiple_of is not None:
            _check_int("pad_to_multiple_of", pad_to_multiple_of, 1)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.pad_token_id = tokenizer.pad_token_id
        self.mlm_format = mlm_format
        self.dynamic_masking = dynamic_masking
        self.pad_to_multiple_of = pad_to_multiple_of
        self.seed = seed
        self.masking = (MaskedLMPolicy.from_tokenizer(tokenizer, masked_lm_prob=masked_lm_prob,
                                                      max_predictions_per_seq=max_predictions_per_seq,
                                                      whole_word_mask=whole_word_mask, mask_prob=mask_prob,
                                                      random_prob=random_prob, per_word_decision=per_word_decision)
                       if dynamic_masking else None)
        self.rng = random.Random(seed)
        self._worker_seed = None

    def _generator(self) -> random.Random:
        info = torch.utils.data.get_worker_info()
        if info is not None and info.seed != self._worker_seed:     # a fresh worker (new epoch or new worker id)
            self._worker_seed = info.seed
            self.rng = random.Random(f"{self.seed}:{info.seed}")
        return self.rng

    def _length(self, longest: int) -> int:
        S = longest
        if self.pad_to_multiple_of:
            S = -(-S // self.pad_to_multiple_of) * self.pad_to_multiple_of
        if self.pad_to_length is not None:
            if longest > self.pad_to_length:
                raise ValueError(f"an instance of {longest} tokens is longer than pad_to_length={self.pad_to_length}")
            S = self.pad_to_length
        return S

    def _predictions(self, most: int) -> int:
        if self.pad_predictions_to is not None:
            if most > self.pad_predictions_to:
                raise ValueError(f"an instance with {most} masked positions exceeds pad_predictions_to="
                                 f"{self.pad_predictions_to}")
            return self.pad_predictions_to
        return max(1, most)

    def _collate_rows(self, rows: InstanceRows) -> dict[str, torch.Tensor]:
        """Array slicing: the batch that the same instances, as a list, give."""
        import numpy as np

        if self.dynamic_masking:
            raise ValueError("dynamic_masking=True needs instances as a list of dicts, not InstanceArrays rows")
        lengths = rows["lengths"]                                                   # (B,)
        if len(lengths) == 0:
            raise ValueError("cannot collate an empty list of instances")
        B, S = len(lengths), self._length(int(lengths.max()))

        def width(matrix, n, fill):                                                 # (B, n) from (B, stored)
            if matrix.shape[1] >= n:
                return matrix[:, :n]
            out = np.full((matrix.shape[0], n), fill, dtype=matrix.dtype)
            out[:, :matrix.shape[1]] = matrix
            return out

        keep = np.arange(S) < lengths[:, None]                                      # (B, S)
        ids = width(rows["input_ids"], S, self.pad_token_id).astype(np.int64)       # (B, S)
        if rows.pad_token_id != self.pad_token_id:                                  # stored with another pad id
            ids[~keep] = self.pad_token_id
        input_ids = torch.from_numpy(ids)
        batch = {"input_ids": input_ids,
                 "token_type_ids": torch.from_numpy(width(rows["token_type_ids"], S, 0).astype(np.int64)),
                 "attention_mask": torch.from_numpy(keep.astype(np.int64))}
        batch["next_sentence_label"] = torch.from_numpy(np.asarray(rows["next_sentence_label"], dtype=np.int64))
        counts = rows["num_predictions"]
        if self.mlm_format == "dense":
            labels = np.full((B, S), IGNORE_INDEX, dtype=np.int64)                 # (B, S)
            valid = np.arange(rows["masked_lm_positions"].shape[1]) < counts[:, None]
            r, c = np.nonzero(valid)
            labels[r, rows["masked_lm_positions"][r, c]] = rows["masked_lm_ids"][r, c]
            batch["labels"] = torch.from_numpy(labels)
        else:
            P = self._predictions(int(counts.max()))
            batch["masked_lm_positions"] = torch.from_numpy(width(rows["masked_lm_positions"], P, 0)
                                                            .astype(np.int64))     # (B, P)
            batch["labels"] = torch.from_numpy(width(rows["masked_lm_ids"], P, IGNORE_INDEX).astype(np.int64))
        if self.omit_full_mask and bool(keep.all()):
            del batch["attention_mask"]
        return batch

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        if isinstance(features, InstanceRows):
            return self._collate_rows(features)
        if not features:
            raise ValueError("cannot collate an empty list of instances")
        rows, positions, targets = [], [], []
        rng = self._generator() if self.dynamic_masking else None
        for f in features:
            ids = [int(t) for t in f["input_ids"]]
            if self.dynamic_masking:
                if len(f.get("masked_lm_positions", ()) or ()) > 0:
                    raise ValueError("dynamic_masking=True got instances that are already masked; build them with "
                                     "static_masking=False")
                ids, pos, lab = self.masking(ids, rng)
            else:
                if "masked_lm_positions" not in f or "masked_lm_ids" not in f:
                    raise ValueError("instances have no masked_lm_positions/masked_lm_ids: build them with "
                                     "static_masking=True or use DataCollatorForPreTraining(dynamic_masking=True)")
                pos, lab = [int(p) for p in f["masked_lm_positions"]], [int(t) for t in f["masked_lm_ids"]]
                if len(pos) != len(lab):
                    raise ValueError(f"masked_lm_positions ({len(pos)}) and masked_lm_ids ({len(lab)}) differ in length")
            rows.append(ids)
            positions.append(pos)
            targets.append(lab)

        B = len(rows)
        S = self._length(max(len(r) for r in rows))
        input_ids = torch.full((B, S), self.pad_token_id, dtype=torch.long)        # (B, S)
        token_type_ids = torch.zeros((B, S), dtype=torch.long)                     # (B, S)
        attention_mask = torch.zeros((B, S), dtype=torch.long)                     # (B, S)
        for b, (f, ids) in enumerate(zip(features, rows)):
            n = len(ids)
            input_ids[b, :n] = torch.tensor(ids)
            attention_mask[b, :n] = 1
            if "token_type_ids" in f:
                token_type_ids[b, :n] = torch.as_tensor(f["token_type_ids"], dtype=torch.long)
        batch = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
        if all("next_sentence_label" in f for f in features):
            nsp = [int(f["next_sentence_label"]) for f in features]
            if any(label != IGNORE_INDEX for label in nsp):       # single-segment instances: no NSP labels
                batch["next_sentence_label"] = torch.tensor(nsp)  # (B,)

        if self.mlm_format == "dense":
            labels = torch.full((B, S), IGNORE_INDEX, dtype=torch.long)            # (B, S)
            for b, (pos, lab) in enumerate(zip(positions, targets)):
                if pos:
                    labels[b, pos] = torch.tensor(lab)
            batch["labels"] = labels
        else:
            P = self._predictions(max(len(p) for p in positions))
            masked_lm_positions = torch.zeros((B, P), dtype=torch.long)            # (B, P)
            labels = torch.full((B, P), IGNORE_INDEX, dtype=torch.long)            # (B, P)
            for b, (pos, lab) in enumerate(zip(positions, targets)):
                masked_lm_positions[b, :len(pos)] = torch.tensor(pos, dtype=torch.long)
                labels[b, :len(lab)] = torch.tensor(lab, dtype=torch.long)
            batch["masked_lm_positions"] = masked_lm_positions
            batch["labels"] = labels
        if self.omit_full_mask and all(len(r) == S for r in rows):
            del batch["attention_mask"]
        return batch


class DataCollatorForCausalLM:
    """Batches for the left-to-right model (:class:`minibert.model.BertLMHeadModel`, Table 5's "LTR & No NSP").

    Takes unmasked instances (``static_masking=False``; single segments, ``sentence_task="none"``, as the paper's
    LTR model has no NSP) and returns ``input_ids``, ``token_type_ids``, ``attention_mask`` (B, S) padded on the
    right, and ``labels`` (B, S) = ``input_ids`` with -100 at padding; the model shifts them by one position.

    ``max_predictions_per_seq`` (default None: every position): score only as many positions per sequence as
    the masked LM would predict there, ``min(max_predictions_per_seq, max(1, round(n * masked_lm_prob)))`` for
    n tokens, drawn uniformly from the positions that have a next token, with a ``random.Random(seed)``. The
    batch then has ``prediction_positions`` (B, P) and ``labels`` (B, P), the tokens that follow them (-100 as
    padding). Not in the paper (its LTR model scores every token): it equalises the predictions and the
    vocabulary-softmax cost per step of the LTR and MLM models when compute is the budget.
    """

    def __init__(self, tokenizer, *, pad_to_multiple_of: int | None = None, max_predictions_per_seq: int | None = None,
                 masked_lm_prob: float = 0.15, seed: int = 0):
        _check_tokenizer(tokenizer)
        if pad_to_multiple_of is not None:
            _check_int("pad_to_multiple_of", pad_to_multiple_of, 1)
        if max_predictions_per_seq is not None:
            _check_int("max_predictions_per_seq", max_predictions_per_seq, 1)
        _check_prob("masked_lm_prob", masked_lm_prob, low_open=True)
        self.pad_token_id = tokenizer.pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.max_predictions_per_seq = max_predictions_per_seq
        self.masked_lm_prob = masked_lm_prob
        self.rng = random.Random(seed)

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty list of instances")
        if any(len(f.get("masked_lm_positions", ()) or ()) > 0 for f in features):
            raise ValueError("DataCollatorForCausalLM got masked instances; build them with static_masking=False")
        rows = [[int(t) for t in f["input_ids"]] for f in features]
        B, S = len(rows), max(len(r) for r in rows)
        if self.pad_to_multiple_of:
            S = -(-S // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((B, S), self.pad_token_id, dtype=torch.long)        # (B, S)
        token_type_ids = torch.zeros((B, S), dtype=torch.long)                     # (B, S)
        attention_mask = torch.zeros((B, S), dtype=torch.long)                     # (B, S)
        for b, (f, ids) in enumerate(zip(features, rows)):
            input_ids[b, :len(ids)] = torch.tensor(ids)
            attention_mask[b, :len(ids)] = 1
            if "token_type_ids" in f:
                token_type_ids[b, :len(ids)] = torch.as_tensor(f["token_type_ids"], dtype=torch.long)
        batch = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
        if self.max_predictions_per_seq is None:
            batch["labels"] = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)   # (B, S)
            return batch
        chosen = []
        for ids in rows:
            k = min(self.max_predictions_per_seq, max(1, int(round(len(ids) * self.masked_lm_prob))), len(ids) - 1)
            chosen.append(sorted(self.rng.sample(range(len(ids) - 1), max(k, 0))))
        P = max(1, max(len(c) for c in chosen))
        positions = torch.zeros((B, P), dtype=torch.long)                          # (B, P)
        labels = torch.full((B, P), IGNORE_INDEX, dtype=torch.long)                # (B, P)
        for b, (ids, c) in enumerate(zip(rows, chosen)):
            positions[b, :len(c)] = torch.tensor(c, dtype=torch.long)
            labels[b, :len(c)] = torch.tensor([ids[p + 1] for p in c], dtype=torch.long)
        batch["prediction_positions"] = positions
        batch["labels"] = labels
        return batch


# ============================================================================================ metrics
def accuracy_counts(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> tuple[int, int]:
    """(correct, counted) argmax predictions of ``logits`` (..., C) against ``labels`` (...), skipping ``ignore_index``."""
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match: "
                         f"logits must be labels' shape plus a class dimension")
    keep = labels != ignore_index
    correct = (logits.argmax(dim=-1) == labels) & keep
    return int(correct.sum()), int(keep.sum())


def masked_lm_accuracy(prediction_logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of masked tokens predicted exactly: dense (B, S, V) with (B, S) labels, or sparse (B, P, V) with (B, P).

    Positions labelled -100 are not counted. NaN when there is no masked position.
    """
    correct, total = accuracy_counts(prediction_logits, labels)
    return correct / total if total else float("nan")


def next_sentence_accuracy(seq_relationship_logits: torch.Tensor, next_sentence_label: torch.Tensor) -> float:
    """Share of pairs whose IsNext/NotNext class is right: logits (B, 2), labels (B,) with 0 = IsNext, 1 = random."""
    correct, total = accuracy_counts(seq_relationship_logits, next_sentence_label)
    return correct / total if total else float("nan")


class PretrainingMetrics:
    """Running masked-LM and NSP accuracy (and mean losses) over many batches, weighted by counts, not by batches.

    >>> metrics = PretrainingMetrics()
    >>> metrics.update(model(**batch), batch)   # doctest: +SKIP
    >>> metrics.compute()                       # doctest: +SKIP
    {'mlm_accuracy': ..., 'nsp_accuracy': ..., 'mlm_loss': ..., 'nsp_loss': ...}
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.mlm_correct = self.mlm_total = self.nsp_correct = self.nsp_total = 0
        self.loss_sums = {"mlm_loss": 0.0, "nsp_loss": 0.0}
        self.loss_counts = {"mlm_loss": 0, "nsp_loss": 0}

    @torch.no_grad()
    def update(self, outputs, batch: dict) -> None:
        logits = getattr(outputs, "prediction_logits", None)
        if logits is None:
            logits = getattr(outputs, "logits", None)
        if logits is not None and "labels" in batch:
            c, t = accuracy_counts(logits, batch["labels"])
            self.mlm_correct += c
            self.mlm_total += t
        nsp = getattr(outputs, "seq_relationship_logits", None)
        if nsp is not None and "next_sentence_label" in batch:
            c, t = accuracy_counts(nsp, batch["next_sentence_label"])
            self.nsp_correct += c
            self.nsp_total += t
        for name in ("mlm_loss", "nsp_loss"):
            value = getattr(outputs, name, None)
            if value is not None:
                self.loss_sums[name] += float(value)
                self.loss_counts[name] += 1

    def compute(self) -> dict[str, float]:
        nan = float("nan")
        out = {"mlm_accuracy": self.mlm_correct / self.mlm_total if self.mlm_total else nan,
               "nsp_accuracy": self.nsp_correct / self.nsp_total if self.nsp_total else nan}
        for name, total in self.loss_sums.items():
            out[name] = total / self.loss_counts[name] if self.loss_counts[name] else nan
        return out
