"""Bad input through the real CLI, in a subprocess: exit 2, one line on stderr naming the problem, no traceback,
and nothing half-written in the history store (issue 8, "Bad input")."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzer.app.cli import main
from tests.judge_support import NO_SERIES, StubPrometheus

pytest_plugins = ["tests.servers_postgres"]

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config/examples/reviews.yaml"
SPEC = CONFIG.read_text()


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzer.app.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def run(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in this process (`main`), for the many variants of one item; each item also has a subprocess case."""
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), rc, out, err)


def one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2 and exactly one line on stderr, naming every needle; returns that line."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def rollout_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM rollouts").fetchone()[0])


# ---- usage errors: typer's own click, mapped to exit 2 and one line ----


USAGE_CASES = [
        (["demo", "--seed", "abc"], ["--seed", "'abc'"]),
        (["demo", "--seed", "-1"], ["--seed", "'-1'"]),
        (["simulate", "--runs", "0"], ["--runs", "'0'"]),
        (["judge", str(CONFIG), "--start", "1", "--end", "2", "--canary-weight", "100"], ["--canary-weight", "100"]),
        (["judge", str(CONFIG), "--end", "2"], ["--start"]),
        (["demo", "--no-such-option"], ["--no-such-option"]),
        (["no-such-command"], ["no-such-command"]),
        (["validate"], ["files"]),
        (["--log-level", "bogus", "validate", str(CONFIG)], ["--log-level", "'bogus'"]),
        (["plan", str(CONFIG), "--rps", "nan"], ["--rps", "nan"]),
        (["plan", str(CONFIG), "--latency-p99-ms", "inf"], ["--latency-p99-ms", "inf"]),
        (["plan", str(CONFIG), "--baseline-error-rate", "nan"], ["--baseline-error-rate", "nan"]),
]


@pytest.mark.parametrize(("args", "needles"), USAGE_CASES)
def test_usage_errors_exit_2_with_one_line(args: list[str], needles: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    one_error_line(run(capsys, *args), *needles)


@pytest.mark.parametrize("case", [0, 2, 5, 6, 7, 8, 9])  # bad value, range, unknown option and command, missing
def test_usage_errors_in_a_subprocess(case: int) -> None:
    args, needles = USAGE_CASES[case]
    one_error_line(cli(*args), *needles)


def test_no_arguments_prints_help_and_exits_2() -> None:
    proc = cli()
    assert "Usage" in proc.stdout and "demo" in proc.stdout
    one_error_line(proc, "command")


def test_an_internal_error_is_one_line_saying_bug_and_a_traceback_with_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import analyzer.plan

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(analyzer.plan, "make_plan", broken)
    assert main(["plan", str(CONFIG)]) == 70
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "internal error (a bug in canary-analyzer, please report it): ZeroDivisionError: float division by zero; "
        "rerun with --log-level debug for the traceback"]
    assert main(["--log-level", "debug", "plan", str(CONFIG)]) == 70
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert err.splitlines()[-1].startswith("internal error (a bug in canary-analyzer")


# ---- specs ----


def _nested(depth: int) -> str:
    return "metadata: " + "[" * depth + "]" * depth + "\n"


SPEC_CASES = {
    "inf-duration": (SPEC.replace("interval: 1m", "interval: .inf"), ["timing.interval", "inf"]),
    "nan-tolerance": (SPEC.replace("tolerance: 1.5\n      mde: 2\n    - name: latency",
                                   "tolerance: .nan\n      mde: 2\n    - name: latency"),
                      ["analysis.metrics[0].tolerance", "nan"]),
    "huge-duration": (SPEC.replace("budget: 60m", "budget: 1.0e+300"), ["timing.budget", "longer than a year"]),
    "string-steps": (SPEC.replace("steps: [10, 25, 50, 100]", 'steps: [10, "25", 50]'), ["strategy.steps[1]", "'25'"]),
    "duplicate-key": (SPEC.replace("  budget: 60m\n", "  budget: 60m\n  interval: 2m\n"),
                      ["line 25", "duplicate key 'interval'", "first on line 22"]),
    "reserved-traffic-split": (SPEC.replace("- name: errors", "- name: traffic-split"),
                               ["analysis.metrics[0].name", "'traffic-split'"]),
    "reserved-shared-outage": (SPEC.replace("- name: latency", "- name: shared-outage"),
                               ["analysis.metrics[1].name", "'shared-outage'"]),
    "deep": (_nested(5000), ["nested more than"]),
}


def test_bad_specs_fail_validate_one_line_each(tmp_path: Path) -> None:
    files = []
    for case, (text, _) in sorted(SPEC_CASES.items()):
        files.append(tmp_path / f"{case}.yaml")
        files[-1].write_text(text)
    proc = cli("validate", *map(str, files))
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == len(files), proc.stderr
    for line, (case, (_, needles)) in zip(lines, sorted(SPEC_CASES.items()), strict=True):
        assert line.startswith(f"{tmp_path / case}.yaml: ") and all(n in line for n in needles), (case, line)


@pytest.mark.parametrize("case", sorted(SPEC_CASES))
def test_bad_spec_stops_demo_before_the_store(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, needles = SPEC_CASES[case]
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    db = tmp_path / "h.db"
    one_error_line(run(capsys, "demo", "--config", str(spec), "--db", f"sqlite:///{db}"), *needles)
    one_error_line(run(capsys, "plan", str(spec)), *needles)
    assert not db.exists()


def test_non_utf8_and_huge_files_get_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(SPEC.encode() + b"# caf\xe9\n")
    one_error_line(cli("validate", str(binary)), "binary.yaml", "line 43", "0xe9", "not UTF-8")
    huge = tmp_path / "huge.yaml"
    huge.write_text(SPEC + "# padding\n" * 120_000)
    one_error_line(cli("validate", str(huge)), "huge.yaml", "larger than 1 MiB")


def test_validate_checks_every_file_even_when_one_is_unreadable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("interval: 1m", "interval: .inf"))
    missing = tmp_path / "missing.yaml"
    proc = cli("validate", str(CONFIG), str(missing), str(tmp_path), str(bad), str(CONFIG))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stdout.count("ok (rollout 'reviews'") == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{missing}: cannot read")
    assert lines[1] == f"{tmp_path}: is a directory, not a YAML file"
    assert lines[2].startswith(f"{bad}: timing.interval")


# ---- scenarios: validated, traces included, before the store is touched ----

SCENARIO_CASES = {
    "diurnal-period-0": ("traffic: {rps: 50, diurnal: 0.5, diurnal_period: 0}\n", ["traffic.diurnal_period"]),
    "rate-1e20": ("traffic: {rps: 1.0e+20}\n", ["traffic.rps", "1e+20"]),
    "rate-inf": ("traffic: {rps: .inf}\n", ["traffic.rps", "inf"]),
    "sampling-rate-5": ("traces: {preset: trace-new-call, sampling_rate: 5}\n", ["traces.sampling_rate", "5"]),
    "unknown-preset": ("traces: {preset: trace-nope}\n", ["traces", "'trace-nope'", "trace-new-call"]),
    "cycle": ("traces:\n  graph: {productpage: [reviews], reviews: [ratings], ratings: [reviews]}\n",
              ["traces.graph", "cycle reviews -> ratings -> reviews"]),
    "new-call-cycle": ("traces:\n  preset: trace-new-call\n  graph: {productpage: [reviews], mysql: [reviews]}\n",
                       ["traces", "cycle", "reviews -> mysql -> reviews"]),
    "fan-out": ("traces:\n  graph: {productpage: [a, a, a, a, a, a, a, a, a, a], a: [b, b, b, b, b, b, b, b, b, b],"
                " b: [c, c, c, c, c, c, c, c, c, c], c: [d, d, d, d, d, d, d, d, d, d]}\n",
                ["traces", "more than 10000 spans"]),
}


@pytest.mark.parametrize("case", sorted(SCENARIO_CASES))
def test_impossible_scenario_is_one_line_and_no_rollout_is_started(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, needles = SCENARIO_CASES[case]
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(text)
    db = tmp_path / "h.db"
    url = f"sqlite:///{db}"
    one_error_line(run(capsys, "demo", "--scenario", str(scenario), "--db", url), str(scenario), *needles)
    one_error_line(run(capsys, "simulate", "--scenario", str(scenario), "--runs", "1"), *needles)
    assert not db.exists()
    if case in ("cycle", "sampling-rate-5"):  # these crashed after the rollout was recorded
        one_error_line(cli("demo", "--scenario", str(scenario), "--db", url), str(scenario), *needles)
        assert not db.exists()


# ---- history store URLs ----


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with one demo rollout, in the default (rollback) journal mode, closed."""
    db = tmp_path_factory.mktemp("recorded") / "h.db"
    proc = cli("demo", "--json", "--scenario", "error-regression", "--db", f"sqlite:///{db}")
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    return db


def test_unusable_store_urls_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_text("not a database\n" * 100)
    before = corrupt.read_bytes()
    cases = [
        ("mysql://u@h/db", ["--db", "unknown scheme 'mysql'", "sqlite:///PATH"]),
        (str(tmp_path / "plain.db"), ["--db", "plain.db", "is not a database URL"]),
        ("postgresql+psycopg://u@127.0.0.1/db", ["--db", "driver 'psycopg' is not supported"]),
        (f"sqlite:///{corrupt}", ["--db", "corrupt.db is not a SQLite database"]),
        (f"sqlite:///{tmp_path}", ["--db", "is a directory"]),
    ]
    for url, needles in cases:
        one_error_line(run(capsys, "demo", "--db", url), *needles)
        one_error_line(run(capsys, "history", "list", "--db", url), *needles)
    for url, needles in cases[::3]:
        one_error_line(cli("history", "show", "x", "--db", url), *needles)
    assert corrupt.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.db"]


def test_history_reads_never_write(recorded: Path, tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    shutil.copy(recorded, db)
    before = db.read_bytes()
    listing = cli("history", "list", "--db", f"sqlite:///{db}", "--json")
    assert listing.returncode == 0, listing.stderr
    rollout = json.loads(listing.stdout)[0]["id"]
    assert cli("history", "show", rollout, "--db", f"sqlite:///{db}", "--json").returncode == 0
    assert db.read_bytes() == before  # no journal-mode switch, no table created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db"]  # no -wal, no -shm

    empty = tmp_path / "empty.db"
    empty.touch()
    one_error_line(cli("history", "list", "--db", f"sqlite:///{empty}"), "--db", "no history store at", "empty")
    assert empty.stat().st_size == 0
    missing = tmp_path / "missing.db"
    one_error_line(cli("history", "show", "x", "--db", f"sqlite:///{missing}"), "no history store at", str(missing))
    assert not missing.exists()


def test_read_only_directory_falls_back_to_an_immutable_read(recorded: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Where SQLite cannot create a WAL file's -shm (a read-only directory) the file is read as it is."""
    from analyzer.store import history, sql

    db = tmp_path / "wal.db"
    shutil.copy(recorded, db)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    real = sqlite3.connect
    uris: list[str] = []

    def connect(database: str, **kwargs: object) -> sqlite3.Connection:
        uris.append(database)
        if "immutable=1" not in database:  # what a read-only directory does to a WAL database (as non-root)
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return real(database, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sql.sqlite3, "connect", connect)
    rows = history.list_rollouts(f"sqlite:///{db}")
    assert len(rows) == 1 and any("mode=ro" in u and "immutable=1" in u for u in uris)


def test_history_show_unknown_id_says_what_and_where(recorded: Path) -> None:
    url = f"sqlite:///{recorded}"
    one_error_line(cli("history", "show", "no-such-id", "--db", url),
                   "no rollout with id 'no-such-id'", f"in the history store at {url}")


def test_three_demos_at_once_on_one_database_all_land(tmp_path: Path) -> None:
    from analyzer.store.sql import SqlStore

    db = tmp_path / "shared.db"
    url = f"sqlite:///{db}"
    # An id in the old readable form, written before ids became ULIDs: it still loads.
    with SqlStore(url) as store:
        from analyzer.config import load_spec

        store.create_rollout("reviews-healthy-1-1201120000", load_spec(CONFIG), SPEC, {"mode": "simulated"})
    args = [sys.executable, "-m", "analyzer.app.cli", "demo", "--json", "--seed", "1", "--db", url]
    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outs]
    ids = {json.loads(out)["rollout"] for out, _ in outs}
    assert len(ids) == 3 and all(len(i) == 26 for i in ids)
    listing = json.loads(cli("history", "list", "--db", url, "--json").stdout)
    by_id = {r["id"]: r for r in listing}
    assert set(by_id) == ids | {"reviews-healthy-1-1201120000"}
    assert {by_id[i]["label"] for i in ids} == {"reviews-healthy-1"}
    assert all(by_id[i]["outcome"] == "promoted" for i in ids)
    assert by_id["reviews-healthy-1-1201120000"]["label"] == "reviews-healthy-1-1201120000"
    table = cli("history", "list", "--db", url)
    assert table.returncode == 0 and "reviews-healthy-1" in table.stdout
    assert all(i in table.stdout for i in ids)  # whole, not folded: an id is copied into `history show`


def test_postgresql_url_works_with_the_declared_driver(postgres_url: str) -> None:
    url = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    demo = cli("demo", "--json", "--scenario", "error-regression", "--db", url)
    assert demo.returncode == 0, demo.stderr
    rollout = json.loads(demo.stdout)["rollout"]
    listing = cli("history", "list", "--db", url, "--json")
    assert listing.returncode == 0, listing.stderr
    assert rollout in [r["id"] for r in json.loads(listing.stdout)]


# ---- judge: window limit, ASCII digits, an ASCII-only terminal ----


@pytest.fixture
def prometheus() -> Iterator[str]:
    """Answers the reachability probe and returns no series for every other query."""
    server = StubPrometheus(200, NO_SERIES)
    yield server.url
    server.stop()


NO_PROXY = {"HTTP_PROXY": "", "HTTPS_PROXY": "", "ALL_PROXY": "", "http_proxy": "", "https_proxy": "",
            "all_proxy": ""}


def test_judge_refuses_a_window_longer_than_the_limit(prometheus: str, capsys: pytest.CaptureFixture[str]) -> None:
    one_error_line(cli("judge", str(CONFIG), "--start", "0", "--end", "1767225600", "--prometheus-url", prometheus),
                   "--start", "longer than --max-window 24h")
    judge = ["judge", str(CONFIG), "--prometheus-url", prometheus]
    one_error_line(run(capsys, *judge, "--start", "1767225600", "--end", "1767312001"), "longer than --max-window 24h")
    one_error_line(run(capsys, *judge, "--start", "1767225600", "--end", "1767229200", "--max-window", "30m"),
                   "longer than --max-window 0.5h")
    one_error_line(run(capsys, *judge, "--start", "1767225600", "--end", "1767229200", "--max-window", "soon"),
                   "--max-window", "'soon'")
    proc = cli(*judge, "--start", "1767225600", "--end", "1767229200", "--max-window", "1h", "--json", env=NO_PROXY)
    assert proc.returncode == 3 and json.loads(proc.stdout)["verdict"] == "inconclusive", proc.stderr


def test_judge_reads_only_ascii_digits(prometheus: str, capsys: pytest.CaptureFixture[str]) -> None:
    judge = ["judge", str(CONFIG), "--prometheus-url", prometheus]
    one_error_line(cli(*judge, "--start", "١٧٦٧٢٢٥٦٠٠", "--end", "1767229200"), "--start", "'١٧٦٧٢٢٥٦٠٠'", "ASCII")
    for digits in ("１７６７２２９２００", "۱۷۶۷۲۲۹۲۰۰", "2026-01-01T0١:00:00Z"):
        one_error_line(run(capsys, *judge, "--start", "1767225600", "--end", digits), "--end", repr(digits), "ASCII")


def test_ascii_only_output_and_a_five_column_terminal_do_not_break_commands(
    prometheus: str, recorded: Path, tmp_path: Path
) -> None:
    narrow = {"PYTHONIOENCODING": "ascii", "COLUMNS": "5", **NO_PROXY}
    recorded = Path(shutil.copy(recorded, tmp_path / "h.db"))
    judged = cli("judge", str(CONFIG), "--start", "1767225600", "--end", "1767229200", "--prometheus-url", prometheus,
                 env=narrow)
    assert judged.returncode == 3 and "Traceback" not in judged.stderr, judged.stderr
    assert "window 2026-01-01T00:00:00+00:00 ? 2026-01-01T01:00:00+00:00" in judged.stdout  # "–" became "?"
    demo = cli("demo", "--scenario", "latency-regression", "--db", f"sqlite:///{recorded}", env=narrow)
    assert demo.returncode == 0 and "Traceback" not in demo.stderr, demo.stderr
    assert "Outcome: rolled_back" in demo.stdout
    listing = cli("history", "list", "--db", f"sqlite:///{recorded}", env=narrow)
    assert listing.returncode == 0, listing.stderr
    ids = [r["id"] for r in json.loads(cli("history", "list", "--db", f"sqlite:///{recorded}", "--json").stdout)]
    assert all(i in listing.stdout for i in ids)  # cells with content, not an empty frame
    shown = cli("history", "show", ids[0], "--db", f"sqlite:///{recorded}", env=narrow)
    assert shown.returncode == 0 and "rolled_back at minute" in shown.stdout, shown.stderr
    assert "| tick |" in shown.stdout and "| 100/0 " in shown.stdout  # ASCII boxes, cells with content


def test_documented_store_urls_map_to_a_declared_driver() -> None:
    import tomllib

    from analyzer.store.sql import check_url

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("psycopg2-binary>=") and "<" in d for d in deps)
    for url in ("sqlite:///history.db", "postgresql://u@db/history", "postgresql+psycopg2://u@db/history"):
        dialect = check_url(url).get_dialect()
        dialect.import_dbapi()  # the driver module is installed, not only named
        assert dialect.driver in ("pysqlite", "psycopg2")


def test_reserved_metric_names_are_the_judges_own_names() -> None:
    from analyzer import judge, kayenta_gate
    from analyzer.config import RESERVED_METRIC_NAMES

    assert {judge.SRM_KEY, judge.OUTAGE_KEY, kayenta_gate.KEY} <= RESERVED_METRIC_NAMES
