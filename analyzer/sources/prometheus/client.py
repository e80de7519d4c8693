"""HTTP to Prometheus through `prometheus-api-client`, with bounded retries and strict reply parsing.

Every failure mode (refused connection, timeout, HTTP error, a body that is not the documented
envelope) ends as `SourceUnavailable` after `retries` extra attempts, so a tick holds instead of
judging on half an answer. Replies are parsed per formats.md §5.1: sample values are strings.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import structlog
import urllib3
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from analyzer.config import PrometheusSource
from analyzer.ports import SourceUnavailable
from analyzer.stats.counters import Sample

_STATUS = re.compile(r"HTTP Status Code (\d+)")
_RETRY_STATUS = frozenset({408, 429})


class MalformedReply(ValueError):
    """The body is not the Prometheus JSON envelope we expect."""


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    samples: tuple[Sample, ...]


def _sample(pair: Any) -> Sample:
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise MalformedReply(f"sample {pair!r} is not [timestamp, value]")
    ts, value = pair
    if not isinstance(ts, int | float) or not isinstance(value, str):
        raise MalformedReply(f"sample {pair!r} is not [number, string]")
    try:
        return float(ts), float(value)
    except ValueError as exc:
        raise MalformedReply(f"sample value {value!r} is not a number") from exc


def _labels(item: Any) -> dict[str, str]:
    if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
        raise MalformedReply(f"result item {str(item)[:200]!r} has no metric labels")
    return {str(k): str(v) for k, v in item["metric"].items()}


def parse_matrix(result: Any) -> list[Series]:
    if not isinstance(result, list):
        raise MalformedReply(f"expected a matrix (list), got {type(result).__name__}")
    out = []
    for item in result:
        labels = _labels(item)
        values = item.get("values")
        if not isinstance(values, list):
            raise MalformedReply("matrix item has no 'values' list")
        samples = sorted(_sample(v) for v in values)
        out.append(Series(labels, tuple(samples)))
    return out


def parse_instant(result: Any) -> list[tuple[dict[str, str], float]]:
    """A vector as (labels, value) pairs; a scalar as one pair with no labels."""
    if isinstance(result, list) and len(result) == 2 and isinstance(result[0], int | float):
        return [({}, _sample(result)[1])]
    if not isinstance(result, list):
        raise MalformedReply(f"expected a vector (list), got {type(result).__name__}")
    return [(_labels(item), _sample(item.get("value"))[1]) for item in result]


def _read_secret(path: str, what: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SourceUnavailable(f"cannot read {what} {path}: {exc.strerror}") from None


class PromClient:
    """One Prometheus endpoint. Files (token, password) are re-read per request: they rotate."""

    def __init__(
        self,
        config: PrometheusSource,
        *,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._backoff_s = backoff_s
        self._sleep = sleep
        prefix = config.path_prefix.strip("/")
        self.url = config.url.rstrip("/") + (f"/{prefix}" if prefix else "")
        session = requests.Session()
        session.verify = False if config.insecure_skip_verify else (config.ca_file or True)
        # Retries are ours, bounded by config.retries, so urllib3 must add none; read=False keeps a
        # read timeout a requests.Timeout instead of a generic ConnectionError.
        self._prom = PrometheusConnect(
            url=self.url,
            session=session,
            retry=Retry(total=0, read=False, raise_on_status=False),
            timeout=config.timeout,
        )
        self._log = structlog.get_logger(__name__).bind(prometheus=self.url)

    def _prepare(self) -> None:
        cfg = self._config
        self._prom.headers = (
            {"Authorization": f"Bearer {_read_secret(cfg.bearer_token_file, 'bearer token file')}"}
            if cfg.bearer_token_file
            else None
        )
        if cfg.basic_auth_user:
            password_file = cfg.basic_auth_password_file
            password = _read_secret(password_file, "password file") if password_file else ""
            self._prom.auth = (cfg.basic_auth_user, password)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        attempts = self._config.retries + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                self._sleep(self._backoff_s * 2 ** (attempt - 1))
            self._prepare()
            try:
                return fn()
            except PrometheusApiClientException as exc:
                match = _STATUS.search(str(exc))
                status = int(match.group(1)) if match else 0
                last = str(exc)[:300]
                if 400 <= status < 500 and status not in _RETRY_STATUS:
                    raise SourceUnavailable(f"Prometheus at {self.url} rejected {what}: {last}") from None
            except requests.Timeout:
                last = f"no reply within {self._config.timeout}s"
            except (requests.exceptions.JSONDecodeError, MalformedReply, KeyError, TypeError) as exc:
                last = f"malformed reply: {str(exc)[:200]}"
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                last = f"{type(exc).__name__}: {str(exc)[:200]}"
            self._log.info("prometheus_attempt_failed", what=what, attempt=attempt + 1, of=attempts, error=last)
        raise SourceUnavailable(f"Prometheus at {self.url} unavailable after {attempts} attempts ({what}): {last}")

    def raw_series(self, query: str, at: float) -> list[Series]:
        """An instant query of a range selector: the raw samples of each series."""
        return self._call(
            "raw samples", lambda: parse_matrix(self._prom.custom_query(query, params={"time": f"{at:.3f}"}))
        )

    def instant(self, query: str, at: float) -> list[tuple[dict[str, str], float]]:
        return self._call(
            "custom query", lambda: parse_instant(self._prom.custom_query(query, params={"time": f"{at:.3f}"}))
        )


def finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def first_label_match(pairs: Sequence[tuple[Mapping[str, str], float]], label: str, value: str) -> float | None:
    """The one value in a custom query's reply that belongs to a subset; None if absent or ambiguous."""
    if len(pairs) == 1:
        return finite(pairs[0][1])
    matching = [v for labels, v in pairs if labels.get(label) == value]
    return finite(matching[0]) if len(matching) == 1 else None
