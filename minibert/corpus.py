"""Pre-training corpora: documents -> sentences -> token ids (the input of Google's create_pretraining_data.py).

BERT was pre-trained on BooksCorpus and English Wikipedia (Devlin et al. 2019, Section 3.1, "Pre-training
data"), fed to Google's ``create_pretraining_data.py`` as text files with **one sentence per line and a blank
line between documents**: next sentence prediction needs both boundaries. This module produces the same
structure with Hugging Face ``datasets``:

1. :func:`load_corpora` reads the book's two stand-in corpora (``wikipedia_summaries``, ``books``) as one
   ``Dataset`` of documents with a ``text`` column. For a reader online, ``load_dataset(name, streaming=True)``
   gives the real hub corpora as an ``IterableDataset``; everything below accepts both. The hub's BookCorpus has
   one sentence a row and no book boundaries: :func:`group_lines` makes pseudo-documents of consecutive rows.
2. :func:`split_sentences` is a small rule-based sentence splitter (documented below). Newlines are hard
   boundaries: the books have one paragraph a line.
3. :func:`tokenize_corpus` maps each document to ``sentence_ids``, a list of token-id lists (one per
   sentence), with ``Dataset.map(batched=True, num_proc=...)``: every sentence of a batch of documents goes
   through the tokenizer's fast batch path at once, the result is cached on disk under a fingerprint of the
   corpus and the tokenizer's vocabulary, and ``num_proc`` workers share the work.

Deviation from Google: their input files were sentence-split by an unspecified external tool; ours is a
regular-expression splitter, good enough for encyclopaedic and literary English but not perfect
(e.g. "in the U.S. The ..." stays one sentence).
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable, Iterator

__all__ = ["ABBREVIATIONS", "split_sentences", "load_corpora", "group_lines", "tokenize_corpus",
           "tokenizer_fingerprint", "iter_documents"]

# Words that end with a period without ending a sentence (compared lower-cased, without the period).
ABBREVIATIONS = frozenset("""
    mr mrs ms messrs dr prof st jr sr rev hon gen col lt capt sgt maj cmdr adm gov sen rep pres
    mt ft fig figs no nos vol vols pp ch sec art ed eds inc ltd co corp bros dept est approx ca cf vs
    jan feb mar apr jun jul aug sep sept oct nov dec
""".split())

# A candidate boundary: terminal punctuation, optional closing quotes/brackets, whitespace, and then (looked
# ahead, not consumed) optional opening quotes/brackets and an upper-case letter or a digit.
_BOUNDARY = re.compile(r"""([.!?]+)(["'\u201d\u2019)\]]*)\s+(?=["'\u201c\u2018(\[]*[A-Z0-9])""")
_LAST_WORD = re.compile(r"(\S+)$")
SPLITTER_VERSION = "1"   # part of the cache fingerprint: bump when the rules change


def _is_abbreviation(text_before: str) -> bool:
    """Whether the word that ends ``text_before`` (just before a '.') is an abbreviation or an initial."""
    m = _LAST_WORD.search(text_before)
    if m is None:
        return False
    word = m.group(1).lstrip("\"'(\u201c\u2018[")
    if not word:
        return False
    if len(word) == 1 and word.isalpha():            # an initial: "Arthur C. Clarke"
        return True
    if "." in word:                                  # "U.S.", "e.g.", "a.m."
        return True
    return word.lower() in ABBREVIATIONS


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences with a few documented rules.

    * Every newline ends a sentence (a line is a paragraph in the books corpus); blank lines are dropped.
    * Inside a line, a sentence ends after ``.``, ``!`` or ``?`` (repeated or not, optionally followed by
      closing quotes or brackets) when whitespace and then an upper-case letter or a digit follow
      (possibly behind opening quotes or brackets).
    * A ``.`` does not end a sentence after an abbreviation from :data:`ABBREVIATIONS` ("Mr."), after a
      single letter ("C. Clarke") or after a word containing a period ("U.S.", "e.g.").

    >>> split_sentences('Mr. Knightley came. "Is it so?" said Emma. She smiled.')
    ['Mr. Knightley came.', '"Is it so?" said Emma.', 'She smiled.']
    """
    if not isinstance(text, str):
        raise TypeError(f"split_sentences expects a str, got {type(text).__name__}")
    sentences = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        start = 0
        for m in _BOUNDARY.finditer(line):
            if m.group(1) == "." and _is_abbreviation(line[start:m.start()]):
                continue
            end = m.end(2)                           # keep the punctuation and closing quotes
            sentence = line[start:end].strip()
            if sentence:
                sentences.append(sentence)
            start = m.end()
        tail = line[start:].strip()
        if tail:
            sentences.append(tail)
    return sentences


def load_corpora(names: Iterable[str] = ("wikipedia_summaries", "books"), *, max_documents: int | None = None):
    """The named corpora as one ``datasets.Dataset`` of documents with columns ``source``, ``id``, ``title``, ``text``.

    ``max_documents`` keeps the first documents of each corpus (for quick chapters and tests).
    """
    import datasets

    from .data import load_dataset

    if isinstance(names, str):
        names = (names,)
    if max_documents is not None and (not isinstance(max_documents, int) or max_documents < 1):
        raise ValueError(f"max_documents must be a positive int or None, got {max_documents!r}")
    parts = []
    for name in names:
        ds = load_dataset(name, "train").select_columns(["id", "title", "text"])
        if max_documents is not None:
            ds = ds.select(range(min(max_documents, len(ds))))
        ds = ds.add_column("source", [name] * len(ds))
        parts.append(ds.select_columns(["source", "id", "title", "text"]))
    if not parts:
        raise ValueError("load_corpora needs at least one corpus name")
    return datasets.concatenate_datasets(parts)


def group_lines(corpus, lines_per_document: int, *, text_column: str = "text"):
    """Join every ``lines_per_document`` consecutive rows into one document (lines separated by newlines).

    For corpora stored one sentence a row without document boundaries, such as BookCorpus on the hub
    (``load_dataset("books", streaming=True)`` online): without grouping, every "document" would be one sentence
    and every next-sentence pair would be random. Works on a ``Dataset`` and on a streamed ``IterableDataset``;
    the result has the single column ``text``.
    """
    import datasets

    if isinstance(lines_per_document, bool) or not isinstance(lines_per_document, int) or lines_per_document < 1:
        raise ValueError(f"lines_per_document must be a positive int, got {lines_per_document!r}")
    if not isinstance(corpus, (datasets.Dataset, datasets.IterableDataset)):
        raise TypeError(f"corpus must be a datasets.Dataset or IterableDataset, got {type(corpus).__name__}")
    names = corpus.column_names
    if names is not None and text_column not in names:
        raise ValueError(f"corpus has no column {text_column!r}; its columns are {names}")
    return corpus.map(lambda batch: {"text": ["\n".join(batch[text_column])]}, batched=True,
                      batch_size=lines_per_document, remove_columns=names)


def tokenizer_fingerprint(tokenizer) -> str:
    """A stable hash of what decides a tokenizer's output: its class, vocabulary and lower-casing."""
    h = hashlib.sha256()
    h.update(type(tokenizer).__qualname__.encode())
    h.update(repr(getattr(tokenizer, "do_lower_case", None)).encode())
    for token, index in sorted(tokenizer.vocab.items(), key=lambda kv: kv[1]):
        h.update(f"{index}\t{token}\n".encode())
    return h.hexdigest()[:16]


def _check_tokenizer(tokenizer) -> None:
    missing = [a for a in ("vocab", "convert_ids_to_tokens", "cls_token_id", "sep_token_id", "mask_token_id",
                           "pad_token_id") if not hasattr(tokenizer, a)]
    if missing or not callable(tokenizer):
        raise TypeError(f"tokenizer must be callable and have vocab, convert_ids_to_tokens and the special-token "
                        f"ids (e.g. minibert.tokenizer.BertTokenizer); {type(tokenizer).__name__} lacks "
                        f"{', '.join(missing) or '__call__'}")


class _SentenceTokenizer:
    """The function given to ``Dataset.map``: a batch of documents -> their sentences' token ids.

    A module-level class (not a closure) so that ``num_proc`` workers can pickle it.
    """

    def __init__(self, tokenizer, text_column: str):
        self.tokenizer = tokenizer
        self.text_column = text_column

    def __call__(self, batch: dict) -> dict:
        per_doc = [split_sentences(text) for text in batch[self.text_column]]
        flat = [s for sentences in per_doc for s in sentences]
        ids = self.tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []   # fast batch path
        out, k = [], 0
        for sentences in per_doc:
            doc = [list(x) for x in ids[k:k + len(sentences)] if len(x) > 0]   # drop sentences with no tokens
            k += len(sentences)
            out.append(doc)
        return {"sentence_ids": out}


def tokenize_corpus(corpus, tokenizer, *, text_column: str = "text", num_proc: int | None = None,
                    batch_size: int = 64, load_from_cache_file: bool = True):
    """Split every document into sentences and tokenize them: a new column ``sentence_ids`` (list of lists of ids).

    ``corpus`` is a ``datasets.Dataset`` (cached on disk and parallel over ``num_proc`` processes) or a
    ``datasets.IterableDataset`` (streamed: mapped lazily, one batch at a time). The other columns are dropped.
    The cache fingerprint combines the corpus's fingerprint, :func:`tokenizer_fingerprint` and the splitter's
    version, so a second call with the same inputs reads the cached result instead of tokenizing again.
    """
    import datasets

    _check_tokenizer(tokenizer)
    fn = _SentenceTokenizer(tokenizer, text_column)
    if isinstance(corpus, datasets.IterableDataset):
        columns = corpus.column_names
        return corpus.map(fn, batched=True, batch_size=batch_size, remove_columns=columns)
    if not isinstance(corpus, datasets.Dataset):
        raise TypeError(f"corpus must be a datasets.Dataset or IterableDataset, got {type(corpus).__name__}")
    if text_column not in corpus.column_names:
        raise ValueError(f"corpus has no column {text_column!r}; its columns are {corpus.column_names}")
    key = f"{corpus._fingerprint}|{tokenizer_fingerprint(tokenizer)}|{text_column}|split{SPLITTER_VERSION}"
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16]
    features = datasets.Features({"sentence_ids": datasets.Sequence(datasets.Sequence(datasets.Value("int32")))})
    return corpus.map(fn, batched=True, batch_size=batch_size, num_proc=num_proc, remove_columns=corpus.column_names,
                      features=features, new_fingerprint=fingerprint, load_from_cache_file=load_from_cache_file,
                      desc="tokenizing")


def iter_documents(tokenized, documents_per_shard: int | None = None) -> Iterator[list[list[list[int]]]]:
    """Yield shards of tokenized documents (lists of sentences of ids) from ``tokenize_corpus``'s output.

    With ``documents_per_shard=None`` the whole (in-memory) corpus is one shard. Otherwise shards hold that
    many documents, like the separate input files Google ran create_pretraining_data.py on; a last shard
    with fewer than two documents is merged into the one before (random next sentences need another document).
    """
    import datasets

    if documents_per_shard is not None and (not isinstance(documents_per_shard, int) or documents_per_shard < 2):
        raise ValueError(f"documents_per_shard must be an int >= 2 or None, got {documents_per_shard!r}")
    if documents_per_shard is None:
        if isinstance(tokenized, datasets.Dataset):
            yield tokenized[0:len(tokenized)]["sentence_ids"]    # a slice gives plain lists
        else:
            yield [row["sentence_ids"] for row in tokenized]
        return
    if isinstance(tokenized, datasets.Dataset):
        rows = (tokenized[i:i + documents_per_shard]["sentence_ids"] for i in range(0, len(tokenized), documents_per_shard))
        shards = rows
    else:
        def _stream():
            shard = []
            for row in tokenized:
                shard.append(row["sentence_ids"])
                if len(shard) == documents_per_shard:
                    yield shard
                    shard = []
            if shard:
                yield shard
        shards = _stream()
    pending = None
    for shard in shards:
        if pending is not None:
            if len(shard) < 2:
                shard = pending + shard
            else:
                yield pending
        pending = shard
    if pending is not None:
        yield pending
