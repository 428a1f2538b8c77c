"""The paper's ablation tables in data/ (Tables 5, 6, 8): agree with the values Chapters 5 and 6 quote inline,
with each other where the paper repeats a number, and name recipes that exist."""
import ast
import csv
import json
import re
from pathlib import Path

from minibert.ablations import RECIPES

ROOT = Path(__file__).resolve().parents[1]


def rows(name):
    with open(ROOT / "data" / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def inline_list(notebook, start):
    """The Python list literal that follows ``start`` in a code cell of ``notebook``."""
    cells = json.loads((ROOT / "chapters" / notebook).read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and start in source:
            text = source[source.index(start) + len(start):]
            depth = 0
            for i, ch in enumerate(text):
                depth += ch == "["
                depth -= ch == "]"
                if depth == 0 and ch == "]":
                    return ast.literal_eval(text[:i + 1].strip())
    raise AssertionError(f"{notebook}: no code cell with {start!r}")


def test_table8_matches_chapter5_and_the_recipes():
    table = rows("paper_table8_masking.csv")
    inline = inline_list("05_masked_lm.ipynb", "table8 = pd.DataFrame(\n    ")
    assert [tuple(float(r[k]) for k in ("MASK", "SAME", "RND", "MNLI fine-tune", "NER fine-tune",
                                        "NER feature-based")) for r in table] == [tuple(map(float, t)) for t in inline]
    for r in table:
        recipe = RECIPES[r["variant"]]
        assert recipe.mixture == (int(r["MASK"]), int(r["SAME"]), int(r["RND"]))


def test_table5_matches_chapter6_and_the_recipes():
    table = rows("paper_table5_pretraining_tasks.csv")
    inline = inline_list("06_next_sentence.ipynb", "table5 = pd.DataFrame(")
    assert [(r["system"], *(float(r[k]) for k in ("MNLI-m", "QNLI", "MRPC", "SST-2", "SQuAD F1"))) for r in table] \
        == [tuple(t) for t in inline]
    for r in table:
        assert re.sub("_bilstm$", "", r["variant"]) in RECIPES


def test_table6_agrees_with_table5_where_the_paper_repeats_bert_base():
    table6 = {(int(r["layers"]), int(r["hidden"]), int(r["heads"])): r for r in rows("paper_table6_model_size.csv")}
    assert len(table6) == 6 and (12, 768, 12) in table6 and (24, 1024, 16) in table6
    base = table6[(12, 768, 12)]
    table5 = rows("paper_table5_pretraining_tasks.csv")[0]
    assert (base["MNLI-m"], base["MRPC"]) == (table5["MNLI-m"], table5["MRPC"])
    ppl = [float(table6[k]["LM ppl"]) for k in sorted(table6, key=lambda k: (k[0] * k[1] ** 2, k))]
    assert ppl == sorted(ppl, reverse=True)        # perplexity falls as the model grows
