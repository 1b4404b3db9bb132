r"""Chapter 9's findings on one model, stated so that they can fail, and checked on every model.

A model's layer-wise results are its block sensitivities :math:`\Delta_b` (the perplexity
increase when only block :math:`b` is pruned, one per method), OWL's outlier ratio of every block,
and the allocation runs (uniform, inverse-sensitivity and OWL per method and target). From them
:func:`layerwise_facts` computes the quantities the chapter states, and :data:`LAYERWISE_FINDINGS`
turns each into a claim that holds, fails, or waits for results. A rank correlation counts as
positive only when its 95% interval (:func:`~prunelib.report.statistics.spearman`) lies above 0.
Everything here reads stored records and computes none.
"""

from __future__ import annotations

from statistics import median
from typing import Mapping

from ..core.methods import METHODS
from .runs import check_findings
from .statistics import spearman

#: (method, target, label) keys of an allocation run; label None is uniform sparsity
RunKey = tuple[str, float, "str | None"]


def block_increase(record: dict) -> list[float]:
    r"""Per-block perplexity increase :math:`\Delta_b`, in block order, from a stored block sensitivity."""
    return [record["increase"][str(b)] for b in range(len(record["block_parameters"]))]


def top_blocks(values: list[float], k: int = 3) -> list[int]:
    """Indices of the ``k`` largest values, largest first (ties: the lower index first)."""
    return sorted(range(len(values)), key=lambda b: (-values[b], b))[:k]


def allocation_changes(runs: Mapping[RunKey, dict | None], label: str) -> list[tuple[str, float, float]]:
    r"""``(method, target, change)`` for every setting whose uniform and ``label`` runs are both stored:
    the relative change of the perplexity, :math:`(\mathrm{ppl}_{label} - \mathrm{ppl}_{uniform}) / \mathrm{ppl}_{uniform}`."""
    found = []
    for (method, target, kind), record in runs.items():
        uniform = runs.get((method, target, None))
        if kind == label and record is not None and uniform is not None:
            found.append((method, target, (record["ppl"] - uniform["ppl"]) / uniform["ppl"]))
    return found


#: column heading of each allocation rule, uniform (label None) first
RULES = {None: "uniform", "inverse-sensitivity": "inverse-sensitivity", "owl": "OWL"}


def allocation_table(runs: Mapping[RunKey, dict | None], dense: dict | None = None) -> str:
    """Markdown table of the allocation runs, one row per (method, target) in the order of ``runs``:
    each rule's perplexity with the measured overall sparsity in brackets, and the rule with the
    lowest perplexity once all three runs of the row are stored; ``dense`` adds a first row."""
    lines = ["| method | target | " + " | ".join(RULES.values()) + " | lowest perplexity |",
             "|---|---|" + "---|" * len(RULES) + "---|"]
    if dense is not None:
        lines.append(f"| dense | 0% | {_cell(dense)} |" + " |" * len(RULES))
    for method, target in settings(runs):
        cells = " | ".join(_cell(runs.get((method, target, label))) for label in RULES)
        best = lowest_rule(runs, method, target)
        lines.append(f"| {METHODS[method].label} | {target:.0%} | {cells} | {best or 'pending'} |")
    return "\n".join(lines) + "\n"


def settings(runs: Mapping[RunKey, dict | None]) -> list[tuple[str, float]]:
    """The (method, target) pairs of the allocation runs, in their order."""
    return list(dict.fromkeys((method, target) for method, target, _ in runs))


def lowest_rule(runs: Mapping[RunKey, dict | None], method: str, target: float) -> str | None:
    """The heading (a value of :data:`RULES`) of the rule with the lowest perplexity at one setting;
    None until the runs of all its rules are stored."""
    found = {label: runs.get((method, target, label)) for label in RULES}
    if any(record is None for record in found.values()):
        return None
    return RULES[min(found, key=lambda label: found[label]["ppl"])]


def _cell(record: dict | None) -> str:
    return "pending" if record is None else f"{record['ppl']:.2f} ({record['prune']['sparsity']:.4f})"


def layerwise_facts(sensitivities: Mapping[str, dict | None], outliers: dict | None,
                    runs: Mapping[RunKey, dict | None]) -> dict:
    """One model's chapter-9 quantities; each is None while a result it needs is still to compute.

    ``sensitivities`` maps a method (``"wanda"``, ``"sparsegpt"``) to its stored block sensitivity,
    ``runs`` an allocation key to its stored run. Returns ``blocks``; per method ``top_<method>``
    (the three most sensitive blocks) and ``max_over_median_<method>``; ``methods_rank``
    (:func:`~prunelib.report.statistics.spearman` of the two methods' sensitivities),
    ``outliers_depth`` and ``outliers_wanda`` (of the outlier ratios with the block index and with
    Wanda's sensitivities); ``owl`` and ``inverse``: the :func:`allocation_changes` of each rule, once
    all its runs are stored; ``owl_highest`` and ``inverse_highest``: those at the highest target alone,
    once that target's runs are stored (so a finding about it need not wait for the lower targets)."""
    increase = {method: block_increase(record) for method, record in sensitivities.items() if record is not None}
    facts: dict = {"blocks": next((len(values) for values in increase.values()), None)}
    for method in sensitivities:
        values = increase.get(method)
        facts[f"top_{method}"] = top_blocks(values) if values else None
        facts[f"max_over_median_{method}"] = max(values) / median(values) if values and median(values) > 0 else None
    both = [increase[m] for m in ("wanda", "sparsegpt") if m in increase]
    facts["methods_rank"] = spearman(*both) if len(both) == 2 else None
    ratios = outliers["ratios"] if outliers is not None else None
    facts["outliers_depth"] = spearman(ratios, list(range(len(ratios)))) if ratios else None
    facts["outliers_wanda"] = spearman(ratios, increase["wanda"]) if ratios and "wanda" in increase else None
    for label, key in (("owl", "owl"), ("inverse-sensitivity", "inverse")):
        targets = [target for (_, target, kind) in runs if kind == label]  # one per run of the rule
        found = allocation_changes(runs, label)
        facts[key] = found if targets and len(found) == len(targets) else None
        highest = max(targets, default=None)
        top = [change for change in found if change[1] == highest]
        facts[f"{key}_highest"] = top if top and len(top) == targets.count(highest) else None
    return facts


def stored_inputs(profile, model: str | None = None) -> tuple[dict, dict | None, dict]:
    """One model's stored inputs of :func:`layerwise_facts` (never computed here): the block
    sensitivities ``{method: record or None}``, the outlier ratios, and the allocation runs
    ``{(method, target, label): record or None}`` (empty until both inputs of the allocation exist).
    ``profile``: a profile or its name, whose results root is read; ``model`` overrides its model."""
    from dataclasses import replace

    from ..experiments.measurements import outlier_result, sensitivity_result
    from ..experiments.profiles import Profile, get_profile
    from ..experiments.runs import profile_root, stored
    from ..experiments.suites import OWL_M, allocation_suite

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    profile = replace(profile, model=model) if model else profile
    sensitivities = {method: sensitivity_result(profile, method=method, units="block", only_stored=True)
                     for method in ("wanda", "sparsegpt")}
    outliers = outlier_result(profile, m=OWL_M, only_stored=True)
    runs = {}
    if all(sensitivities.values()) and outliers is not None:
        runs = {(spec.method, spec.sparsity, spec.label): stored(spec, root=profile_root(profile))
                for spec in allocation_suite(profile, quiet=True, only_stored=True)}
    return sensitivities, outliers, runs


def _positive(found: dict | None) -> dict | None:
    if found is None:
        return None
    return {"holds": found["low"] > 0, "detail": f"ρ = {found['rho']:.2f} [{found['low']:.2f}, {found['high']:.2f}]"}


def _first_block_fragile(facts: dict) -> dict | None:
    tops = [facts.get(f"top_{m}") for m in ("wanda", "sparsegpt")]
    if None in tops:
        return None
    return {"holds": all(0 in top for top in tops),
            "detail": "; ".join(f"{name}: {', '.join(map(str, top))}" for name, top in zip(("Wanda", "SparseGPT"), tops))}


def _beats_uniform(facts: dict, key: str, most: bool) -> dict | None:
    """Whether the rule's changes in ``facts[key]`` are negative in most settings (``most``) or in all."""
    found = facts.get(key)
    if found is None:
        return None
    better = sum(change < 0 for _, _, change in found)
    if most:
        return {"holds": 2 * better > len(found), "detail": f"{better} of {len(found)}"}
    return {"holds": better == len(found),
            "detail": ", ".join(f"{METHODS[method].label} {100 * change:+.1f}%" for method, _, change in found)}


#: chapter 9's findings, checked on every model: (claim, check of one model's
#: :func:`layerwise_facts` giving None while results are pending, else ``{"holds", "detail"}``)
LAYERWISE_FINDINGS = (
    ("The first block is among the three most sensitive, for Wanda and SparseGPT", _first_block_fragile),
    ("Wanda and SparseGPT rank the blocks alike (rank correlation above 0)", lambda f: _positive(f["methods_rank"])),
    ("The outlier ratio rises with depth", lambda f: _positive(f["outliers_depth"])),
    ("The outlier ratio ranks the blocks like Wanda's sensitivity", lambda f: _positive(f["outliers_wanda"])),
    ("OWL beats uniform sparsity in most settings", lambda f: _beats_uniform(f, "owl", most=True)),
    ("Inverse-sensitivity beats uniform at the highest target, for both methods",
     lambda f: _beats_uniform(f, "inverse_highest", most=False)),
)


def layerwise_findings(facts_by_model: Mapping[str, dict], findings=LAYERWISE_FINDINGS) -> list[dict]:
    """:func:`~prunelib.report.runs.check_findings` of the chapter-9 findings on each model's
    :func:`layerwise_facts`; :func:`~prunelib.report.runs.findings_table` renders them."""
    return check_findings(findings, facts_by_model)
