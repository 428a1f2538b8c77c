"""Pre-training data: corpus handling, instance creation (Google's create_pretraining_data.py), masking, collator,
metrics. Statistics are checked on thousands of instances built from the real local corpora."""
import math
import random
from collections import Counter

import datasets
import pytest
import torch

from minibert.corpus import group_lines, iter_documents, load_corpora, split_sentences, tokenize_corpus
from minibert.data import pretrained_path
from minibert.pretraining import (
    IGNORE_INDEX, DataCollatorForPreTraining, MaskedLMPolicy, PretrainingMetrics, create_pretraining_dataset,
    create_training_instances, masked_lm_accuracy, next_sentence_accuracy, truncate_seq_pair,
)
from minibert.tokenizer import BertTokenizer

DOCS = [
    "The cat sat on the mat. It was warm. The dog barked loudly. Birds sang outside.",
    "Paris is the capital of France. It lies on the Seine. Millions visit every year.",
    "Photosynthesis converts light into chemical energy. Plants need water. Leaves are green.",
]


@pytest.fixture(scope="module")
def tok():
    return BertTokenizer.from_pretrained(pretrained_path())


@pytest.fixture(scope="module")
def small_docs(tok):
    return tokenize_corpus(datasets.Dataset.from_dict({"text": DOCS}), tok)[:]["sentence_ids"]


@pytest.fixture(scope="module")
def real_docs(tok):
    """About 1,100 documents of both corpora: 700 Wikipedia leads and 30 book chapters."""
    wiki = load_corpora("wikipedia_summaries", max_documents=700)
    books = load_corpora("books", max_documents=30)
    return tokenize_corpus(datasets.concatenate_datasets([wiki, books]), tok)[:]["sentence_ids"]


@pytest.fixture(scope="module")
def real_instances(tok, real_docs):
    stats = Counter()
    instances = create_training_instances(real_docs, tok, max_seq_length=128, dupe_factor=2, seed=7, stats=stats)
    return instances, stats


# ------------------------------------------------------------------------------------------ corpus
def test_split_sentences_rules():
    text = ('Mr. Knightley came in. "Is it so?" said Emma. Arthur C. Clarke wrote it in 1968. It was shown in '
            'the U.S. and abroad! Really? Yes.\nA new paragraph starts here. e.g. this stays')
    assert split_sentences(text) == [
        "Mr. Knightley came in.", '"Is it so?" said Emma.', "Arthur C. Clarke wrote it in 1968.",
        "It was shown in the U.S. and abroad!", "Really?", "Yes.", "A new paragraph starts here. e.g. this stays"]
    assert split_sentences("  \n\n ") == []
    with pytest.raises(TypeError, match="expects a str"):
        split_sentences(None)


def test_tokenize_corpus_matches_per_sentence_tokenization_and_caches(tok):
    corpus = load_corpora("books", max_documents=2)
    out = tokenize_corpus(corpus, tok)
    again = tokenize_corpus(corpus, tok)
    assert out.cache_files and out.cache_files == again.cache_files          # second call reads the cache
    doc = out[0]["sentence_ids"]
    sentences = split_sentences(corpus[0]["text"])
    assert len(doc) == len(sentences)
    assert doc[:5] == [tok.convert_tokens_to_ids(tok.tokenize(s)) for s in sentences[:5]]
    streamed = tokenize_corpus(corpus.to_iterable_dataset(), tok)
    assert isinstance(streamed, datasets.IterableDataset)
    assert [row["sentence_ids"] for row in streamed] == out[:]["sentence_ids"]
    with pytest.raises(ValueError, match="no column 'body'"):
        tokenize_corpus(corpus, tok, text_column="body")
    with pytest.raises(TypeError, match="lacks"):
        tokenize_corpus(corpus, object())


def test_tokenize_corpus_in_parallel_and_shards(tok):
    corpus = load_corpora("wikipedia_summaries", max_documents=40)
    serial = tokenize_corpus(corpus, tok, load_from_cache_file=False)
    parallel = tokenize_corpus(corpus, tok, num_proc=2, load_from_cache_file=False)
    assert parallel[:]["sentence_ids"] == serial[:]["sentence_ids"]
    shards = list(iter_documents(serial, documents_per_shard=13))      # 13 + 13 + 14: a tail of 1 is merged
    assert [len(s) for s in shards] == [13, 13, 14]
    assert [d for s in shards for d in s] == serial[:]["sentence_ids"]
    streamed = list(iter_documents(serial.to_iterable_dataset(), documents_per_shard=13))
    assert streamed == shards
    with pytest.raises(ValueError, match="documents_per_shard must be an int >= 2"):
        next(iter_documents(serial, documents_per_shard=1))


def test_group_lines_makes_documents(tok):
    lines = datasets.Dataset.from_dict({"text": [f"Sentence number {i}." for i in range(10)]})
    grouped = group_lines(lines, 4)
    assert grouped[:]["text"] == ["\n".join(f"Sentence number {i}." for i in range(k, min(k + 4, 10)))
                                  for k in (0, 4, 8)]
    assert [r["text"] for r in group_lines(lines.to_iterable_dataset(), 4)] == grouped[:]["text"]
    docs = tokenize_corpus(grouped, tok)[:]["sentence_ids"]
    assert [len(d) for d in docs] == [4, 4, 2]
    with pytest.raises(ValueError, match="lines_per_document must be a positive int"):
        group_lines(lines, 0)


# ------------------------------------------------------------------------------------------ golden
def _show(tok, inst):
    return (" ".join(tok.convert_ids_to_tokens(inst.input_ids)), inst.next_sentence_label, inst.masked_lm_positions,
            tok.convert_ids_to_tokens(inst.masked_lm_ids))


def test_golden_instances(tok, small_docs):
    got = [_show(tok, x) for x in create_training_instances(small_docs, tok, max_seq_length=24, dupe_factor=1)]
    assert got == [
        ("[CLS] paris is the capital of france . it lies [MASK] the seine . [SEP] millions [MASK] every year [MASK] [SEP]",
         0, [10, 16, 19], ["on", "visit", "."]),
        ("[CLS] the cat sat [MASK] the mat . [SEP] it was warm . the [MASK] barked loudly [MASK] birds sang outside . [SEP]",
         0, [4, 14, 17], ["on", "dog", "."]),
        ("[CLS] [MASK] ##yn ##thesis [MASK] light into chemical energy . plants need [MASK] . [SEP] leaves are green . [SEP]",
         0, [1, 4, 12], ["photos", "converts", "water"]),
    ]


def test_golden_instances_whole_word(tok, small_docs):
    inst = create_training_instances(small_docs, tok, max_seq_length=24, dupe_factor=1, whole_word_mask=True)
    got = [_show(tok, x) for x in inst]
    assert len(got) == 6
    assert got[:3] == [
        # "plants" and "are" were chosen but left unchanged (the 10% case), "need" became [MASK]
        ("[CLS] photos ##yn ##thesis converts light into chemical energy . plants [MASK] water . [SEP] "
         "leaves are green . [SEP]", 0, [10, 11, 16], ["plants", "need", "are"]),
        # a random next segment (from another document)
        ("[CLS] millions visit every year . [SEP] birds [MASK] [MASK] . [SEP]", 1, [8, 9], ["sang", "outside"]),
        ("[CLS] it was warm . [SEP] the dog barked [MASK] . [MASK] sang outside . [SEP]", 0, [9, 11],
         ["loudly", "birds"]),
    ]
    assert inst[1].token_type_ids == [0] * 7 + [1] * 5


# ------------------------------------------------------------------------------------------ structure
def test_structure_segments_and_specials(tok, real_instances):
    instances, _ = real_instances
    assert len(instances) > 4000
    cls, sep = tok.cls_token_id, tok.sep_token_id
    for x in instances:
        ids, tt = list(x.input_ids), x.token_type_ids
        assert 5 <= len(ids) <= 128 and len(tt) == len(ids)
        for p, original in zip(x.masked_lm_positions, x.masked_lm_ids):   # undo the masking (a random
            ids[p] = original                                              # replacement may even be [SEP])
        first_sep = ids.index(sep)
        # [CLS] A [SEP] B [SEP]: exactly two [SEP], segment 0 up to the first one, 1 after
        assert ids[0] == cls and ids[-1] == sep and ids.count(sep) == 2 and ids.count(cls) == 1
        assert tt == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
        assert first_sep >= 2 and len(ids) - first_sep >= 3                  # A and B are never empty
        # [CLS]/[SEP] are never masked (nor replaced by a random token), positions sorted and unique
        assert not set(x.masked_lm_ids) & {cls, sep}
        assert x.masked_lm_positions == sorted(set(x.masked_lm_positions))
        assert 0 not in x.masked_lm_positions and first_sep not in x.masked_lm_positions
        assert len(ids) - 1 not in x.masked_lm_positions
        # Google's rule: num_to_predict = min(20, max(1, round(0.15 n)))
        assert len(x.masked_lm_positions) == min(20, max(1, int(round(len(ids) * 0.15))))


def test_mask_rate_and_80_10_10(tok, real_instances):
    instances, _ = real_instances
    counts = Counter()
    total_tokens = 0
    for x in instances:
        total_tokens += len(x.input_ids)
        for p, original in zip(x.masked_lm_positions, x.masked_lm_ids):
            now = x.input_ids[p]
            counts["mask" if now == tok.mask_token_id else "same" if now == original else "random"] += 1
    n = sum(counts.values())
    assert n > 70_000
    assert abs(n / total_tokens - 0.15) < 0.004                     # rounding and the cap of 20 at 128 tokens
    # 3.5 standard deviations of a binomial share at this n is about 0.005 for 80%, 0.004 for 10%
    assert abs(counts["mask"] / n - 0.8) < 0.005
    assert abs(counts["same"] / n - 0.1) < 0.004
    assert abs(counts["random"] / n - 0.1) < 0.004


def test_nsp_balance_and_short_seq_prob(real_instances):
    instances, stats = real_instances
    labels = Counter(x.next_sentence_label for x in instances)
    assert labels[0] + labels[1] == len(instances)
    assert stats["single_sentence_chunks"] + stats["coin_random"] + stats["coin_next"] == len(instances)
    assert labels[0] == stats["coin_next"] and labels[1] == stats["coin_random"] + stats["single_sentence_chunks"]
    coin = stats["coin_random"] + stats["coin_next"]
    assert abs(stats["coin_random"] / coin - 0.5) < 3.5 * (0.25 / coin) ** 0.5    # the paper's 50/50
    assert labels[1] / len(instances) > 0.5                       # single-sentence chunks push it above 50%
    visits = stats["documents"]
    assert visits == 2 * 730
    assert abs(stats["short_target"] / visits - 0.1) < 3.5 * (0.09 / visits) ** 0.5
    lengths = [len(x.input_ids) for x in instances]
    assert sum(n == 128 for n in lengths) / len(lengths) > 0.3    # most chunks fill the sequence ...
    assert sum(n < 64 for n in lengths) / len(lengths) > 0.05     # ... short targets and document ends do not


def test_short_seq_prob_one_shortens_instances(tok, real_docs):
    stats = Counter()
    short = create_training_instances(real_docs[:200], tok, max_seq_length=64, dupe_factor=2, short_seq_prob=1.0,
                                      stats=stats)
    full = create_training_instances(real_docs[:200], tok, max_seq_length=64, dupe_factor=2, short_seq_prob=0.0)
    assert stats["short_target"] == stats["documents"] == 400
    lengths = Counter(len(x.input_ids) for x in short)
    assert len(lengths) >= 35 and max(lengths) <= 64
    full_at_max = sum(len(x.input_ids) == 64 for x in full) / len(full)
    assert lengths[64] / len(short) < full_at_max - 0.2


def test_whole_word_masking_masks_whole_words(tok, real_docs):
    inst = create_training_instances(real_docs[:300], tok, dupe_factor=1, whole_word_mask=True, seed=3)
    cont = [t.startswith("##") for t in tok.convert_ids_to_tokens(list(range(len(tok.vocab))))]
    masked_pieces = 0
    for x in inst:
        original = list(x.input_ids)
        for p, i in zip(x.masked_lm_positions, x.masked_lm_ids):
            original[p] = i
        masked = set(x.masked_lm_positions)
        assert len(masked) <= min(20, max(1, int(round(len(original) * 0.15))))
        for p in masked:   # the word a masked piece belongs to is masked whole
            if cont[original[p]] and original[p - 1] not in (tok.cls_token_id, tok.sep_token_id):
                assert p - 1 in masked
                masked_pieces += 1
            if p + 1 < len(original) and cont[original[p + 1]]:
                assert p + 1 in masked
    assert masked_pieces > 100


def test_truncate_seq_pair():
    import random
    rng = random.Random(0)
    a, b = list(range(10)), list(range(100, 103))
    ta, tb = truncate_seq_pair(a, b, 8, rng)
    assert tb == b and len(ta) == 5 and ta == a[ta[0]:ta[0] + 5]        # only the longer side, contiguous
    fronts = Counter()
    for _ in range(400):
        ta, tb = truncate_seq_pair(list(range(4)), list(range(4)), 7, rng)   # a tie trims B
        assert ta == [0, 1, 2, 3] and len(tb) == 3
        fronts[tb[0] == 1] += 1
    assert 160 < fronts[True] < 240


# ------------------------------------------------------------------------------------------ determinism, dataset
def test_determinism_and_dataset_equals_list(tok, real_docs):
    docs = real_docs[:150]
    a = create_training_instances(docs, tok, dupe_factor=2, seed=11)
    b = create_training_instances(docs, tok, dupe_factor=2, seed=11)
    c = create_training_instances(docs, tok, dupe_factor=2, seed=12)
    assert [x.to_dict() for x in a] == [x.to_dict() for x in b]
    assert [x.to_dict() for x in a] != [x.to_dict() for x in c]
    ds = create_pretraining_dataset(datasets.Dataset.from_dict({"sentence_ids": docs}), tok, dupe_factor=2, seed=11)
    assert ds.column_names == ["input_ids", "token_type_ids", "next_sentence_label", "masked_lm_positions",
                               "masked_lm_ids"]
    assert ds[:] == {k: [x.to_dict()[k] for x in a] for k in ds.column_names}
    unmasked = create_pretraining_dataset(datasets.Dataset.from_dict({"sentence_ids": docs}), tok, dupe_factor=2,
                                          seed=11, static_masking=False)
    assert unmasked.column_names == ["input_ids", "token_type_ids", "next_sentence_label"]
    assert all(tok.mask_token_id not in ids for ids in unmasked[:]["input_ids"])


def test_streamed_corpus_gives_the_same_instances(tok):
    corpus = datasets.Dataset.from_dict({"text": DOCS * 3})
    in_memory = create_pretraining_dataset(corpus, tok, max_seq_length=32, dupe_factor=2)
    streamed = create_pretraining_dataset(corpus.to_iterable_dataset(), tok, max_seq_length=32, dupe_factor=2)
    assert isinstance(streamed, datasets.IterableDataset)
    assert [dict(r) for r in streamed] == [dict(r) for r in in_memory]
    unknown = datasets.IterableDataset.from_generator(lambda: ({"text": t} for t in DOCS * 3))   # no features
    assert unknown.column_names is None
    assert [dict(r) for r in create_pretraining_dataset(unknown, tok, max_seq_length=32, dupe_factor=2)] == \
        [dict(r) for r in in_memory]
    shards = create_pretraining_dataset(corpus.to_iterable_dataset(), tok, max_seq_length=32, dupe_factor=2,
                                        documents_per_shard=4)
    assert len(list(shards)) > 0


# ------------------------------------------------------------------------------------------ collator
def test_collator_dense_and_sparse_describe_the_same_masks(tok, real_instances):
    instances, _ = real_instances
    feats = [x.to_dict() for x in instances[:64]]
    dense = DataCollatorForPreTraining(tok)(feats)
    sparse = DataCollatorForPreTraining(tok, mlm_format="sparse")(feats)
    S = max(len(f["input_ids"]) for f in feats)
    P = max(len(f["masked_lm_positions"]) for f in feats)
    assert dense["input_ids"].shape == (64, S) and dense["labels"].shape == (64, S)
    assert sparse["masked_lm_positions"].shape == (64, P) and sparse["labels"].shape == (64, P)
    for k in ("input_ids", "token_type_ids", "attention_mask", "next_sentence_label"):
        assert torch.equal(dense[k], sparse[k])
    assert dense["attention_mask"].sum(1).tolist() == [len(f["input_ids"]) for f in feats]
    assert (dense["input_ids"][dense["attention_mask"] == 0] == tok.pad_token_id).all()
    assert (dense["token_type_ids"][dense["attention_mask"] == 0] == 0).all()
    assert dense["next_sentence_label"].tolist() == [f["next_sentence_label"] for f in feats]
    for b in range(64):
        keep = sparse["labels"][b] != IGNORE_INDEX
        pos = sparse["masked_lm_positions"][b][keep]
        assert torch.nonzero(dense["labels"][b] != IGNORE_INDEX).flatten().tolist() == pos.tolist()
        assert torch.equal(dense["labels"][b][pos], sparse["labels"][b][keep])
        assert (sparse["masked_lm_positions"][b][~keep] == 0).all()
    padded = DataCollatorForPreTraining(tok, pad_to_multiple_of=8)(feats)
    assert padded["input_ids"].shape[1] % 8 == 0


def test_dynamic_masking_statistics_and_seeding(tok, real_docs):
    unmasked = create_training_instances(real_docs, tok, dupe_factor=1, static_masking=False, seed=5)
    feats = [x.to_dict() for x in unmasked]
    for f in feats:
        del f["masked_lm_positions"], f["masked_lm_ids"]
    collate = DataCollatorForPreTraining(tok, dynamic_masking=True, seed=1)
    counts, n_pred = Counter(), 0
    originals = [torch.tensor(f["input_ids"]) for f in feats]
    for start in range(0, len(feats), 128):
        batch = collate(feats[start:start + 128])
        for b in range(batch["input_ids"].shape[0]):
            orig = originals[start + b]
            n = len(orig)
            lab = batch["labels"][b, :n]
            pos = torch.nonzero(lab != IGNORE_INDEX).flatten()
            assert len(pos) == min(20, max(1, int(round(n * 0.15))))
            assert not set(pos.tolist()) & {0, n - 1, int((orig == tok.sep_token_id).nonzero()[0])}
            assert torch.equal(lab[pos], orig[pos])
            now = batch["input_ids"][b, pos]
            counts["mask"] += int((now == tok.mask_token_id).sum())
            counts["same"] += int((now == orig[pos]).sum())
            n_pred += len(pos)
    assert n_pred > 30_000      # tolerances: about 3.5 standard deviations
    assert abs(counts["mask"] / n_pred - 0.8) < 0.008 and abs(counts["same"] / n_pred - 0.1) < 0.006
    # reproducible for a seed, different from batch to batch
    a = DataCollatorForPreTraining(tok, dynamic_masking=True, seed=1)(feats[:16])
    b = DataCollatorForPreTraining(tok, dynamic_masking=True, seed=1)(feats[:16])
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = DataCollatorForPreTraining(tok, dynamic_masking=True, seed=1)
    c(feats[:16])
    assert not torch.equal(c(feats[:16])["labels"], a["labels"])
    # in DataLoader workers, masks follow the DataLoader's seed
    def run(seed):
        g = torch.Generator().manual_seed(seed)
        loader = torch.utils.data.DataLoader(feats[:32], batch_size=16, num_workers=1, generator=g,
                                             collate_fn=DataCollatorForPreTraining(tok, dynamic_masking=True))
        return torch.cat([batch["labels"] for batch in loader])
    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))


def test_collator_errors(tok, real_instances):
    instances, _ = real_instances
    with pytest.raises(ValueError, match="mlm_format must be 'dense' or 'sparse'"):
        DataCollatorForPreTraining(tok, mlm_format="gather")
    with pytest.raises(ValueError, match="empty list"):
        DataCollatorForPreTraining(tok)([])
    with pytest.raises(ValueError, match="already masked"):
        DataCollatorForPreTraining(tok, dynamic_masking=True)([instances[0].to_dict()])
    with pytest.raises(ValueError, match="static_masking=True or use"):
        DataCollatorForPreTraining(tok)([{"input_ids": [101, 7, 102, 8, 102]}])
    with pytest.raises(TypeError, match="lacks"):
        DataCollatorForPreTraining(object())


# ------------------------------------------------------------------------------------------ argument checks
def test_creation_errors(tok, small_docs):
    with pytest.raises(ValueError, match="max_seq_length must be >= 5"):
        create_training_instances(small_docs, tok, max_seq_length=4)
    with pytest.raises(ValueError, match="dupe_factor must be >= 1"):
        create_training_instances(small_docs, tok, dupe_factor=0)
    with pytest.raises(TypeError, match="dupe_factor must be an int"):
        create_training_instances(small_docs, tok, dupe_factor=2.0)
    with pytest.raises(ValueError, match=r"short_seq_prob must be in \[0, 1\]"):
        create_training_instances(small_docs, tok, short_seq_prob=1.5)
    with pytest.raises(ValueError, match=r"masked_lm_prob must be in \(0, 1\]"):
        create_training_instances(small_docs, tok, masked_lm_prob=0.0)
    with pytest.raises(ValueError, match="max_predictions_per_seq must be >= 1"):
        create_training_instances(small_docs, tok, max_predictions_per_seq=0)
    with pytest.raises(ValueError, match="at least 2 non-empty documents"):
        create_training_instances(small_docs[:1] + [[]], tok)
    with pytest.raises(TypeError, match="lacks"):
        create_training_instances(small_docs, "bert-base-uncased")
    with pytest.raises(ValueError, match="'text' column"):
        create_pretraining_dataset(datasets.Dataset.from_dict({"body": ["x"]}), tok)
    with pytest.raises(ValueError, match="mask_prob \\+ random_prob must be <= 1"):
        MaskedLMPolicy.from_tokenizer(tok, mask_prob=0.8, random_prob=0.3)
    with pytest.raises(ValueError, match="whole_word_mask=True needs"):
        MaskedLMPolicy(100, 4, (1, 2), whole_word_mask=True)


def test_masking_policy_ablation_mixes(tok, real_docs):
    import random
    rng = random.Random(0)
    seqs = [x.input_ids for x in create_training_instances(real_docs[:200], tok, dupe_factor=1,
                                                           static_masking=False)]
    for mask_p, rand_p in ((1.0, 0.0), (0.0, 1.0), (0.8, 0.0)):   # rows of Table 8 (Appendix C.2)
        policy = MaskedLMPolicy.from_tokenizer(tok, mask_prob=mask_p, random_prob=rand_p)
        c, n = Counter(), 0
        for ids in seqs:
            out, pos, lab = policy(ids, rng)
            for p, orig in zip(pos, lab):
                c["mask" if out[p] == tok.mask_token_id else "same" if out[p] == orig else "random"] += 1
                n += 1
        if mask_p == 1.0:
            assert c["mask"] == n
        elif rand_p == 1.0:
            assert c["mask"] == 0 and c["random"] > 0.99 * n
        else:
            assert c["random"] == 0 and abs(c["mask"] / n - 0.8) < 0.02


# ------------------------------------------------------------------------------------------ metrics, model
def test_metrics():
    logits = torch.zeros(2, 3, 5)
    logits[0, 0, 1] = logits[0, 2, 3] = logits[1, 1, 4] = 1.0
    labels = torch.tensor([[1, IGNORE_INDEX, 2], [IGNORE_INDEX, 4, IGNORE_INDEX]])
    assert masked_lm_accuracy(logits, labels) == pytest.approx(2 / 3)
    assert next_sentence_accuracy(torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]), torch.tensor([0, 1, 1])) \
        == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="do not match"):
        masked_lm_accuracy(logits, labels[:, :2])
    assert math.isnan(masked_lm_accuracy(logits, torch.full((2, 3), IGNORE_INDEX)))


def test_dense_and_sparse_batches_give_the_same_model_loss(tok, real_instances):
    from minibert.config import BertConfig
    from minibert.model import BertForPreTraining

    instances, _ = real_instances
    feats = [x.to_dict() for x in instances[:8]]
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=len(tok.vocab))).eval()
    dense = DataCollatorForPreTraining(tok)(feats)
    sparse = DataCollatorForPreTraining(tok, mlm_format="sparse")(feats)
    with torch.no_grad():
        out_d, out_s = model(**dense), model(**sparse)
    assert out_s.prediction_logits.shape[:2] == sparse["labels"].shape
    torch.testing.assert_close(out_d.mlm_loss, out_s.mlm_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_d.nsp_loss, out_s.nsp_loss)
    m_d, m_s = PretrainingMetrics(), PretrainingMetrics()
    m_d.update(out_d, dense)
    m_s.update(out_s, sparse)
    r_d, r_s = m_d.compute(), m_s.compute()
    assert r_d["mlm_accuracy"] == r_s["mlm_accuracy"] and r_d["nsp_accuracy"] == r_s["nsp_accuracy"]
    assert r_d["mlm_accuracy"] == masked_lm_accuracy(out_d.prediction_logits, dense["labels"])


def _mixed_words(tok, instances):
    """(chosen multi-piece words, those whose pieces got different treatments: [MASK] / random / unchanged)."""
    cont = [t.startswith("##") for t in tok.convert_ids_to_tokens(list(range(len(tok.vocab))))]
    words = mixed = 0
    for x in instances:
        original = list(x.input_ids)
        for p, i in zip(x.masked_lm_positions, x.masked_lm_ids):
            original[p] = i
        masked = set(x.masked_lm_positions)
        for p in sorted(masked):
            if cont[original[p]] and p - 1 in masked:
                continue                                  # not the first piece of a word
            group = [p]
            while group[-1] + 1 < len(original) and cont[original[group[-1] + 1]] and group[-1] + 1 in masked:
                group.append(group[-1] + 1)
            if len(group) < 2:
                continue
            kinds = {"mask" if x.input_ids[q] == tok.mask_token_id else
                     "keep" if x.input_ids[q] == original[q] else "random" for q in group}
            words += 1
            mixed += len(kinds) > 1
    return words, mixed


def test_whole_word_masking_per_piece_by_default_per_word_as_option(tok, real_docs):
    # The kind: Google's code draws 80/10/10 for each piece of a chosen word, so words come out half
    # masked; that stays the default (the golden Google instances above). per_word_decision=True draws once.
    kw = dict(dupe_factor=1, whole_word_mask=True, seed=3)
    google = create_training_instances(real_docs[:300], tok, **kw)
    words, mixed = _mixed_words(tok, google)
    assert (words, mixed) == (330, 129)
    per_word = create_training_instances(real_docs[:300], tok, per_word_decision=True, **kw)
    words, mixed = _mixed_words(tok, per_word)
    assert words > 300 and mixed == 0
    n_masked = sum(x.input_ids.count(tok.mask_token_id) for x in per_word)
    assert 0.75 < n_masked / sum(len(x.masked_lm_positions) for x in per_word) < 0.85   # still 80% [MASK]
    # Second input: dynamic masking in the collator, on other documents.
    from minibert.pretraining import MaskedLMPolicy
    policy = MaskedLMPolicy.from_tokenizer(tok, whole_word_mask=True, per_word_decision=True, masked_lm_prob=0.5)
    rng = random.Random(0)
    ids = tok("Johanson visited Zurich and Huiyuan unaffably")["input_ids"]   # [CLS] ... [SEP]
    seen_mixed = 0
    for _ in range(200):
        out, positions, labels = policy(ids, rng)
        for a, b in zip(positions, positions[1:]):
            if b == a + 1 and tok.convert_ids_to_tokens(ids[b]).startswith("##"):
                seen_mixed += (out[a] == tok.mask_token_id) != (out[b] == tok.mask_token_id)
    assert seen_mixed == 0
    with pytest.raises(ValueError, match="per_word_decision=True needs whole_word_mask=True"):
        MaskedLMPolicy.from_tokenizer(tok, per_word_decision=True)


# ----------------------------------------------------------------------------- Chapter 7's probes: ranks
def test_frequency_ranks_order_the_masked_tokens_by_count():
    import datasets

    from minibert.pretrain import frequency_ranks

    train = datasets.Dataset.from_dict({"masked_lm_ids": [[5, 5, 3], [3, 5, 7]]})
    # counts: 5 three times, 3 twice, 7 once; the unseen ids follow in id order
    assert frequency_ranks(train, 8).tolist() == [4, 5, 6, 2, 7, 1, 8, 3]


def test_mask_rank_agrees_with_fill_mask():
    from minibert.config import BertConfig
    from minibert.model import BertForPreTraining
    from minibert.pretrain import fill_mask, mask_rank
    from minibert.tokenizer import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "."]
    tokenizer = BertTokenizer({w: i for i, w in enumerate(words)})
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                                          num_attention_heads=2, intermediate_size=32))
    text = "the cat sat on the [MASK] ."
    guesses = fill_mask(model, tokenizer, text, top_k=len(words))[0]
    assert [mask_rank(model, tokenizer, text, w) for w in guesses] == list(range(1, len(words) + 1))
    with pytest.raises(ValueError, match="answer 'dog' is not a token of the vocabulary"):
        mask_rank(model, tokenizer, text, "dog")
    with pytest.raises(ValueError, match="text has no \\[MASK\\] token"):
        mask_rank(model, tokenizer, "the cat", "cat")
