"""schemathesis against /openapi.json: no 5xx, and every response conforms to the schema (bounded in time)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.daemon_support import OPERATE, app_for, make_env, service

# A front end without a ticking daemon: every request still reaches the store, the specs and the judge.
_ENV = make_env(Path(tempfile.mkdtemp(prefix="canary-schema-")))
APP = app_for(service(_ENV, daemon=False))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    case.call_and_validate(headers=OPERATE, checks=CHECKS)


def test_openapi_lists_every_endpoint():
    paths = set(APP.openapi()["paths"])
    assert {"/v1/rollouts", "/v1/rollouts/{rollout_id}", "/v1/rollouts/{rollout_id}/wait",
            "/v1/rollouts/{rollout_id}/{command}", "/v1/judge", "/v1/hooks/flagger", "/healthz", "/readyz",
            "/metrics"} <= paths
