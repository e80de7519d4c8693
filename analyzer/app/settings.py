"""Settings of `canary-analyzer serve`: from a YAML file, then the environment (`CANARY_ANALYZER_*`), then flags.

A later source wins. A bad value is one line naming the setting and the value.
"""

from __future__ import annotations

import hmac
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analyzer.errors import UserError

ENV_PREFIX = "CANARY_ANALYZER_"
SCOPES = ("read", "operate")  # operate implies read


class SettingsError(UserError):
    """A bad serve setting."""


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    db: str = "sqlite:///canary-analyzer.db"  # SQLAlchemy URL of the store: the truth every replica shares
    listen: str = "127.0.0.1:8080"  # HOST:PORT of the HTTP API
    token_file: Path | None = None  # lines `SCOPE TOKEN`, scopes read and operate
    specs: Path | None = None  # directory of rollout specs, by file name without .yaml
    sim: bool = False  # run every rollout on the embedded simulated mesh
    sim_speed: float = Field(default=1.0, gt=0, le=100_000)  # simulated seconds per real second
    leader_election: bool = True  # only the lease holder ticks; every replica serves reads
    lease: Literal["store", "kubernetes"] = "store"  # a row in the store, or a coordination.k8s.io Lease
    lease_namespace: str = "default"  # namespace of the Kubernetes Lease
    kubeconfig: str | None = None  # the cluster whose VirtualServices rollouts drive (none: routes in memory)
    kube_context: str | None = None
    in_cluster: bool = Field(default_factory=lambda: bool(os.environ.get("KUBERNETES_SERVICE_HOST")))  # in a pod
    identity: str = Field(default_factory=default_identity, min_length=1, max_length=253)
    lease_ttl: float = Field(default=15.0, gt=0.5, le=600)  # seconds a leader holds the lease without renewing
    max_concurrent_ticks: int = Field(default=4, ge=1, le=256)
    poll: float = Field(default=1.0, gt=0, le=60)  # seconds between looks for new rollouts and commands
    max_body_bytes: int = Field(default=1_000_000, ge=1024, le=100_000_000)
    prometheus_url: str | None = None  # overrides each spec's sources.metrics.url
    jaeger_url: str | None = None  # overrides each spec's sources.traces.url
    log_level: str = "info"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host_port(v)
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError(f"{v!r} is not one of debug, info, warning, error")
        return v.lower()


def host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 0.0.0.0:8080)")
    return host.strip("[]"), int(port)


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ServeSettings.model_fields:
        value = env.get(ENV_PREFIX + name.upper())
        if value is not None and value != "":
            out[name] = value
    return out


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SettingsError(f"--config: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"--config: {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"--config: {path}: expected a mapping of settings, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def load_settings(file: Path | None = None, flags: Mapping[str, Any] | None = None,
                  env: Mapping[str, str] | None = None) -> ServeSettings:
    """Defaults < file < environment < flags (flags that are None are not given)."""
    flags = dict(flags or {})
    namespace = flags.pop("leader_election_namespace", None)
    if namespace is not None:  # the deploy/ manifests' shorthand: a Kubernetes Lease in this namespace
        flags.update(lease="kubernetes", lease_namespace=namespace)
    values: dict[str, Any] = {}
    if file is not None:
        values.update(_from_file(file))
    values.update(_from_env(os.environ if env is None else env))
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return ServeSettings.model_validate(values)
    except ValidationError as exc:
        e = exc.errors()[0]
        field = ".".join(str(p) for p in e["loc"]) or "settings"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" {value!r}:"
        raise SettingsError(f"setting {field}:{shown} {e['msg']} (flag --{field.replace('_', '-')}, "
                            f"env {ENV_PREFIX}{field.upper()})") from None


@dataclass(frozen=True)
class Tokens:
    """Bearer tokens by scope. Every check compares against every token, in constant time per token."""

    entries: tuple[tuple[str, bytes], ...]

    def scope_of(self, token: str) -> str | None:
        """The widest scope the token has, or None. Never logs or returns the token."""
        given = token.encode()
        found: str | None = None
        for scope, secret in self.entries:
            if hmac.compare_digest(given, secret) and (found is None or scope == "operate"):
                found = scope
        return found

    def allows(self, token: str, scope: str) -> bool:
        have = self.scope_of(token)
        return have is not None and (have == scope or have == "operate")


def load_tokens(path: Path) -> Tokens:
    """`SCOPE TOKEN` per line; blank lines and `#` comments are skipped.

    A bad line is named by its number, never by the token.
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SettingsError(f"--token-file: cannot read {path}: {exc.strerror}") from None
    entries = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        if len(parts) != 2 or parts[0] not in SCOPES:
            raise SettingsError(f"--token-file: {path} line {n}: expected `SCOPE TOKEN` with SCOPE one of "
                                f"{', '.join(SCOPES)}")
        if len(parts[1]) < 16:
            raise SettingsError(f"--token-file: {path} line {n}: the token is shorter than 16 characters")
        entries.append((parts[0], parts[1].encode()))
    if not entries:
        raise SettingsError(f"--token-file: {path} holds no token")
    return Tokens(tuple(entries))
