"""minibert.tokenizer against Hugging Face's BertTokenizerFast (bert-base-uncased vocab), Google's rules,
and its own two paths (pure Python and the `tokenizers`-backed fast path)."""
import json
import random
import unicodedata

import pytest
import torch

from minibert import load_dataset, pretrained_path, vocab_path
from minibert.tokenizer import BasicTokenizer, BertTokenizer, WordpieceTokenizer, load_vocab

transformers = pytest.importorskip("transformers")
from tokenizers import normalizers, pre_tokenizers  # noqa: E402


def _vocab_dict():
    return load_vocab(vocab_path())


@pytest.fixture(scope="module")
def tok():
    return BertTokenizer.from_pretrained(vocab_path())


@pytest.fixture(scope="module")
def hf():
    # transformers 5.x: BertTokenizerFast(vocab_file=...) ignores the file; build from a dict (TOOLCHAIN.md).
    t = transformers.BertTokenizerFast(vocab=_vocab_dict(), do_lower_case=True)
    assert t.backend_tokenizer.model.max_input_chars_per_word == 100
    return t


@pytest.fixture(scope="module")
def hf_cased():
    return transformers.BertTokenizerFast(vocab=_vocab_dict(), do_lower_case=False)


def _offs(x):
    """Offsets as tuples, however nested (HF gives tuples, lists or tensors)."""
    if hasattr(x, "tolist"):
        x = x.tolist()
    if len(x) and isinstance(x[0], int):
        return tuple(x)
    return [_offs(y) for y in x]


def _same(a, b, keys=("input_ids", "token_type_ids", "attention_mask")):
    for k in keys:
        assert a[k] == b[k], k
    if "offset_mapping" in b:
        assert _offs(a["offset_mapping"]) == _offs(b["offset_mapping"])


# -------------------------------------------------------------------------------------------------
# The two pre-training corpora, every document

@pytest.fixture(scope="module")
def corpora():
    return {name: list(load_dataset(name, "train")["text"]) for name in ("wikipedia_summaries", "books")}


def _with_marks_covered(tok, texts, ref):
    """HF's offsets with minibert's one deliberate change: a token's span extends over the combining marks
    (Mn) right after it that accent stripping removed (HF ends it before them)."""
    out = []
    for text, offs in zip(texts, ref["offset_mapping"]):
        offs = [tuple(o) for o in offs]
        out.append(offs[:1] + tok._cover_removed_marks(text, offs[1:-1]) + offs[-1:])
    return {**ref, "offset_mapping": out}


@pytest.mark.parametrize("name", ["wikipedia_summaries", "books"])
def test_corpus_parity_every_document(tok, hf, corpora, name):
    docs = corpora[name]
    ref = _with_marks_covered(tok, docs, hf(docs, return_offsets_mapping=True))
    fast = tok(docs, return_offsets_mapping=True)                  # batches take the fast path
    _same(fast, ref)
    slow = tok(docs, return_offsets_mapping=True, use_fast=False)   # pure Python, all of it
    _same(slow, ref)
    assert sum(map(len, ref["input_ids"])) > 1_000_000


def test_known_unicode_differences_absent_from_corpora(corpora):
    chars = set()
    for docs in corpora.values():
        for d in docs:
            chars.update(d)
    assert not chars & KNOWN_UNICODE_VERSION_DIFFERENCES


# -------------------------------------------------------------------------------------------------
# Every code point through the normaliser and the splitter

# Code points where the pure-Python path and the `tokenizers` library (Rust) disagree, measured over all
# of Unicode (tests below sweep U+0000..U+2FFFF in both modes). Two causes, both documented in
# minibert/tokenizer.py:
# 1. Unicode version. minibert takes categories from Python's unicodedata (Unicode 14.0), as Google's
#    code does; tokenizers carries older tables, so punctuation (Po/Ps/Pe/Pd), format (Cf) and combining
#    (Mn, Mc) characters added or re-categorised since are split, dropped or stripped differently, and
#    U+166D is So now (Po before).
# 2. A typo in tokenizers' CJK ranges: CJK Extension E starts at U+2B820 (Google's and HF's slow
#    tokenizer's range), the Rust code starts it at U+2B920. minibert follows Google: U+2B820..U+2B91F
#    are CJK ideographs and stand alone.
_RANGES = [
    (0x061D, 0x061D), (0x07FD, 0x07FD), (0x0890, 0x0891), (0x0898, 0x089F), (0x08CA, 0x08E2), (0x09FD,
    0x09FE), (0x0A76, 0x0A76), (0x0AFA, 0x0AFF), (0x0B55, 0x0B55), (0x0C04, 0x0C04), (0x0C3C, 0x0C3C),
    (0x0C77, 0x0C77), (0x0C84, 0x0C84), (0x0D00, 0x0D00), (0x0D3B, 0x0D3C), (0x0D81, 0x0D81), (0x0EBA,
    0x0EBA), (0x166D, 0x166D), (0x1734, 0x1734), (0x180F, 0x180F), (0x1885, 0x1886), (0x1ABF, 0x1ACE),
    (0x1B7D, 0x1B7E), (0x1C89, 0x1C89), (0x1DF6, 0x1DFB), (0x2E43, 0x2E4F), (0x2E52, 0x2E5D), (0xA7CB,
    0xA7CC), (0xA7CE, 0xA7CE), (0xA7D2, 0xA7D2), (0xA7D4, 0xA7D4), (0xA7DA, 0xA7DA), (0xA7DC, 0xA7DC),
    (0xA82C, 0xA82C), (0xA8C5, 0xA8C5), (0xA8FF, 0xA8FF), (0xA9BD, 0xA9BD), (0x10D24, 0x10D27), (0x10D50,
    0x10D65), (0x10EAB, 0x10EAD), (0x10F46, 0x10F50), (0x10F55, 0x10F59), (0x10F82, 0x10F89), (0x11070,
    0x11070), (0x11073, 0x11074), (0x110C2, 0x110C2), (0x110CD, 0x110CD), (0x111C9, 0x111C9), (0x111CF,
    0x111CF), (0x1123E, 0x1123E), (0x1133B, 0x1133B), (0x11438, 0x1143F), (0x11442, 0x11444), (0x11446,
    0x11446), (0x1144B, 0x1144F), (0x1145A, 0x1145B), (0x1145D, 0x1145E), (0x11660, 0x1166C), (0x116B9,
    0x116B9), (0x1182F, 0x11837), (0x11839, 0x1183B), (0x11938, 0x11938), (0x1193B, 0x1193C), (0x1193E,
    0x1193E), (0x11943, 0x11946), (0x119D4, 0x119D7), (0x119DA, 0x119DB), (0x119E0, 0x119E0), (0x119E2,
    0x119E2), (0x11A01, 0x11A0A), (0x11A33, 0x11A38), (0x11A3B, 0x11A47), (0x11A51, 0x11A56), (0x11A59,
    0x11A5B), (0x11A8A, 0x11A96), (0x11A98, 0x11A9C), (0x11A9E, 0x11AA2), (0x11C30, 0x11C36), (0x11C38,
    0x11C3D), (0x11C3F, 0x11C3F), (0x11C41, 0x11C45), (0x11C70, 0x11C71), (0x11C92, 0x11CA7), (0x11CAA,
    0x11CB0), (0x11CB2, 0x11CB3), (0x11CB5, 0x11CB6), (0x11D31, 0x11D36), (0x11D3A, 0x11D3A), (0x11D3C,
    0x11D3D), (0x11D3F, 0x11D45), (0x11D47, 0x11D47), (0x11D90, 0x11D91), (0x11D95, 0x11D95), (0x11D97,
    0x11D97), (0x11EF3, 0x11EF4), (0x11EF7, 0x11EF8), (0x11FFF, 0x11FFF), (0x12FF1, 0x12FF2), (0x13430,
    0x13438), (0x16E97, 0x16E9A), (0x16EA0, 0x16EB8), (0x16F4F, 0x16F4F), (0x16FE2, 0x16FE2), (0x16FE4,
    0x16FE4), (0x1CF00, 0x1CF2D), (0x1CF30, 0x1CF46), (0x1E000, 0x1E006), (0x1E008, 0x1E018), (0x1E01B,
    0x1E021), (0x1E023, 0x1E024), (0x1E026, 0x1E02A), (0x1E130, 0x1E136), (0x1E2AE, 0x1E2AE), (0x1E2EC,
    0x1E2EF), (0x1E944, 0x1E94A), (0x1E95E, 0x1E95F),
    (0x2B820, 0x2B91F),
]
KNOWN_UNICODE_VERSION_DIFFERENCES = frozenset(chr(c) for a, b in _RANGES for c in range(a, b + 1))


def _rust_words(norm, pre, s):
    return [w for w, _ in pre.pre_tokenize_str(norm.normalize_str(s))]


@pytest.mark.parametrize("lower", [True, False])
def test_every_code_point_matches_rust_except_known(lower):
    basic = BasicTokenizer(do_lower_case=lower)
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=lower,
                                      lowercase=lower)
    pre = pre_tokenizers.BertPreTokenizer()
    differ = set()
    for cp in range(0x30000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        s = "a" + chr(cp) + "b"
        if basic.tokenize(s) != _rust_words(norm, pre, s):
            differ.add(chr(cp))
    assert differ <= KNOWN_UNICODE_VERSION_DIFFERENCES, sorted(hex(ord(c)) for c in differ - KNOWN_UNICODE_VERSION_DIFFERENCES)
    assert len(differ) >= 300   # the tables really do differ; if this fails, tokenizers updated its tables


# -------------------------------------------------------------------------------------------------
# Edge cases

EDGE = [
    "", " ", "   \t\n ", "\u3000\u00a0", "Hello, world!", "Naïve café résumé CRÈME brûlée", "İstanbul ΟΔΟΣ Σ",
    "中文字 and 日本語のひらがな カタカナ 한국어", "emoji 😀👍🏽 ok 🇫🇷", "zero\u200bwidth\u200djoiner\ufeff",
    "ctrl\x00\x01\x07\x1f\x7f\x85 chars \ufffd here", "tabs\tand\nnewlines\r\nhere",
    "x" * 100, "y" * 101, "z" * 250 + " short", "ﬁne ﬂow", "$5+3^2=`x`", "U.S.A. e.g. don't", "\u2028ab\u2029cd",
    "a\u0301\u0316b", "ǅemal", "ß ẞ", "Ⅻ ½ ²", "¿Qué? ¡Sí!", "«guillemets» „quotes“", "www.example.com/path?q=1",
    "unaffable", "   leading and trailing   ", "\u0600\u061c\u200f rtl", "\ue000private",
]


@pytest.mark.parametrize("text", EDGE)
def test_edge_cases_uncased(tok, hf, text):
    ref = hf(text, return_offsets_mapping=True)
    _same(tok(text, return_offsets_mapping=True, use_fast=False), ref)
    _same(tok(text, return_offsets_mapping=True, use_fast=True), ref)
    assert tok.tokenize(text) == hf.tokenize(text)


@pytest.mark.parametrize("text", EDGE)
def test_edge_cases_cased(hf_cased, text):
    tok = BertTokenizer.from_pretrained(vocab_path(), do_lower_case=False)
    ref = hf_cased(text, return_offsets_mapping=True)
    _same(tok(text, return_offsets_mapping=True, use_fast=False), ref)
    _same(tok(text, return_offsets_mapping=True, use_fast=True), ref)


def test_accents_and_case_golden():
    uncased = BertTokenizer.from_pretrained(vocab_path())
    cased = BertTokenizer.from_pretrained(vocab_path(), do_lower_case=False)
    assert uncased.tokenize("Naïve Café") == ["naive", "cafe"]
    assert cased.basic_tokenizer.tokenize("Naïve Café") == ["Naïve", "Café"]
    # HF lowercases one character at a time: a final capital sigma becomes σ, not Google's ς.
    assert uncased.basic_tokenizer.tokenize("ΟΔΟΣ") == ["οδοσ"]
    # CJK ideographs stand alone; kana do not. Accent stripping also removes the kana voicing mark (が -> か).
    assert uncased.basic_tokenizer.tokenize("中文ひらがな") == ["中", "文", "ひらかな"]
    assert cased.basic_tokenizer.tokenize("中文ひらがな") == ["中", "文", "ひらがな"]
    # Zero-width and control characters vanish without splitting the word.
    assert uncased.basic_tokenizer.tokenize("ab\u200bcd\x07e") == ["abcde"]


def test_where_google_and_hf_differ_minibert_follows(tok, hf):
    """Each case: what Google's tokenization.py does, what HF does, and which minibert follows."""
    basic = tok.basic_tokenizer
    # U+2028/U+2029: Google keeps them inside words (not Zs); HF splits (Rust char::is_whitespace). minibert: HF,
    # so that the fast path and pretrained checkpoints' usual tokenizer agree.
    assert basic.tokenize("ab\u2028cd") == ["ab", "cd"]
    assert tok("ab\u2028cd")["input_ids"] == hf("ab\u2028cd")["input_ids"]
    # Unassigned code points (Cn): Google drops them (category C*); HF keeps them. minibert: HF.
    assert unicodedata.category("\u0378") == "Cn"
    assert basic.tokenize("a\u0378b") == ["a\u0378b"]
    assert tok("a\u0378b")["input_ids"] == hf("a\u0378b")["input_ids"]
    # Word-final capital sigma: Google's str.lower() gives 'ς', HF 'σ'. minibert: HF.
    assert basic.tokenize("ΟΔΟΣ") == ["οδοσ"] and "ΟΔΟΣ".lower() == "οδος"
    # CJK Extension E starts at U+2B820 (Unicode, Google); the Rust library starts it at U+2B920 (a typo).
    # minibert: Google, because it is the correct range; the character stands alone in the pure-Python path.
    assert basic.tokenize("a\U0002B820b") == ["a", "\U0002B820", "b"]
    assert [w for w, _ in hf.backend_tokenizer.pre_tokenizer.pre_tokenize_str(
        hf.backend_tokenizer.normalizer.normalize_str("a\U0002B820b"))] == ["a\U0002B820b"]
    # max_input_chars_per_word: Google 200, HF 100 (next test). minibert: a parameter, default HF's 100.


def test_max_input_chars_per_word():
    """HF uses 100, Google 200; minibert defaults to HF's and lets you pick Google's."""
    vocab = _vocab_dict()
    word = "a" * 150
    hf100 = transformers.BertTokenizerFast(vocab=vocab)
    assert BertTokenizer(vocab).tokenize(word) == hf100.tokenize(word) == ["[UNK]"]
    google = BertTokenizer(vocab, max_input_chars_per_word=200)
    assert google.tokenize(word)[0] == "aaa" and "[UNK]" not in google.tokenize(word)
    assert google(word)["input_ids"] == google([word])["input_ids"][0]   # both paths honour it
    wp = WordpieceTokenizer(vocab, max_input_chars_per_word=5)
    assert wp.tokenize("abcde abcdef") == ["abc", "##de", "[UNK]"]
    assert wp.tokenize("unaffable") == ["[UNK]"]
    assert WordpieceTokenizer(vocab).tokenize("unaffable") == ["una", "##ffa", "##ble"]


def test_wordpiece_greedy_longest_match_and_unk():
    vocab = {"[UNK]": 0, "un": 1, "##aff": 2, "##able": 3, "unaff": 4, "##a": 5, "##ble": 6}
    wp = WordpieceTokenizer(vocab)
    assert wp.tokenize("unaffable") == ["unaff", "##able"]     # longest first piece wins
    assert wp.tokenize("unaffablex") == ["[UNK]"]              # one unmatched position: the whole word
    assert wp.split_word("unable") == (("un", 0, 2), ("##able", 2, 6))


# -------------------------------------------------------------------------------------------------
# Pairs, truncation, stride windows, padding

@pytest.fixture(scope="module")
def squad_pairs():
    sq = load_dataset("squad", "validation")
    return list(zip(sq["question"], sq["context"]))


def test_squad_windows_only_second(tok, hf, squad_pairs):
    qs, cs = zip(*squad_pairs[:80])
    for max_length, stride in [(384, 128), (128, 32), (64, 0)]:
        kw = dict(truncation="only_second", max_length=max_length, stride=stride, return_overflowing_tokens=True,
                  return_offsets_mapping=True, padding="max_length")
        ref = hf(list(qs), list(cs), **kw)
        _same(tok(list(qs), list(cs), **kw), ref, keys=("input_ids", "token_type_ids", "attention_mask",
                                                         "overflow_to_sample_mapping"))
        one = tok(qs[3], cs[3], use_fast=False, **kw)      # pure Python, one example
        rows = [i for i, s in enumerate(ref["overflow_to_sample_mapping"]) if s == 3]
        assert one["input_ids"] == [ref["input_ids"][i] for i in rows]
        assert [_offs(o) for o in one["offset_mapping"]] == [_offs(ref["offset_mapping"][i]) for i in rows]
        assert max(map(len, ref["input_ids"])) == max_length


def _google_truncate_pair(a, b, room):
    """Google's run_classifier._truncate_seq_pair, written out: pop from the longer list, from B on a tie."""
    a, b = list(a), list(b)
    while len(a) + len(b) > room:
        (a if len(a) > len(b) else b).pop()
    return a, b


def test_pair_truncation_is_googles(tok):
    # The input: the odd token goes to A, as in Google's _truncate_seq_pair (HF's fast tokenizer gives
    # it to B: "[CLS] one two three [SEP] six seven eight nine [SEP]").
    want = ["[CLS]", "one", "two", "three", "four", "[SEP]", "six", "seven", "eight", "[SEP]"]
    for fast in (False, True):
        got = tok(["one two three four five"], ["six seven eight nine ten"], truncation="longest_first",
                  max_length=10, use_fast=fast)
        assert tok.convert_ids_to_tokens(got["input_ids"][0]) == want
    # A second input of the kind: A is the shorter one and B must shrink below it.
    got = tok("a b c", "d e f g h i j", truncation=True, max_length=8)
    assert tok.convert_ids_to_tokens(got["input_ids"]) == ["[CLS]", "a", "b", "c", "[SEP]", "d", "e", "[SEP]"]


def test_pair_truncation_both_paths_random_pairs(tok, squad_pairs):
    # Random pairs: the fast and the pure-Python path agree with each other and with Google's rule.
    rng = random.Random(12)
    for _ in range(150):
        q, c = rng.choice(squad_pairs)
        a, b = (c[: rng.randint(0, 400)], q) if rng.random() < 0.5 else (q, c[: rng.randint(0, 400)])
        max_length = rng.randint(4, 120)
        fast = tok([a], [b], truncation="longest_first", max_length=max_length)
        slow = tok(a, b, truncation="longest_first", max_length=max_length, use_fast=False)
        assert fast["input_ids"][0] == slow["input_ids"]
        assert fast["token_type_ids"][0] == slow["token_type_ids"]
        ta, tb = _google_truncate_pair(tok(a, add_special_tokens=False)["input_ids"],
                                       tok(b, add_special_tokens=False)["input_ids"], max_length - 3)
        assert slow["input_ids"] == [tok.cls_token_id, *ta, tok.sep_token_id, *tb, tok.sep_token_id]


def test_longest_first_lengths_closed_form():
    from minibert.tokenizer import longest_first_lengths
    for la in range(0, 14):
        for lb in range(0, 14):
            for room in range(1, 30):
                ta, tb = _google_truncate_pair(range(la), range(lb), room)
                assert longest_first_lengths(la, lb, room) == (len(ta), len(tb)), (la, lb, room)


@pytest.mark.parametrize("strategy", ["longest_first", "only_first", "only_second", True])
def test_random_pairs_with_truncation(tok, hf, squad_pairs, strategy):
    # HF's fast tokenizer splits an odd room between A and B the other way round ('longest_first'): there we
    # compare the kept window with Google's rule and the overflow windows only on pairs where the two agree.
    rng = random.Random(0)
    for _ in range(40):
        q, c = rng.choice(squad_pairs)
        a, b = (c[: rng.randint(0, 600)], q) if rng.random() < 0.5 else (q, c[: rng.randint(0, 600)])
        max_length = rng.randint(8, 160)
        stride = rng.randint(0, 3)
        kw = dict(truncation=strategy, max_length=max_length, stride=stride, return_overflowing_tokens=True,
                  return_offsets_mapping=True)
        try:
            ref = hf([a], [b], **kw)
        except Exception:   # HF refuses too (sequence too short for only_*): so must we
            with pytest.raises(ValueError):
                tok([a], [b], **kw)
            continue
        got = tok([a], [b], **kw)
        _same(tok(a, b, use_fast=False, **kw), got, keys=("input_ids", "token_type_ids"))
        if strategy in ("longest_first", True):
            ids_a, ids_b = (tok(x, add_special_tokens=False)["input_ids"] for x in (a, b))
            ta, tb = _google_truncate_pair(ids_a, ids_b, max_length - 3)
            assert got["input_ids"][0] == [tok.cls_token_id, *ta, tok.sep_token_id, *tb, tok.sep_token_id]
            room = max_length - 3
            if len(ids_a) + len(ids_b) > room and room % 2 and min(len(ids_a), len(ids_b)) > room // 2:
                continue   # both cut, odd room: HF gives the odd token to B
        _same(got, ref, keys=("input_ids", "token_type_ids", "overflow_to_sample_mapping"))


def test_longest_first_overflow_order_matches_hf(tok, hf):
    kw = dict(truncation=True, max_length=9, stride=1, return_overflowing_tokens=True)
    a, b = "one two three four five six", "a b c d e f g"
    got = tok(a, b, **kw)
    assert got["input_ids"] == hf(a, b, **kw)["input_ids"]
    assert len(got["input_ids"]) == 9 and got["overflow_to_sample_mapping"] == [0] * 9


def test_long_documents_stride_single(tok, hf, corpora):
    docs = corpora["books"][:6]
    kw = dict(truncation=True, max_length=128, stride=32, return_overflowing_tokens=True,
              return_offsets_mapping=True, padding=True)
    ref = hf(docs, **kw)
    _same(tok(docs, **kw), ref, keys=("input_ids", "token_type_ids", "attention_mask", "overflow_to_sample_mapping"))
    assert len(ref["input_ids"]) > 100


def test_single_text_output_shapes(tok, hf):
    kw = dict(max_length=12, padding="max_length", truncation=True)
    assert tok("Hello world", **kw) == dict(hf("Hello world", **kw))
    pt = tok(["Hello world", "a longer sentence than that"], padding=True, return_tensors="pt")
    ref = hf(["Hello world", "a longer sentence than that"], padding=True, return_tensors="pt")
    for k in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(pt[k], ref[k])
    assert tok("x", return_tensors="pt")["input_ids"].shape == (1, 3)
    assert tok("Hello world", max_length=3)["input_ids"] == hf("Hello world", max_length=3)["input_ids"]  # default truncation
    pair = tok("Is it?", "It is.")
    assert pair["token_type_ids"] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert tok.convert_ids_to_tokens(pair["input_ids"]) == ["[CLS]", "is", "it", "?", "[SEP]", "it", "is", ".", "[SEP]"]
    assert tok([("Is it?", "It is.")])["input_ids"] == [pair["input_ids"]]   # a batch of tuples is a batch of pairs


def test_tensors_with_offsets_and_overflow(tok, hf):
    kw = dict(truncation=True, max_length=6, stride=1, return_overflowing_tokens=True, return_offsets_mapping=True,
              padding=True, return_tensors="pt")
    got, ref = tok(["one two three four five", "six"], **kw), hf(["one two three four five", "six"], **kw)
    assert got["offset_mapping"].shape == (3, 6, 2)   # windows [one..four], [four five], [six]
    for k in ("input_ids", "token_type_ids", "attention_mask", "offset_mapping", "overflow_to_sample_mapping"):
        assert torch.equal(got[k], ref[k]), k


def test_decode_matches_hf(tok, hf, corpora):
    for doc in corpora["wikipedia_summaries"][:200:7]:
        ids = hf(doc[:400])["input_ids"]
        assert tok.decode(ids) == hf.decode(ids)
        assert tok.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
    assert tok.decode(tok("Unaffable, isn't it?")["input_ids"], skip_special_tokens=True) == "unaffable, isn ' t it?"


def test_decode_clean_up_tokenization_spaces(tok, hf, corpora):
    ids = tok("I don't know, he's here.")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "i don ' t know, he ' s here."   # default: False
    assert tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True) == "i don't know, he's here."
    ids = tok("I'm sure they've gone; you're not, aren't you?")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True) == \
        "i'm sure they've gone ; you're not, aren't you?"
    for doc in corpora["books"][:300:7]:
        ids = hf(doc[:400])["input_ids"]
        assert tok.decode(ids, clean_up_tokenization_spaces=True) == hf.decode(ids, clean_up_tokenization_spaces=True)
    cleaned = BertTokenizer(_vocab_dict(), clean_up_tokenization_spaces=True)
    assert cleaned.batch_decode([ids]) == [hf.decode(ids, clean_up_tokenization_spaces=True)]


def test_ids_tokens_roundtrip(tok):
    assert (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, tok.mask_token_id, tok.unk_token_id) == \
        (101, 102, 0, 103, 100)
    assert len(tok) == tok.vocab_size == 30522
    assert tok.convert_tokens_to_ids(["hello", "notawordpiece"]) == [7592, 100]
    assert tok.convert_ids_to_tokens(7592) == "hello"
    assert tok.convert_ids_to_tokens([101, 7592, 102], skip_special_tokens=True) == ["hello"]


def test_save_pretrained_loads_in_transformers(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8") == vocab_path().read_text(encoding="utf-8")
    again = BertTokenizer.from_pretrained(tmp_path)
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    text = ["Hello, Naïve wörld! 中文 " + "q" * 120, "second"]
    assert again(text)["input_ids"] == auto(text)["input_ids"] == tok(text)["input_ids"]
    cased = BertTokenizer.from_pretrained(vocab_path(), do_lower_case=False)
    cased.save_pretrained(tmp_path / "cased")
    assert BertTokenizer.from_pretrained(tmp_path / "cased").do_lower_case is False
    assert transformers.AutoTokenizer.from_pretrained(str(tmp_path / "cased")).tokenize("Héllo") == cased.tokenize("Héllo")


def test_from_pretrained_directory_reads_config(tok):
    t = BertTokenizer.from_pretrained(pretrained_path())
    assert t.do_lower_case and t.model_max_length == 512
    assert t("Hi there")["input_ids"] == tok("Hi there")["input_ids"]


# -------------------------------------------------------------------------------------------------
# Bad input

def test_bad_input_raises(tok, tmp_path):
    with pytest.raises(TypeError, match="got None"):
        tok(None)
    with pytest.raises(TypeError, match="bytes"):
        tok(b"hello")
    with pytest.raises(TypeError, match=r"text\[1\] must be a str, got int"):
        tok(["ok", 3])
    with pytest.raises(TypeError, match=r"text_pair\[0\] is bytes"):
        tok(["ok"], [b"no"])
    with pytest.raises(TypeError, match="got NoneType"):
        tok.tokenize(None)
    with pytest.raises(ValueError, match="max_length=2 is too small"):
        tok("hello world", max_length=2, truncation=True)
    with pytest.raises(ValueError, match="max_length=3 is too small"):
        tok("hello", "world", max_length=3, truncation=True)
    with pytest.raises(ValueError, match="stride=5 must be smaller"):
        tok("one two three four five six", max_length=5, truncation=True, stride=5, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="cannot fit max_length"):
        tok("a long first sentence here", "b", max_length=6, truncation="only_second")
    with pytest.raises(ValueError, match="only_second.*needs pairs"):
        tok("a", max_length=6, truncation="only_second")
    with pytest.raises(ValueError, match="padding=True"):
        tok(["a", "b c d"], return_tensors="pt")
    with pytest.raises(ValueError, match="truncation must be"):
        tok("a", truncation="sideways")
    with pytest.raises(ValueError, match="2 examples but text_pair has 1"):
        tok(["a", "b"], ["c"])
    bad = tmp_path / "vocab.txt"
    bad.write_text("[PAD]\n[UNK]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks the special tokens \['\[SEP\]', '\[CLS\]', '\[MASK\]'\]"):
        BertTokenizer.from_pretrained(bad)
    with pytest.raises(ValueError, match="no vocabulary file"):
        BertTokenizer.from_pretrained(tmp_path / "missing")
    with pytest.raises(TypeError, match="path must be"):
        BertTokenizer.from_pretrained(None)


# -------------------------------------------------------------------------------------------------
# Vocabulary training

from minibert.wordpiece_training import count_words, train_tokenizer, train_wordpiece  # noqa: E402

TOY = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}


def test_training_toy_golden():
    alphabet = ["##g", "##n", "##s", "##u", "b", "h", "p"]
    v = train_wordpiece(TOY, vocab_size=14, min_frequency=1)
    assert v[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and v[5:12] == alphabet
    # Likelihood gain c_ab * log(c_ab N / (c_a c_b)), N = 113 units: ##u+##g (22.9) beats p+##u (19.4);
    # then ##u+##n (31.3) beats h+##ug (26.0). Worked out by hand.
    assert v[12:] == ["##ug", "##un"]
    # The PMI score c_ab / (c_a c_b) prefers the rare pair ##g+##s (5/100 against 20/720 for ##u+##g).
    assert train_wordpiece(TOY, vocab_size=13, min_frequency=1, score="pmi")[12] == "##gs"
    assert train_wordpiece(TOY, vocab_size=14, min_frequency=6)[12:] == ["##ug", "##un"]
    assert len(train_wordpiece(TOY, vocab_size=100, min_frequency=1)) < 100   # runs out of pairs


def test_training_subset_against_tokenizers_trainer():
    from tokenizers import BertWordPieceTokenizer

    docs = list(load_dataset("wikipedia_summaries", "train")["text"][:800])
    counts = count_words(docs)
    vocab = train_wordpiece(counts, vocab_size=2000)
    assert len(vocab) == len(set(vocab)) == 2000 and vocab == train_wordpiece(counts, vocab_size=2000)
    theirs = BertWordPieceTokenizer(lowercase=True)
    theirs.train_from_iterator(docs, vocab_size=2000, min_frequency=2, limit_alphabet=1000, show_progress=False,
                               special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    held = list(load_dataset("sst2", "validation")["sentence"])
    ours = BertTokenizer({t: i for i, t in enumerate(vocab)})
    ref = BertTokenizer(theirs.get_vocab())
    n_words = sum(len(ours.basic_tokenizer.tokenize(s)) for s in held)
    ppw_ours = sum(len(ours.tokenize(s)) for s in held) / n_words
    ppw_ref = sum(len(ref.tokenize(s)) for s in held) / n_words
    assert 1.2 < ppw_ours < 1.08 * ppw_ref, (ppw_ours, ppw_ref)
    assert len(set(vocab) & set(theirs.get_vocab())) > 0.75 * 2000
    tok = train_tokenizer(docs[:50], vocab_size=500)
    assert len(tok) == 500 and tok("The cat")["input_ids"][0] == tok.cls_token_id


def test_training_bad_input():
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        count_words(["ok", 1])
    with pytest.raises(TypeError, match="word_counts must be a dict"):
        train_wordpiece(["hug"])
    with pytest.raises(ValueError, match="leaves no room"):
        train_wordpiece(TOY, vocab_size=5)
    with pytest.raises(ValueError, match="score must be"):
        train_wordpiece(TOY, score="bpe")


def test_special_tokens_in_text_stay_whole_as_in_hugging_face():
    # Google's tokenizer splits "[MASK]" into "[", "mask", "]"; minibert follows HF and keeps it whole
    # (fill-mask prompts need it), on both paths, with the token's own span as its offset.
    from transformers import AutoTokenizer

    from minibert import BertTokenizer, pretrained_path, vocab_path
    tok = BertTokenizer.from_pretrained(vocab_path())
    hf = AutoTokenizer.from_pretrained(str(pretrained_path()))
    text = "Paris is the [MASK] of France.[SEP]but [mask] is lower case"
    assert tok.tokenize(text)[3] == "[MASK]"
    want = hf(text, return_offsets_mapping=True)
    for fast in (False, True):
        got = tok([text], return_offsets_mapping=True, use_fast=fast)
        assert got["input_ids"][0] == want["input_ids"]
        assert [tuple(o) for o in got["offset_mapping"][0]] == [tuple(o) for o in want["offset_mapping"]]
    assert tok.tokenize("[mask]") == ["[", "mask", "]"]


# -------------------------------------------------------------------------------------------------
# strip_accents apart from do_lower_case (transformers' meaning)

@pytest.mark.parametrize("lower,strip", [(True, False), (False, True), (True, True), (False, False)])
def test_strip_accents_separately_matches_hf(lower, strip, corpora):
    ref = transformers.BertTokenizerFast(vocab=_vocab_dict(), do_lower_case=lower, strip_accents=strip)
    tok = BertTokenizer(_vocab_dict(), do_lower_case=lower, strip_accents=strip)
    texts = ["Ich möchte Kaffee.", "Ça coûte trop cher, Señor Müller!", "ΣΊΣΥΦΟΣ café\u0301 Ōsaka"]
    texts += corpora["wikipedia_summaries"][:400:9]
    want = ref(texts, return_offsets_mapping=True)
    if strip:
        want = _with_marks_covered(tok, texts, want)
    _same(tok(texts, return_offsets_mapping=True), want)
    _same(tok(texts, return_offsets_mapping=True, use_fast=False), want)


def test_lowercase_keeping_accents(tok, tmp_path):
    # The input: a tokenizer_config.json with do_lower_case true and strip_accents false loads
    # (it raised ValueError) and lower-cases with the accent kept.
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "strip_accents": False}))
    (tmp_path / "vocab.txt").write_text(open(vocab_path(), encoding="utf-8").read(), encoding="utf-8")
    accented = BertTokenizer.from_pretrained(tmp_path)
    assert accented.basic_tokenizer.tokenize("Ich möchte Kaffee.") == ["ich", "möchte", "kaffee", "."]
    assert tok.basic_tokenizer.tokenize("Ich möchte Kaffee.") == ["ich", "mochte", "kaffee", "."]  # Google's default
    ref = transformers.BertTokenizer(vocab=_vocab_dict(), do_lower_case=True, strip_accents=False)
    assert accented.tokenize("Ich möchte Kaffee.") == ref.tokenize("Ich möchte Kaffee.")
    # Same kind: capitals with accents, and a save/load round trip keeps the setting (transformers too).
    assert accented.basic_tokenizer.tokenize("ÉCOLE Élysée") == ["école", "élysée"]
    accented.save_pretrained(tmp_path / "saved")
    assert BertTokenizer.from_pretrained(tmp_path / "saved").strip_accents is False
    hf_loaded = transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert hf_loaded.tokenize("ÉCOLE Élysée") == accented.tokenize("ÉCOLE Élysée")
    with pytest.raises(ValueError, match="strip_accents must be"):
        BertTokenizer(_vocab_dict(), strip_accents="yes")


def test_offsets_cover_removed_combining_marks(tok):
    # The input: decomposed é after "cafe"; the token's span covers U+0301 on both paths.
    text = "They met at the cafe\u0301 yesterday."
    for fast in (False, True):
        enc = tok([text], return_offsets_mapping=True, use_fast=fast)
        spans = [text[a:b] for a, b in enc["offset_mapping"][0][1:-1]]
        assert spans == ["They", "met", "at", "the", "cafe\u0301", "yesterday", "."]
    # Same kind: a mark at the end of a text and one before punctuation; never past the next token.
    text = "Zoe\u0308, Noe\u0308l\u0301"
    for fast in (False, True):
        enc = tok([text], return_offsets_mapping=True, use_fast=fast)
        assert [text[a:b] for a, b in enc["offset_mapping"][0][1:-1]] == ["Zoe\u0308", ",", "Noe\u0308l\u0301"]


# ------------------------------------------------------------------------- words: word_ids, is_split_into_words
WORD_TEXTS = ["Hello, world! The [MASK] sat.", "U.S. naïve café déjà-vu 中文字 x", "don't stop   me now", ""]


@pytest.mark.parametrize("use_fast", [True, False])
def test_word_ids_of_text_match_transformers(tok, hf, use_fast):
    for text in WORD_TEXTS:
        assert tok(text, use_fast=use_fast).word_ids() == hf(text).word_ids(), text
    ours, ref = tok(WORD_TEXTS[:3], WORD_TEXTS[1:], use_fast=use_fast), hf(WORD_TEXTS[:3], WORD_TEXTS[1:])
    for i in range(3):                    # a pair counts the words of each text from 0
        assert ours.word_ids(i) == ref.word_ids(i)
    # windows of a long passage, padded: the word indices follow the tokens into every window
    passages = ["The Normans gave their name to Normandy, a region in France, in the 10th century.", "Short one."]
    kw = dict(truncation="only_second", max_length=16, stride=4, return_overflowing_tokens=True, padding=True)
    ours, ref = tok(["Who?", "What?"], passages, use_fast=use_fast, **kw), hf(["Who?", "What?"], passages, **kw)
    assert len(ours["input_ids"]) == len(ref["input_ids"]) > 3
    for i in range(len(ref["input_ids"])):
        assert ours.word_ids(i) == ref.word_ids(i)
    assert tok("a b")._word_ids is not None and tok("a b").word_ids(0) == [None, 0, 1, None]
    with pytest.raises(IndexError, match="batch_index 1 is out of range for a batch of 1"):
        tok("a b").word_ids(1)


@pytest.mark.parametrize("use_fast", [True, False])
def test_is_split_into_words_matches_transformers(tok, hf, use_fast):
    words = [["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
             ["Peter", "Blackburn", "", "U.S.", "naïve", "Johanson"]]
    kw = dict(is_split_into_words=True, truncation=True, max_length=9, return_offsets_mapping=True)
    ours, ref = tok(words, use_fast=use_fast, **kw), hf(words, **kw)
    assert ours["input_ids"] == ref["input_ids"]
    assert [[tuple(o) for o in row] for row in ours["offset_mapping"]] == \
        [[tuple(o) for o in row] for row in ref["offset_mapping"]]            # offsets within each word
    for i in range(2):
        assert ours.word_ids(i) == ref.word_ids(i)   # the empty word gets no token; U.S. is 4 pieces of word 3
    one, ref_one = tok(words[0], words[1], is_split_into_words=True, return_tensors="pt"), \
        hf(words[0], words[1], is_split_into_words=True)
    assert one["input_ids"][0].tolist() == ref_one["input_ids"] and one.word_ids() == ref_one.word_ids()
    with pytest.raises(TypeError, match=r"is_split_into_words=True, text must be a list of words"):
        tok("EU rejects", is_split_into_words=True)
    with pytest.raises(TypeError, match=r"text\[1\]\[0\] must be a str, got int"):
        tok([["EU"], [3]], is_split_into_words=True)


def test_convert_ids_to_tokens_names_an_id_outside_the_vocabulary():
    tok = BertTokenizer.from_pretrained(pretrained_path())
    assert tok.convert_ids_to_tokens(101) == "[CLS]" and tok.convert_ids_to_tokens([101, 102]) == ["[CLS]", "[SEP]"]
    for bad in (99999, [5, 99999], -1):
        with pytest.raises(ValueError, match=r"id (99999|-1) is not in the vocabulary \(size 30522\)"):
            tok.convert_ids_to_tokens(bad)
