"""`canary-analyzer plan` output: the planning report in plain lines."""

from __future__ import annotations

from analyzer.plan import PLAN_POWER, PlanReport


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
    out += [f"  note: {n}" for n in report.notes]
    return out
