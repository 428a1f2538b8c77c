"""Building blocks of the paper's ablations (Devlin et al. 2019, Section 5 and Appendix C.2), and of two rows
that came after BERT, all as options of the same code. ``scripts/ablations.py`` drives them.

* :class:`Recipe`: what one pre-training variant changes: the sentence-level task (NSP, none, ALBERT's SOP),
  the objective (masked LM or left to right), dynamic masking, the masking mixture MASK/SAME/RND, the size.
  :data:`RECIPES` names the rows of Table 5 ("bert", "no_nsp", "ltr"; "+ BiLSTM" is a fine-tuning head of the
  "ltr" model), of Table 8 ("bert" is 80/10/10, "mask_100_0_0", ...), RoBERTa's recipe ("roberta": no NSP and
  dynamic masking, Liu et al. 2019, Sections 4.1-4.2) and ALBERT's SOP ("sop", Lan et al. 2020, Section 3.1).
* :class:`Scale`: the budget every variant gets (model, steps, batch, sequence length, data) and the
  fine-tuning set-up; :data:`SCALES` has "micro" (tests), "book" (one CPU core), "mini" and "small" (a GPU).
  Table 6's model sizes are ``Scale.sizes``, each trained as "bert" with the same budget.
* :func:`pretrain_variant`, :func:`finetune_variant`: one pre-training run and its fine-tuning runs.

Every variant sees the same documents, the same number of optimizer steps and sequences per step, and the same
maximum sequence length. Tokens per step differ slightly between formats (single segments pack up to S - 2
tokens, pairs up to S - 3, and the short-sequence draws differ), so each run records the tokens it trained on.
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from dataclasses import dataclass

import torch

from .pretraining import SENTENCE_TASKS, DataCollatorForCausalLM, DataCollatorForPreTraining, create_training_instances

__all__ = ["Recipe", "RECIPES", "Scale", "SCALES", "TABLE5", "TABLE8", "size_variant", "variants_for",
           "load_documents", "pretrain_variant", "finetune_variant"]

OBJECTIVES = ("mlm", "ltr")


@dataclass(frozen=True)
class Recipe:
    """One pre-training variant. Defaults are BERT's (Section 3.1): NSP pairs, masked LM, static masks, 80/10/10.

    ``sentence_task``: "nsp", "none" (single segments) or "sop" (see :mod:`minibert.pretraining`).
    ``objective``: "mlm", or "ltr" (left to right: causal attention, next-token loss,
    :class:`minibert.model.BertLMHeadModel`; needs ``sentence_task="none"``).
    ``dynamic_masking``: masks drawn anew for every batch (RoBERTa) instead of once when the data is built.
    ``mask_prob``/``random_prob``: shares of the chosen tokens replaced by [MASK] and by a random token; the rest
    stay the same (Table 8's MASK, RND and SAME columns). ``size``: (L, H, A) in place of the scale's model.
    ``ltr_all_positions`` (of :meth:`collator` and :class:`Scale`): the LTR model scores every next token, as
    the paper's does; otherwise it scores as many positions per sequence as the masked LM predicts (a deviation
    that gives both objectives the same number of predictions and the same softmax cost per step: on one CPU
    core, scoring all 64 positions makes an LTR step about five times slower than an MLM step).
    ``source``: where the variant comes from.
    """
    name: str
    sentence_task: str = "nsp"
    objective: str = "mlm"
    dynamic_masking: bool = False
    mask_prob: float = 0.8
    random_prob: float = 0.1
    size: tuple[int, int, int] | None = None
    source: str = ""

    def __post_init__(self):
        if self.sentence_task not in SENTENCE_TASKS:
            raise ValueError(f"Recipe {self.name!r}: sentence_task must be one of {SENTENCE_TASKS}, "
                             f"got {self.sentence_task!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"Recipe {self.name!r}: objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.objective == "ltr" and self.sentence_task != "none":
            raise ValueError(f"Recipe {self.name!r}: a left-to-right model has no sentence task; "
                             f"use sentence_task='none'")
        if not (0 <= self.mask_prob <= 1 and 0 <= self.random_prob <= 1 and self.mask_prob + self.random_prob <= 1):
            raise ValueError(f"Recipe {self.name!r}: mask_prob and random_prob must be shares that add up to <= 1")

    @property
    def mixture(self) -> tuple[int, int, int]:
        """(MASK, SAME, RND) in percent, as Table 8 writes them."""
        mask, rnd = round(100 * self.mask_prob), round(100 * self.random_prob)
        return mask, 100 - mask - rnd, rnd

    def config_overrides(self) -> dict:
        """BertConfig fields the recipe sets beyond the model's shape (the shape is ``size``, or the scale's)."""
        return {"is_decoder": True} if self.objective == "ltr" else {}

    def instances(self, documents, tokenizer, *, max_seq_length: int, max_predictions: int, seed: int,
                  dupe_factor: int = 1, evaluation: bool = False) -> list[dict]:
        """Pre-training instances (dicts) of ``documents`` (lists of sentences of token ids) for this recipe.

        ``evaluation=True``: static masks with the paper's 80/10/10 whatever the recipe's mixture, so that the
        held-out masked-LM loss of every variant is measured on the same kind of input.
        """
        static = self.objective == "mlm" and (evaluation or not self.dynamic_masking)
        mix = (0.8, 0.1) if evaluation else (self.mask_prob, self.random_prob)
        made = create_training_instances(documents, tokenizer, max_seq_length=max_seq_length,
                                         dupe_factor=dupe_factor, max_predictions_per_seq=max_predictions,
                                         static_masking=static, seed=seed, sentence_task=self.sentence_task,
                                         mask_prob=mix[0], random_prob=mix[1])
        return [x.to_dict() for x in made]          # unmasked: empty masked_lm_positions / masked_lm_ids

    def collator(self, tokenizer, *, max_predictions: int, seed: int, evaluation: bool = False,
                 ltr_all_positions: bool = False):
        """The batch builder: Google's sparse MLM format (masks drawn here when dynamic), or next-token labels."""
        if self.objective == "ltr":   # training: as many scored positions as the masked LM; evaluation: all
            return DataCollatorForCausalLM(tokenizer, seed=seed,
                                           max_predictions_per_seq=None if evaluation or ltr_all_positions
                                           else max_predictions)
        dynamic = self.dynamic_masking and not evaluation
        return DataCollatorForPreTraining(tokenizer, mlm_format="sparse", dynamic_masking=dynamic,
                                          max_predictions_per_seq=max_predictions, mask_prob=self.mask_prob,
                                          random_prob=self.random_prob, seed=seed)

    def new_model(self, config):
        from .model import BertForPreTraining, BertLMHeadModel
        return BertLMHeadModel(config) if self.objective == "ltr" else BertForPreTraining(config)


_T5 = "Devlin et al. 2019, Section 5.1, Table 5"
_T8 = "Devlin et al. 2019, Appendix C.2, Table 8"
RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("bert", source="Devlin et al. 2019, Section 3.1: MLM (80/10/10) + NSP; Table 5 'BERT-BASE', "
                          "Table 8 row 80/10/10"),
    Recipe("no_nsp", sentence_task="none", source=f"{_T5} 'No NSP' (single segments, RoBERTa's DOC-SENTENCES)"),
    Recipe("ltr", sentence_task="none", objective="ltr",
           source=f"{_T5} 'LTR & No NSP' (and '+ BiLSTM' as its fine-tuning head)"),
    Recipe("sop", sentence_task="sop", source="Lan et al. 2020 (ALBERT), Section 3.1: sentence-order prediction"),
    Recipe("roberta", sentence_task="none", dynamic_masking=True,
           source="Liu et al. 2019 (RoBERTa), Sections 4.1-4.2: no NSP, full sentences, dynamic masking"),
    Recipe("mask_100_0_0", mask_prob=1.0, random_prob=0.0, source=f"{_T8}, MASK 100 SAME 0 RND 0"),
    Recipe("mask_80_0_20", mask_prob=0.8, random_prob=0.2, source=f"{_T8}, MASK 80 SAME 0 RND 20"),
    Recipe("mask_80_20_0", mask_prob=0.8, random_prob=0.0, source=f"{_T8}, MASK 80 SAME 20 RND 0"),
    Recipe("mask_0_20_80", mask_prob=0.0, random_prob=0.8, source=f"{_T8}, MASK 0 SAME 20 RND 80"),
    Recipe("mask_0_0_100", mask_prob=0.0, random_prob=1.0, source=f"{_T8}, MASK 0 SAME 0 RND 100"),
]}
TABLE5 = ("bert", "no_nsp", "ltr", "sop", "roberta")
TABLE8 = ("bert", "mask_100_0_0", "mask_80_0_20", "mask_80_20_0", "mask_0_20_80", "mask_0_0_100")


def size_variant(size: tuple[int, int, int]) -> Recipe:
    """Table 6's rows: BERT's recipe at another (L, H, A), named ``size_L{L}_H{H}_A{A}``."""
    layers, hidden, heads = size
    return Recipe(f"size_L{layers}_H{hidden}_A{heads}", size=(layers, hidden, heads),
                  source="Devlin et al. 2019, Section 5.2, Table 6 (model size at the same budget)")


@dataclass(frozen=True)
class Scale:
    """The budget of every pre-training run and the fine-tuning set-up, for one machine size."""
    name: str
    size: tuple[int, int, int]               # (L, H, A) of "bert" and every recipe without its own size
    sizes: tuple[tuple[int, int, int], ...]  # Table 6's models, same budget
    steps: int
    batch_size: int
    max_seq_length: int
    lr: float
    max_documents: int | None                # per corpus (None: all)
    dupe_factor: int = 1
    eval_every_nth: int = 20                 # every n-th document is held out for the MLM perplexity
    eval_batches: int = 10
    ft_train_examples: int = 2000            # per GLUE task, a seeded subset of the training set
    ft_eval_examples: int | None = None      # None: the whole validation set
    ft_epochs: float = 1.0
    ft_batch_size: int = 32
    ft_lr: float = 1e-4
    ft_max_seq_length: int = 128
    ner_train_sentences: int = 1000          # CoNLL-2003, feature-based (Table 8's last column)
    ner_eval_sentences: int = 500
    ner_epochs: int = 3
    ltr_all_positions: bool = False          # the LTR model scores every next token (see Recipe)
    vocab_size: int | None = None            # learn a WordPiece vocabulary on the training documents (None:
                                             # bert-base-uncased's 30,522 entries)
    device: str = "cpu"

    @property
    def max_predictions(self) -> int:
        return max(1, round(0.15 * self.max_seq_length))      # Google: 20 for 128

    @property
    def warmup(self) -> int:
        return max(1, self.steps // 10)


SCALES: dict[str, Scale] = {s.name: s for s in [
    # A few seconds a run: for the tests of the driver, not for numbers.
    Scale("micro", size=(1, 32, 2), sizes=((1, 32, 2), (2, 32, 2)), steps=3, batch_size=8, max_seq_length=32,
          lr=1e-3, max_documents=40, eval_every_nth=10, eval_batches=1, ft_train_examples=32, ft_eval_examples=16,
          ft_batch_size=16, ft_max_seq_length=32, ner_train_sentences=16, ner_eval_sentences=16, ner_epochs=1),
    # About 2.5 minutes of one CPU core a run, 13 variants x 3 seeds in about 1.5 hours (the file records each
    # run's time). An 8,000-entry WordPiece vocabulary learned on the corpora: bert-base-uncased's 30,522 entries
    # would be 88% of a 128-wide model's parameters and make a step twice as slow (Chapter 7). The peak rates are
    # Chapter 7's (2e-3) and the best of Chapter 8's sweep (3e-4): at 1e-4 a model this small stays at SST-2's
    # majority class.
    Scale("book", size=(2, 128, 2), sizes=((1, 128, 2), (2, 128, 2), (4, 128, 2), (2, 256, 4)), steps=600,
          batch_size=32, max_seq_length=64, lr=2e-3, max_documents=1500, ft_train_examples=2000,
          ft_eval_examples=None, ft_epochs=2, ft_lr=3e-4, ft_max_seq_length=64, ner_train_sentences=1000,
          ner_eval_sentences=500, ner_epochs=10, vocab_size=8000),
    # A GPU: BERT-Mini and BERT-Small (Turc et al. 2019), the whole local corpora.
    Scale("mini", size=(4, 256, 4), sizes=((2, 256, 4), (4, 256, 4), (8, 256, 4), (4, 512, 8)), steps=20000,
          batch_size=128, max_seq_length=128, lr=5e-4, max_documents=None, dupe_factor=5, eval_batches=50,
          ft_train_examples=20000, ft_epochs=3, ft_lr=5e-5, ner_train_sentences=14041, ner_eval_sentences=3250,
          ner_epochs=5, ltr_all_positions=True, device="cuda"),
    Scale("small", size=(4, 512, 8), sizes=((2, 512, 8), (4, 512, 8), (8, 512, 8), (4, 768, 12)), steps=40000,
          batch_size=128, max_seq_length=128, lr=3e-4, max_documents=None, dupe_factor=5, eval_batches=50,
          ft_train_examples=67349, ft_epochs=3, ft_lr=3e-5, ner_train_sentences=14041, ner_eval_sentences=3250,
          ner_epochs=5, ltr_all_positions=True, device="cuda"),
]}


def variants_for(scale: Scale) -> dict[str, Recipe]:
    """Every variant of a run at ``scale``: Table 5's and Table 8's recipes, then Table 6's sizes (the scale's
    own size is "bert" itself and is not repeated)."""
    out = {name: RECIPES[name] for name in dict.fromkeys(TABLE5 + TABLE8)}
    for size in scale.sizes:
        if tuple(size) != tuple(scale.size):
            recipe = size_variant(size)
            out[recipe.name] = recipe
    return out


def finetune_plan(recipe: Recipe) -> list[tuple[str, str]]:
    """(task, head) pairs fine-tuned after a pre-training run: SST-2 and MRPC with the linear head; the LTR
    model also with the BiLSTM head (Table 5's "+ BiLSTM"); the masked-LM mixtures and BERT also CoNLL-2003
    feature-based (Table 8)."""
    plan = [("sst2", "linear"), ("mrpc", "linear")]
    if recipe.objective == "ltr":
        plan += [("sst2", "bilstm"), ("mrpc", "bilstm")]
    if recipe.name in TABLE8:
        plan.append(("conll2003", "features"))
    return plan


# ------------------------------------------------------------------------------------------------ running
CORPORA = ("wikipedia_summaries", "books")


def load_tokenizer(scale: Scale):
    """The tokenizer of every run at ``scale``: bert-base-uncased's, or with ``scale.vocab_size`` a WordPiece
    vocabulary learned on the training documents (held-out ones excluded) with Chapter 1's trainer. The
    same for every variant and seed, and deterministic."""
    from .data import vocab_path
    from .pretrain import learn_vocabulary
    from .tokenizer import BertTokenizer

    if scale.vocab_size is None:
        return BertTokenizer.from_pretrained(vocab_path())
    return learn_vocabulary(CORPORA, scale.vocab_size, max_documents=scale.max_documents,
                            eval_every_nth=scale.eval_every_nth)


def load_documents(scale: Scale, tokenizer):
    """(train documents, held-out documents) as lists of sentences of token ids: every ``eval_every_nth``
    document of the book's two corpora is held out. The same for every variant and seed."""
    import datasets

    from .corpus import load_corpora, tokenize_corpus

    parts = [load_corpora(name, max_documents=scale.max_documents) for name in CORPORA]
    docs = tokenize_corpus(datasets.concatenate_datasets(parts), tokenizer)[:]["sentence_ids"]
    train = [d for i, d in enumerate(docs) if i % scale.eval_every_nth]
    held_out = [d for i, d in enumerate(docs) if i % scale.eval_every_nth == 0]
    return train, held_out


class _Counting:
    """Wraps a collator and counts the non-padding tokens it hands out."""

    def __init__(self, collate):
        self.collate, self.tokens = collate, 0

    def __call__(self, features):
        batch = self.collate(features)
        self.tokens += int(batch["attention_mask"].sum())
        return batch


def pretrain_variant(recipe: Recipe, scale: Scale, seed: int, tokenizer, train_docs, held_out_docs):
    """Pre-train ``recipe`` at ``scale``; returns (model, metrics).

    metrics: ``seconds`` and ``cpu_seconds`` (all threads), ``steps``, ``tokens`` (non-padding tokens trained
    on), ``train_instances``, the held-out ``mlm_loss`` and ``mlm_perplexity`` = exp(mlm_loss) (80/10/10
    static masks in the recipe's own input format) and ``mlm_acc``, ``nsp_acc`` where there is NSP or SOP
    (for SOP it is the sentence-order accuracy); for the LTR model ``ltr_loss`` and ``ltr_perplexity``
    (next-token, over all tokens: not comparable with the masked-LM perplexity).
    """
    from .config import BertConfig
    from .train import Batches, DistInfo, TrainConfig, Trainer, evaluate, set_seed

    start, cpu_start = time.perf_counter(), time.process_time()
    data_seed = 12345 + seed
    common = dict(max_seq_length=scale.max_seq_length, max_predictions=scale.max_predictions)
    train = recipe.instances(train_docs, tokenizer, seed=data_seed, dupe_factor=scale.dupe_factor, **common)
    held_out = recipe.instances(held_out_docs, tokenizer, seed=data_seed + 1, evaluation=True, **common)
    collate = _Counting(recipe.collator(tokenizer, max_predictions=scale.max_predictions, seed=seed,
                                        ltr_all_positions=scale.ltr_all_positions))
    set_seed(seed)
    layers, hidden, heads = recipe.size or scale.size
    config = BertConfig(vocab_size=len(tokenizer.vocab), num_hidden_layers=layers, hidden_size=hidden,
                        num_attention_heads=heads, intermediate_size=4 * hidden,
                        max_position_embeddings=max(512, scale.max_seq_length), **recipe.config_overrides())
    model = recipe.new_model(config)
    device = torch.device(scale.device if scale.device != "cuda" or torch.cuda.is_available() else "cpu")
    train_config = TrainConfig(steps=scale.steps, lr=scale.lr, warmup_steps=scale.warmup, seed=seed,
                               log_every=scale.steps)
    trainer = Trainer(model, Batches(train, collate, scale.batch_size, seed=seed), train_config,
                      DistInfo(device=device))
    trainer.train()
    eval_collate = recipe.collator(tokenizer, max_predictions=scale.max_predictions, seed=seed, evaluation=True)
    stream = Batches(held_out, eval_collate, min(scale.batch_size, len(held_out)), shuffle=False)
    n = max(1, min(scale.eval_batches, stream.steps_per_epoch))
    ev = evaluate(model, (stream.next_step()[0] for _ in range(n)), device)
    metrics = {"steps": trainer.step, "tokens": collate.tokens, "train_instances": len(train),
               "eval_instances": len(held_out), "parameters": model.num_parameters(),
               "final_train_loss": trainer.history[-1]["loss"] if trainer.history else None}
    if recipe.objective == "ltr":
        metrics.update(ltr_loss=ev["loss"], ltr_perplexity=math.exp(ev["loss"]))
    else:
        metrics.update(mlm_loss=ev["mlm_loss"], mlm_perplexity=math.exp(ev["mlm_loss"]), mlm_acc=ev.get("mlm_acc"))
        if "nsp_acc" in ev:
            metrics["nsp_acc"] = ev["nsp_acc"]
    metrics.update(seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu_start)
    return model.cpu(), metrics


def finetune_variant(model, recipe: Recipe, scale: Scale, seed: int, tokenizer) -> dict:
    """Fine-tune copies of the pre-trained ``model`` as :func:`finetune_plan` says; returns
    {"sst2": {...}, "mrpc": {...}, "sst2_bilstm": ..., "conll2003_features": {...}} with the dev-set metrics
    and the seconds each took."""
    from .glue import finetune_glue
    from .model import BertForSequenceClassification, BertWithBiLSTMForSequenceClassification

    device = torch.device(scale.device if scale.device != "cuda" or torch.cuda.is_available() else "cpu")
    results = {}
    with tempfile.TemporaryDirectory(prefix="minibert-ablation-") as folder:
        model.save_pretrained(folder)
        for task, head in finetune_plan(recipe):
            start, cpu_start = time.perf_counter(), time.process_time()
            key = task if head == "linear" else f"{task}_{head}"
            if head == "features":
                metrics = _ner_feature_based(folder, scale, seed, tokenizer, device)
            else:
                torch.manual_seed(seed)
                cls = BertWithBiLSTMForSequenceClassification if head == "bilstm" else BertForSequenceClassification
                classifier = cls.from_pretrained(folder, num_labels=2).train()
                out = finetune_glue(task, classifier, tokenizer, max_train_examples=scale.ft_train_examples,
                                    max_eval_examples=scale.ft_eval_examples, max_seq_length=scale.ft_max_seq_length,
                                    lr=scale.ft_lr, epochs=scale.ft_epochs, batch_size=scale.ft_batch_size,
                                    seed=seed, device=device)
                metrics = dict(out["metrics"], num_train=out["num_train"], num_eval=out["num_eval"])
            metrics.update(seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu_start)
            results[key] = metrics
    return results


def _ner_feature_based(folder, scale: Scale, seed: int, tokenizer, device) -> dict:
    """Table 8's feature-based column: frozen encoder, its last (up to) four hidden layers concatenated, a small
    BiLSTM tagger trained on a subset of CoNLL-2003, entity-level F1 on (part of) the validation set."""
    from .data import load_dataset
    from .glue import subsample
    from .model import BertModel
    from .ner import (BiLSTMTagger, encode_ner, extract_word_features, label_names, ner_metrics, tagger_predictions,
                      train_tagger)

    train = subsample(load_dataset("conll2003", "train"), scale.ner_train_sentences, seed)
    dev = load_dataset("conll2003", "validation")
    dev = dev.select(range(min(scale.ner_eval_sentences, len(dev))))
    names = label_names(train)
    bert = BertModel.from_pretrained(folder).to(device)
    layers = tuple(-i for i in range(1, min(4, bert.config.num_hidden_layers) + 1))
    feats = {}
    for split, data in (("train", train), ("dev", dev)):
        features = encode_ner(data, tokenizer, scale.ft_max_seq_length)
        feats[split] = extract_word_features(bert, features, layers=layers, device=device)
    torch.manual_seed(seed)
    tagger = BiLSTMTagger(feats["train"][0].shape[-1], len(names), hidden_size=64)
    train_tagger(tagger, feats["train"], train["ner_tags"], epochs=scale.ner_epochs, seed=seed)
    predicted = tagger_predictions(tagger, feats["dev"])
    gold = [[names[t] for t in tags] for tags in dev["ner_tags"]]
    out = ner_metrics(gold, [[names[t] for t in p] for p in predicted])
    out.update(num_train=len(train), num_eval=len(dev), layers=list(layers))
    return out


def recipe_dict(recipe: Recipe) -> dict:
    return dataclasses.asdict(recipe) | {"mixture": list(recipe.mixture)}


def scale_dict(scale: Scale) -> dict:
    return dataclasses.asdict(scale) | {"max_predictions": scale.max_predictions, "warmup": scale.warmup}

