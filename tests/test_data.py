"""minibert.data: one loader for the local mirror and the hub, with the same columns and clear errors."""
import time

import datasets
import pytest

from minibert import data
from minibert.data import DataUnavailableError, load_dataset


@pytest.fixture
def no_mirror(monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_glue_from_mirror_has_hub_columns_and_label_names():
    sst2 = load_dataset("sst2")
    assert set(sst2) == {"train", "validation"}
    assert sst2["train"].column_names == ["sentence", "label", "idx"]
    assert sst2["train"].num_rows == 67349 and sst2["validation"].num_rows == 872
    assert sst2["train"].features["label"].names == ["negative", "positive"]
    mrpc = load_dataset("mrpc", "test")
    assert isinstance(mrpc, datasets.Dataset) and mrpc.num_rows == 1725
    assert mrpc.column_names == ["sentence1", "sentence2", "label", "idx"]
    assert load_dataset("stsb", "validation").features["label"].dtype == "float32"


def test_ner_tags_carry_label_names():
    conll = load_dataset("conll2003", "validation")
    tags = conll.features["ner_tags"].feature
    assert isinstance(tags, datasets.ClassLabel)
    assert tags.names[:3] == ["O", "B-PER", "I-PER"] and len(tags.names) == 9
    first = conll[0]
    assert len(first["tokens"]) == len(first["ner_tags"])


def test_corpora_and_squad_columns():
    books = load_dataset("books", "train")
    assert {"id", "title", "text"} <= set(books.column_names) and books.num_rows == 508
    wiki = load_dataset("wikipedia_summaries", "train")
    assert {"id", "title", "text"} <= set(wiki.column_names) and wiki.num_rows == 10033
    squad = load_dataset("squad", "validation")
    ex = squad[0]
    answer, start = ex["answers"]["text"][0], ex["answers"]["answer_start"][0]
    assert ex["context"][start:start + len(answer)] == answer


def test_unknown_name_and_split_are_named_in_the_error():
    with pytest.raises(ValueError, match="unknown data set 'sst3'.*sst2"):
        load_dataset("sst3")
    with pytest.raises(ValueError, match="no split 'test'.*train, validation"):
        load_dataset("sst2", "test")


def test_bad_mirror_path_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(DataUnavailableError, match="is not a directory"):
        load_dataset("sst2")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    with pytest.raises(DataUnavailableError, match="not in the local mirror"):
        load_dataset("sst2")


def test_no_mirror_and_no_hub_fails_at_once_with_a_fix(no_mirror):
    start = time.monotonic()
    with pytest.raises(DataUnavailableError, match=r"unreachable \(HF_\w+_OFFLINE is set\).*set MINIBERT_DATA") as err:
        load_dataset("sst2")
    assert time.monotonic() - start < 2.0
    assert "no local mirror is configured" in str(err.value)


def test_unreachable_hub_is_detected_without_offline_flags(no_mirror, monkeypatch):
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(data, "HUB_HOST", "hub.invalid")  # never resolves
    start = time.monotonic()
    with pytest.raises(DataUnavailableError, match="cannot connect to hub.invalid"):
        load_dataset("books")
    assert time.monotonic() - start < 10.0


def test_pretrained_weights_and_vocab_ship_offline():
    path = data.pretrained_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    vocab = data.vocab_path().read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 30522 and vocab[:1] == ["[PAD]"] and "[MASK]" in vocab
    with pytest.raises(ValueError, match="unknown pretrained model"):
        data.pretrained_path("bert-large")
