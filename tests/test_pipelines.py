"""minibert.pipeline and python -m minibert.predict: label names, entity offsets and answer spans, the same
as transformers' pipelines on the same folder (fill-mask, text and token classification; transformers 5
has no question-answering pipeline, so answers are checked against minibert.squad's post-processing)."""
import json
import shutil

import numpy as np
import pytest
import torch
import transformers

import minibert
from minibert import (BertConfig, BertForMaskedLM, BertForQuestionAnswering, BertForTokenClassification,
                      BertModel, load_dataset, vocab_path)
from minibert.finetune import load_tokenizer, main as finetune_main, make_loader, predict
from minibert.glue import GLUE_TASKS, class_names, name_labels
from minibert.ner import CONLL2003_TAGS
from minibert.predict import main as predict_main
from minibert.squad import postprocess_predictions, prepare_features

SENTENCES = ["a gripping, funny and moving film", "the plot is a dull mess .", "it 's not bad at all",
             "Johanson visited the U.S. embassy in Zurich with Angela Merkel ."]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def tiny_config(**kw):
    return BertConfig.from_preset("tiny", vocab_size=30522, max_position_embeddings=128, num_hidden_layers=1, **kw)


def save(model, directory):
    model.save_pretrained(directory)
    load_tokenizer().save_pretrained(directory)
    return directory


def spread(head, scale=4.0):
    """Give a random head large weights, so that different tokens get different labels."""
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, scale)
    return head


@pytest.fixture(scope="module")
def sst2_model(tmp_path_factory):
    """A tiny encoder fine-tuned on 32 SST-2 sentences by the command line: its checkpoint names its labels."""
    base = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    BertModel(tiny_config()).save_pretrained(base)
    shutil.copy(vocab_path(), base / "vocab.txt")
    out = tmp_path_factory.mktemp("sst2") / "run"
    finetune_main(["--task", "sst2", "--model", str(base), "--max-train-examples", "32", "--max-eval-examples", "8",
                   "--epochs", "1", "--batch-size", "16", "--max-seq-length", "32", "--lr", "1e-3",
                   "--log-every", "1", "--out", str(out)])
    return out


# ------------------------------------------------------------------------------------- label names
def test_finetuning_saves_the_label_names(sst2_model):
    config = json.loads((sst2_model / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    assert transformers.AutoConfig.from_pretrained(sst2_model).id2label == {0: "negative", 1: "positive"}


def test_glue_class_names_of_every_task():
    expected = {"sst2": ["negative", "positive"], "cola": ["unacceptable", "acceptable"],
                "mrpc": ["not_equivalent", "equivalent"], "rte": ["entailment", "not_entailment"], "stsb": None}
    assert set(expected) == set(GLUE_TASKS)
    for task, names in expected.items():
        assert class_names(load_dataset(task, "validation")) == names
    config = tiny_config(num_labels=1)
    name_labels(config, None, regression=True)                   # STS-B: a score, no names
    assert config.problem_type == "regression" and config.id2label is None
    config = tiny_config(id2label={0: "no", 1: "yes"})
    name_labels(config, ["negative", "positive"])                # names already there are kept
    assert config.id2label == {0: "no", 1: "yes"}
    with pytest.raises(ValueError, match=r"3 label names \['a', 'b', 'c'\] but the model has num_labels=2"):
        name_labels(tiny_config(), ["a", "b", "c"])


# ------------------------------------------------------------------------------ text classification
def test_text_classification_matches_transformers(sst2_model):
    ours = minibert.pipeline("text-classification", model=sst2_model, device="cpu", batch_size=3)
    ref = transformers.pipeline("text-classification", model=str(sst2_model), device="cpu")
    inputs = SENTENCES + [{"text": "a fine film", "text_pair": "a dull film"}]
    got, want = ours(inputs), ref(inputs)
    assert [r["label"] for r in got] == [r["label"] for r in want]
    assert {r["label"] for r in got} <= {"positive", "negative"}
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], rtol=0, atol=1e-5)
    # one sentence gives a list of one result, as transformers; top_k gives every label, best first
    one = ours(SENTENCES[0])
    assert isinstance(one, list) and len(one) == 1 and set(one[0]) == {"label", "score"}
    assert one[0]["score"] == pytest.approx(got[0]["score"], abs=1e-6)       # batching changes nothing
    both, ref_both = ours(SENTENCES[0], top_k=None), ref(SENTENCES[0], top_k=None)
    assert [r["label"] for r in both] == [r["label"] for r in ref_both]
    np.testing.assert_allclose([r["score"] for r in both], [r["score"] for r in ref_both], atol=1e-5)
    assert sum(r["score"] for r in both) == pytest.approx(1.0, abs=1e-6)
    assert minibert.pipeline(model=sst2_model, device="cpu").task == "text-classification"   # from config.json


# ----------------------------------------------------------------------------- token classification
@pytest.fixture(scope="module")
def ner_model(tmp_path_factory):
    torch.manual_seed(1)
    model = BertForTokenClassification(tiny_config(num_labels=9, id2label=dict(enumerate(CONLL2003_TAGS))))
    spread(model.classifier)
    return save(model, tmp_path_factory.mktemp("ner"))


def test_token_classification_matches_transformers_simple_aggregation(ner_model, tokenizer):
    ours = minibert.pipeline("ner", model=ner_model, device="cpu", batch_size=2)
    ref = transformers.pipeline("token-classification", model=str(ner_model), device="cpu",
                                aggregation_strategy="simple")
    got, want = ours(SENTENCES), ref(SENTENCES)
    assert sum(len(g) for g in got) > 10                      # the spread head predicts many entities
    assert any(len(tokenizer.tokenize(t[e["start"]:e["end"]])) > 1 for t, g in zip(SENTENCES, got) for e in g)
    for text, g, w in zip(SENTENCES, got, want):
        assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in g] == \
            [(e["entity_group"], e["word"], e["start"], e["end"]) for e in w]
        np.testing.assert_allclose([e["score"] for e in g], [float(e["score"]) for e in w], atol=1e-5)
        for e in g:
            assert e["entity_group"] in {"PER", "ORG", "LOC", "MISC"}
            assert text[e["start"]:e["end"]].lower().replace(" ", "") == e["word"].replace(" ", "").lstrip("#")
    assert ours(SENTENCES[3]) == got[3]                        # one text gives one list of entities


def test_token_classification_aggregation_none_matches_transformers(ner_model):
    ours = minibert.pipeline("ner", model=ner_model, device="cpu")
    ref = transformers.pipeline("token-classification", model=str(ner_model), device="cpu", aggregation_strategy="none")
    got, want = ours(SENTENCES, aggregation_strategy="none"), ref(SENTENCES)
    assert sum(len(g) for g in got) > 10 and set(got[0][0]) == {"entity", "score", "index", "word", "start", "end"}
    for g, w in zip(got, want):
        assert [(e["entity"], e["index"], e["word"], e["start"], e["end"]) for e in g] == \
            [(e["entity"], e["index"], e["word"], e["start"], e["end"]) for e in w]
        np.testing.assert_allclose([e["score"] for e in g], [float(e["score"]) for e in w], atol=1e-5)
    assert ours(SENTENCES[0]) == ours(SENTENCES[0], aggregation_strategy="simple")     # the default
    with pytest.raises(ValueError, match=r"aggregation_strategy must be one of 'none', 'simple', got 'first' "
                                         r"\(transformers' 'first', 'average' and 'max' are not supported\)"):
        ours(SENTENCES[0], aggregation_strategy="first")


def test_entity_groups_golden(tokenizer):
    from minibert.ner import entity_groups

    text = "Johanson visited Zurich"
    enc = tokenizer(text, return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][1:-1])
    assert tokens == ["johan", "##son", "visited", "zurich"]
    offsets = enc["offset_mapping"][1:-1]
    groups = entity_groups(text, tokens, ["B-PER", "I-PER", "O", "B-LOC"], [0.9, 0.7, 0.99, 0.6], offsets,
                           tokenizer)
    assert groups == [{"entity_group": "PER", "score": pytest.approx(0.8), "word": "johanson", "start": 0, "end": 8},
                      {"entity_group": "LOC", "score": pytest.approx(0.6), "word": "zurich", "start": 17, "end": 23}]
    # a B- tag starts a new entity even inside a word; I- after another type starts one too
    groups = entity_groups(text, tokens, ["B-PER", "B-PER", "I-LOC", "I-LOC"], [1, 1, 1, 1], offsets, tokenizer)
    assert [(g["entity_group"], g["word"]) for g in groups] == [("PER", "johan"), ("PER", "##son"),
                                                                ("LOC", "visited zurich")]
    with pytest.raises(ValueError, match="4 tokens, 3 tags, 4 scores and 4 offsets"):
        entity_groups(text, tokens, ["O"] * 3, [1] * 4, offsets)


# ------------------------------------------------------------------------------- question answering
@pytest.fixture(scope="module")
def qa_model(tmp_path_factory):
    torch.manual_seed(2)
    model = BertForQuestionAnswering(tiny_config())
    spread(model.qa_outputs, 2.0)
    return save(model, tmp_path_factory.mktemp("qa"))


def test_question_answering_gives_the_squad_span(qa_model, tokenizer):
    context = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a "
               "region in France. They were descended from Norse raiders and pirates from Denmark, Iceland and "
               "Norway who, under their leader Rollo, agreed to swear fealty to King Charles III of West Francia.")
    questions = ["In what country is Normandy located?", "Who was the Norse leader?", "When did they live?"]
    pipe = minibert.pipeline("question-answering", model=qa_model, device="cpu", batch_size=4)
    kw = dict(max_seq_len=48, doc_stride=16)                  # several windows per passage
    got = pipe([{"question": q, "context": context} for q in questions], **kw)
    # the same span as the evaluation's post-processing on the same windows
    examples = {"id": list(range(3)), "question": questions, "context": [context] * 3}
    features = prepare_features(examples, tokenizer, max_length=48, doc_stride=16, with_labels=False)
    assert len(features) > 3 * 2
    model = BertForQuestionAnswering.from_pretrained(qa_model)
    starts, ends = predict(model, make_loader(features, 8, shuffle=False), output="start_end")
    rows = [{"id": i, "context": context} for i in range(3)]
    want = postprocess_predictions(rows, features, starts, ends)
    assert [g["answer"] for g in got] == [want[i] for i in range(3)]
    for g in got:
        assert set(g) == {"score", "start", "end", "answer"} and g["answer"]
        assert context[g["start"]:g["end"]] == g["answer"] and 0.0 < g["score"] <= 1.0
    # keyword form, one question: one dict; top_k gives the best spans, the first being the answer
    one = pipe(question=questions[0], context=context, **kw)
    assert isinstance(one, dict) and (one["answer"], one["start"]) == (got[0]["answer"], got[0]["start"])
    assert one["score"] == pytest.approx(got[0]["score"], abs=1e-6)
    top = pipe(question=questions[0], context=context, top_k=3, **kw)
    assert len(top) == 3 and top[0]["answer"] == got[0]["answer"]
    # the score is p_start * p_end, each a softmax over the passage tokens of the answer's window
    k = next(k for k, f in enumerate(features) if f["example_index"] == 0 and any(
        o is not None and o[0] == got[0]["start"] for o, m in zip(f["offset_mapping"], f["max_context"]) if m))
    passage = np.array([o is not None for o in features[k]["offset_mapping"]])
    n = len(passage)
    p = lambda x: np.exp(x - x[passage].max()) * passage / (np.exp(x - x[passage].max()) * passage).sum()  # noqa
    s = next(t for t, o in enumerate(features[k]["offset_mapping"]) if o is not None and o[0] == got[0]["start"]
             and features[k]["max_context"][t])
    e = next(t for t in range(s, n) if features[k]["offset_mapping"][t] is not None
             and features[k]["offset_mapping"][t][1] == got[0]["end"])
    assert got[0]["score"] == pytest.approx(float(p(starts[k][:n])[s] * p(ends[k][:n])[e]), rel=1e-5)


# ------------------------------------------------------------------------------------------ fill-mask
@pytest.fixture(scope="module")
def mlm_model(tmp_path_factory):
    torch.manual_seed(3)
    model = BertForMaskedLM(tiny_config())
    spread(model.cls.predictions.transform, 0.5)
    return save(model, tmp_path_factory.mktemp("mlm"))


def test_fill_mask_matches_transformers(mlm_model):
    ours = minibert.pipeline("fill-mask", model=mlm_model, device="cpu")
    ref = transformers.pipeline("fill-mask", model=str(mlm_model), device="cpu")
    for inputs in ("the cat sat on the [MASK].", ["paris is the [MASK] of france.", "the [MASK] [MASK] barked."]):
        got, want = ours(inputs, top_k=4), ref(inputs, top_k=4)
        flat = lambda r: [r] if isinstance(r, dict) else [x for y in r for x in flat(y)]  # noqa: E731
        g, w = flat(got), flat(want)
        assert [(x["token"], x["token_str"], x["sequence"]) for x in g] == \
            [(x["token"], x["token_str"], x["sequence"]) for x in w]
        np.testing.assert_allclose([x["score"] for x in g], [x["score"] for x in w], atol=1e-5)
    with pytest.raises(ValueError, match=r"fill-mask input 0 has no \[MASK\] token: 'no mask here'"):
        ours("no mask here")


# ------------------------------------------------------------------------------------------- errors
def test_pipeline_errors(tmp_path, sst2_model):
    BertModel(tiny_config()).save_pretrained(tmp_path / "encoder")
    with pytest.raises(ValueError, match=r"has no trained text-classification head \(classifier.weight, "
                                         r"classifier.bias not in the checkpoint\): fine-tune it first"):
        minibert.pipeline("text-classification", model=tmp_path / "encoder", device="cpu")
    with pytest.raises(ValueError) as exc:
        minibert.pipeline("fill-mask", model=sst2_model, device="cpu")
    assert str(exc.value) == (
        f"model {str(sst2_model)!r} holds a sequence classifier (BertForSequenceClassification, from config.json) "
        "without an MLM head (cls.predictions.* not in the checkpoint): fill-mask needs a pre-trained checkpoint "
        "saved with its MLM head (BertForMaskedLM or BertForPreTraining, e.g. the --out of python -m "
        "minibert.pretrain); this folder's task is 'text-classification'")
    with pytest.raises(ValueError, match=r"model '.*encoder' holds a bare encoder \(BertModel, from config.json\) "
                                         r"without an MLM head \(cls.predictions.\* not in the checkpoint\): "
                                         r"fill-mask needs a pre-trained checkpoint"):
        minibert.pipeline("fill-mask", model=tmp_path / "encoder", device="cpu")
    with pytest.raises(ValueError, match=r"holds a sequence classifier \(BertForSequenceClassification, from "
                                         r"config.json\) without a trained span \(question-answering\) head "
                                         r"\(qa_outputs.weight, qa_outputs.bias not in the checkpoint\): fine-tune "
                                         r"it first \(python -m minibert.finetune\); this folder's task is "
                                         r"'text-classification'"):
        minibert.pipeline("question-answering", model=sst2_model, device="cpu")
    with pytest.raises(ValueError, match="unknown task 'summarization'; choose one of fill-mask"):
        minibert.pipeline("summarization", model=sst2_model)
    with pytest.raises(ValueError, match="is not a directory; pass a checkpoint directory"):
        minibert.pipeline("text-classification", model=tmp_path / "missing")
    with pytest.raises(ValueError, match="cannot tell the task of"):
        minibert.pipeline(model=tmp_path / "encoder")
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        minibert.pipeline(model=sst2_model, batch_size=0)
    pipe = minibert.pipeline(model=sst2_model, device=-1)      # transformers' -1: the CPU
    assert pipe.device == torch.device("cpu")
    with pytest.raises(TypeError, match=r"input 1 must be a str or a dict \{'text': str, 'text_pair': str\}"):
        pipe(["fine", 3])
    with pytest.raises(ValueError, match="no texts to run: the list is empty"):
        pipe([])


# -------------------------------------------------------------------------------- python -m minibert.predict
def test_predict_command_line(sst2_model, qa_model, tmp_path, capsys):
    pipe = minibert.pipeline(model=sst2_model, device="cpu")
    results = predict_main(["--model", str(sst2_model), "--device", "cpu", *SENTENCES[:2]])
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == results == pipe(SENTENCES[:2])
    assert all(set(json.loads(line)) == {"label", "score"} for line in lines)   # one dict per line
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps(SENTENCES[0]) + "\n\n" + json.dumps({"text": "a", "text_pair": "b"}) + "\n")
    results = predict_main(["--model", str(sst2_model), "--file", str(inputs), "--top-k", "2"])
    assert len(capsys.readouterr().out.splitlines()) == 2 and all(len(r) == 2 for r in results)
    answers = predict_main(["--model", str(qa_model), "--context", "BERT was published in 2018 by Google.",
                            "When was BERT published?", "Who published BERT?"])
    assert len(capsys.readouterr().out.splitlines()) == 2 and all("answer" in a for a in answers)

    def error(argv):
        with pytest.raises(SystemExit) as exc:
            predict_main(argv)
        assert exc.value.code == 2
        return capsys.readouterr().err

    assert "no inputs: give one or more TEXT arguments, or --file" in error(["--model", str(sst2_model)])
    inputs.write_text('"fine"\n{"text": "a", oops}\n')
    assert f"{inputs} line 2 is not JSON" in error(["--model", str(sst2_model), "--file", str(inputs)])
    assert "question answering needs --context PASSAGE" in error(["--model", str(qa_model), "Who?"])
    assert "--context is for question answering, but the task is text-classification" in error(
        ["--model", str(sst2_model), "--context", "x", "fine"])
    inputs.write_text('{"sentence": "fine"}\n')
    assert "input 1: a text-classification input object takes the keys \"text\" and optionally" in error(
        ["--model", str(sst2_model), "--file", str(inputs)])


@pytest.mark.parametrize("damage, message", [
    ("no weights", "model '{d}' is not a complete checkpoint: no model.safetensors or pytorch_model.bin in {d}"),
    ("list", "{d}/config.json holds a JSON list, not an object of settings"),
    ("string", "{d}/config.json holds a JSON string, not an object of settings"),
    ("number", "{d}/config.json holds a JSON number, not an object of settings"),
    ("invalid", "{d}/config.json is not valid JSON: Expecting property name enclosed in double quotes at line 1"),
    ("not utf-8", "{d}/config.json is not UTF-8 text (invalid start byte at byte 0)"),
    ("wrong type", "{d}/config.json: BertConfig.hidden_size must be an int, got '128'"),
    ("labels list", "{d}/config.json: BertConfig.id2label must be a mapping (a JSON object), got list"),
    ("gpt2", "{d}/config.json: model_type is 'gpt2', not 'bert': this is not a BERT model's config"),
])
def test_a_bad_model_folder_names_the_file_in_pipeline_and_predict(sst2_model, tmp_path, capsys, damage, message):
    d = tmp_path / "m"
    shutil.copytree(sst2_model, d)
    config = d / "config.json"
    values = json.loads(config.read_text())
    if damage == "no weights":
        (d / "model.safetensors").unlink()
    elif damage in ("list", "string", "number", "invalid", "not utf-8"):
        config.write_bytes({"list": b"[1, 2]", "string": b'"bert"', "number": b"3", "invalid": b"{oops}",
                            "not utf-8": b"\xff\xfe{}"}[damage])
    else:
        values.update({"wrong type": {"hidden_size": "128"}, "labels list": {"id2label": ["neg", "pos"]},
                       "gpt2": {"model_type": "gpt2"}}[damage])
        config.write_text(json.dumps(values))
    message = message.format(d=d)
    for task in (None, "text-classification"):          # the task read from config.json, or given
        with pytest.raises(ValueError) as exc:
            minibert.pipeline(task, model=d, device="cpu")
        assert message in str(exc.value)
    with pytest.raises(SystemExit) as exc:
        predict_main(["--model", str(d), "--device", "cpu", "fine"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.splitlines()[-1].startswith(f"python -m minibert.predict: error: {message}")


def test_over_long_inputs_are_cut_with_one_warning_naming_the_tokens_dropped(sst2_model, ner_model, qa_model,
                                                                              tokenizer, caplog):
    long_text = "a gripping film " * 60                                   # 180 word pieces + [CLS] [SEP]
    n = len(tokenizer(long_text)["input_ids"])
    pipe = minibert.pipeline(model=sst2_model, device="cpu")               # max_position_embeddings 128
    with caplog.at_level("WARNING", logger="minibert"):
        pipe(["fine", long_text, long_text + "again"])
    assert [r.getMessage() for r in caplog.records] == [
        f"text-classification: 2 input(s) longer than the model's 128 tokens were cut; {2 * (n - 128) + 1} token(s) "
        f"dropped (input 1: {n - 128}, input 2: {n - 127})"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="minibert"):
        pipe("fine")
        minibert.pipeline("ner", model=ner_model, device="cpu")(long_text)
        assert [r.getMessage() for r in caplog.records] == [
            f"token-classification: 1 input(s) longer than the model's 128 tokens were cut; {n - 128} token(s) "
            f"dropped (input 0: {n - 128})"]
        caplog.clear()
        qa = minibert.pipeline("question-answering", model=qa_model, device="cpu")
        qa(question="what film?", context=long_text)
    assert caplog.records == []                                            # windows: no context dropped
    features = prepare_features({"question": ["what film?"], "context": [long_text]}, tokenizer,
                                max_length=qa.max_length, doc_stride=min(128, qa.max_length // 3), with_labels=False)
    covered = {tuple(o) for f in features for o in f["offset_mapping"] if o is not None}
    words = [(m.start(), m.end()) for m in __import__("re").finditer(r"\S+", long_text)]
    assert len(features) > 1 and set(words) <= covered
