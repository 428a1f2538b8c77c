"""Reading the ablations' results file (``scripts/ablations.py``, ``results/ablations.json``): one tidy table of
runs, a summary over seeds with a 95% confidence interval, and a verdict per claim of the paper.

* :func:`runs_frame`: one row per run (variant, seed, head) with the metric columns of :data:`METRICS`.
* :func:`summarize`: per variant, ``n``, ``mean``, ``std`` (sample, ``ddof=1``) and the 95% confidence interval
  of the mean from Student's t distribution, ``mean ± t(0.975, n - 1) · std / sqrt(n)``.
* :func:`compare`: Welch's t-test (unequal variances, ``scipy.stats.ttest_ind(equal_var=False)``) of one claim,
  with the verdict of :data:`VERDICT_RULE`; :data:`CLAIMS` and :func:`claims_for` list the claims of the paper's
  Section 5 (Tables 5, 6 and 8) and of the two rows that came after BERT (RoBERTa, ALBERT), :func:`verdicts`
  judges them all.

Seeds are the samples: each run pre-trains and fine-tunes with its own seed, so the spread over seeds is the
noise of the whole recipe (data order, masks, initialisation, fine-tuning). With three seeds a t-test only sees
large differences: the verdict "not distinguishable from noise at this scale" means exactly that, not "equal".
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["METRICS", "CONFIDENCE", "ALPHA", "REPRODUCED", "CONTRADICTED", "NOISE", "VERDICT_RULE", "Claim",
           "CLAIMS", "claims_for", "runs_frame", "summarize", "format_summary", "compare", "verdicts"]

#: column -> path inside one run of the results file. Accuracies and F1 are fractions (0-1), as in the file.
METRICS: dict[str, tuple[str, ...]] = {
    "mlm_perplexity": ("pretrain", "mlm_perplexity"),   # held-out masked LM, 80/10/10 static masks
    "mlm_acc": ("pretrain", "mlm_acc"),
    "nsp_acc": ("pretrain", "nsp_acc"),                 # NSP, or sentence order for "sop"
    "ltr_perplexity": ("pretrain", "ltr_perplexity"),   # next-token: not comparable with mlm_perplexity
    "parameters": ("pretrain", "parameters"),
    "tokens": ("pretrain", "tokens"),
    "pretrain_seconds": ("pretrain", "seconds"),
    "sst2_acc": ("finetune", "sst2", "accuracy"),
    "mrpc_acc": ("finetune", "mrpc", "accuracy"),
    "mrpc_f1": ("finetune", "mrpc", "f1"),
    "conll_f1": ("finetune", "conll2003_features", "f1"),
    "conll_precision": ("finetune", "conll2003_features", "precision"),
    "conll_recall": ("finetune", "conll2003_features", "recall"),
}
_HEAD_METRICS = ("sst2_acc", "mrpc_acc", "mrpc_f1")      # what a second fine-tuning head ("_bilstm") reports

CONFIDENCE = 0.95
ALPHA = 0.05
REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
NOISE = "not distinguishable from noise at this scale"
VERDICT_RULE = (f"Welch's t-test of the seeds of two variants: '{REPRODUCED}' if the difference of the means "
                f"has the paper's sign and p < {ALPHA}, '{CONTRADICTED}' if it has the opposite sign and "
                f"p < {ALPHA}, otherwise (or with fewer than 2 seeds on either side, or no variance at all) "
                f"'{NOISE}'.")


def _lookup(run: dict, path: tuple[str, ...]):
    value = run
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return np.nan
        value = value[key]
    return np.nan if value is None else value


def runs_frame(results: dict) -> pd.DataFrame:
    """One row per run of a results file (the dict ``scripts/ablations.py`` writes), in the file's order.

    Columns: ``variant``, ``seed``, ``head`` ("linear"), ``layers``, ``hidden``, ``heads`` and every column of
    :data:`METRICS` (NaN where the run has no such number: no ``nsp_acc`` without NSP/SOP, no
    ``ltr_perplexity`` but for "ltr", no ``conll_*`` outside Table 8's variants). A run fine-tuned with the
    BiLSTM head as well (the "ltr" variant: Table 5's "+ BiLSTM") gets a second row, variant ``"<name>_bilstm"``
    and head "bilstm", whose SST-2/MRPC columns are that head's and whose pre-training columns are the run's
    own; ``ltr_bilstm`` is the name ``data/paper_table5_pretraining_tasks.csv`` gives that row.

    Raises ``ValueError`` naming the key when ``results`` has no "runs" mapping or a run lacks "variant" or
    "seed".
    """
    runs = results.get("runs") if isinstance(results, dict) else None
    if not isinstance(runs, dict):
        raise ValueError("results: expected a dict with a 'runs' mapping (scripts/ablations.py's file)")
    rows = []
    for key, run in runs.items():
        missing = [k for k in ("variant", "seed") if k not in run]
        if missing:
            raise ValueError(f"results['runs'][{key!r}]: no {' or '.join(map(repr, missing))}")
        layers, hidden, heads = run.get("size", (np.nan,) * 3)
        row = {"variant": run["variant"], "seed": int(run["seed"]), "head": "linear", "layers": layers,
               "hidden": hidden, "heads": heads}
        row.update({name: _lookup(run, path) for name, path in METRICS.items()})
        rows.append(row)
        tuned = run.get("finetune", {})
        if any(f"{task}_bilstm" in tuned for task in ("sst2", "mrpc")):
            second = dict(row, variant=f"{run['variant']}_bilstm", head="bilstm")
            for name in _HEAD_METRICS:
                task, _, metric = name.partition("_")
                value = _lookup(run, ("finetune", f"{task}_bilstm", {"acc": "accuracy"}.get(metric, metric)))
                second[name] = value
            rows.append(second)
    columns = ["variant", "seed", "head", "layers", "hidden", "heads", *METRICS]
    frame = pd.DataFrame(rows, columns=columns)
    for name in columns[3:]:
        frame[name] = frame[name].astype(float)
    return frame


def summarize(frame: pd.DataFrame, metric: str, variants=None, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per variant: ``n`` (seeds with a value), ``mean``, ``std`` (ddof=1), ``ci_low``/``ci_high``.

    The interval is Student's t interval of the mean, ``mean ± t.ppf((1 + confidence) / 2, n - 1) · std /
    sqrt(n)``; ``std`` and the interval are NaN with fewer than 2 seeds, and a variant in ``variants`` without
    any run gets a row with ``n`` 0 (shown as "missing" by :func:`format_summary`). Rows follow ``variants``
    (default: the frame's variants in order of appearance). Raises ``KeyError`` for an unknown ``metric``.
    """
    if metric not in frame.columns:
        raise KeyError(f"metric {metric!r}: not a column of the runs frame (one of {', '.join(METRICS)})")
    if variants is None:
        variants = list(dict.fromkeys(frame["variant"]))
    rows = {}
    for variant in variants:
        values = frame.loc[frame["variant"] == variant, metric].dropna().to_numpy(float)
        n = len(values)
        mean = values.mean() if n else np.nan
        std = values.std(ddof=1) if n >= 2 else np.nan
        half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n) if n >= 2 else np.nan
        rows[variant] = {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=["n", "mean", "std", "ci_low", "ci_high"])
    out.index.name = "variant"
    return out.astype({"n": int})


def format_summary(summary: pd.DataFrame, digits: int = 1, scale: float = 1.0, interval: bool = True) -> pd.Series:
    """One string per variant of a :func:`summarize` table: "mean ± std [ci_low, ci_high]" with ``digits``
    decimals after multiplying by ``scale`` (100 for percent); "x (1 seed)" for a single seed, "missing" for
    none. ``interval=False`` leaves out the interval."""
    def one(row) -> str:
        if row["n"] == 0:
            return "missing"
        mean = f"{scale * row['mean']:.{digits}f}"
        if row["n"] == 1:
            return f"{mean} (1 seed)"
        text = f"{mean} ± {scale * row['std']:.{digits}f}"
        if interval:
            text += f" [{scale * row['ci_low']:.{digits}f}, {scale * row['ci_high']:.{digits}f}]"
        return text
    return summary.apply(one, axis=1).rename(summary.index.name)


@dataclass(frozen=True)
class Claim:
    """One claim: by the paper, ``variant``'s ``metric`` is ``direction`` ("higher" or "lower") than
    ``baseline``'s. ``source``: where it is claimed (paper, section, table)."""
    name: str
    variant: str
    baseline: str
    metric: str
    direction: str
    source: str

    def __post_init__(self):
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"Claim {self.name!r}: direction must be 'higher' or 'lower', got {self.direction!r}")


def compare(frame: pd.DataFrame, claim: Claim, alpha: float = ALPHA) -> dict:
    """Judge one claim on the seeds of a runs frame with Welch's t-test (:data:`VERDICT_RULE`).

    Returns a dict: the claim's fields (``claim`` is its name), ``n_variant``/``n_baseline``,
    ``mean_variant``/``mean_baseline``, ``difference`` (variant minus baseline), ``t``, ``p`` (two-sided; NaN when not computed), ``verdict`` (one
    of :data:`REPRODUCED`, :data:`CONTRADICTED`, :data:`NOISE`) and ``reason`` (one sentence). Welch's test
    (``scipy.stats.ttest_ind(equal_var=False)``) does not assume the two variants spread equally.
    """
    a = frame.loc[frame["variant"] == claim.variant, claim.metric].dropna().to_numpy(float)
    b = frame.loc[frame["variant"] == claim.baseline, claim.metric].dropna().to_numpy(float)
    out = {"claim": claim.name, "variant": claim.variant, "baseline": claim.baseline, "metric": claim.metric,
           "direction": claim.direction, "source": claim.source, "n_variant": len(a), "n_baseline": len(b),
           "mean_variant": a.mean() if len(a) else np.nan, "mean_baseline": b.mean() if len(b) else np.nan,
           "t": np.nan, "p": np.nan}
    out["difference"] = out["mean_variant"] - out["mean_baseline"]
    if len(a) < 2 or len(b) < 2:
        missing = [name for name, x in ((claim.variant, a), (claim.baseline, b)) if len(x) == 0]
        why = (f"no runs of {' and '.join(missing)}" if missing
               else f"fewer than 2 seeds ({len(a)} and {len(b)})")
        return out | {"verdict": NOISE, "reason": why}
    if a.std(ddof=1) == 0 and b.std(ddof=1) == 0:
        return out | {"verdict": NOISE, "reason": "no variance over seeds on either side: no test possible"}
    with warnings.catch_warnings():
        # One side's seeds all gave the same number (a classifier stuck at the majority class): scipy warns of
        # precision loss in that side's variance, which is exactly 0; the test itself is right.
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        test = stats.ttest_ind(a, b, equal_var=False)
    out.update(t=float(test.statistic), p=float(test.pvalue))
    sign = "higher" if out["difference"] > 0 else "lower" if out["difference"] < 0 else "equal"
    if out["p"] < alpha and sign == claim.direction:
        verdict = REPRODUCED
    elif out["p"] < alpha and sign != "equal":
        verdict = CONTRADICTED
    else:
        verdict = NOISE
    relation = "<" if out["p"] < alpha else ">="
    reason = f"{claim.variant} is {sign} (claim: {claim.direction}); Welch p = {out['p']:.3f} {relation} {alpha}"
    return out | {"verdict": verdict, "reason": reason}


_T5 = "Devlin et al. 2019, Section 5.1, Table 5"
_T8 = "Devlin et al. 2019, Appendix C.2, Table 8"
#: The claims of Section 5 that the book's tasks can test (SST-2, MRPC, held-out MLM perplexity, CoNLL-2003
#: feature-based F1), and one each from RoBERTa and ALBERT. Table 6's claims depend on the scale's sizes:
#: :func:`claims_for`.
CLAIMS: tuple[Claim, ...] = (
    Claim("NSP helps (SST-2)", "bert", "no_nsp", "sst2_acc", "higher", f"{_T5}: 92.7 vs 92.6"),
    Claim("NSP helps (MRPC)", "bert", "no_nsp", "mrpc_acc", "higher", f"{_T5}: 86.7 vs 86.5"),
    Claim("bidirectional beats left-to-right (SST-2)", "no_nsp", "ltr", "sst2_acc", "higher",
          f"{_T5}: No NSP 92.6 vs LTR 92.1"),
    Claim("bidirectional beats left-to-right (MRPC)", "no_nsp", "ltr", "mrpc_acc", "higher",
          f"{_T5}: No NSP 86.5 vs LTR 77.5"),
    Claim("a BiLSTM on LTR does not help GLUE (SST-2)", "ltr_bilstm", "ltr", "sst2_acc", "lower",
          f"{_T5}: 91.6 vs 92.1 (it helps SQuAD only)"),
    Claim("a BiLSTM on LTR does not help GLUE (MRPC)", "ltr_bilstm", "ltr", "mrpc_acc", "lower",
          f"{_T5}: 75.7 vs 77.5"),
    Claim("80/10/10 beats MASK only, feature-based", "bert", "mask_100_0_0", "conll_f1", "higher",
          f"{_T8}: NER feature-based 94.9 vs 94.0"),
    Claim("80/10/10 beats RND only, feature-based", "bert", "mask_0_0_100", "conll_f1", "higher",
          f"{_T8}: NER feature-based 94.9 vs 94.6"),
    Claim("dynamic masking is no worse than static (SST-2)", "roberta", "no_nsp", "sst2_acc", "higher",
          "Liu et al. 2019, Section 4.1, Table 1: dynamic comparable or slightly better"),
    Claim("sentence order beats NSP (SST-2)", "sop", "bert", "sst2_acc", "higher",
          "Lan et al. 2020, Section 4.6, Table 5: SOP better on average downstream"),
)


def _size_name(size) -> str:
    layers, hidden, heads = size
    return f"size_L{layers}_H{hidden}_A{heads}"


def claims_for(scale) -> tuple[Claim, ...]:
    """:data:`CLAIMS` and Table 6's at ``scale`` (a :class:`minibert.ablations.Scale`): every model size is
    compared with the scale's own model ("bert"); the one with more encoder parameters (12·L·H², embeddings
    excluded) should have the lower held-out MLM perplexity (Devlin et al. 2019, Section 5.2, Table 6)."""
    out = list(CLAIMS)
    base = tuple(scale.size)
    for size in scale.sizes:
        if tuple(size) == base:
            continue
        bigger = size[0] * size[1] ** 2 > base[0] * base[1] ** 2
        layers, hidden, _ = size
        name = f"size: L={layers}, H={hidden} vs L={base[0]}, H={base[1]} (perplexity)"
        out.append(Claim(name, _size_name(size), "bert", "mlm_perplexity", "lower" if bigger else "higher",
                         "Devlin et al. 2019, Section 5.2, Table 6: LM perplexity falls with size"))
    return tuple(out)


def verdicts(frame: pd.DataFrame, claims=CLAIMS, alpha: float = ALPHA) -> pd.DataFrame:
    """:func:`compare` for every claim: one row per claim, indexed by the claim's name."""
    return pd.DataFrame([compare(frame, c, alpha) for c in claims]).set_index("claim")
