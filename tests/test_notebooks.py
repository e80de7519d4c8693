"""The analysts' notebooks run against a real history store (their code cells, in order)."""

import json
import os
from pathlib import Path

import pytest

from analyzer.app.simulation import run_rollout
from analyzer.config import load_spec
from analyzer.sim.scenario import load_scenario
from analyzer.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_runs_on_a_recorded_rollout(notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    spec = load_spec(ROOT / "config/examples/reviews.yaml")
    run_rollout(spec, load_scenario("error-regression"), seed=4, store=SqlStore(url), rollout_id="nb-1")
    monkeypatch.setenv("CANARY_DB", url)
    monkeypatch.setenv("NOTEBOOK_FIGURE", str(tmp_path / "figure.png"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict[str, object] = {}
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{notebook.name}", "exec"), namespace)
    assert namespace["rollout"] == "nb-1"
    ticks = namespace["ticks"]
    assert ticks["phase"].iloc[-1] == "RolledBack"  # type: ignore[index]
    assert (tmp_path / "figure.png").stat().st_size > 1000
    assert os.environ["CANARY_DB"] == url
