"""The options behind the paper's ablations (Devlin et al. 2019, Section 5, Tables 5, 6 and 8) and what came after
BERT (RoBERTa's recipe, ALBERT's sentence-order prediction): each option's defining property on real data."""
import math
from collections import Counter

import datasets
import pytest
import torch
import transformers

from minibert.ablations import RECIPES, Recipe
from minibert.config import BertConfig
from minibert.corpus import load_corpora, tokenize_corpus
from minibert.data import pretrained_path
from minibert.model import (BertForPreTraining, BertForSequenceClassification, BertLMHeadModel, BertModel,
                            BertWithBiLSTMForSequenceClassification)
from minibert.pretraining import (IGNORE_INDEX, DataCollatorForCausalLM, DataCollatorForPreTraining, MaskedLMPolicy,
                                  create_training_instances)
from minibert.tokenizer import BertTokenizer

VOCAB = 97


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared machine a busy second core makes multi-threaded LSTM kernels crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok():
    return BertTokenizer.from_pretrained(pretrained_path())


@pytest.fixture(scope="module")
def docs(tok):
    """About 330 documents of both corpora."""
    wiki = load_corpora("wikipedia_summaries", max_documents=300)
    books = load_corpora("books", max_documents=30)
    return tokenize_corpus(datasets.concatenate_datasets([wiki, books]), tok)[:]["sentence_ids"]


def causal_config(**kw):
    values = dict(vocab_size=VOCAB, max_position_embeddings=32, is_decoder=True, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    values.update(kw)
    return BertConfig.from_preset("tiny", **values)


# ------------------------------------------------------------------------------------- (a) no NSP
def test_no_nsp_instances_are_single_segments_and_train_mlm_only(tok, docs):
    stats = Counter()
    instances = create_training_instances(docs, tok, max_seq_length=64, dupe_factor=1, seed=3, stats=stats,
                                          sentence_task="none", static_masking=False)
    assert len(instances) > 1000 and stats["single_segment"] == len(instances)
    for x in instances:
        assert x.token_type_ids == [0] * len(x.input_ids)
        assert x.input_ids[0] == tok.cls_token_id and x.input_ids[-1] == tok.sep_token_id
        assert x.input_ids.count(tok.sep_token_id) == 1 and len(x.input_ids) <= 64
        assert x.next_sentence_label == IGNORE_INDEX
    assert max(len(x.input_ids) for x in instances) == 64         # packed up to max_seq_length - 2 tokens + 2

    batch = DataCollatorForPreTraining(tok, mlm_format="sparse", dynamic_masking=True, seed=0)(
        [x.to_dict() for x in instances[:8]])
    assert "next_sentence_label" not in batch                      # the collator passes no NSP labels
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=len(tok.vocab), max_position_embeddings=64))
    out = model(**batch)
    assert out.nsp_loss is None and out.mlm_loss is not None and torch.equal(out.loss, out.mlm_loss)


def test_bad_sentence_task_is_named(tok, docs):
    with pytest.raises(ValueError, match="sentence_task must be one of"):
        create_training_instances(docs[:5], tok, sentence_task="nextsentence")


# ------------------------------------------------------------------------------------- (b) left to right
def test_causal_model_cannot_see_the_future():
    torch.manual_seed(0)
    ids = torch.randint(5, VOCAB, (2, 12))
    for impl in ("sdpa", "eager"):
        model = BertLMHeadModel(causal_config(attn_implementation=impl)).eval()
        with torch.no_grad():
            base = model(ids, output_hidden_states=True)
            for t in range(ids.shape[1] - 1):
                changed = ids.clone()
                changed[:, t + 1] = (changed[:, t + 1] + 7) % (VOCAB - 5) + 5
                out = model(changed, output_hidden_states=True)
                assert (out.logits[:, :t + 1] - base.logits[:, :t + 1]).abs().max() < 1e-6
                assert (out.logits[:, t + 1] - base.logits[:, t + 1]).abs().max() > 1e-3   # and t+1 is seen
                for h, g in zip(out.hidden_states, base.hidden_states):
                    assert (h[:, :t + 1] - g[:, :t + 1]).abs().max() < 1e-6
    bidirectional = BertModel(causal_config(is_decoder=False)).eval()
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 7) % (VOCAB - 5) + 5
    with torch.no_grad():   # the check can fail: without is_decoder, position 0 sees the last token
        assert (bidirectional(changed).last_hidden_state[:, 0] - bidirectional(ids).last_hidden_state[:, 0]).abs().max() > 1e-3


def test_causal_lm_matches_transformers_and_shifts_labels(tmp_path):
    torch.manual_seed(1)
    hf_config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=37, max_position_embeddings=32, is_decoder=True,
                                        attn_implementation="eager", initializer_range=0.2)
    theirs = transformers.BertLMHeadModel(hf_config).eval()
    theirs.save_pretrained(tmp_path)
    ours = BertLMHeadModel.from_pretrained(tmp_path)
    assert ours.config.is_decoder and ours.loading_info == {"initialized": [], "ignored": [], "mismatched": []}
    ids = torch.randint(1, VOCAB, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        a = theirs(input_ids=ids, attention_mask=mask, labels=labels)
        b = ours(input_ids=ids, attention_mask=mask, labels=labels)
    keep = mask.bool()
    assert (a.logits[keep] - b.logits[keep]).abs().max() < 1e-4
    assert abs(a.loss.item() - b.loss.item()) < 1e-5
    manual = torch.nn.functional.cross_entropy(b.logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1))
    assert abs(manual.item() - b.loss.item()) < 1e-6
    with pytest.raises(ValueError, match="is_decoder=True"):
        BertLMHeadModel(causal_config(is_decoder=False))


def test_causal_classifier_reads_the_last_token_and_stays_causal():
    torch.manual_seed(2)
    model = BertForSequenceClassification(causal_config(num_labels=3)).eval()
    ids = torch.randint(5, VOCAB, (2, 10))
    with torch.no_grad():
        for t in range(1, 9):
            prefix = model(ids[:, :t + 1]).logits                      # the first t+1 tokens only
            mask = torch.zeros_like(ids)
            mask[:, :t + 1] = 1
            garbage = ids.clone()
            garbage[:, t + 1:] = torch.randint(5, VOCAB, (2, 9 - t))   # whatever follows is padding
            padded = model(garbage, attention_mask=mask, output_hidden_states=True)
            assert (padded.logits - prefix).abs().max() < 1e-6
            moved = ids.clone()
            moved[:, t] = (moved[:, t] + 3) % (VOCAB - 5) + 5            # the last real token: it is read
            assert (model(moved, attention_mask=mask).logits - padded.logits).abs().max() > 1e-4
    loaded = BertForSequenceClassification(causal_config(num_labels=3))
    assert loaded.bert.config.is_decoder


def test_ltr_collator_labels_every_real_token(tok):
    feats = [{"input_ids": [tok.cls_token_id, 2000, 2001, tok.sep_token_id], "token_type_ids": [0] * 4},
             {"input_ids": [tok.cls_token_id, 2002, tok.sep_token_id], "token_type_ids": [0] * 3}]
    batch = DataCollatorForCausalLM(tok)(feats)
    assert batch["labels"].tolist() == [[101, 2000, 2001, 102], [101, 2002, 102, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    with pytest.raises(ValueError, match="static_masking=False"):
        DataCollatorForCausalLM(tok)([{"input_ids": [1, 2], "masked_lm_positions": [1], "masked_lm_ids": [5]}])


# ------------------------------------------------------------------------------------- (c) Table 8 mixtures
TABLE8 = [(80, 10, 10), (100, 0, 0), (80, 0, 20), (80, 20, 0), (0, 20, 80), (0, 0, 100)]   # MASK, SAME, RND


@pytest.mark.parametrize("mix", TABLE8)
def test_table8_masking_mixtures_measured(tok, docs, mix):
    mask, same, rnd = (p / 100 for p in mix)
    name = {(80, 10, 10): "bert"}.get(mix, "mask_{}_{}_{}".format(*mix))
    recipe = RECIPES[name]
    assert (recipe.mask_prob, recipe.random_prob) == (mask, rnd)
    instances = create_training_instances(docs[:150], tok, max_seq_length=128, dupe_factor=1, seed=5,
                                          mask_prob=recipe.mask_prob, random_prob=recipe.random_prob)
    counts = Counter()
    for x in instances:
        for p, o in zip(x.masked_lm_positions, x.masked_lm_ids):
            counts["mask" if x.input_ids[p] == tok.mask_token_id else "same" if x.input_ids[p] == o else "rnd"] += 1
    n = sum(counts.values())
    assert n > 3000
    for share, key in ((mask, "mask"), (same, "same"), (rnd, "rnd")):
        # a random token equals the original or [MASK] with probability ~1/30522: within 4 standard deviations
        tolerance = 4 * math.sqrt(max(share * (1 - share), 1e-4) / n) + 1e-3
        assert abs(counts[key] / n - share) < tolerance, (mix, key, counts[key] / n)


def test_impossible_mixture_is_refused():
    with pytest.raises(ValueError, match="mask_prob \\+ random_prob must be <= 1"):
        MaskedLMPolicy(100, 3, (1, 2), mask_prob=0.9, random_prob=0.2)


# ------------------------------------------------------------------------------------- (d) + BiLSTM
def test_bilstm_head_shapes_and_it_trains():
    torch.manual_seed(3)
    config = causal_config(num_labels=2, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                           num_hidden_layers=1)
    model = BertWithBiLSTMForSequenceClassification(config)
    assert model.lstm.bidirectional and model.classifier.in_features == 2 * (config.hidden_size // 2)
    ids = torch.randint(5, VOCAB, (8, 12))
    mask = torch.ones_like(ids)
    mask[::2, 7:] = 0
    labels = (ids[:, 1] > VOCAB // 2).long()                   # learnable from the tokens
    out = model(ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (8, 2) and out.loss.ndim == 0
    # padding does not change a sequence's logits (packed LSTM, causal encoder)
    model.eval()
    with torch.no_grad():
        other = ids.masked_fill(mask == 0, 7)
        assert (model(other, attention_mask=mask).logits - model(ids, attention_mask=mask).logits).abs().max() < 1e-6
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = model(ids, attention_mask=mask, labels=labels).loss
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


# ------------------------------------------------------------------------------------- (e) SOP
def test_sop_swaps_segment_order_with_probability_half(tok, docs):
    stats = Counter()
    instances = create_training_instances(docs, tok, max_seq_length=128, dupe_factor=2, seed=11, stats=stats,
                                          sentence_task="sop", static_masking=False)
    n = len(instances)
    swapped = sum(x.next_sentence_label for x in instances)
    assert n > 2000 and {x.next_sentence_label for x in instances} == {0, 1}
    assert abs(swapped - n / 2) < 4 * math.sqrt(n / 4), (swapped, n)
    assert stats["sop_swapped"] == swapped and stats["sop_in_order"] == n - swapped
    # the label is the swap: with the same random draws, an instance's segments are the document's text in
    # order when the label is 0 and reversed when it is 1
    joined = [" " + " ".join(map(str, [t for s in d for t in s])) + " " for d in docs]
    checked = 0
    for x in instances[:400]:
        sep = x.input_ids.index(tok.sep_token_id)
        a, b = x.input_ids[1:sep], x.input_ids[sep + 1:-1]
        assert x.token_type_ids == [0] * (len(a) + 2) + [1] * (len(b) + 1)
        first, second = (a, b) if x.next_sentence_label == 0 else (b, a)
        # untruncated pairs are contiguous text of one document: "first second" occurs in it
        if len(x.input_ids) < 128:
            needle = " " + " ".join(map(str, first + second)) + " "
            assert any(needle in j for j in joined)
            checked += 1
    assert checked > 100


# ------------------------------------------------------------------------------------- (f) RoBERTa
def test_roberta_recipe_is_no_nsp_with_dynamic_masking(tok, docs):
    recipe = RECIPES["roberta"]
    assert recipe.sentence_task == "none" and recipe.dynamic_masking and recipe.objective == "mlm"
    assert (RECIPES["no_nsp"].sentence_task, RECIPES["no_nsp"].dynamic_masking) == ("none", False)
    instances = recipe.instances(docs[:60], tok, max_seq_length=64, max_predictions=10, seed=1)
    assert all(not x["masked_lm_positions"] for x in instances[:50])     # masks are left to the collator
    collate = recipe.collator(tok, max_predictions=10, seed=0)
    a, b = collate(instances[:16]), collate(instances[:16])
    assert "next_sentence_label" not in a
    assert not torch.equal(a["masked_lm_positions"], b["masked_lm_positions"])   # new masks every batch
    assert (a["token_type_ids"] == 0).all()


def test_recipes_are_documented_and_checked():
    for name, recipe in RECIPES.items():
        assert recipe.name == name and recipe.source
    with pytest.raises(ValueError, match="objective must be"):
        Recipe("x", objective="rtl", source="-")
    with pytest.raises(ValueError, match="left-to-right model has no sentence task"):
        Recipe("x", objective="ltr", sentence_task="nsp", source="-")


def test_ltr_sparse_positions_score_the_same_as_the_dense_loss(tok):
    """DataCollatorForCausalLM(max_predictions_per_seq=k): as many scored positions as the masked LM, each
    labelled with the token that follows it; the model's loss there equals the dense loss at those positions."""
    torch.manual_seed(4)
    feats = [{"input_ids": [tok.cls_token_id, *range(2000, 2000 + n), tok.sep_token_id]} for n in (60, 30, 5)]
    batch = DataCollatorForCausalLM(tok, max_predictions_per_seq=8, seed=3)(feats)
    positions, labels = batch["prediction_positions"], batch["labels"]
    counts = (labels != -100).sum(1).tolist()
    assert counts == [8, 5, 1]                       # min(8, max(1, round(0.15 n))) for n = 62, 32, 7 tokens
    ids = batch["input_ids"]
    for b in range(3):
        for p, y in zip(positions[b, :counts[b]].tolist(), labels[b, :counts[b]].tolist()):
            assert p + 1 < batch["attention_mask"][b].sum() and ids[b, p + 1] == y
    config = BertConfig.from_preset("tiny", vocab_size=len(tok.vocab), is_decoder=True, hidden_dropout_prob=0.0,
                                    attention_probs_dropout_prob=0.0)
    model = BertLMHeadModel(config).eval()
    with torch.no_grad():
        sparse = model(**batch).loss
        dense = model(ids, attention_mask=batch["attention_mask"]).logits          # (B, S, V)
        picked = torch.stack([dense[b, p] for b in range(3) for p in positions[b, :counts[b]].tolist()])
        expected = torch.nn.functional.cross_entropy(picked, labels[labels != -100])
    assert abs(sparse.item() - expected.item()) < 1e-5
