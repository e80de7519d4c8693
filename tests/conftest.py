"""Shared test settings. Server fixtures live in their own modules (tests/servers_*.py)."""

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_or_skip(ok: bool, why: str) -> None:
    """A missing real server is a failure in CI and a skip elsewhere."""
    if not ok:
        if IN_CI:
            pytest.fail(f"CI=true and {why}")
        pytest.skip(why)


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    from analyzer.app import logs

    logs.configure("warning", json=True)
