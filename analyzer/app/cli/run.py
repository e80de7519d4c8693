"""`canary-analyzer run CONFIG`: one rollout in this process, on the configured sources and router, no server.

It ticks on the wall clock and records everything in the store like the daemon. It exits when the
rollout is decided: 0 promoted, 1 rolled back, 3 inconclusive or paused, 2 error. With `--wait` a
paused or inconclusive rollout is not the end: the process waits for an operator command in the
store (`POST /v1/rollouts/{id}/resume|promote|abort` on a `serve` sharing the store).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console

from analyzer.app import wiring
from analyzer.app.cli.outcome import exit_status
from analyzer.config import RolloutSpec
from analyzer.engine import Engine, TickOutcome
from analyzer.ports import TrafficRouter
from analyzer.store import control
from analyzer.store.sql import SqlStore

OWNER = "run"
COMMAND_POLL_S = 1.0


def run_rollout_here(
    spec: RolloutSpec, spec_text: str, *, store: SqlStore, settings: wiring.Settings, wait: bool, console: Console,
    router: TrafficRouter | None = None, sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run the rollout to its end; returns the exit status. `router` replaces the configured one (tests)."""
    spec = wiring.with_overrides(spec, settings)
    adapters = wiring.live(spec, store=store, settings=settings)
    if router is not None:
        from dataclasses import replace

        adapters = replace(adapters, router=router)
    rollout_id = f"{spec.name}-{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    control.create_rollout(store, rollout_id, spec, spec_text, {"owner": OWNER, "mode": "live"})
    console.print(f"{rollout_id}: {spec.target.namespace}/{spec.target.virtual_service} "
                  f"{spec.target.baseline.subset} -> {spec.target.canary.subset}, steps {spec.strategy.weights}, "
                  f"every {spec.timing.interval:g}s", markup=False)
    engine = Engine(spec, rollout_id, adapters)
    _show(console, engine.start())
    interval = spec.timing.interval
    next_tick = time.monotonic() + interval
    while True:
        commands = control.pending_commands(store, rollout_id, after_tick=engine.state.tick)
        for cmd in commands:
            control.claim_command(store, cmd.id, engine.state.tick + 1)
            _show(console, engine.tick(cmd.command))
        if engine.done and (not wait or engine.state.phase in control.FINAL_PHASES):
            break
        if engine.done:  # paused or inconclusive, --wait: only an operator's command moves it
            sleep(COMMAND_POLL_S)
            next_tick = time.monotonic() + interval
            continue
        if commands:
            next_tick = time.monotonic() + interval
            continue
        sleep(max(0.0, next_tick - time.monotonic()))
        next_tick += interval
        _show(console, engine.tick())
    state = engine.state
    console.print(f"{rollout_id}: {state.outcome}: {state.reason[:300]}", markup=False)
    console.print(f"history: canary-analyzer history show {rollout_id} --db {store.url}", markup=False)
    return exit_status(state.outcome)


def _show(console: Console, outcome: TickOutcome) -> None:
    s = outcome.state
    weights = "/".join(f"{k} {v}" for k, v in s.weights.items())
    console.print(f"tick {s.tick:>3}  {s.phase.value:<13} {weights:<18} {outcome.decision.kind.value:<9} "
                  f"{outcome.decision.reason[:160]}", markup=False)
