"""The rollout report: a self-contained page that renders in headless Chromium without errors or fetches."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from analyzer.app.cli.main import main
from analyzer.app.simulation import run_rollout
from analyzer.app.web.charts import Rule, Series, line_chart
from analyzer.config import load_spec_text, parse_spec
from analyzer.sim.scenario import load_scenario
from analyzer.store.sql import SqlStore

if TYPE_CHECKING:
    from tests.browser_chromium import Chromium

pytest_plugins = ("tests.browser_chromium",)

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "config/examples/reviews.yaml"
HOSTILE = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'history.db'}"
    spec, text = load_spec_text(SPEC)
    with SqlStore(url) as store:
        run_rollout(spec, load_scenario("healthy"), seed=4, store=store, rollout_id="healthy-1", spec_text=text)
        run_rollout(spec, load_scenario("error-regression"), seed=4, store=store, rollout_id="errors-1",
                    spec_text=text)
        # A spec whose free text carries markup: it must come out as text, never as a tag.
        hostile = text.replace("# Bookinfo", "# " + HOSTILE)
        data = spec.model_dump(mode="json", by_alias=True)
        data["metadata"]["name"] = "reviews"
        run_rollout(parse_spec(data), load_scenario("latency-regression"), seed=4, store=store,
                    rollout_id='lat"<b>1', spec_text=hostile)
    return url


def _report(url: str, rollout_id: str, out: Path) -> str:
    assert main(["report", rollout_id, "--db", url, "--out", str(out)]) == 0
    return out.read_text()


def test_report_explains_the_verdict_and_holds_every_part(store_url: str, tmp_path: Path) -> None:
    page = _report(store_url, "errors-1", tmp_path / "r.html")
    assert re.search(r"Rolled back after \d+(\.\d+)? minutes", page)
    assert "errors proved a regression" in page
    assert page.count("<svg") >= 5  # weights, error rate, evidence and ratio per metric
    for part in ("Weight timeline", "Decision log", "Events", "Config", "errors: evidence against its threshold",
                 "Trace findings", "canary and"):
        assert part in page
    assert "onInconclusive: pause" in page  # the config as written
    healthy = _report(store_url, "healthy-1", tmp_path / "h.html")
    assert "Promoted after" in healthy and "10%, 25%, 50%" in healthy


def test_report_escapes_spec_and_label_values(store_url: str, tmp_path: Path) -> None:
    page = _report(store_url, 'lat"<b>1', tmp_path / "x.html")
    assert HOSTILE not in page and "&lt;script&gt;" in page
    assert '<b>1' not in page and "lat&quot;&lt;b&gt;1" in page
    assert re.findall(r"<script", page) == []


def test_report_for_an_unknown_rollout_is_one_line(store_url: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "nope", "--db", store_url, "--out", str(tmp_path / "n.html")]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "n.html").exists()


def test_charts_escape_text_and_leave_gaps() -> None:
    svg = line_chart([Series("<i>", [(0, 1.0), (1, None), (2, float("nan")), (3, 2.0)])], title="a & b",
                     rules=[Rule(1.5, "<tol>")], log_y=True)
    assert "<i>" not in svg and "&lt;i&gt;" in svg and "a &amp; b" in svg and "&lt;tol&gt;" in svg
    assert svg.count("<path") == 2  # the gap splits the line in two runs


def test_report_renders_in_chromium_without_errors_or_fetches(store_url: str, tmp_path: Path,
                                                              chromium: Chromium) -> None:
    for rollout_id in ("healthy-1", "errors-1", 'lat"<b>1'):
        page = tmp_path / f"report-{len(rollout_id)}.html"
        _report(store_url, rollout_id, page)
        shot = tmp_path / f"report-{len(rollout_id)}.png"
        run = chromium.open(page.as_uri(), shot, {
            "svgs": "document.querySelectorAll('svg.chart').length",
            "drawn": "Array.from(document.querySelectorAll('svg.chart')).every("
                     "s => s.getBoundingClientRect().width > 100 && s.querySelectorAll('path').length > 0)",
            "title": "document.title",
            "scripts": "document.scripts.length",
        })
        assert run.errors == [], run.errors
        assert [u for u in run.requests if not u.startswith("file://")] == []  # nothing over the network
        assert run.values["svgs"] >= 5 and run.values["drawn"] is True
        assert run.values["scripts"] == 0
        assert rollout_id in run.values["title"]
        assert shot.stat().st_size > 20_000
