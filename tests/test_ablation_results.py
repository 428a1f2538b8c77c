"""minibert.ablation_results: the tidy table of the ablations' results file, the t-interval over seeds and the
verdict rule, on small hand-computable inputs."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from minibert.ablation_results import (CLAIMS, CONTRADICTED, NOISE, REPRODUCED, Claim, claims_for, compare,
                                       format_summary, runs_frame, summarize, verdicts)
from minibert.ablations import SCALES


def run(variant, seed, ppl=None, sst2=None, mrpc=(None, None), conll=None, bilstm=None, ltr_ppl=None,
        size=(2, 128, 2)):
    """One run as scripts/ablations.py writes it (only the keys runs_frame reads, plus a few it ignores)."""
    pretrain = {"parameters": 1000, "tokens": 50, "seconds": 1.5, "steps": 3}
    if ppl is not None:
        pretrain.update(mlm_perplexity=ppl, mlm_acc=0.1, nsp_acc=0.6)
    if ltr_ppl is not None:
        pretrain["ltr_perplexity"] = ltr_ppl
    finetune = {}
    if sst2 is not None:
        finetune["sst2"] = {"accuracy": sst2, "num_eval": 872}
    if mrpc[0] is not None:
        finetune["mrpc"] = {"accuracy": mrpc[0], "f1": mrpc[1]}
    if conll is not None:
        finetune["conll2003_features"] = {"f1": conll, "precision": conll, "recall": conll, "layers": [-1, -2]}
    if bilstm is not None:
        finetune["sst2_bilstm"] = {"accuracy": bilstm[0]}
        finetune["mrpc_bilstm"] = {"accuracy": bilstm[1], "f1": bilstm[2]}
    return {"variant": variant, "seed": seed, "size": list(size), "pretrain": pretrain, "finetune": finetune,
            "seconds": 9.0}


def results(*runs):
    return {"schema": 1, "scale": "book", "runs": {f"{r['variant']}/seed{r['seed']}": r for r in runs}}


def frame_of(values: dict[str, list[float]], metric="sst2_acc") -> pd.DataFrame:
    """A runs frame with one metric: {variant: [value of seed 0, seed 1, ...]}."""
    rows = [{"variant": v, "seed": s, metric: x} for v, xs in values.items() for s, x in enumerate(xs)]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------- runs_frame
def test_runs_frame_one_row_per_run_and_a_row_for_the_bilstm_head():
    frame = runs_frame(results(
        run("bert", 0, ppl=900.0, sst2=0.5, mrpc=(0.7, 0.8), conll=0.1),
        run("ltr", 0, sst2=0.6, mrpc=(0.68, 0.81), bilstm=(0.55, 0.66, 0.77), ltr_ppl=400.0),
        run("size_L4_H128_A2", 1, ppl=800.0, size=(4, 128, 2)),
    ))
    assert frame[["variant", "seed", "head"]].values.tolist() == [
        ["bert", 0, "linear"], ["ltr", 0, "linear"], ["ltr_bilstm", 0, "bilstm"], ["size_L4_H128_A2", 1, "linear"]]
    bert, ltr, bilstm, size = (frame.iloc[i] for i in range(4))
    assert (bert.mlm_perplexity, bert.sst2_acc, bert.mrpc_acc, bert.mrpc_f1, bert.conll_f1) == (900, .5, .7, .8, .1)
    assert math.isnan(bert.ltr_perplexity) and math.isnan(ltr.mlm_perplexity) and math.isnan(ltr.nsp_acc)
    assert (ltr.sst2_acc, ltr.mrpc_acc, ltr.ltr_perplexity) == (0.6, 0.68, 400)
    # the BiLSTM row: the head's fine-tuning numbers, the run's own pre-training numbers
    assert (bilstm.sst2_acc, bilstm.mrpc_acc, bilstm.mrpc_f1, bilstm.ltr_perplexity) == (0.55, 0.66, 0.77, 400)
    assert (size.layers, size.hidden, size.heads, size.parameters, size.tokens) == (4, 128, 2, 1000, 50)
    assert math.isnan(size.sst2_acc) and math.isnan(size.conll_f1)


def test_runs_frame_of_an_empty_file_and_bad_input():
    empty = runs_frame(results())
    assert len(empty) == 0 and list(empty.columns[:3]) == ["variant", "seed", "head"]
    with pytest.raises(ValueError, match="expected a dict with a 'runs' mapping"):
        runs_frame({"schema": 1})
    broken = results(run("bert", 0))
    del broken["runs"]["bert/seed0"]["seed"]
    with pytest.raises(ValueError, match=r"results\['runs'\]\['bert/seed0'\]: no 'seed'"):
        runs_frame(broken)


# ------------------------------------------------------------------------------------------- summarize
def test_summary_mean_std_and_student_t_interval():
    frame = frame_of({"a": [1.0, 2.0, 3.0], "b": [5.0], "c": [2.0, 4.0]})
    out = summarize(frame, "sst2_acc", variants=["a", "b", "c", "missing"])
    assert out.index.tolist() == ["a", "b", "c", "missing"] and out["n"].tolist() == [3, 1, 2, 0]
    # a: mean 2, std 1, half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    a = out.loc["a"]
    assert (a["mean"], a["std"]) == (2.0, 1.0)
    assert a["ci_high"] - 2 == pytest.approx(2.484138, abs=1e-6)
    lo, hi = stats.t.interval(0.95, 2, loc=2.0, scale=1.0 / math.sqrt(3))
    assert (a["ci_low"], a["ci_high"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    # c: mean 3, std sqrt(2), half-width t(0.975, 1) * sqrt(2) / sqrt(2) = 12.706205
    assert out.loc["c", "ci_high"] == pytest.approx(3 + 12.706205, abs=1e-6)
    # one seed: a mean, no spread; no run: nothing
    assert out.loc["b", "mean"] == 5 and np.isnan(out.loc["b", ["std", "ci_low", "ci_high"]].astype(float)).all()
    assert np.isnan(out.loc["missing", ["mean", "std"]].astype(float)).all()
    assert format_summary(out, digits=2).tolist() == [
        "2.00 ± 1.00 [-0.48, 4.48]", "5.00 (1 seed)", "3.00 ± 1.41 [-9.71, 15.71]", "missing"]
    assert format_summary(out.loc[["a"]], digits=0, scale=100, interval=False).tolist() == ["200 ± 100"]


def test_summary_default_order_and_unknown_metric():
    frame = frame_of({"z": [1.0, 1.0], "a": [2.0, np.nan]})
    out = summarize(frame, "sst2_acc")
    assert out.index.tolist() == ["z", "a"] and out["n"].tolist() == [2, 1]   # NaN is not a seed
    assert out.loc["z", "std"] == 0 and out.loc["z", "ci_low"] == out.loc["z", "ci_high"] == 1
    with pytest.raises(KeyError, match="metric 'sst2': not a column"):
        summarize(frame, "sst2")


# ------------------------------------------------------------------------------------------- compare
def claim(direction="higher", metric="sst2_acc"):
    return Claim("test", "v", "base", metric, direction, "a test")


def test_welch_golden_values_and_reproduced():
    # v = [4, 5, 6], base = [1, 2, 3]: difference 3, standard error sqrt(1/3 + 1/3), t = 3.674235,
    # Welch's degrees of freedom (2/3)^2 / (2 * (1/3)^2 / 2) = 4, two-sided p = 2 * t.sf(3.674235, 4)
    frame = frame_of({"v": [4.0, 5.0, 6.0], "base": [1.0, 2.0, 3.0]})
    out = compare(frame, claim("higher"))
    assert out["t"] == pytest.approx(3.674235, abs=1e-6)
    assert out["p"] == pytest.approx(2 * stats.t.sf(3 / math.sqrt(2 / 3), 4), abs=1e-12)
    assert out["p"] == pytest.approx(0.021312, abs=1e-6)
    assert (out["difference"], out["n_variant"], out["n_baseline"]) == (3.0, 3, 3)
    assert out["verdict"] == REPRODUCED
    assert out["reason"] == "v is higher (claim: higher); Welch p = 0.021 < 0.05"


def test_contradicted_and_noise():
    frame = frame_of({"v": [4.0, 5.0, 6.0], "base": [1.0, 2.0, 3.0]})
    out = compare(frame, claim("lower"))
    assert out["verdict"] == CONTRADICTED and out["reason"] == "v is higher (claim: lower); Welch p = 0.021 < 0.05"
    close = frame_of({"v": [1.5, 2.5, 3.5], "base": [1.0, 2.0, 3.0]})   # t = 0.612, p = 0.57
    out = compare(close, claim("higher"))
    assert out["verdict"] == NOISE and out["p"] == pytest.approx(0.573, abs=1e-3)
    assert out["reason"] == "v is higher (claim: higher); Welch p = 0.573 >= 0.05"
    # unequal variances: Welch, not Student
    spread = frame_of({"v": [10.0, 20.0, 30.0, 40.0], "base": [1.0, 1.1, 1.2]})
    welch = stats.ttest_ind([10, 20, 30, 40], [1.0, 1.1, 1.2], equal_var=False).pvalue
    student = stats.ttest_ind([10, 20, 30, 40], [1.0, 1.1, 1.2]).pvalue
    assert compare(spread, claim())["p"] == pytest.approx(welch, abs=1e-12) and abs(welch - student) > 0.005


def test_too_few_seeds_missing_variants_and_no_variance():
    one = compare(frame_of({"v": [9.0], "base": [1.0, 2.0]}), claim())
    assert (one["verdict"], one["reason"]) == (NOISE, "fewer than 2 seeds (1 and 2)") and np.isnan(one["p"])
    gone = compare(frame_of({"base": [1.0, 2.0]}), claim())
    assert (gone["verdict"], gone["reason"], gone["n_variant"]) == (NOISE, "no runs of v", 0)
    both = compare(frame_of({"other": [1.0]}), claim())
    assert both["reason"] == "no runs of v and base" and np.isnan(both["difference"])
    flat = compare(frame_of({"v": [0.684, 0.684], "base": [0.684, 0.684, 0.684]}), claim())
    assert flat["verdict"] == NOISE and flat["reason"] == "no variance over seeds on either side: no test possible"


def test_claims_and_verdicts_table():
    with pytest.raises(ValueError, match="direction must be 'higher' or 'lower'"):
        Claim("x", "a", "b", "sst2_acc", "better", "")
    book = claims_for(SCALES["book"])
    assert book[: len(CLAIMS)] == CLAIMS
    sizes = {c.variant: c.direction for c in book[len(CLAIMS):]}
    # the book's model is L=2, H=128: L=1 is smaller (higher perplexity), L=4 and H=256 bigger
    assert sizes == {"size_L1_H128_A2": "higher", "size_L4_H128_A2": "lower", "size_L2_H256_A4": "lower"}
    assert all(c.metric == "mlm_perplexity" and c.baseline == "bert" for c in book[len(CLAIMS):])
    frame = runs_frame(results(*(run("bert", s, ppl=p, sst2=a) for s, (p, a) in enumerate([(9, .5), (10, .6)])),
                               *(run("no_nsp", s, ppl=p, sst2=a) for s, (p, a) in enumerate([(8, .5), (8, .7)]))))
    table = verdicts(frame, CLAIMS[:1] + CLAIMS[2:3])
    assert table.index.tolist() == ["NSP helps (SST-2)", "bidirectional beats left-to-right (SST-2)"]
    assert table["verdict"].tolist() == [NOISE, NOISE]
    assert table["reason"].tolist()[1] == "no runs of ltr"


def test_the_results_file_reads():
    # results/ablations.json as scripts/ablations.py writes it (any number of runs): every run is a row of a
    # known variant, with the numbers its recipe must have
    from pathlib import Path

    from minibert.ablations import finetune_plan, variants_for

    path = Path(__file__).resolve().parents[1] / "results" / "ablations.json"
    results = json.loads(path.read_text(encoding="utf-8"))
    frame = runs_frame(results)
    recipes = variants_for(SCALES[results["scale"]])
    linear = frame[frame["head"] == "linear"]
    assert len(linear) == len(results["runs"]) and set(linear["variant"]) <= set(recipes)
    for row in linear.itertuples():
        recipe = recipes[row.variant]
        ppl = row.ltr_perplexity if recipe.objective == "ltr" else row.mlm_perplexity
        assert ppl > 1 and 0 <= row.sst2_acc <= 1 and 0 <= row.mrpc_acc <= 1, row
        assert np.isnan(row.nsp_acc) == (recipe.sentence_task == "none"), row
        assert np.isnan(row.conll_f1) == (("conll2003", "features") not in finetune_plan(recipe)), row
    assert set(frame.loc[frame["head"] == "bilstm", "variant"]) <= {"ltr_bilstm"}


def test_a_side_stuck_at_one_value_gives_a_verdict_without_warnings():
    import warnings

    stuck = 0.5091743119266054                      # SST-2's majority class, as three seeds gave it
    frame = pd.DataFrame({"variant": ["a"] * 3 + ["b"] * 3,
                          "sst2_acc": [stuck] * 3 + [0.55, 0.60, 0.58]})
    claim = Claim("b beats a", "b", "a", "sst2_acc", "higher", "test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compare(frame, claim)
    assert out["verdict"] == REPRODUCED and out["p"] < 0.05
