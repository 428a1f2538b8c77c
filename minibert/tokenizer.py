"""BERT's WordPiece tokenizer: text -> word pieces -> ids, with the [CLS] A [SEP] B [SEP] input format.

Section 3 of the paper ("Input/Output Representations") describes the input: WordPiece embeddings
(Wu et al., 2016) with a 30,000-token vocabulary, a [CLS] token first, [SEP] between and after the two
segments, and a segment embedding (``token_type_ids``) telling A from B. Google's reference code
(google-research/bert, tokenization.py) does it in two stages, and so do we:

1. :class:`BasicTokenizer` cleans the text (drops U+0000, U+FFFD and control characters, maps every
   whitespace character to a space), puts spaces around CJK ideographs, lowercases and strips accents
   (NFD, then drop the non-spacing marks) when ``do_lower_case`` (``strip_accents`` can decide the
   accents separately, with Hugging Face's meaning), and splits on whitespace and around
   every punctuation character (ASCII symbols 33-47, 58-64, 91-96, 123-126 and Unicode P*).
2. :class:`WordpieceTokenizer` splits each word greedily, longest match first, into vocabulary pieces;
   pieces after the first carry a ``##`` prefix; a word that cannot be split, or is longer than
   ``max_input_chars_per_word`` characters, becomes ``[UNK]``.

:class:`BertTokenizer` puts both together behind a Hugging Face-like interface. Every character of the
normalised text remembers which character of the original text it came from, so the pure-Python path
returns offsets into the original string, as Hugging Face's ``BertTokenizerFast`` does.

Two paths give the same ids: this pure-Python one (readable; used for single texts), and a fast one that
configures the Rust ``tokenizers`` library with the same vocabulary and options (used for batches;
``use_fast=`` chooses). Truncation, stride windows, special tokens and padding are done by the same Python
code for both paths, so only the text -> pieces step differs, and the tests check it is identical.

Where Google's tokenization.py and Hugging Face's (Rust) tokenizer disagree, minibert follows Hugging Face,
because BERT checkpoints are used with it today and the book's tests check parity with it:

* ``max_input_chars_per_word``: Google 200, Hugging Face 100; a parameter, default 100.
* Special tokens written in the text (``"the [MASK] sat"``) stay whole, as in HF; Google's tokenizer splits
  them into ``[``, ``mask``, ``]``. Matching is exact and case-sensitive (``[mask]`` is split).
* Unassigned code points (category Cn): Google drops them as control characters; HF keeps them.
* U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR: Google keeps them as word characters; HF treats
  them as whitespace (Rust's ``char::is_whitespace``).
* Lowercasing: Google calls ``str.lower()`` on whole words, which turns a word-final capital sigma into
  'ς'; HF lowercases one character at a time ('σ'). Google lowercases before stripping accents, HF after;
  the results agree.
* Unicode version: the categories come from Python's ``unicodedata`` (Unicode 14.0 on Python 3.11), as in
  Google's code; the ``tokenizers`` library carries older tables, so about 550 rarely used characters
  (punctuation, format and combining characters added or re-categorised since) are classified
  differently by the fast path. tests/test_tokenizer.py lists them; none occurs in the book's corpora.
* CJK Extension E: Google's (and HF's slow tokenizer's) range starts at U+2B820, as Unicode does; the
  Rust ``tokenizers`` library starts it at U+2B920. minibert follows Google, so U+2B820..U+2B91F stand
  alone in the pure-Python path and not in the fast path.
* ``max_length`` smaller than or equal to the number of special tokens raises a ValueError (HF silently
  returns the text untruncated or only the special tokens).

Two places where minibert deliberately follows Google and Hugging Face's fast tokenizer differs:

* Pair truncation ``'longest_first'`` removes one token at a time from the longer sequence, from B on a
  tie (Google's ``_truncate_seq_pair``), so when both are cut A keeps the odd token: "one two three four
  five" + "six seven eight nine ten" with ``max_length=10`` keeps four words of A and three of B. The Rust
  ``tokenizers`` library (BertTokenizerFast) gives the odd token to B. Both of minibert's paths use
  Google's rule (:func:`longest_first_lengths`); this reaches every GLUE pair task.
* Offsets cover the combining marks that accent stripping removed: in "cafe\u0301" (a decomposed é) the
  token ``cafe`` spans all five characters, so an answer cut from the text by offsets keeps its accent.
  Google maps answers through whitespace-separated words and has no such gap; HF's offsets end before the
  mark.
"""
from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


# ----------------------------------------------------------------------------------------------------
# Character classes (Hugging Face's conventions; see the module docstring for where Google differs)

def is_whitespace(ch: str) -> bool:
    """Space separators (Zs), tab, newline, carriage return, and U+2028/U+2029 (Zl, Zp)."""
    return ch in " \t\n\r\u2028\u2029" or unicodedata.category(ch) == "Zs"


def is_control(ch: str) -> bool:
    """Control, format and private-use characters (Cc, Cf, Co, Cs), except tab, newline and CR."""
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs")


def is_punctuation(ch: str) -> bool:
    """ASCII symbols (33-47, 58-64, 91-96, 123-126: '$', '+', '^', '`' are not Unicode P*) or Unicode P*."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_cjk(ch: str) -> bool:
    """CJK Unified Ideographs (and extensions, compatibility ideographs); not Hangul, Hiragana, Katakana."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def load_vocab(path) -> dict[str, int]:
    """Read a vocab.txt (one token a line; the line number is the id) into a dict token -> id."""
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\n")] = i
    return vocab


# ----------------------------------------------------------------------------------------------------
# Stage 1: the basic tokenizer

# Per-character classes after normalisation.
_DROP, _SPACE, _ALONE, _WORD = 0, 1, 2, 3
# ASCII text without control characters takes a regex shortcut (most English text): same result.
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ASCII_WORDS = re.compile(r"[^\s!-/:-@\[-`{-~]+|[!-/:-@\[-`{-~]")


class BasicTokenizer:
    """Clean, normalise and split text into words and punctuation (Google's BasicTokenizer).

    ``strip_accents`` (NFD, then drop the non-spacing marks, category Mn) has Hugging Face's meaning: None
    (default) strips exactly when ``do_lower_case``, as Google's code always does; True or False decide on
    their own, so ``do_lower_case=True, strip_accents=False`` lowercases and keeps accents (the setting of
    some published uncased-but-accented models; Google's tokenization.py cannot express it). With a cased
    vocabulary pass ``do_lower_case=False``.
    """

    def __init__(self, do_lower_case: bool = True, tokenize_chinese_chars: bool = True,
                 strip_accents: bool | None = None):
        if strip_accents not in (None, True, False):
            raise ValueError(f"strip_accents must be None, True or False, got {strip_accents!r}")
        self.do_lower_case = bool(do_lower_case)
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.strip_accents = strip_accents
        self._strip = self.do_lower_case if strip_accents is None else bool(strip_accents)
        self._cache: dict[str, tuple] = {}   # char -> tuple of (normalised char, class)

    def normalize_char(self, ch: str) -> tuple:
        """What one original character becomes: a tuple of (char, class) pairs (empty when dropped)."""
        hit = self._cache.get(ch)
        if hit is not None:
            return hit
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or is_control(ch):
            out = ()
        elif is_whitespace(ch):
            out = ((" ", _SPACE),)
        else:
            chars = ch
            if self._strip:          # strip accents first, then lowercase one character at a time (HF)
                chars = "".join(c for c in unicodedata.normalize("NFD", ch) if unicodedata.category(c) != "Mn")
            if self.do_lower_case:
                chars = "".join(c.lower() for c in chars)
            if self.tokenize_chinese_chars and is_cjk(ch):
                out = tuple((c, _ALONE) for c in chars)
            else:
                out = tuple((c, _SPACE if is_whitespace(c) else _ALONE if is_punctuation(c) else _WORD)
                            for c in chars)
        self._cache[ch] = out
        return out

    def split(self, text: str) -> list[tuple[str, int, list | None]]:
        """Words of ``text`` as (word, start, positions).

        ``positions[k]`` is the index in ``text`` of the character that produced the word's k-th character;
        when positions is None the word is the contiguous slice starting at ``start`` (the ASCII shortcut).
        """
        if text.isascii() and not _ASCII_CONTROL.search(text):
            if self.do_lower_case:
                text = text.lower()
            return [(m.group(), m.start(), None) for m in _ASCII_WORDS.finditer(text)]
        words = []
        cur: list[str] = []
        pos: list[int] = []
        for i, ch in enumerate(text):
            for c, kind in self.normalize_char(ch):
                if kind == _WORD:
                    cur.append(c)
                    pos.append(i)
                    continue
                if cur:
                    words.append(("".join(cur), pos[0], pos))
                    cur, pos = [], []
                if kind == _ALONE:
                    words.append((c, i, [i]))
        if cur:
            words.append(("".join(cur), pos[0], pos))
        return words

    def tokenize(self, text: str) -> list[str]:
        """The words of ``text``, normalised (Google's BasicTokenizer.tokenize)."""
        return [w for w, _, _ in self.split(text)]


# ----------------------------------------------------------------------------------------------------
# Stage 2: WordPiece

class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece (Wu et al., 2016; Google's WordpieceTokenizer).

    Each word is split left to right, always taking the longest vocabulary entry that matches; pieces
    after the first are looked up with the ``##`` prefix. If some position matches nothing, the whole
    word becomes ``unk_token``; so does a word longer than ``max_input_chars_per_word`` characters.
    """

    def __init__(self, vocab: dict[str, int], unk_token: str = "[UNK]", max_input_chars_per_word: int = 100):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self._cache: dict[str, tuple] = {}

    def split_word(self, word: str) -> tuple:
        """Pieces of one word as (token, start, end) with character spans into ``word``."""
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        n = len(word)
        if n > self.max_input_chars_per_word:
            out = ((self.unk_token, 0, n),)
        else:
            pieces = []
            start = 0
            while start < n:
                end = n
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        break
                    end -= 1
                if end == start:   # nothing matched: the whole word is unknown
                    pieces = [(self.unk_token, 0, n)]
                    break
                pieces.append((piece, start, end))
                start = end
            out = tuple(pieces)
        if len(self._cache) > 200_000:
            self._cache.clear()
        self._cache[word] = out
        return out

    def tokenize(self, text: str) -> list[str]:
        """Pieces of already basic-tokenized, whitespace-separated text (Google's interface)."""
        return [p for word in text.split() for p, _, _ in self.split_word(word)]


# ----------------------------------------------------------------------------------------------------
# The full tokenizer

class BatchEncoding(dict):
    """The dict returned by :meth:`BertTokenizer.__call__`; keys are also attributes.

    :meth:`word_ids` tells which word each token came from, as transformers' fast tokenizers do.
    """

    _word_ids: list | None = None

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """The word index of every token of sequence ``batch_index`` (None for [CLS], [SEP] and padding).

        Words are the input words with ``is_split_into_words=True`` (what token labels are aligned to), else
        the words of the text after splitting on whitespace and punctuation. In a pair each text counts
        its words from 0. Raises IndexError for a ``batch_index`` outside the batch.
        """
        if self._word_ids is None:
            raise ValueError("this BatchEncoding carries no word ids (it was not made by BertTokenizer.__call__)")
        if not -len(self._word_ids) <= batch_index < len(self._word_ids):
            raise IndexError(f"batch_index {batch_index} is out of range for a batch of {len(self._word_ids)}")
        return list(self._word_ids[batch_index])

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device):
        """Move every tensor to ``device`` (only with return_tensors='pt')."""
        for k, v in self.items():
            if hasattr(v, "to"):
                self[k] = v.to(device)
        return self


_TRUNCATION = {True: "longest_first", "longest_first": "longest_first", "only_first": "only_first",
               "only_second": "only_second", False: None, "do_not_truncate": None}
_PADDING = {True: "longest", "longest": "longest", "max_length": "max_length", False: None, "do_not_pad": None}


def _windows(ids: list, offs: list, max_len: int, stride: int) -> list:
    """Cut a sequence to ``max_len`` tokens; the overflow comes back as windows overlapping by ``stride``.

    Returns [(ids, offsets), ...], the kept part first. Same windows as tokenizers' Encoding.truncate:
    windows start every ``max_len - stride`` tokens until one reaches the end.
    """
    n = len(ids)
    if max_len >= n:
        return [(ids, offs)]
    if max_len == 0:
        return [([], []), (ids, offs)]
    if stride >= max_len:
        raise ValueError(f"stride={stride} must be smaller than the number of tokens kept from the sequence "
                         f"being truncated ({max_len}, i.e. max_length minus the special tokens and the other "
                         f"sequence)")
    step = max_len - stride
    out = []
    for start in range(0, n, step):
        stop = min(start + max_len, n)
        out.append((ids[start:stop], offs[start:stop]))
        if stop == n:
            break
    return out


def longest_first_lengths(len_a: int, len_b: int, room: int) -> tuple[int, int]:
    """How many tokens of A and of B 'longest_first' keeps so that together they fit ``room``.

    Google's ``_truncate_seq_pair`` (run_classifier.py): remove one token at a time from the longer
    sequence, from B when they are equal. So the longer one shrinks to the shorter one's length, then
    both shrink together, B first: A gets ``ceil(room / 2)`` and B ``floor(room / 2)``. (The Rust
    ``tokenizers`` library, and so transformers' fast tokenizers, give the odd token to B instead.)
    """
    total = len_a + len_b
    if total <= room:
        return len_a, len_b
    short, long_ = min(len_a, len_b), max(len_a, len_b)
    if room - short >= short:          # cutting the longer one alone is enough
        keep_short, keep_long = short, room - short
        return (keep_short, keep_long) if len_a <= len_b else (keep_long, keep_short)
    return (room + 1) // 2, room // 2  # both cut to about half; A (cut second on ties) keeps the odd token


def _check_text(x, where: str) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, (bytes, bytearray)):
        raise TypeError(f"{where} is bytes; decode it to str first (e.g. text.decode('utf-8'))")
    raise TypeError(f"{where} must be a str, got {type(x).__name__}")


class BertTokenizer:
    """BERT's tokenizer with a Hugging Face-like interface (see the module docstring).

    >>> tok = BertTokenizer.from_pretrained(vocab_path())
    >>> tok("Hello, world!")["input_ids"]
    [101, 7592, 1010, 2088, 999, 102]
    """

    def __init__(self, vocab, do_lower_case: bool = True, max_input_chars_per_word: int = 100,
                 tokenize_chinese_chars: bool = True, model_max_length: int = 512, use_fast: bool = True,
                 strip_accents: bool | None = None, clean_up_tokenization_spaces: bool = False,
                 unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]"):
        if isinstance(vocab, (str, Path)):
            vocab = load_vocab(vocab)
        if not isinstance(vocab, dict):
            raise TypeError(f"vocab must be a dict token -> id or a path to vocab.txt, got {type(vocab).__name__}")
        specials = dict(unk_token=unk_token, sep_token=sep_token, pad_token=pad_token, cls_token=cls_token,
                        mask_token=mask_token)
        missing = [t for t in specials.values() if t not in vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks the special tokens {missing}; a BERT vocab.txt must contain "
                             f"{list(specials.values())}")
        if int(max_input_chars_per_word) < 1:
            raise ValueError(f"max_input_chars_per_word must be positive, got {max_input_chars_per_word}")
        self.vocab = vocab
        self.ids_to_tokens = {i: t for t, i in vocab.items()}
        self.do_lower_case = bool(do_lower_case)
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.model_max_length = int(model_max_length)
        self.use_fast = bool(use_fast)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        for name, tok in specials.items():
            setattr(self, name, tok)
            setattr(self, name + "_id", vocab[tok])
        self.all_special_tokens = list(specials.values())
        self.all_special_ids = [vocab[t] for t in self.all_special_tokens]
        # Special tokens written in the text ("the [MASK] sat") stay whole, as in Hugging Face: they are
        # cut out before cleaning and splitting (Google's tokenizer would split them into "[", "mask", "]").
        self._special_re = re.compile("|".join(re.escape(t) for t in sorted(set(self.all_special_tokens),
                                                                           key=len, reverse=True)))
        self.basic_tokenizer = BasicTokenizer(do_lower_case, tokenize_chinese_chars, strip_accents)
        self.strip_accents = self.basic_tokenizer.strip_accents
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab, unk_token, max_input_chars_per_word)
        self._backend = None

    # -- loading and saving ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path, do_lower_case: bool | None = None, max_input_chars_per_word: int | None = None,
                        **kwargs) -> "BertTokenizer":
        """Load from a vocab.txt or from a directory holding one (and maybe a tokenizer_config.json).

        Options not given are read from the directory's tokenizer_config.json when there is one (also
        ``strip_accents``, ``clean_up_tokenization_spaces``, ``tokenize_chinese_chars``, ``model_max_length``),
        and otherwise default to do_lower_case=True, max_input_chars_per_word=100.
        """
        if path is None or not isinstance(path, (str, Path)):
            raise TypeError(f"path must be a directory or a vocab.txt path, got {type(path).__name__}")
        path = Path(path)
        config = {}
        if path.is_dir():
            if (path / "tokenizer_config.json").is_file():
                config = json.loads((path / "tokenizer_config.json").read_text())
            vocab_file = path / "vocab.txt"
        else:
            vocab_file = path
        if not vocab_file.is_file():
            raise ValueError(f"no vocabulary file at {vocab_file}")
        if do_lower_case is None:
            do_lower_case = config.get("do_lower_case", True)
        if max_input_chars_per_word is None:
            max_input_chars_per_word = config.get("max_input_chars_per_word", 100)
        for key in ("tokenize_chinese_chars", "model_max_length", "strip_accents", "clean_up_tokenization_spaces"):
            if key in config and key not in kwargs:
                kwargs[key] = config[key]
        if kwargs.get("strip_accents") not in (None, True, False):
            raise ValueError(f"strip_accents must be null, true or false, got {kwargs['strip_accents']!r} "
                             f"(from {path / 'tokenizer_config.json' if path.is_dir() else 'the arguments'})")
        return cls(load_vocab(vocab_file), do_lower_case=do_lower_case,
                   max_input_chars_per_word=max_input_chars_per_word, **kwargs)

    def save_pretrained(self, directory) -> list[str]:
        """Write vocab.txt, tokenizer_config.json and tokenizer.json; transformers' AutoTokenizer loads them."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        ids = sorted(self.ids_to_tokens)
        if ids != list(range(len(ids))):
            raise ValueError("vocabulary ids must be 0..n-1 without gaps to be saved as vocab.txt")
        from .atomic import atomic_path, atomic_write_text

        atomic_write_text(directory / "vocab.txt", "".join(self.ids_to_tokens[i] + "\n" for i in ids))
        config = {"tokenizer_class": "BertTokenizer", "do_lower_case": self.do_lower_case,
                  "strip_accents": self.strip_accents, "tokenize_chinese_chars": self.tokenize_chinese_chars,
                  "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
                  "max_input_chars_per_word": self.max_input_chars_per_word,
                  "model_max_length": self.model_max_length,
                  "unk_token": self.unk_token, "sep_token": self.sep_token, "pad_token": self.pad_token,
                  "cls_token": self.cls_token, "mask_token": self.mask_token}
        atomic_write_text(directory / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
        with atomic_path(directory / "tokenizer.json") as tmp:
            self.backend_tokenizer.save(str(tmp))
        return [str(directory / n) for n in ("vocab.txt", "tokenizer_config.json", "tokenizer.json")]

    # -- the fast path ---------------------------------------------------------------------------------
    @property
    def backend_tokenizer(self):
        """A ``tokenizers.Tokenizer`` configured like this one (BertNormalizer, BertPreTokenizer, WordPiece)."""
        if self._backend is None:
            from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

            tk = Tokenizer(models.WordPiece(vocab=dict(self.vocab), unk_token=self.unk_token,
                                            max_input_chars_per_word=self.max_input_chars_per_word))
            tk.normalizer = normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=self.tokenize_chinese_chars,
                strip_accents=self.basic_tokenizer._strip, lowercase=self.do_lower_case)
            tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tk.add_special_tokens([AddedToken(t, normalized=False) for t in self.all_special_tokens])
            tk.decoder = decoders.WordPiece(prefix="##", cleanup=True)
            cls_, sep = self.cls_token, self.sep_token
            tk.post_processor = processors.TemplateProcessing(
                single=f"{cls_}:0 $A:0 {sep}:0", pair=f"{cls_}:0 $A:0 {sep}:0 $B:1 {sep}:1",
                special_tokens=[(cls_, self.cls_token_id), (sep, self.sep_token_id)])
            self._backend = tk
        return self._backend

    # -- text -> pieces --------------------------------------------------------------------------------
    def _chunks(self, text: str):
        """``text`` cut around special tokens: (chunk, start, is_special) in order."""
        pos = 0
        for m in self._special_re.finditer(text):
            if m.start() > pos:
                yield text[pos:m.start()], pos, False
            yield m.group(), m.start(), True
            pos = m.end()
        if pos < len(text):
            yield text[pos:], pos, False

    def _pieces(self, text: str):
        """(piece, start, end, word) for every word piece of ``text``, offsets into ``text`` and the index of
        the word it belongs to (words: split on whitespace and punctuation), in pure Python."""
        split_word = self.wordpiece_tokenizer.split_word
        w = -1
        for chunk, base, special in self._chunks(text):
            if special:
                w += 1
                yield chunk, base, base + len(chunk), w
                continue
            for word, start, positions in self.basic_tokenizer.split(chunk):
                w += 1
                for piece, s, e in split_word(word):
                    if positions is None:
                        yield piece, base + start + s, base + start + e, w
                    else:
                        yield piece, base + positions[s], base + positions[e - 1] + 1, w

    def _encode_python(self, text: str) -> tuple[list[int], list[tuple[int, int]], list[int]]:
        """Ids, (start, end) character offsets into ``text`` and word indices of its pieces, in pure Python."""
        ids, offs, words = [], [], []
        vocab = self.vocab
        for piece, s, e, w in self._pieces(text):
            ids.append(vocab[piece])
            offs.append((s, e))
            words.append(w)
        return ids, self._cover_removed_marks(text, offs), words

    def _cover_removed_marks(self, text: str, offs: list) -> list:
        """Extend each token's end over the combining marks (category Mn) right after it that accent stripping
        removed, so that a span cut from the text keeps them: "cafe\u0301" (decomposed é) is one token
        ``cafe`` whose span is all five characters, not four. Google gets this through whitespace words;
        Hugging Face's offsets stop before the mark (a deliberate difference, see the module docstring).
        A token never extends into the next token's span."""
        if not self.basic_tokenizer._strip or text.isascii():
            return offs
        n = len(text)
        out = list(offs)
        for k, (s, e) in enumerate(out):
            if e >= n or s == e or unicodedata.category(text[e]) != "Mn":
                continue
            limit = max(e, out[k + 1][0]) if k + 1 < len(out) else n
            while e < limit and unicodedata.category(text[e]) == "Mn":
                e += 1
            out[k] = (s, e)
        return out

    def _encode_many(self, texts: list[str], use_fast: bool) -> list[tuple[list, list, list]]:
        """(ids, offsets, word indices) of each text."""
        if use_fast:
            encs = self.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
            return [(e.ids, self._cover_removed_marks(t, e.offsets), e.word_ids) for t, e in zip(texts, encs)]
        return [self._encode_python(t) for t in texts]

    def _encode_words(self, examples: list[list[str]], use_fast: bool) -> list[tuple[list, list, list]]:
        """(ids, offsets, word indices) of each list of words: every word is encoded on its own (it may still
        become several pieces, or none) and its tokens carry its index; offsets are within the word, as in
        transformers' ``is_split_into_words=True``."""
        flat = [w for words in examples for w in words]
        encoded = iter(self._encode_many(flat, use_fast))
        out = []
        for words in examples:
            ids, offs, index = [], [], []
            for w in range(len(words)):
                word_ids, word_offs, _ = next(encoded)
                ids.extend(word_ids)
                offs.extend(word_offs)
                index.extend([w] * len(word_ids))
            out.append((ids, offs, index))
        return out

    def tokenize(self, text: str) -> list[str]:
        """The word pieces of ``text`` (no special tokens)."""
        text = _check_text(text, "text")
        return [piece for piece, _, _, _ in self._pieces(text)]

    # -- ids and tokens --------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    def convert_tokens_to_ids(self, tokens):
        """A token or a list of tokens -> id(s); unknown tokens map to ``unk_token_id``."""
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_token_id)
        return [self.vocab.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        """An id or a list of ids -> token(s). Raises ``ValueError`` for an id outside the vocabulary."""
        if isinstance(ids, int) or (hasattr(ids, "ndim") and ids.ndim == 0):
            return self.convert_ids_to_tokens([ids])[0]
        special = set(self.all_special_ids) if skip_special_tokens else ()
        out = []
        for i in ids:
            i = int(i)
            if i not in self.ids_to_tokens:
                raise ValueError(f"id {i} is not in the vocabulary (size {len(self.vocab)})")
            if i not in special:
                out.append(self.ids_to_tokens[i])
        return out

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Join pieces into text: '##' pieces glue to the previous one; '.', ',', '?', '!' too (the
        ``tokenizers`` WordPiece decoder's ``cleanup``, which Hugging Face's decode always applies)."""
        parts = []
        for i, t in enumerate(tokens):
            if i > 0:
                t = t[2:] if t.startswith("##") else " " + t
                if t in (" .", " ,", " ?", " !"):
                    t = t[1:]
            parts.append(t)
        return "".join(parts)

    # English contractions that the basic tokenizer split around the apostrophe, glued back by decode's
    # ``clean_up_tokenization_spaces`` (the same replacements, in the same order, as transformers').
    _CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))

    def decode(self, ids, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        """Ids -> text (lowercased, accents gone: lossy).

        Pieces are joined as Hugging Face's decode does: '##' pieces glue on and no space is left before
        '.', ',', '?', '!'. ``clean_up_tokenization_spaces=True`` also removes the spaces that splitting
        on punctuation put around apostrophes ("don ' t" -> "don't", "he ' s" -> "he's"), as transformers'
        flag of the same name. None (default) takes the tokenizer's ``clean_up_tokenization_spaces``,
        which is False unless the constructor or the tokenizer_config.json says otherwise: transformers 5's
        default, and the only choice that keeps every apostrophe the text had (the clean-up also turns
        "rock ' n ' roll" into "rock'n'roll" and a quoted "' s '" into "'s'").
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if isinstance(ids, int):
            ids = [ids]
        text = self.convert_tokens_to_string(self.convert_ids_to_tokens(ids, skip_special_tokens))
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        if clean_up_tokenization_spaces:
            for old, new in self._CLEAN_UP:
                text = text.replace(old, new)
        return text

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces) for s in sequences]

    def build_inputs_with_special_tokens(self, ids_a: list[int], ids_b: list[int] | None = None) -> list[int]:
        """[CLS] A [SEP] or [CLS] A [SEP] B [SEP] (Section 3, Figure 2)."""
        out = [self.cls_token_id] + list(ids_a) + [self.sep_token_id]
        if ids_b is not None:
            out += list(ids_b) + [self.sep_token_id]
        return out

    def encode(self, text: str, text_pair: str | None = None, **kwargs) -> list[int]:
        """Just the input ids of one text (or pair)."""
        return self(text, text_pair, **kwargs)["input_ids"]

    # -- the model's inputs ----------------------------------------------------------------------------
    def __call__(self, text, text_pair=None, add_special_tokens: bool = True, truncation=None,
                 max_length: int | None = None, padding=False, return_tensors: str | None = None,
                 return_offsets_mapping: bool = False, stride: int = 0, return_overflowing_tokens: bool = False,
                 return_attention_mask: bool = True, return_token_type_ids: bool = True,
                 use_fast: bool | None = None, is_split_into_words: bool = False) -> BatchEncoding:
        """Encode a text, a pair of texts, or a batch of either, into BERT's inputs.

        ``text``: a str, or a list of str, or a list of (str, str) pairs. ``text_pair``: a str (with a str
        ``text``) or a list of str as long as ``text``. Each example becomes ``[CLS] A [SEP]`` or
        ``[CLS] A [SEP] B [SEP]`` with token_type_ids 0 for the first part and 1 for B and its [SEP].

        ``truncation``: True or 'longest_first' (cut the longer sequence one token at a time, B on a tie:
        Google's ``_truncate_seq_pair``, which differs from HF's fast tokenizer; see the module docstring),
        'only_first', 'only_second'; None (default) means 'longest_first' when ``max_length`` is given
        without padding, as in HF. ``max_length`` counts the special tokens. With ``stride`` and
        ``return_overflowing_tokens`` the truncated tokens come back as further windows overlapping by
        ``stride`` tokens, with ``overflow_to_sample_mapping`` naming their example (HF BertTokenizerFast's
        windows and order, e.g. for SQuAD with truncation='only_second').
        ``padding``: True/'longest' (to the longest in the batch) or 'max_length'.
        ``return_offsets_mapping``: (start, end) character spans into the original text of each token,
        (0, 0) for special tokens and padding. ``use_fast``: None = fast path for batches, pure Python
        for a single text.

        ``is_split_into_words=True``: each text is a list of words (a batch is a list of such lists), as
        token-classification data come (CoNLL-2003's ``tokens``). Each word is tokenized on its own and
        ``word_ids(i)`` of the result maps every token back to its word (None for special tokens), which is
        how word labels are put on tokens (:func:`minibert.ner.align_labels`). Offsets are then within each
        word, as in transformers.
        """
        # ---- what kind of input is it?
        if text is None:
            raise TypeError("text must be a str, a list of str, or a list of (str, str) pairs, got None")
        if isinstance(text, (bytes, bytearray)):
            raise TypeError("text is bytes; decode it to str first (e.g. text.decode('utf-8'))")
        if is_split_into_words:
            firsts, seconds, batched = self._join_words(text, text_pair)
        else:
            batched = not isinstance(text, str)
        if is_split_into_words:
            pass
        elif batched:
            if not isinstance(text, (list, tuple, dict, set)) and hasattr(text, "__iter__"):
                text = list(text)   # e.g. a datasets Column
            if not isinstance(text, (list, tuple)):
                raise TypeError(f"text must be a str, a list of str, or a list of (str, str) pairs, "
                                f"got {type(text).__name__}")
            if text_pair is not None:
                if not isinstance(text_pair, (str, list, tuple, dict, set)) and hasattr(text_pair, "__iter__"):
                    text_pair = list(text_pair)
                if isinstance(text_pair, str) or not isinstance(text_pair, (list, tuple)):
                    raise TypeError("with a batch of texts, text_pair must be a list of str of the same length")
                if len(text_pair) != len(text):
                    raise ValueError(f"text has {len(text)} examples but text_pair has {len(text_pair)}")
                firsts = [_check_text(t, f"text[{i}]") for i, t in enumerate(text)]
                seconds = [_check_text(t, f"text_pair[{i}]") for i, t in enumerate(text_pair)]
            elif text and all(isinstance(t, (list, tuple)) for t in text):
                for i, t in enumerate(text):
                    if len(t) != 2:
                        raise ValueError(f"text[{i}] has {len(t)} elements; a pair must have 2")
                firsts = [_check_text(t[0], f"text[{i}][0]") for i, t in enumerate(text)]
                seconds = [_check_text(t[1], f"text[{i}][1]") for i, t in enumerate(text)]
            else:
                firsts = [_check_text(t, f"text[{i}]") for i, t in enumerate(text)]
                seconds = None
        else:
            firsts = [text]
            seconds = None if text_pair is None else [_check_text(text_pair, "text_pair")]
        is_pair = seconds is not None

        # ---- options
        if truncation is None:
            truncation = "longest_first" if (max_length is not None and padding is False) else False
        if truncation not in _TRUNCATION:
            raise ValueError(f"truncation must be one of True, False, 'longest_first', 'only_first', "
                             f"'only_second', got {truncation!r}")
        strategy = _TRUNCATION[truncation]
        if padding not in _PADDING:
            raise ValueError(f"padding must be one of True, False, 'longest', 'max_length', got {padding!r}")
        pad_mode = _PADDING[padding]
        if max_length is None and (strategy is not None or pad_mode == "max_length"):
            max_length = self.model_max_length
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        if not isinstance(stride, int) or stride < 0:
            raise ValueError(f"stride must be a non-negative int, got {stride!r}")
        if strategy == "only_second" and not is_pair:
            raise ValueError("truncation='only_second' needs pairs of texts (text_pair)")
        n_special = (3 if is_pair else 2) if add_special_tokens else 0
        if strategy is not None and max_length <= n_special:
            raise ValueError(f"max_length={max_length} is too small: the special tokens alone take {n_special} "
                             f"positions ({'[CLS] A [SEP] B [SEP]' if is_pair else '[CLS] A [SEP]'})")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors must be None or 'pt', got {return_tensors!r}")

        # ---- pieces
        if use_fast is None:
            use_fast = self.use_fast and batched
        encode = self._encode_words if is_split_into_words else self._encode_many
        enc_a = encode(firsts, use_fast)
        enc_b = encode(seconds, use_fast) if is_pair else None

        # ---- truncation, windows, special tokens
        rows, word_rows, sample_map = [], [], []
        for i, (ids_a, offs_a, words_a) in enumerate(enc_a):
            ids_b, offs_b, words_b = enc_b[i] if is_pair else (None, None, None)
            windows = self._truncate(ids_a, offs_a, ids_b, offs_b, strategy, max_length, n_special, stride, i)
            # The word indices are cut into the same windows (the cuts depend only on the lengths).
            word_windows = self._truncate(ids_a, words_a, ids_b, words_b, strategy, max_length, n_special,
                                          stride, i)
            for (wa, wb), (va, vb) in zip(windows, word_windows):
                rows.append(self._with_specials(wa, wb, add_special_tokens))
                word_rows.append(self._word_row(va[1], vb[1] if vb is not None else None, add_special_tokens))
                sample_map.append(i)
                if not return_overflowing_tokens:
                    break

        # ---- padding
        if pad_mode is not None:
            target = max((len(r[0]) for r in rows), default=0) if pad_mode == "longest" else max_length
            for ids, types, offs, _ in rows:
                extra = target - len(ids)
                if extra > 0:
                    ids.extend([self.pad_token_id] * extra)
                    types.extend([0] * extra)
                    offs.extend([(0, 0)] * extra)
            for words in word_rows:
                words.extend([None] * (target - len(words)))
        out = BatchEncoding()
        out._word_ids = word_rows
        out["input_ids"] = [r[0] for r in rows]
        if return_token_type_ids:
            out["token_type_ids"] = [r[1] for r in rows]
        if return_attention_mask:
            out["attention_mask"] = [[1] * n + [0] * (len(ids) - n) for ids, _, _, n in rows]
        if return_offsets_mapping:
            out["offset_mapping"] = [r[2] for r in rows]
        if return_overflowing_tokens:
            out["overflow_to_sample_mapping"] = sample_map

        if return_tensors == "pt":
            import torch

            lengths = {len(r[0]) for r in rows}
            if len(lengths) > 1:
                raise ValueError("cannot make a tensor of sequences of different lengths; pass padding=True "
                                 "(or padding='max_length' with max_length)")
            for k in list(out):
                out[k] = torch.tensor(out[k], dtype=torch.long)
        elif not batched and not return_overflowing_tokens:
            for k in list(out):
                out[k] = out[k][0]
        return out

    @staticmethod
    def _join_words(text, text_pair):
        """Check ``is_split_into_words`` input: (list of word lists, list of word lists or None, batched)."""
        def is_words(x):
            return isinstance(x, (list, tuple)) and all(isinstance(w, str) for w in x)

        if not isinstance(text, (str, list, tuple, dict, set)) and hasattr(text, "__iter__"):
            text = list(text)                   # e.g. a datasets Column
        if not isinstance(text_pair, (type(None), str, list, tuple, dict, set)) and hasattr(text_pair, "__iter__"):
            text_pair = list(text_pair)
        if isinstance(text, str) or not isinstance(text, (list, tuple)):
            raise TypeError(f"with is_split_into_words=True, text must be a list of words (or a batch of such "
                            f"lists), got {type(text).__name__}")
        batched = not is_words(text) and all(isinstance(t, (list, tuple)) for t in text)
        texts = list(text) if batched else [text]
        pairs = None
        if text_pair is not None:
            pairs = list(text_pair) if batched else [text_pair]
            if len(pairs) != len(texts):
                raise ValueError(f"text has {len(texts)} examples but text_pair has {len(pairs)}")
        for name, examples in (("text", texts), ("text_pair", pairs or [])):
            for i, words in enumerate(examples):
                where = f"{name}[{i}]" if batched else name
                if not isinstance(words, (list, tuple)):
                    raise TypeError(f"with is_split_into_words=True, {where} must be a list of str words, got "
                                    f"{type(words).__name__}")
                for k, w in enumerate(words):
                    _check_text(w, f"{where}[{k}]")
        return [list(t) for t in texts], (None if pairs is None else [list(p) for p in pairs]), batched

    def _truncate(self, ids_a, offs_a, ids_b, offs_b, strategy, max_length, n_special, stride, i):
        """(A window, B window) combinations, the kept one first; HF BertTokenizerFast's order."""
        total = len(ids_a) + (len(ids_b) if ids_b is not None else 0)
        if strategy is None or total + n_special <= max_length:
            return [((ids_a, offs_a), (ids_b, offs_b) if ids_b is not None else None)]
        room = max_length - n_special
        if ids_b is None:   # a single sequence: every strategy cuts it
            return [(w, None) for w in _windows(ids_a, offs_a, room, stride)]
        if strategy == "longest_first":
            n1, n2 = longest_first_lengths(len(ids_a), len(ids_b), room)
            wa, wb = _windows(ids_a, offs_a, n1, stride), _windows(ids_b, offs_b, n2, stride)
        else:
            to_remove = total - room
            target = ids_a if strategy == "only_first" else ids_b
            if len(target) <= to_remove:
                which = "first" if strategy == "only_first" else "second"
                raise ValueError(f"example {i}: truncation={strategy!r} cannot fit max_length={max_length}: the "
                                 f"{which} sequence has {len(target)} tokens but {to_remove} must go; use a larger "
                                 f"max_length or truncation='longest_first'")
            keep = len(target) - to_remove
            if strategy == "only_first":
                wa, wb = _windows(ids_a, offs_a, keep, stride), [(ids_b, offs_b)]
            else:
                wa, wb = [(ids_a, offs_a)], _windows(ids_b, offs_b, keep, stride)
        combos = [(wa[0], wb[0])]
        for oa in wa[1:]:
            combos.append((oa, wb[0]))
            combos.extend((oa, ob) for ob in wb[1:])
        combos.extend((wa[0], ob) for ob in wb[1:])
        return combos

    @staticmethod
    def _word_row(words_a, words_b, add_special_tokens):
        """The word index of each token of [CLS] A [SEP] (B [SEP]): None for the special tokens."""
        if not add_special_tokens:
            return list(words_a) + (list(words_b) if words_b is not None else [])
        row = [None, *words_a, None]
        if words_b is not None:
            row += [*words_b, None]
        return row

    def _with_specials(self, wa, wb, add_special_tokens):
        """(ids, token_type_ids, offsets, n_real) of [CLS] A [SEP] (B [SEP])."""
        ids_a, offs_a = wa
        if not add_special_tokens:
            ids, offs = list(ids_a), list(offs_a)
            types = [0] * len(ids)
            if wb is not None:
                ids += wb[0]
                offs += wb[1]
                types += [1] * len(wb[0])
        else:
            ids = [self.cls_token_id, *ids_a, self.sep_token_id]
            offs = [(0, 0), *offs_a, (0, 0)]
            types = [0] * len(ids)
            if wb is not None:
                ids += [*wb[0], self.sep_token_id]
                offs += [*wb[1], (0, 0)]
                types += [1] * (len(wb[0]) + 1)
        return ids, types, offs, len(ids)
