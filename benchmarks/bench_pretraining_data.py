"""Time the pre-training data pipeline on both local corpora (issue: "a few minutes on 2 cores").

    python benchmarks/bench_pretraining_data.py [--dupe-factor 5] [--max-seq-length 128] [--num-proc 2]

Loads wikipedia_summaries + books, tokenizes them through the fast path (no cache), then builds
Google-style instances with static masking, and prints wall and CPU seconds for each stage.
"""
import argparse
import os
import resource
import time

from minibert.corpus import load_corpora, tokenize_corpus
from minibert.data import vocab_path
from minibert.pretraining import create_pretraining_dataset
from minibert.tokenizer import BertTokenizer


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dupe-factor", type=int, default=5)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--num-proc", type=int, default=2)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    tokenizer = BertTokenizer.from_pretrained(vocab_path())
    t0, c0 = time.time(), cpu_seconds()
    corpus = load_corpora()
    tokenized = tokenize_corpus(corpus, tokenizer, num_proc=args.num_proc if args.num_proc > 1 else None,
                                load_from_cache_file=False)
    t1, c1 = time.time(), cpu_seconds()
    print(f"load + tokenize {len(corpus)} documents: wall {t1 - t0:.1f} s, cpu {c1 - c0:.1f} s")
    instances = create_pretraining_dataset(tokenized, tokenizer, dupe_factor=args.dupe_factor,
                                           max_seq_length=args.max_seq_length)
    t2, c2 = time.time(), cpu_seconds()
    print(f"instances (static masking, dupe_factor {args.dupe_factor}, seq {args.max_seq_length}): "
          f"{len(instances)} in wall {t2 - t1:.1f} s, cpu {c2 - c1:.1f} s")
    print(f"end to end: wall {t2 - t0:.1f} s, cpu {c2 - c0:.1f} s; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
