"""`canary-analyzer demo`: one rollout on the simulated mesh with live progress and a summary."""

from __future__ import annotations

from pydantic import ValidationError
from rich.console import Console

from analyzer.app import outputs
from analyzer.app.simulation import RunResult, run_rollout
from analyzer.app.wiring import ClusterAdapters
from analyzer.config import Load, RolloutSpec, SpecError
from analyzer.engine import Engine, TickOutcome
from analyzer.ids import new_rollout_id
from analyzer.ports import Store
from analyzer.sim.scenario import Scenario


def with_load(spec: RolloutSpec, rps: float) -> RolloutSpec:
    """The spec with `load.rps` set (a load block is added when the spec has none)."""
    try:
        load = Load.model_validate({**(spec.load.model_dump(by_alias=True) if spec.load else {}), "rps": rps})
    except ValidationError as exc:
        raise SpecError(f"--load: {rps!r}: {exc.errors()[0]['msg']}") from None
    return spec.model_copy(update={"load": load})


def _evidence_text(outcome: TickOutcome) -> str:
    parts = []
    for v in outcome.verdicts:
        if v.gate and v.e_value is not None and v.threshold is not None:
            parts.append(f"{v.metric} {v.e_value:.2f}/{v.threshold:.0f}")
        elif v.gate:
            parts.append(f"{v.metric} {v.verdict.value}")
    return ", ".join(parts)


def run_demo(spec: RolloutSpec, spec_text: str, scenario: Scenario, *, seed: int, store: Store,
             live: bool = True, adapters: ClusterAdapters | None = None) -> RunResult:
    """`adapters` (a cluster's router, scaler and notifier) replace the in-memory ones; metrics stay simulated."""
    console = outputs.console()
    if live:
        console.print(f"[bold]Rollout {spec.name}[/] ({spec.target.namespace}/{spec.target.virtual_service}: "
                      f"{spec.target.baseline.subset} -> {spec.target.canary.subset}), scenario [bold]{scenario.name}"
                      f"[/], seed {seed}")
        if scenario.description:
            console.print(f"  {scenario.description}", style="dim")
        console.print(f"  steps {spec.strategy.weights}, interval {spec.timing.interval:g}s, "
                      f"budget {spec.timing.budget / 60:g} min, alpha {spec.analysis.alpha:g}\n")

    def on_tick(engine: Engine, outcome: TickOutcome) -> None:
        if not live:
            return
        s = outcome.state
        minute = s.tick * spec.timing.interval / 60
        w = "/".join(f"{k} {v}" for k, v in s.weights.items()) + (" +header" if s.header_route else "")
        step = f"step {s.step + 1}" if s.step >= 0 else ""
        console.print(f"min {minute:5.1f}  {s.phase.value:<14} {step:<7} {w:<22} {_evidence_text(outcome):<42} "
                      f"{outcome.decision.kind}", markup=False)

    if live and adapters is not None:
        console.print(f"  routes: VirtualService {spec.target.namespace}/{spec.target.virtual_service} in the "
                      "cluster (metrics simulated)\n")
    result = run_rollout(spec, scenario, seed=seed, store=store, on_tick=on_tick, spec_text=spec_text,
                         rollout_id=new_rollout_id(), label=f"{spec.name}-{scenario.name}-{seed}", cluster=adapters)
    if live:
        _summary(console, result)
    return result


def _edge(value: float | None) -> str:
    return "inf" if value is None else f"{value:g}"


def _summary(console: Console, result: RunResult) -> None:
    minute = "n/a" if result.decision_minute is None else f"{result.decision_minute:g}"
    console.print(f"\n[bold]Outcome: {result.outcome}[/] at minute {minute}; steps reached {result.steps_reached}; "
                  f"final weights {result.final_weights}")
    console.print(f"  {result.reason}", markup=False)
    console.print("[bold]Metrics at the decision[/]")
    for v in result.metrics:
        if v.metric.startswith("traces"):
            continue  # summarised below
        ev = "" if v.e_value is None else f"  evidence {v.e_value:.3g}/{v.threshold:.0f}"
        ratio = "" if v.ratio is None else f"  ratio {v.ratio:.2f}"
        if v.ci:
            ratio += f" (CS {v.ci[0]:.2f}–{v.ci[1]:.2f})"
        console.print(f"  [bold]{v.metric}[/]: {v.verdict.value}{ev}{ratio}{'' if v.gate else '  (not a gate)'}")
        console.print(f"    {v.reason}", markup=False, style="dim")
        for side, qs in v.details.get("quantiles_ms", {}).items():
            text = ", ".join(f"{q} {x['estimate']:g} ms [{x['low']:g}, {_edge(x['high'])}]" for q, x in qs.items()
                             if x["estimate"] is not None)
            console.print(f"    {side}: {text} (95% intervals in bucket edges)", markup=False, style="dim")
    if "load" in result.extras:
        ld = result.extras["load"]
        console.print(f"Synthetic load: {ld['requests']} requests at {ld['achieved_rps']:g} rps (target "
                      f"{ld['target_rps']:g}) while analysing, split by the weights like real traffic", markup=False)
    if "traces" in result.extras:
        console.print("[bold]Trace findings[/] (diagnostics, they do not gate):")
        console.print(result.extras["traces"], markup=False)
    console.print(f"Recorded as [bold]{result.rollout_id}[/]: `canary-analyzer history show {result.rollout_id}`")
