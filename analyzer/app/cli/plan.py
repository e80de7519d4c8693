"""`canary-analyzer plan` output: the planning report in plain lines."""

from __future__ import annotations

from pydantic import ValidationError

from analyzer.config import RolloutSpec, SpecError, Timing
from analyzer.plan import PLAN_POWER, PlanReport


def with_budget(spec: RolloutSpec, budget: str) -> RolloutSpec:
    """The spec with `timing.budget` from the --budget option, validated like the spec field."""
    try:
        timing = Timing.model_validate({**spec.timing.model_dump(by_alias=True), "budget": budget})
    except ValidationError as exc:
        raise SpecError(f"--budget: {budget!r}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    return spec.model_copy(update={"timing": timing})


def plan_lines(report: PlanReport) -> list[str]:
    out = [f"Plan for rollout {report.rollout!r} at {report.rps:g} rps, budget {report.budget_minutes:g} min "
           f"({PLAN_POWER:.0%} power):"]
    for d in report.detections:
        if d.minutes is None:
            out.append(f"  {d.metric}: a {d.effect} regression is not detected within "
                       f"{4 * report.budget_minutes:g} min")
        elif d.fits_budget:
            out.append(f"  {d.metric}: a {d.effect} regression is detected in about {d.minutes:g} min")
        else:
            out.append(f"  {d.metric}: a {d.effect} regression needs about {d.minutes:g} min and does not fit "
                       f"the {report.budget_minutes:g} min budget")
    if report.load is not None:
        ld = report.load
        if ld.add_rps == 0:
            out.append(f"  load: none needed; the service's own traffic decides within the budget "
                       f"({ld.power:.0%} power)")
        elif ld.add_rps is None:
            out.append(f"  load: even {1000:g}x the traffic does not decide within the budget ({ld.binding})")
        else:
            out.append(f"  load: add about {ld.add_rps:g} rps of synthetic load (spec `load.rps`) to decide within "
                       f"the budget with {ld.power:.0%} power (binding: {ld.binding})")
    for p in report.promotions:
        if p.fits_budget:
            out.append(f"  {p.metric}: a healthy canary shows non-inferiority in about {p.minutes:g} min")
        else:
            out.append(f"  {p.metric}: a healthy canary is unlikely to show non-inferiority within the budget: "
                       f"expect an inconclusive end at this traffic (see load)")
    out += [f"  note: {n}" for n in report.notes]
    return out
