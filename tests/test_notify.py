"""Chat and webhook notifications against local HTTP receivers on loopback: payloads, retries, a hung receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from analyzer.config import load_spec
from analyzer.model import Event
from analyzer.notify.webhook import Delivery, FanOut, WebhookNotifier
from tests.fakes.http_receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "config" / "examples" / "reviews.yaml")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _wait(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_payload_shapes_of_the_three_kinds(receiver: Receiver) -> None:
    delivery = Delivery(backoff_s=0.01)
    for kind in ("webhook", "slack", "teams"):
        WebhookNotifier(kind, receiver.url, delivery, report_base_url="https://ca.example/").notify(
            SPEC, Event.ROLLBACK, "rollback: errors: ratio 6.41 (CS 1.16–24.01)", rollout="r-1", tick=7)
    delivery.close()
    generic, slack, teams = receiver.bodies
    link = "https://ca.example/v1/rollouts/r-1/report"
    assert generic["rollout"] == "r-1" and generic["event"] == "rollback" and generic["reportUrl"] == link
    assert generic["namespace"] == "bookinfo" and generic["virtualService"] == "reviews"
    assert slack == {"text": generic["text"]} and link in slack["text"] and "\n" not in slack["text"]
    assert "[reviews in bookinfo, v1->v2] rollback: rollback: errors: ratio 6.41 (CS 1.16–24.01)" in slack["text"]
    card = teams["attachments"][0]
    assert teams["type"] == "message" and card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["body"][0]["text"] == slack["text"]


def test_failed_deliveries_are_retried_then_reported() -> None:
    flaky, dead = Receiver([500, 503]), Receiver([500, 500, 500])
    failures: list[tuple[str, int, str]] = []
    delivery = Delivery(attempts=3, backoff_s=0.01, on_failure=lambda *f: failures.append(f))
    try:
        WebhookNotifier("slack", flaky.url, delivery).notify(SPEC, Event.PAUSE, "paused", rollout="r", tick=1)
        WebhookNotifier("slack", dead.url, delivery).notify(SPEC, Event.PAUSE, "paused", rollout="r", tick=2)
        delivery.close()
        assert len(flaky.bodies) == 3 and delivery.delivered == 1  # two failures, then delivered
        assert len(dead.bodies) == 3
        assert failures == [("r", 2, "slack notification not delivered after 3 attempts (HTTP 500: ok)")]
    finally:
        flaky.close()
        dead.close()


def test_a_hung_receiver_never_stalls_the_tick() -> None:
    hung = Receiver(delay_s=3.0)
    failures: list[tuple[str, int, str]] = []
    delivery = Delivery(attempts=2, timeout_s=0.3, backoff_s=0.01, on_failure=lambda *f: failures.append(f))
    notifier = FanOut([WebhookNotifier("webhook", hung.url, delivery)], [delivery])
    try:
        began = time.monotonic()
        for tick in range(20):
            notifier.notify(SPEC, Event.ADVANCED, "step", rollout="r", tick=tick)
        assert time.monotonic() - began < 0.5  # queued, not sent inline
        _wait(lambda: len(failures) >= 1)
        assert "ReadTimeout" in failures[0][2] and failures[0][:2] == ("r", 0)
    finally:
        hung.close()


def test_a_full_queue_drops_and_reports_instead_of_blocking() -> None:
    hung = Receiver(delay_s=2.0)
    failures: list[tuple[str, int, str]] = []
    delivery = Delivery(capacity=2, attempts=1, timeout_s=2.5, on_failure=lambda *f: failures.append(f))
    try:
        for tick in range(6):
            WebhookNotifier("slack", hung.url, delivery).notify(SPEC, Event.PAUSE, "x", rollout="r", tick=tick)
        dropped = [f for f in failures if "queue full" in f[2]]
        assert len(dropped) >= 3  # one in flight, two queued, the rest dropped at once
    finally:
        hung.close()


def _spec_file(tmp_path: Path, notifications: list[dict]) -> Path:
    data = yaml.safe_load((ROOT / "config" / "examples" / "reviews.yaml").read_text())
    data["notifications"] = notifications
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzer.app.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120, cwd=ROOT)


def test_a_demo_rollout_notifies_the_spec_targets_with_their_event_filter(receiver: Receiver, tmp_path: Path) -> None:
    other = Receiver()
    try:
        url_file = tmp_path / "teams-url"
        url_file.write_text(other.url + "\n")
        spec = _spec_file(tmp_path, [{"type": "slack", "urlEnv": "TEAM_SLACK_URL"},
                                     {"type": "teams", "urlFile": str(url_file), "events": ["rollback"]}])
        db = f"sqlite:///{tmp_path / 'h.db'}"
        proc = _cli("demo", "--config", str(spec), "--scenario", "error-regression", "--json", "--db", db,
                    env={"TEAM_SLACK_URL": receiver.url})
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["outcome"] == "rolled_back"
        texts = [b["text"] for b in receiver.bodies]
        assert any("advanced: header phase" in t for t in texts) and any("] rollback: rollback: " in t for t in texts)
        assert len(other.bodies) == 1 and "rollback" in other.bodies[0]["attachments"][0]["content"]["body"][0]["text"]
        assert receiver.url not in spec.read_text() + proc.stdout + proc.stderr  # the URL lives in the environment
    finally:
        other.close()


def test_a_missing_webhook_url_is_one_clear_line(tmp_path: Path) -> None:
    spec = _spec_file(tmp_path, [{"type": "webhook", "urlEnv": "NO_SUCH_HOOK_URL"}])
    proc = _cli("demo", "--config", str(spec), "--json", "--db", f"sqlite:///{tmp_path / 'h.db'}", env={})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "notifications[0].urlEnv: environment variable 'NO_SUCH_HOOK_URL' is not set" in proc.stderr
