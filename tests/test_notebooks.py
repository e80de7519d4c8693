"""The analysts' notebooks run in a real Jupyter kernel (nbclient) against stores of simulated rollouts,
in SQLite and in PostgreSQL, with their parameters injected after the cell tagged `parameters`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from analyzer.app.simulation import run_rollout
from analyzer.config import load_spec_text, parse_spec
from analyzer.sim.scenario import load_scenario
from analyzer.store.sql import SqlStore

pytest_plugins = ("tests.servers_postgres",)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SPEC = ROOT / "config/examples/reviews.yaml"
SCENARIOS = ("healthy", "error-regression", "latency-regression", "low-traffic")


def _fill(url: str) -> None:
    """Four rollouts of reviews (with a diagnostic traces metric) and one of a second service."""
    _, text = load_spec_text(SPEC)
    data = yaml.safe_load(text)
    data["analysis"]["metrics"].append({"name": "traces", "type": "traces", "edges": [100, 250]})
    reviews = parse_spec(data)
    data["metadata"]["name"] = "ratings"
    ratings = parse_spec(data)
    with SqlStore(url) as store:
        for i, name in enumerate(SCENARIOS):
            run_rollout(reviews, load_scenario(name), seed=21 + i, store=store, rollout_id=f"reviews-{name}",
                        spec_text=text)
        run_rollout(ratings, load_scenario("healthy"), seed=40, store=store, rollout_id="ratings-healthy")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('notebooks') / 'history.db'}"
    else:
        from tests.servers_postgres import reset_database

        url = request.getfixturevalue("postgres_url")
        reset_database(url)
    _fill(url)
    yield url


def _run(notebook: Path, parameters: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Execute the notebook as papermill would; returns the JSON its last cell prints."""
    from nbclient import NotebookClient

    book = nbformat.read(notebook, as_version=4)
    index = next(i for i, c in enumerate(book.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    book.cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    nbformat.write(book, workdir / notebook.name)  # the executed copy, for a look when a check fails
    last = "".join(o.get("text", "") for o in book.cells[-1].outputs if o.output_type == "stream")
    return json.loads(last.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def _headless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the kernel inherits it


def test_notebooks_are_committed_without_outputs_and_with_parameters() -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["config_backtest.ipynb", "fleet_overview.ipynb", "rollout_review.ipynb"]
    for path in NOTEBOOKS.glob("*.ipynb"):
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(c.outputs == [] and c.execution_count is None for c in code), path.name
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "DB =" in tagged[0].source and "ROLLOUT =" in tagged[0].source, path.name


def _figures(out: dict[str, Any], folder: Path, expected: set[str]) -> None:
    assert expected <= set(out["figures"]), out["figures"]
    for name in expected:
        assert (folder / name).stat().st_size > 5_000, name


@pytest.mark.parametrize("rollout", ["reviews-error-regression", "reviews-healthy", "reviews-low-traffic"])
def test_rollout_review(store_url: str, rollout: str, tmp_path: Path) -> None:
    figures = tmp_path / "figures"
    out = _run(NOTEBOOKS / "rollout_review.ipynb", {"DB": store_url, "ROLLOUT": rollout, "FIGURES": str(figures)},
               tmp_path)
    assert out["rollout"] == rollout and out["ticks"] >= 4
    expected_outcome = {"reviews-error-regression": "rolled_back", "reviews-latency-regression": "rolled_back",
                        "reviews-healthy": "promoted"}.get(rollout)
    if expected_outcome:
        assert out["outcome"] == expected_outcome
    assert out["trace_verdicts"] > 0  # the diagnostic traces metric was judged on every observed tick
    assert out["trace_findings"] >= 0 and out["trace_report"]  # the engine's trace report, kept with the last tick
    _figures(out, figures, {"weights.png", "error_rate.png", "ratios.png", "evidence.png", "latency_latency.png"})


def test_fleet_overview(store_url: str, tmp_path: Path) -> None:
    figures = tmp_path / "figures"
    out = _run(NOTEBOOKS / "fleet_overview.ipynb", {"DB": store_url, "ROLLOUT": "reviews-healthy",
                                                    "FIGURES": str(figures)}, tmp_path)
    assert out == {**out, "rollouts": 5, "services": 2}
    assert out["causes"] >= 2  # the error and the latency regressions
    _figures(out, figures, {"outcomes.png", "time_to_promote.png", "rollback_causes.png"})


def test_config_backtest(store_url: str, tmp_path: Path) -> None:
    figures = tmp_path / "figures"
    out = _run(NOTEBOOKS / "config_backtest.ipynb", {"DB": store_url, "ROLLOUT": None, "ALPHA": 0.005, "MDE": 1.5,
                                                     "FIGURES": str(figures)}, tmp_path)
    assert out["rollouts"] == 5 and out["configs"] == ["alpha 0.005", "mde 1.5"]
    assert set(out["changed"]) == {"alpha 0.005", "mde 1.5"}
    assert all(0 <= n <= 5 for n in out["changed"].values())  # how many depends on the statistics, not the notebook
    _figures(out, figures, {"backtest.png"})
