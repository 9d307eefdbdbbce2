"""What the terminal says about jobs that cannot run: the reason and what to do about it."""

from __future__ import annotations

from harness.jobs import SkipKind

KIND_LABELS = {SkipKind.INCOMPATIBLE: "incompatible", SkipKind.DATA: "data missing", SkipKind.OTHER: "not run"}


def pairs(jobs) -> list:
    """One (model, dataset, kind, reason) per skipped pair, seeds collapsed, in plan order."""
    seen, out = set(), []
    for job in jobs:
        if job.skip_reason is None or (job.model, job.dataset) in seen:
            continue
        seen.add((job.model, job.dataset))
        out.append((job.model, job.dataset, job.skip_kind or SkipKind.OTHER, job.skip_reason))
    return out


def what_fits(host, model: str, dataset: str) -> str:
    """For an incompatible pair: the datasets the model can run on and the models that can run on the
    dataset (by their declarations alone; nothing is loaded)."""
    reg = host.registry
    parts = []
    if model in reg.models:
        spec = reg.models[model]
        ok = sorted(d for d, dspec in reg.datasets.items() if spec.incompatibility(dspec) is None)
        parts.append(f"{model} runs on: {', '.join(ok) or 'no installed dataset'}")
    if dataset in reg.datasets:
        dspec = reg.datasets[dataset]
        ok = sorted(m for m, spec in reg.models.items() if spec.incompatibility(dspec) is None)
        parts.append(f"models for {dataset}: {', '.join(ok) or 'none installed'}")
    return "; ".join(parts)


def explain(host, jobs) -> str:
    """The message when nothing the user named explicitly can run (exit 2)."""
    lines = ["nothing to run: every model and dataset pair you named cannot run"]
    for model, dataset, kind, reason in pairs(jobs):
        lines.append(f"  {model} on {dataset}: {reason}")
        if kind == SkipKind.INCOMPATIBLE:
            lines.append(f"    {what_fits(host, model, dataset)}")
    lines.append("See `python -m harness list` for every model and dataset with what they accept, and "
                 "`python -m harness datasets` for which datasets are available.")
    return "\n".join(lines)


def terminal_lines(jobs) -> list:
    """One line per skipped pair, grouped by kind, for the end of `run`'s output."""
    found = pairs(jobs)
    if not found:
        return []
    lines = [f"skipped {len(found)} model/dataset pair(s) (`python -m harness list` shows what fits):"]
    for kind in (SkipKind.DATA, SkipKind.INCOMPATIBLE, SkipKind.OTHER):
        for model, dataset, k, reason in found:
            if k == kind:
                lines.append(f"  {KIND_LABELS[kind]:<12}  {model} / {dataset}: {reason}")
    return lines
