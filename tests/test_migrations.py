"""Store migrations (Alembic), retention, and the Parquet export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, func, inspect, select, text

from analyzer.app.cli.main import main
from analyzer.app.simulation import run_rollout
from analyzer.config import load_spec
from analyzer.sim.scenario import load_scenario
from analyzer.store import history
from analyzer.store.migrate import current, head, migrate
from analyzer.store.retention import prune
from analyzer.store.schema import metadata, rollouts
from analyzer.store.sql import SqlStore, make_engine

pytest_plugins = ("tests.servers_postgres",)

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "config/examples/reviews.yaml"
TABLES = ("rollouts", "ticks", "verdicts", "actions", "events")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


def _schema_diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))
    finally:
        engine.dispose()


def test_db_upgrade_builds_an_empty_database_to_head(empty_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--db", empty_url]) == 0
    assert f"revision {head()}" in capsys.readouterr().out
    engine = make_engine(empty_url)
    with engine.connect() as conn:
        assert current(conn) == head()
        assert set(TABLES) <= set(inspect(conn).get_table_names())
    engine.dispose()
    assert _schema_diff(empty_url) == []  # the migrations build exactly the tables the code declares
    migrate(empty_url)  # idempotent


def _old_schema_store(url: str) -> None:
    """A store as the previous version wrote it: `create_all` of revision 0001's tables, no version table."""
    old = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(old)
    old.tables["rollouts"].indexes = {i for i in old.tables["rollouts"].indexes if i.name != "ix_rollouts_finished"}
    engine = make_engine(url)
    old.create_all(engine)
    engine.dispose()


def _counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
    engine.dispose()
    return found


def test_a_store_written_by_the_previous_schema_loses_nothing(empty_url: str, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    _old_schema_store(empty_url)
    import analyzer.store.migrate as migrate_module

    # Write rows with the old schema in place, as the previous version did (no migration on open).
    monkeypatch.setattr(migrate_module, "migrate", lambda target: None)
    spec = load_spec(SPEC)
    store = SqlStore(empty_url)
    for i, name in enumerate(("healthy", "error-regression")):
        run_rollout(spec, load_scenario(name), seed=3 + i, store=store, rollout_id=f"old-{name}")
    store.close()
    before = _counts(empty_url)
    detail_before = history.rollout_detail(empty_url, "old-error-regression")
    ticks_before = history.ticks_frame(empty_url)
    engine = make_engine(empty_url)
    with engine.connect() as conn:
        assert current(conn) is None and "alembic_version" not in inspect(conn).get_table_names()
    engine.dispose()
    monkeypatch.undo()

    migrate(empty_url)
    assert _counts(empty_url) == before and before["ticks"] > 10 and before["verdicts"] > 10
    assert _schema_diff(empty_url) == []
    assert history.rollout_detail(empty_url, "old-error-regression") == detail_before
    pd.testing.assert_frame_equal(history.ticks_frame(empty_url), ticks_before)
    with SqlStore(empty_url) as store:  # and the migrated store keeps working
        run_rollout(spec, load_scenario("healthy"), seed=9, store=store, rollout_id="new-healthy")
    assert _counts(empty_url)["rollouts"] == 3


def test_retention_is_off_unless_asked_and_keeps_running_rollouts(empty_url: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = load_spec(SPEC)
    with SqlStore(empty_url) as store:
        for name in ("healthy", "error-regression"):
            run_rollout(spec, load_scenario(name), seed=5, store=store, rollout_id=f"r-{name}")
        store.create_rollout("running", spec, "", {})
    before = _counts(empty_url)
    # The simulated rollouts finished on the virtual clock (2024), the running one never did.
    assert main(["db", "prune", "--db", empty_url, "--older-than", "30d", "--dry-run"]) == 0
    assert "would delete 2" in capsys.readouterr().out
    assert _counts(empty_url) == before
    deleted = prune(empty_url, timedelta(days=30), now=datetime.now(UTC))
    assert sorted(deleted) == ["r-error-regression", "r-healthy"]
    after = _counts(empty_url)
    assert after == {"rollouts": 1, "ticks": 0, "verdicts": 0, "actions": 0, "events": 0}
    engine = make_engine(empty_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(rollouts)).scalar_one() == 1
    engine.dispose()
    assert main(["db", "prune", "--db", empty_url, "--older-than", "soon"]) == 2
    assert "--older-than" in capsys.readouterr().err


def test_history_export_writes_one_parquet_file_per_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    with SqlStore(url) as store:
        run_rollout(load_spec(SPEC), load_scenario("latency-regression"), seed=2, store=store, rollout_id="x")
    out = tmp_path / "export"
    assert main(["history", "export", "--db", url, "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{n}.parquet" for n in TABLES)
    ticks = pd.read_parquet(out / "ticks.parquet")
    assert len(ticks) == len(history.ticks_frame(url)) and ticks["rollout_id"].eq("x").all()
    verdicts = pd.read_parquet(out / "verdicts.parquet")
    pd.testing.assert_series_equal(verdicts["e_value"], history.verdicts_frame(url)["e_value"])
    assert pd.read_parquet(out / "rollouts.parquet")["outcome"].tolist() == ["rolled_back"]
    assert main(["history", "export", "--db", f"sqlite:///{tmp_path / 'missing.db'}", "--out", str(out)]) == 2


def test_a_store_opened_without_migrating_refuses_an_outdated_schema(tmp_path: Path) -> None:
    from analyzer.store.migrate import SchemaOutdated

    url = f"sqlite:///{tmp_path / 'old.db'}"
    _old_schema_store(url)
    with pytest.raises(SchemaOutdated, match="db upgrade"):
        SqlStore(url, migrate=False)
    migrate(url)
    SqlStore(url, migrate=False).close()


def test_head_is_the_scripts_head_and_a_store_at_it_opens_without_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    from analyzer.store.migrate import HEAD

    assert head() == HEAD  # a new revision must move HEAD, or stores at the old one would not be upgraded
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    probe = ("import sys; from analyzer.store.sql import SqlStore; SqlStore(sys.argv[1]).close(); "
             "SqlStore(sys.argv[1], migrate=False).close(); print(sorted(m for m in sys.modules if 'alembic' in m))")
    out = subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    _old_schema_store(f"sqlite:///{tmp_path / 'old.db'}")  # not at HEAD: Alembic is imported and upgrades it
    out = subprocess.run([sys.executable, "-c", probe, f"sqlite:///{tmp_path / 'old.db'}"], capture_output=True,
                         text=True, check=True).stdout
    assert "alembic" in out
    assert _schema_diff(f"sqlite:///{tmp_path / 'old.db'}") == []
