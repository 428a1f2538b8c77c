"""minibert.config and minibert.model: sizes, initialisation, Hugging Face parity, attention paths, masks.

Parity tests build a randomly initialised ``transformers`` model (eager attention), save it with
``save_pretrained`` and load it with minibert's ``from_pretrained``; every output must agree to 1e-5.
"""
import json
import math

import pytest
import torch
import transformers

from minibert.config import PRESETS, BertConfig
from minibert.data import pretrained_path
from minibert.model import (BertForMaskedLM, BertForMultipleChoice, BertForPreTraining,
                            BertForQuestionAnswering, BertForSequenceClassification,
                            BertForTokenClassification, BertModel, extended_attention_mask)

TOL = 1e-5
HEADS = ["BertModel", "BertForPreTraining", "BertForMaskedLM", "BertForSequenceClassification",
         "BertForTokenClassification", "BertForQuestionAnswering", "BertForMultipleChoice"]
VOCAB, B, S = 97, 3, 9


def small_hf_config(**kw):
    values = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=32, type_vocab_size=2,
                  attn_implementation="eager",
                  initializer_range=0.2)   # large weights: activations of order 1, so every op is exercised
    values.update(kw)
    return transformers.BertConfig(**values)


def tiny(**kw):
    values = dict(vocab_size=VOCAB, max_position_embeddings=32)
    values.update(kw)
    return BertConfig.from_preset("tiny", **values)


def batch(seed=0, choices=None):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (B, S), generator=g)
    types = torch.zeros(B, S, dtype=torch.long)
    types[:, 5:] = 1
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, 6:] = 0                               # a padded sequence
    mask[2, 3:] = 0
    if choices:
        ids, types, mask = (t[:, None].repeat(1, choices, 1) for t in (ids, types, mask))
        ids[:, 1] = torch.roll(ids[:, 1], 1, dims=-1)
    return dict(input_ids=ids, token_type_ids=types, attention_mask=mask)


def labels_for(name, seed=1):
    g = torch.Generator().manual_seed(seed)
    if name in ("BertForPreTraining", "BertForMaskedLM"):
        labels = torch.full((B, S), -100)
        labels[:, [1, 4]] = torch.randint(0, VOCAB, (B, 2), generator=g)
        out = dict(labels=labels)
        if name == "BertForPreTraining":
            out["next_sentence_label"] = torch.tensor([0, 1, 1])
        return out
    if name == "BertForSequenceClassification":
        return dict(labels=torch.tensor([0, 2, 1]))
    if name == "BertForTokenClassification":
        labels = torch.randint(0, 3, (B, S), generator=g)
        labels[1, 6:] = -100
        return dict(labels=labels)
    if name == "BertForQuestionAnswering":   # one answer past the end: clamped and ignored, as in HF
        return dict(start_positions=torch.tensor([1, 3, 40]), end_positions=torch.tensor([2, 50, 8]))
    if name == "BertForMultipleChoice":
        return dict(labels=torch.tensor([1, 0, 1]))
    return {}


def assert_close(a, b, tol=TOL, what=""):
    assert a.shape == b.shape, f"{what}: shapes {tuple(a.shape)} vs {tuple(b.shape)}"
    diff = (a.float() - b.float()).abs().max().item()
    assert diff <= tol, f"{what}: max abs diff {diff:.3g} > {tol}"


# ======================================================================================= config
def test_presets_follow_devlin_and_turc():
    expected = {"tiny": (2, 128, 2), "mini": (4, 256, 4), "small": (4, 512, 8), "medium": (8, 512, 8),
                "base": (12, 768, 12), "large": (24, 1024, 16)}
    assert PRESETS == expected
    for name, (layers, hidden, heads) in expected.items():
        c = BertConfig.from_preset(name)
        assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads) == (layers, hidden, heads)
        assert c.intermediate_size == 4 * hidden and c.vocab_size == 30522
    assert BertConfig() == BertConfig.from_preset("base")
    assert BertConfig.from_preset("tiny", num_labels=5).num_labels == 5


def test_defaults_match_transformers_bert_config():
    ours, theirs = BertConfig(), transformers.BertConfig()
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
                 "max_position_embeddings", "type_vocab_size", "initializer_range", "layer_norm_eps",
                 "pad_token_id", "num_labels", "classifier_dropout"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.attn_implementation == "sdpa" and ours.head_dim == 64


def test_config_json_round_trip_and_unknown_keys(tmp_path):
    path = tmp_path / "config.json"
    c = tiny(num_labels=3, hidden_dropout_prob=0.2)
    c.to_json_file(path)
    written = json.loads(path.read_text())
    assert written["model_type"] == "bert" and written["hidden_size"] == 128
    assert written["id2label"] == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    assert BertConfig.from_json_file(path) == c
    assert not list(tmp_path.glob("*.tmp"))            # the atomic write left no temporary file
    # A Hugging Face config.json: unknown keys are ignored (kept aside), id2label sets num_labels.
    hf = dict(written, architectures=["BertForMaskedLM"], use_cache=True, transformers_version="4.8.2",
              id2label={"0": "neg", "1": "pos"}, label2id={"neg": 0, "pos": 1})
    del hf["num_labels"]
    path.write_text(json.dumps(hf))
    back = BertConfig.from_pretrained(tmp_path, attn_implementation="eager")
    assert back.num_labels == 2 and back.id2label == {0: "neg", 1: "pos"}
    assert back.attn_implementation == "eager" and back.extra["use_cache"] is True
    assert BertConfig.from_pretrained(pretrained_path()).num_hidden_layers == 6


@pytest.mark.parametrize("overrides, message", [
    (dict(hidden_size=100, num_attention_heads=3), r"hidden_size \(100\) must be divisible by num_attention_heads \(3\)"),
    (dict(num_hidden_layers=0), r"num_hidden_layers must be positive, got 0"),
    (dict(vocab_size=-5), r"vocab_size must be positive"),
    (dict(intermediate_size=2.5), r"intermediate_size must be an int"),
    (dict(hidden_dropout_prob=1.0), r"hidden_dropout_prob must be a probability in \[0, 1\), got 1.0"),
    (dict(attention_probs_dropout_prob=-0.1), r"attention_probs_dropout_prob must be a probability"),
    (dict(classifier_dropout=1.5), r"classifier_dropout must be a probability"),
    (dict(hidden_act="gelu_fast"), r"hidden_act='gelu_fast' is not supported"),
    (dict(attn_implementation="flash"), r"attn_implementation='flash' is not supported"),
    (dict(layer_norm_eps=0), r"layer_norm_eps must be positive"),
])
def test_invalid_config_raises_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        BertConfig(**overrides)


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match=r"unknown BertConfig preset 'huge'"):
        BertConfig.from_preset("huge")
    with pytest.raises(TypeError, match="hidden_sise"):
        BertConfig().replace(hidden_sise=3)
    with pytest.raises(TypeError, match="needs a minibert BertConfig"):
        BertModel(transformers.BertConfig())


# ======================================================================================= sizes and init
def test_parameter_counts_match_the_paper_models():
    with torch.device("meta"):     # no memory, no initialisation cost
        base, large = BertModel(BertConfig.from_preset("base")), BertModel(BertConfig.from_preset("large"))
        pretraining = BertForPreTraining(BertConfig.from_preset("base"))
    assert base.num_parameters() == 109_482_240       # "BERT-BASE ... 110M" (Section 3)
    assert large.num_parameters() == 335_141_888      # "BERT-LARGE ... 340M"
    assert pretraining.num_parameters() == 110_106_428  # + MLM transform and bias + NSP; decoder tied
    with torch.device("meta"):
        hf = transformers.BertForPreTraining(transformers.BertConfig())
    assert pretraining.num_parameters() == hf.num_parameters()
    assert base.num_parameters(exclude_embeddings=True) == 109_482_240 - (30522 + 512 + 2) * 768


def test_initialisation_is_googles_truncated_normal():
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig.from_preset("mini", vocab_size=2000))
    std = model.config.initializer_range
    word = model.bert.embeddings.word_embeddings.weight
    dense = model.bert.encoder.layer[0].intermediate.dense
    for w in (word, dense.weight):
        assert w.abs().max() <= 2 * std + 1e-7        # cut at two standard deviations
        # std of N(0, s^2) truncated to [-2s, 2s] is about 0.8796 s
        assert abs(w.std().item() - 0.8796 * std) < 0.03 * std
    assert torch.all(dense.bias == 0) and torch.all(model.cls.predictions.bias == 0)
    ln = model.bert.encoder.layer[1].output.LayerNorm
    assert torch.all(ln.weight == 1) and torch.all(ln.bias == 0)
    # Tied: the MLM decoder *is* the word-embedding matrix; the two bias names are one Parameter.
    assert model.cls.predictions.decoder.weight is word
    assert model.cls.predictions.bias is model.cls.predictions.decoder.bias


def test_state_dict_keys_match_transformers():
    for name in HEADS:
        hf_cfg = small_hf_config(num_labels=3)
        ours = getattr(__import__("minibert.model", fromlist=[name]), name)(tiny(num_labels=3))
        theirs = getattr(transformers, name)(hf_cfg)
        theirs_keys = {k for k in theirs.state_dict() if not k.endswith(("position_ids", "token_type_ids"))}
        assert set(ours.state_dict()) == theirs_keys, name


# ======================================================================================= HF parity
@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """One randomly initialised transformers model of each head type, saved with save_pretrained."""
    dirs = {}
    for i, name in enumerate(HEADS):
        torch.manual_seed(100 + i)
        model = getattr(transformers, name)(small_hf_config(num_labels=3 if name != "BertForQuestionAnswering" else 2))
        with torch.no_grad():   # HF zeroes these at init; give them values so the parity test sees them
            for n, p in model.named_parameters():
                if n.endswith("bias") or "LayerNorm" in n:
                    p.add_(0.1 * torch.randn_like(p))
        path = tmp_path_factory.mktemp(name)
        model.eval().save_pretrained(path)
        dirs[name] = (model, path)
    return dirs


OUTPUT_FIELDS = {
    "BertModel": ["last_hidden_state", "pooler_output"],
    "BertForPreTraining": ["loss", "prediction_logits", "seq_relationship_logits"],
    "BertForQuestionAnswering": ["loss", "start_logits", "end_logits"],
}


@pytest.mark.parametrize("name", HEADS)
def test_every_head_matches_transformers(name, hf_dirs):
    import minibert.model as M
    theirs, path = hf_dirs[name]
    ours = getattr(M, name).from_pretrained(path, attn_implementation="eager")
    assert ours.loading_info == {"initialized": [], "ignored": [], "mismatched": []}
    inputs = batch(choices=2 if name == "BertForMultipleChoice" else None)
    inputs.update(labels_for(name))
    with torch.no_grad():
        a = theirs(**inputs, output_hidden_states=True, output_attentions=True)
        b = ours(**inputs, output_hidden_states=True, output_attentions=True)
    for field in OUTPUT_FIELDS.get(name, ["loss", "logits"]):
        if field == "loss" and name == "BertModel":
            continue
        assert_close(getattr(a, field), getattr(b, field), what=f"{name}.{field}")
    assert len(b.hidden_states) == 3 and len(b.attentions) == 2
    for i, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states)):
        assert_close(x, y, what=f"hidden_states[{i}]")
    for i, (x, y) in enumerate(zip(a.attentions, b.attentions)):
        assert_close(x, y, what=f"attentions[{i}]")
    if name == "BertForPreTraining":
        assert torch.allclose(b.loss, b.mlm_loss + b.nsp_loss)


def test_regression_head_matches_transformers(tmp_path):
    torch.manual_seed(3)
    theirs = transformers.BertForSequenceClassification(small_hf_config(num_labels=1)).eval()
    theirs.save_pretrained(tmp_path)
    ours = BertForSequenceClassification.from_pretrained(tmp_path, attn_implementation="eager")
    labels = torch.tensor([0.5, 3.0, -1.0])
    with torch.no_grad():
        a, b = theirs(**batch(), labels=labels), ours(**batch(), labels=labels)
    assert_close(a.logits, b.logits, what="logits")
    assert_close(a.loss, b.loss, what="MSE loss")
    assert torch.allclose(b.loss, ((b.logits.squeeze(-1) - labels) ** 2).mean())


@pytest.fixture(scope="module")
def real_reference():
    """Real sentence pairs, tokenized by transformers, and transformers' BertModel outputs on them."""
    tok = transformers.AutoTokenizer.from_pretrained(str(pretrained_path()))
    inputs = tok(["The cat sat on the mat.", "BERT is pre-trained on unlabeled text with two tasks.",
                  "Short one"], ["And then it slept.", "Masked LM and next sentence prediction.", "pair"],
                 padding=True, return_tensors="pt")
    theirs = transformers.BertModel.from_pretrained(str(pretrained_path()), attn_implementation="eager").eval()
    with torch.no_grad():
        return inputs, theirs(**inputs, output_hidden_states=True)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_real_pretrained_weights_match_transformers(impl, real_reference):
    inputs, a = real_reference
    assert inputs["attention_mask"].min() == 0 and inputs["token_type_ids"].max() == 1  # padding and pairs
    ours = BertModel.from_pretrained(pretrained_path(), attn_implementation=impl)
    assert ours.config.num_hidden_layers == 6 and ours.config.hidden_size == 384
    assert ours.loading_info == {"initialized": [], "ignored": [], "mismatched": []}
    assert not ours.training                            # from_pretrained returns eval mode, like HF
    with torch.no_grad():
        b = ours(**inputs, output_hidden_states=True)
    keep = inputs["attention_mask"].bool()
    assert len(b.hidden_states) == 7
    for i, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states)):
        assert_close(x[keep], y[keep], what=f"hidden_states[{i}]")
    assert_close(a.pooler_output, b.pooler_output, what="pooler_output")


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_fused_qkv_matches_transformers_and_keeps_parameter_names(impl, real_reference):
    inputs, a = real_reference
    ours = BertModel.from_pretrained(pretrained_path(), attn_implementation=impl).set_fused_qkv()
    assert ours.loading_info == {"initialized": [], "ignored": [], "mismatched": []}             # the same checkpoint keys
    assert "encoder.layer.0.attention.self.query.weight" in ours.state_dict()
    with torch.no_grad():
        b = ours(**inputs, output_hidden_states=True)
    keep = inputs["attention_mask"].bool()
    for i, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states)):
        assert_close(x[keep], y[keep], what=f"hidden_states[{i}]")


def test_fused_qkv_equals_three_projections_forward_and_backward():
    torch.manual_seed(0)
    config = BertConfig.from_preset("tiny", vocab_size=120, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForPreTraining(config)
    ids = torch.randint(5, 120, (3, 17))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    runs = []
    for fused in (False, True):
        model.zero_grad()
        model.set_fused_qkv(fused)
        out = model(input_ids=ids, attention_mask=mask, labels=ids, next_sentence_label=torch.tensor([0, 1, 0]))
        out.loss.backward()
        runs.append((out.prediction_logits.detach(), out.loss.detach(),
                     {n: p.grad.clone() for n, p in model.named_parameters()}))
    (l0, loss0, g0), (l1, loss1, g1) = runs
    assert (l0 - l1).abs().max() < 1e-6 and (loss0 - loss1).abs() < 1e-6
    assert g0.keys() == g1.keys()
    for name in g0:
        assert (g0[name] - g1[name]).abs().max() < 1e-6, name
    assert model.bert.encoder.layer[0].attention.self.fused_qkv


# ======================================================================================= attention paths
def test_sdpa_path_equals_explicit_path_forward_and_backward():
    torch.manual_seed(0)
    # initializer_range 0.1: peaked attention, far from uniform, so the two kernels are really compared
    explicit = BertForPreTraining(tiny(attn_implementation="eager", initializer_range=0.1))
    fused = BertForPreTraining(tiny(attn_implementation="sdpa", initializer_range=0.1))
    fused.load_state_dict(explicit.state_dict())
    inputs = dict(batch(), **labels_for("BertForPreTraining"))
    inputs["attention_mask"][2] = 0        # an all-padding sequence: its [CLS] still feeds the NSP loss
    explicit.eval(), fused.eval()
    a, b = explicit(**inputs, output_hidden_states=True), fused(**inputs, output_hidden_states=True)
    assert_close(a.prediction_logits, b.prediction_logits, what="logits")
    assert_close(a.loss, b.loss, what="loss")
    a.loss.backward(), b.loss.backward()
    ga, gb = dict(explicit.named_parameters()), dict(fused.named_parameters())
    for n in ga:
        assert_close(ga[n].grad, gb[n].grad, tol=1e-5, what=f"grad {n}")
    # output_attentions forces the explicit kernel even when sdpa is configured
    with torch.no_grad():
        out = fused.bert(**batch(), output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (B, 2, S, S)
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(B, 2, S))
    assert torch.all(out.attentions[0][1, :, :, 6:] == 0)   # padded keys get exactly zero weight
    assert fused.bert(**batch()).attentions is None
    # switching an existing model's kernel in place gives the explicit path's numbers
    with torch.no_grad():
        switched = fused.set_attn_implementation("eager")(**inputs).prediction_logits
    assert fused.config.attn_implementation == "eager"
    assert torch.equal(switched, explicit(**inputs).prediction_logits.detach())
    with pytest.raises(ValueError, match="attn_implementation='flash' is not supported"):
        fused.set_attn_implementation("flash")
    assert out.attentions[0][0].max() > 0.5         # some query attends mostly to one key


def test_attention_mask_forms_agree_and_padding_is_ignored():
    torch.manual_seed(0)
    model = BertModel(tiny()).eval()
    inputs = batch()
    with torch.no_grad():
        ref = model(**inputs).last_hidden_state
        as_bool = model(**dict(inputs, attention_mask=inputs["attention_mask"].bool())).last_hidden_state
        # changing what sits under the padding changes nothing for the real tokens
        ids = inputs["input_ids"].clone()
        ids[1, 6:] = 5
        other = model(**dict(inputs, input_ids=ids)).last_hidden_state
        # a 3-D mask (one row per query) gives the same as the 2-D one
        mask3 = inputs["attention_mask"][:, None, :].expand(B, S, S)
        as_3d = model(**dict(inputs, attention_mask=mask3)).last_hidden_state
    assert torch.equal(ref, as_bool)
    assert_close(ref[1, :6], other[1, :6], tol=1e-6, what="real tokens")
    assert_close(ref, as_3d, tol=1e-6, what="3-D mask")
    ext = extended_attention_mask(inputs["attention_mask"], torch.float16)
    assert ext.shape == (B, 1, 1, S) and ext.dtype == torch.float16
    assert ext[1, 0, 0, 5] == 0 and ext[1, 0, 0, 6] == torch.finfo(torch.float16).min


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_all_padding_rows_stay_finite(impl, dtype):
    """A sequence that is all padding: every key masked. Scores are made strongly negative (-32) so a
    naive ``scores + finfo(fp16).min`` rounds to -inf for every key and a softmax over them gives NaN."""
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny(attn_implementation=impl)).eval()
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            attn = layer.attention.self                 # q = 2, k = -2 everywhere: score = -4 * 64 / 8
            attn.query.weight.zero_(), attn.key.weight.zero_()
            attn.query.bias.fill_(2.0), attn.key.bias.fill_(-2.0)
    model = model.to(dtype)
    inputs = batch()
    inputs["attention_mask"][2] = 0                       # sequence 2: nothing to attend to
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    assert torch.isfinite(out.logits).all()
    assert all(torch.isfinite(h).all() for h in out.hidden_states)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_all_padding_sequence_attends_to_every_key(impl):
    """The documented rule for a query with no key left: it attends to all keys, as if unmasked."""
    torch.manual_seed(0)
    model = BertModel(tiny(attn_implementation=impl, initializer_range=0.1)).eval()
    inputs = batch()
    empty = dict(inputs, attention_mask=inputs["attention_mask"].clone())
    empty["attention_mask"][2] = 0
    full = dict(inputs, attention_mask=inputs["attention_mask"].clone())
    full["attention_mask"][2] = 1
    with torch.no_grad():
        a, b = model(**empty).last_hidden_state, model(**full).last_hidden_state
        ref = model(**inputs).last_hidden_state
    assert_close(a[2], b[2], tol=1e-6, what="all-padding row")
    assert_close(a[:2], ref[:2], tol=1e-6, what="other sequences")


def test_dropout_is_active_in_training_and_off_in_eval():
    torch.manual_seed(0)
    model = BertModel(tiny(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3))
    inputs = batch()
    model.train()
    assert not torch.equal(model(**inputs).last_hidden_state, model(**inputs).last_hidden_state)
    model.eval()
    assert torch.equal(model(**inputs).last_hidden_state, model(**inputs).last_hidden_state)


# ======================================================================================= MLM
@pytest.mark.parametrize("cls", [BertForPreTraining, BertForMaskedLM])
def test_sparse_mlm_head_equals_dense(cls):
    """Google's gather_indexes: logits only at masked_lm_positions, same loss as the dense head."""
    torch.manual_seed(0)
    model = cls(tiny()).eval()
    inputs = batch()
    positions = torch.tensor([[1, 4, 0], [2, 3, 5], [1, 0, 0]])       # (B, P), zero-padded
    sparse_labels = torch.tensor([[7, 8, -100], [9, 10, 11], [12, -100, -100]])
    dense_labels = torch.full((B, S), -100)
    for b in range(B):
        for p, l in zip(positions[b], sparse_labels[b]):
            if l != -100:
                dense_labels[b, p] = l
    with torch.no_grad():
        dense = model(**inputs, labels=dense_labels)
        sparse = model(**inputs, labels=sparse_labels, masked_lm_positions=positions)
    dense_logits = dense.prediction_logits if cls is BertForPreTraining else dense.logits
    sparse_logits = sparse.prediction_logits if cls is BertForPreTraining else sparse.logits
    assert sparse_logits.shape == (B, 3, VOCAB)
    assert_close(sparse_logits, dense_logits[torch.arange(B)[:, None], positions], tol=1e-6, what="gathered")
    assert_close(sparse.loss, dense.loss, tol=1e-6, what="loss")
    expected = torch.nn.functional.cross_entropy(sparse_logits[sparse_labels != -100], sparse_labels[sparse_labels != -100])
    assert_close(sparse.loss, expected, tol=1e-6, what="mean over real predictions")


def test_pretraining_loss_parts():
    torch.manual_seed(0)
    model = BertForPreTraining(tiny()).eval()
    labels = labels_for("BertForPreTraining")
    with torch.no_grad():
        both = model(**batch(), **labels)
        mlm_only = model(**batch(), labels=labels["labels"])
        nsp_only = model(**batch(), next_sentence_label=labels["next_sentence_label"])
        none = model(**batch())
    assert torch.allclose(both.loss, both.mlm_loss + both.nsp_loss)
    assert torch.allclose(mlm_only.loss, both.mlm_loss) and mlm_only.nsp_loss is None
    assert torch.allclose(nsp_only.loss, both.nsp_loss) and nsp_only.mlm_loss is None
    assert none.loss is None and none.seq_relationship_logits.shape == (B, 2)
    # untrained: the MLM loss is near log(V) (uniform guess), the NSP loss near log 2
    assert abs(both.mlm_loss.item() - math.log(VOCAB)) < 0.5
    assert abs(both.nsp_loss.item() - math.log(2)) < 0.3
    assert both[0] is both.loss and both["prediction_logits"] is both.prediction_logits


# ======================================================================================= errors
def test_too_long_input_raises():
    model = BertModel(tiny(max_position_embeddings=16))
    with pytest.raises(ValueError, match=r"sequence length 17 exceeds max_position_embeddings \(16\)"):
        model(torch.ones(1, 17, dtype=torch.long))
    assert model(torch.ones(1, 16, dtype=torch.long)).last_hidden_state.shape == (1, 16, 128)


def test_bad_inputs_raise_clear_errors():
    model = BertModel(tiny())
    with pytest.raises(ValueError, match=r"input_ids must have 2 dimensions, got shape \(9,\)"):
        model(torch.ones(9, dtype=torch.long))
    with pytest.raises(TypeError, match="input_ids must be an integer tensor"):
        model(torch.ones(2, 9))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 8\) but input_ids has shape \(2, 9\)"):
        model(torch.ones(2, 9, dtype=torch.long), attention_mask=torch.ones(2, 8))
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model()
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, vocab_size=97\), got values in \[0, 30000\]"):
        model(torch.tensor([[0, 30000]]))
    with pytest.raises(ValueError, match=r"token_type_ids must be in \[0, type_vocab_size=2\)"):
        model(torch.tensor([[1, 2]]), token_type_ids=torch.tensor([[0, 2]]))
    with pytest.raises(ValueError, match="input_ids must have 3 dimensions"):
        BertForMultipleChoice(tiny())(torch.ones(2, 9, dtype=torch.long))
    mlm = BertForMaskedLM(tiny())
    with pytest.raises(ValueError, match=r"labels have shape \(3, 2\) but masked_lm_positions gives \(3, 3\)"):
        mlm(**batch(), labels=torch.zeros(3, 2, dtype=torch.long), masked_lm_positions=torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"masked_lm_positions must have shape \(batch, num_predictions\)"):
        mlm(**batch(), masked_lm_positions=torch.zeros(3, dtype=torch.long))


def test_inputs_embeds_and_multiple_choice_shapes():
    torch.manual_seed(0)
    model = BertModel(tiny()).eval()
    inputs = batch()
    with torch.no_grad():
        a = model(**inputs).last_hidden_state
        embeds = model.embeddings.word_embeddings(inputs.pop("input_ids"))
        b = model(inputs_embeds=embeds, **inputs).last_hidden_state
    assert torch.equal(a, b)
    mc = BertForMultipleChoice(tiny()).eval()
    out = mc(**batch(choices=4), labels=torch.tensor([0, 3, 2]))
    assert out.logits.shape == (B, 4) and out.loss.ndim == 0


@pytest.mark.parametrize("sparse", [False, True])
def test_loss_is_zero_not_nan_without_labelled_positions(sparse):
    # The input: BertForMaskedLM with every label -100 gave NaN (PyTorch's 0/0); Google's
    # sum / (sum(weights) + 1e-5) gives 0. Same for every head that averages over chosen positions.
    from minibert.model import BertForMaskedLM, BertForPreTraining, BertForQuestionAnswering, BertForTokenClassification
    torch.manual_seed(0)
    config = BertConfig.from_preset("tiny", vocab_size=50, max_position_embeddings=16)
    ids = torch.randint(5, 50, (2, 8))
    none = torch.full((2, 3) if sparse else (2, 8), -100)
    pos = dict(masked_lm_positions=torch.tensor([[1, 2, 3], [1, 2, 0]])) if sparse else {}
    mlm = BertForMaskedLM(config)
    out = mlm(ids, labels=none, **pos)
    assert out.loss.item() == 0.0
    out.loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in mlm.parameters())
    pre = BertForPreTraining(config)(ids, labels=none, next_sentence_label=torch.tensor([-100, -100]), **pos)
    assert pre.loss.item() == 0.0
    # With labels the value is still the plain mean (PyTorch's cross_entropy).
    some = none.clone()
    some[0, 1] = 7
    some[1, 2] = 9
    out = mlm(ids, labels=some, **pos)
    ref = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 50), some.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, ref, atol=1e-6, rtol=1e-6)
    # Same kind: token classification with no labelled token, QA with every position out of range.
    tagger = BertForTokenClassification(config.replace(num_labels=3))
    assert tagger(ids, labels=torch.full((2, 8), -100)).loss.item() == 0.0
    qa = BertForQuestionAnswering(config)
    far = torch.tensor([99, 99])
    assert qa(ids, start_positions=far, end_positions=far).loss.item() == 0.0
