"""Tokenizer throughput: minibert pure Python vs minibert fast path vs transformers' BertTokenizerFast.

    MINIBERT_DATA=../shared/data python benchmarks/bench_tokenizer.py [--repeat 3] [--train]

Encodes both pre-training corpora (wikipedia_summaries + books, about 2M words) with each tokenizer, the
same calls (batch of documents, offsets on), and prints tokens per second and the ratios. All three give
identical ids (checked here too). Times are CPU seconds of this process. With --train it also times WordPiece training of an 8k vocabulary on the
same corpus with minibert and with the `tokenizers` library's trainer and compares the vocabularies.
Single-threaded (TOKENIZERS_PARALLELISM=false) so the numbers compare like with like.
"""
import argparse
import os
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from minibert import load_dataset, pretrained_path, vocab_path  # noqa: E402
from minibert.tokenizer import BertTokenizer  # noqa: E402


def best_time(fn, repeat, reset):
    """Best CPU time (process_time: the machine is shared, wall time is noisy) of ``repeat`` cold runs."""
    best, out = float("inf"), None
    for _ in range(repeat):
        reset()
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    ap.add_argument("--train", action="store_true", help="also time vocabulary training (8k)")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    docs = list(load_dataset("wikipedia_summaries", "train")["text"]) + list(load_dataset("books", "train")["text"])
    words = sum(len(d.split()) for d in docs)
    tok = BertTokenizer.from_pretrained(vocab_path())
    hf = AutoTokenizer.from_pretrained(str(pretrained_path()))
    hf.model_max_length = 10**9   # silence the long-sequence warning; no truncation anywhere

    def reset():   # cold caches: the pure-Python path's word and character caches, the Rust tokenizer
        tok._backend = None
        tok.wordpiece_tokenizer._cache.clear()
        tok.basic_tokenizer._cache.clear()

    print(f"corpus: {len(docs)} documents, {words:,} whitespace words; best CPU time of {args.repeat}")
    for offsets in (False, True):
        runs = {
            "minibert pure Python": lambda: tok(docs, return_offsets_mapping=offsets, use_fast=False)["input_ids"],
            "minibert fast path": lambda: tok(docs, return_offsets_mapping=offsets, use_fast=True)["input_ids"],
            "transformers BertTokenizerFast": lambda: hf(docs, return_offsets_mapping=offsets)["input_ids"],
        }
        print(f"-- input_ids, token_type_ids, attention_mask{', offset_mapping' if offsets else ''}")
        results, ids = {}, {}
        for name, fn in runs.items():
            t, ids[name] = best_time(fn, args.repeat, reset)
            n = sum(map(len, ids[name]))
            results[name] = n / t
            print(f"{name:32s} {t:7.2f} s  {n / t / 1e3:8.0f}k tokens/s  ({n:,} tokens)")
        assert ids["minibert pure Python"] == ids["minibert fast path"] == ids["transformers BertTokenizerFast"]
        ref = results["transformers BertTokenizerFast"]
        for name in ("minibert pure Python", "minibert fast path"):
            print(f"ratio {name} / transformers: {results[name] / ref:.2f}")

    if args.train:
        from tokenizers import BertWordPieceTokenizer

        from minibert.wordpiece_training import count_words, train_wordpiece

        t0 = time.process_time()
        counts = count_words(docs)
        t1 = time.process_time()
        vocab = train_wordpiece(counts, vocab_size=8000)
        t2 = time.process_time()
        print(f"minibert WordPiece training: count words {t1 - t0:.1f} s, merges {t2 - t1:.1f} s, "
              f"total {t2 - t0:.1f} s ({len(counts):,} distinct words, vocab {len(vocab)})")
        t0 = time.process_time()
        trainer = BertWordPieceTokenizer(lowercase=True)
        trainer.train_from_iterator(docs, vocab_size=8000, min_frequency=2, limit_alphabet=1000,
                                    special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False)
        t3 = time.process_time()
        theirs = set(trainer.get_vocab())
        print(f"tokenizers WordPieceTrainer: {t3 - t0:.1f} s; vocabulary overlap {len(set(vocab) & theirs)} / 8000")


if __name__ == "__main__":
    main()
