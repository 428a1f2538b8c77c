"""Learning a WordPiece vocabulary from a corpus.

Google never released the code that built BERT's vocabulary; the paper (Section 3, "Input/Output
Representations") only says it uses WordPiece embeddings (Wu et al., 2016) with a 30,000-token vocabulary.
WordPiece comes from Schuster & Nakajima (2012): start from single characters and repeatedly add the new
unit, made of two existing ones, that most increases the likelihood of the training data under a
language model over units. We use the cheap, widely taught form of that criterion (also the one Hugging
Face's course describes): merge the adjacent pair (a, b) with the highest

    score(a, b) = count(ab) / (count(a) * count(b))

i.e. the pair whose parts occur together far more often than chance (a pointwise mutual information;
a unigram model's likelihood gain from the merge grows with it). Plain BPE, by contrast, merges the most
*frequent* pair; the ``tokenizers`` library's WordPieceTrainer is BPE under the hood. We chose the
likelihood score because it is what makes WordPiece WordPiece, and the chapter compares the two.
``min_frequency`` keeps pairs seen fewer times out of the running: without it the score, which is largest
for pairs of rare units that always occur together, spends the first merges on one-off strings.

Speed (about 2M words in well under a minute on one core) comes from three things:
1. the corpus is reduced once to a word -> count dictionary (about 60k distinct words), so a merge never
   touches the text, only the distinct words that contain the pair;
2. pair counts are updated incrementally: when (a, b) merges, only the words containing it are re-split,
   and an index pair -> words finds them;
3. a heap keeps the best pair; when a merge changes counts, the affected pairs get a fresh heap entry and
   stale entries are discarded when popped (lazy deletion).

Words are split by the same BasicTokenizer as inference (cleaning, lowercasing, punctuation), so the
vocabulary matches how it will be used; the first character of a word is a plain unit, the rest are
``##`` units, so a word's units are exactly the pieces WordPiece inference can produce. Inference then
uses greedy longest-match-first (minibert.tokenizer), which need not reproduce the training merges.
"""
from __future__ import annotations

import heapq
import math
from collections import Counter
from typing import Iterable

from .tokenizer import SPECIAL_TOKENS, BasicTokenizer, BertTokenizer


def count_words(texts: Iterable[str], do_lower_case: bool = True, tokenize_chinese_chars: bool = True) -> Counter:
    """Word -> count over a corpus, words as BERT's basic tokenizer splits them (done once)."""
    basic = BasicTokenizer(do_lower_case, tokenize_chinese_chars)
    counts: Counter = Counter()
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
        counts.update(basic.tokenize(text))
    return counts


def train_wordpiece(word_counts: dict[str, int], vocab_size: int = 8000, min_frequency: int = 2,
                    limit_alphabet: int | None = 1000, special_tokens=SPECIAL_TOKENS,
                    score: str = "likelihood") -> list[str]:
    """Learn a WordPiece vocabulary (a list, index = id) from word counts by likelihood-score merges.

    The vocabulary is ``special_tokens``, then the alphabet (the ``limit_alphabet`` most frequent characters,
    each as a word start and as a ``##`` continuation, both only if seen), then merged units in the order
    learned, until ``vocab_size`` entries or no pair occurs ``min_frequency`` times.
    """
    if not isinstance(word_counts, dict):
        raise TypeError(f"word_counts must be a dict word -> count, got {type(word_counts).__name__}")
    if vocab_size < len(special_tokens) + 1:
        raise ValueError(f"vocab_size={vocab_size} leaves no room beyond the {len(special_tokens)} special tokens")
    if score not in ("likelihood", "pmi"):
        raise ValueError(f"score must be 'likelihood' or 'pmi', got {score!r}")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")

    # ---- the alphabet: frequent characters only; words with others cannot be learned from
    char_counts: Counter = Counter()
    for w, c in word_counts.items():
        for ch in w:
            char_counts[ch] += c
    keep = {ch for ch, _ in sorted(char_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit_alphabet]}
    words = sorted((w, c) for w, c in word_counts.items() if c > 0 and all(ch in keep for ch in w))

    vocab: list[str] = list(special_tokens)
    index: dict[str, int] = {t: i for i, t in enumerate(vocab)}

    def sym(token: str) -> int:
        if token not in index:
            index[token] = len(vocab)
            vocab.append(token)
        return index[token]

    seqs: list[list[int]] = []
    freqs: list[int] = []
    units = sorted({w[0] for w, _ in words} | {"##" + ch for w, _ in words for ch in w[1:]})
    for u in units:
        sym(u)
    for w, c in words:
        seqs.append([index[w[0]]] + [index["##" + ch] for ch in w[1:]])
        freqs.append(c)

    # ---- counts of units and of adjacent pairs, and where each pair occurs
    sym_count: list[int] = [0] * len(vocab)
    pair_count: dict[tuple[int, int], int] = {}
    pair_words: dict[tuple[int, int], set[int]] = {}
    by_sym: dict[int, set[tuple[int, int]]] = {}

    def add_pairs(wi: int, seq: list[int], f: int, touched: set) -> None:
        for p in zip(seq, seq[1:]):
            if p not in pair_count:
                pair_count[p] = 0
                pair_words[p] = set()
                by_sym.setdefault(p[0], set()).add(p)
                by_sym.setdefault(p[1], set()).add(p)
            pair_count[p] += f
            pair_words[p].add(wi)
            touched.add(p)

    def remove_pairs(wi: int, seq: list[int], f: int, touched: set) -> None:
        for p in zip(seq, seq[1:]):
            pair_count[p] -= f
            pair_words[p].discard(wi)
            touched.add(p)

    touched: set = set()
    for wi, (seq, f) in enumerate(zip(seqs, freqs)):
        for s in seq:
            sym_count[s] += f
        add_pairs(wi, seq, f, touched)

    heap: list[tuple[float, int, int]] = []
    log_total = math.log(sum(sym_count))   # N, the number of units, fixed at its starting value

    def pair_score(c: int, a: int, b: int) -> float:
        pmi = math.log(c) - math.log(sym_count[a]) - math.log(sym_count[b]) + log_total
        return c * pmi if score == "likelihood" else pmi

    def push(p: tuple[int, int]) -> None:
        c = pair_count.get(p, 0)
        if c >= min_frequency:
            heapq.heappush(heap, (-pair_score(c, *p), p[0], p[1]))

    for p in touched:
        push(p)

    # ---- merge until the vocabulary is full
    while len(vocab) < vocab_size and heap:
        neg, a, b = heapq.heappop(heap)
        p = (a, b)
        c = pair_count.get(p, 0)
        if c < min_frequency or -neg != pair_score(c, a, b):
            continue   # a stale entry; the pair's current score has its own entry
        ta, tb = vocab[a], vocab[b]
        new = sym(ta + tb[2:])                      # tb is always a '##' unit
        if new == len(sym_count):                  # a new unit (the same string may come from two merges)
            sym_count.append(0)
        touched = set()
        for wi in list(pair_words[p]):
            seq, f = seqs[wi], freqs[wi]
            remove_pairs(wi, seq, f, touched)
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
                    out.append(new)
                    sym_count[a] -= f
                    sym_count[b] -= f
                    sym_count[new] += f
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[wi] = out
            add_pairs(wi, out, f, touched)
        for q in touched:
            if pair_count[q] <= 0:   # forget pairs that no longer occur
                del pair_count[q], pair_words[q]
                by_sym[q[0]].discard(q)
                by_sym[q[1]].discard(q)
        # Every pair whose score changed gets a fresh entry: counts changed, or a's or b's count did.
        for q in touched | by_sym.get(a, set()) | by_sym.get(b, set()):
            push(q)
    return vocab


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8000, do_lower_case: bool = True,
                    min_frequency: int = 2, limit_alphabet: int | None = 1000, **tokenizer_kwargs) -> BertTokenizer:
    """Count words, learn a vocabulary, and return a BertTokenizer that uses it."""
    counts = count_words(texts, do_lower_case)
    vocab = train_wordpiece(counts, vocab_size, min_frequency, limit_alphabet)
    return BertTokenizer({t: i for i, t in enumerate(vocab)}, do_lower_case=do_lower_case, **tokenizer_kwargs)
