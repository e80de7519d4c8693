"""Shared pieces of the daemon and API tests: a service on a temporary store, tokens, specs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer.app.api import Service, create_app
from analyzer.app.daemon import Daemon
from analyzer.app.settings import load_settings, load_tokens
from analyzer.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[1]
REVIEWS = ROOT / "config" / "examples" / "reviews.yaml"
OPERATE_TOKEN = "operate-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef"
OPERATE = {"Authorization": f"Bearer {OPERATE_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


@dataclass
class Env:
    dir: Path
    db: str
    token_file: Path
    specs: Path


def make_env(tmp: Path) -> Env:
    specs = tmp / "specs"
    specs.mkdir(parents=True)
    # A long budget: at 600x on a busy machine a tick can miss its turn, which must slow a rollout, not end it.
    text = REVIEWS.read_text().replace("budget: 60m", "budget: 24h")
    (specs / "reviews.yaml").write_text(text)
    # A second spec on another VirtualService, so two rollouts can run side by side.
    (specs / "ratings.yaml").write_text(text.replace("name: reviews", "name: ratings")
                                        .replace("virtualService: reviews", "virtualService: ratings")
                                        .replace("host: reviews", "host: ratings")
                                        .replace("destinationRule: reviews", "destinationRule: ratings"))
    tokens = tmp / "tokens"
    tokens.write_text(f"# scope token\noperate {OPERATE_TOKEN}\nread {READ_TOKEN}\n")
    return Env(tmp, f"sqlite:///{tmp / 'store.db'}", tokens, specs)


def service(env: Env, *, daemon: bool = True, **overrides: Any) -> Service:
    flags = {"db": env.db, "token_file": env.token_file, "specs": env.specs, "sim": True, "sim_speed": 600,
             "poll": 0.1, "lease_ttl": 3, **overrides}
    settings = load_settings(None, flags, env={})
    store = SqlStore(settings.db)
    return Service(settings=settings, store=store, tokens=load_tokens(env.token_file),
                   daemon=Daemon(settings, store) if daemon else None)


def app_for(svc: Service) -> Any:
    return create_app(svc)
