"""The Istio router, Deployment scaler and Event notifier against the fake API server, over HTTP with the real
`kubernetes` client: whole rollouts on Bookinfo `reviews`, conflicts, drift, subset checks, gateway routes."""

from __future__ import annotations

import copy
import json
import math

import pytest
from kubernetes import client

from analyzer.app.simulation import run_rollout
from analyzer.config import parse_spec
from analyzer.kube.client import KubeConfigError, KubeSettings, api_client, istio_version
from analyzer.model import Command, HeaderMatch, Phase
from analyzer.sim.scenario import load_scenario
from analyzer.traffic.istio import (
    ORIGINAL,
    WEIGHTS,
    DriftDetected,
    IstioRouter,
    RouteConflict,
    RouteNotFound,
    SubsetCheckError,
)
from tests.fakes.kube_api import ISTIO, FakeKubeApi, crd_schema_errors, weights_sum_to_100
from tests.kube_cluster import NS, bookinfo, canary_weights, has_header_route, reviews_spec, reviews_vs, spec_data

JASON = HeaderMatch("end-user", "jason")
SCALED = {"strategy.scaling": {"totalReplicas": 4, "bakeTime": "2m"}}


def _all_writes_valid(history: list[dict]) -> None:
    vs_kind = next(k for k in __import__("tests.fakes.kube_api", fromlist=["KINDS"]).KINDS
                   if k.plural == "virtualservices")
    for vs in history:
        version = vs["apiVersion"].rpartition("/")[2]
        assert crd_schema_errors(vs_kind, version, vs) == []
        assert weights_sum_to_100(vs_kind, version, vs) == []


# ---- discovery and client set-up ----


@pytest.mark.parametrize(("served", "expected"), [(("v1", "v1beta1", "v1alpha3"), "v1"),
                                                  (("v1beta1", "v1alpha3"), "v1beta1"), (("v1alpha3",), "v1alpha3")])
def test_the_newest_served_istio_version_is_used(served: tuple[str, ...], expected: str) -> None:
    with bookinfo(istio_versions=served) as c:
        assert istio_version(c.api) == expected
        c.router.set_weights(reviews_spec(), {"v1": 100, "v2": 0})
        assert c.vs()["apiVersion"] == f"{ISTIO}/{expected}"
        assert c.fake.requests(method="PATCH")[-1].version == expected


def test_no_istio_is_one_clear_error() -> None:
    with FakeKubeApi(istio_versions=()) as fake, pytest.raises(KubeConfigError, match="is Istio installed"):
        istio_version(api_client(KubeSettings(host=fake.url)))


def test_kubeconfig_and_context_select_the_cluster(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with FakeKubeApi() as fake:
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
               "clusters": [{"name": "fake", "cluster": {"server": fake.url}},
                            {"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}}],
               "users": [{"name": "u", "user": {"token": "t"}}],
               "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}},
                            {"name": "nowhere", "context": {"cluster": "nowhere", "user": "u"}}]}
        path = tmp_path / "kubeconfig"
        path.write_text(json.dumps(cfg))
        api = api_client(KubeSettings(kubeconfig=str(path), context="fake"))
        assert istio_version(api) == "v1"
        assert fake.log[-1].user_agent.startswith("canary-analyzer/")
        with pytest.raises(KubeConfigError, match="context 'missing'"):
            api_client(KubeSettings(kubeconfig=str(path), context="missing"))
        with pytest.raises(KubeConfigError, match="not a readable file"):
            api_client(KubeSettings(kubeconfig=str(tmp_path / "none")))


def test_in_cluster_outside_a_pod_is_one_clear_error(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeConfigError, match="cannot use the in-cluster service account"):
        api_client(KubeSettings(in_cluster=True))


# ---- whole rollouts through the engine ----


def test_whole_rollout_on_reviews_header_phase_steps_promotion_and_scaling() -> None:
    spec = reviews_spec(**SCALED)
    with bookinfo() as c:
        result = run_rollout(spec, load_scenario("healthy"), seed=3, cluster=c.adapters, rollout_id="reviews-e2e")
        assert result.outcome == "promoted", result.reason
        history = c.vs_history()
        # The header phase comes first: the jason route to v2 while all weighted traffic stays on v1.
        with_header = [i for i, vs in enumerate(history) if has_header_route(vs)]
        assert with_header, "the header route was never written"
        assert canary_weights(history[: with_header[0] + 1]) == [0]
        header = next(r for r in history[with_header[0]]["spec"]["http"] if r["name"].endswith("-canary-header"))
        assert header["match"] == [{"headers": {"end-user": {"exact": "jason"}}}]
        assert header["route"] == [{"destination": {"host": "reviews", "subset": "v2"}}]
        after = history[with_header[-1] + 1:]
        # Leaving the header phase removes the header route first (still 0), then the steps follow.
        assert canary_weights(after)[0] == 0 and canary_weights(after)[1:] == [10, 25, 50, 100]
        assert not any(has_header_route(vs) for vs in after)
        _all_writes_valid(history)
        assert c.fake.rejected == []
        # Scaling: canary >= ceil(4 x weight) and >= 1 before each step; baseline to 0 after the bake, not deleted.
        assert c.replica_history("reviews-v2") == [1, 2, 4]
        assert [max(1, math.ceil(4 * w / 100)) for w in (10, 25, 50, 100)] == [1, 1, 2, 4]
        assert c.replica_history("reviews-v1") == [1, 0]
        assert not c.fake.requests(method="DELETE")
        # Status annotations for kubectl/Kiali; the rollout's own bookkeeping is cleared at the end.
        notes = c.vs()["metadata"]["annotations"]
        assert notes["canary-analyzer.io/rollout"] == "reviews-e2e"
        assert notes["canary-analyzer.io/phase"] == "Succeeded"
        assert notes["canary-analyzer.io/decision"] == "finish"
        assert "errors: pass" in notes["canary-analyzer.io/verdict"]
        assert ORIGINAL not in notes and WEIGHTS not in notes
        # Events on the VirtualService, tied to it by uid.
        events = c.event_list()
        uid = c.vs()["metadata"]["uid"]
        assert all(e["involvedObject"]["uid"] == uid and e["involvedObject"]["kind"] == "VirtualService"
                   for e in events)
        reasons = [e["reason"] for e in sorted(events, key=lambda e: int(e["metadata"]["resourceVersion"]))]
        # Initializing, the header phase and 3 steps, promotion, and Succeeded after the bake time.
        assert reasons == ["PhaseChanged", *["Advanced"] * 4, "Promoted", "PhaseChanged"]


def test_rollback_returns_all_traffic_to_the_baseline() -> None:
    scenario = load_scenario("error-regression")
    scenario = scenario.model_copy(update={"regression": scenario.regression.model_copy(update={"error_ratio": 3.0})})
    with bookinfo() as c:
        result = run_rollout(reviews_spec(**SCALED), scenario, seed=1, cluster=c.adapters)
        assert result.outcome == "rolled_back", result.reason
        vs = c.vs()
        assert canary_weights([vs]) == [0] and not has_header_route(vs)
        assert c.replicas("reviews-v2") == 0 and c.replicas("reviews-v1") == 1
        warnings = [e for e in c.event_list() if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["RollingBack"]
        assert "rollback" in warnings[0]["message"]
        _all_writes_valid(c.vs_history())


def test_original_route_is_restored_on_abort_when_the_spec_asks() -> None:
    start = reviews_vs("virtual-service-reviews-80-20.yaml")
    for restore in (True, False):
        spec = reviews_spec(**{"target.restoreOnAbort": restore})
        with bookinfo(vs=start) as c:
            original = copy.deepcopy(c.vs()["spec"])
            result = run_rollout(spec, load_scenario("healthy"), seed=3, cluster=c.adapters,
                                 commands={9: Command.ABORT})
            assert result.outcome == "aborted"
            vs = c.vs()
            assert canary_weights(c.vs_history())[:2] == [20, 0]  # the rollout started from 100/0
            if restore:
                assert json.dumps(vs["spec"]) == json.dumps(original)  # byte for byte
            else:
                assert canary_weights([vs]) == [0] and not has_header_route(vs)
            assert ORIGINAL not in vs["metadata"].get("annotations", {})
            _all_writes_valid(c.vs_history())


# ---- drift by a third party ----


def _operator_moves_all_traffic_back(c, at_tick: int):  # type: ignore[no-untyped-def]
    """kubectl-edit sets reviews back to 100/0 once the rollout has reached `at_tick`."""
    kubectl = c.other_client("kubectl-edit/v1.34.0")
    done = []

    def on_tick(engine, outcome):  # type: ignore[no-untyped-def]
        if outcome.state.tick >= at_tick and not done and outcome.state.phase is Phase.PROGRESSING:
            vs = c.vs()
            i = next(i for i, r in enumerate(vs["spec"]["http"]) if not r.get("name"))
            dests = vs["spec"]["http"][i]["route"]
            for d in dests:
                d["weight"] = 100 if d["destination"]["subset"] == "v1" else 0
            kubectl.patch_namespaced_custom_object(ISTIO, "v1", NS, "virtualservices", "reviews",
                                                   [{"op": "replace", "path": f"/spec/http/{i}/route",
                                                     "value": dests}],
                                                   _content_type="application/json-patch+json")
            done.append(outcome.state.tick)

    return on_tick, done


def test_drift_by_an_operator_pauses_the_rollout_and_says_who() -> None:
    with bookinfo() as c:
        on_tick, done = _operator_moves_all_traffic_back(c, at_tick=10)
        result = run_rollout(reviews_spec(), load_scenario("healthy"), seed=3, cluster=c.adapters, on_tick=on_tick)
        assert done and result.outcome == "paused"
        assert "kubectl-edit" in result.reason and "v1 100/v2 0" in result.reason
        assert canary_weights([c.vs()]) == [0]  # not fought over
        writes_after = [vs for vs in c.vs_history() if canary_weights([vs]) != [0]]
        assert canary_weights(writes_after)[-1] > 0  # the rollout had moved traffic before
        drift = [e for e in c.event_list() if e["reason"] == "RouteDrift"]
        assert len(drift) == 1 and drift[0]["type"] == "Warning" and "kubectl-edit" in drift[0]["message"]
        assert c.vs()["metadata"]["annotations"]["canary-analyzer.io/phase"] == "Paused"


def test_drift_is_corrected_when_the_spec_says_correct() -> None:
    with bookinfo() as c:
        on_tick, done = _operator_moves_all_traffic_back(c, at_tick=10)
        result = run_rollout(reviews_spec(**{"target.onDrift": "correct"}), load_scenario("healthy"), seed=3,
                             cluster=c.adapters, on_tick=on_tick)
        assert done and result.outcome == "promoted", result.reason
        weights = canary_weights(c.vs_history())
        back = weights.index(0, 2)  # the operator's 0 after the rollout's steps had started
        assert weights[back + 1] == weights[back - 1]  # our weights restored on the next tick
        assert not [e for e in c.event_list() if e["reason"] == "RouteDrift"]


def test_a_failed_write_of_our_own_is_retried_not_paused() -> None:
    with bookinfo() as c:
        spec = reviews_spec()
        c.router.set_weights(spec, {"v1": 75, "v2": 25})
        c.fake.fail_next(1, 500, method="PATCH", reason="InternalError")
        with pytest.raises(client.ApiException):
            c.router.set_weights(spec, {"v1": 50, "v2": 50})
        assert c.router.drift(spec) is None  # the route is as we left it: the engine simply re-applies
        c.router.set_weights(spec, {"v1": 50, "v2": 50})
        assert c.router.get_weights(spec) == {"v1": 50, "v2": 50}


# ---- optimistic concurrency ----


def test_a_storm_of_409s_ends_in_one_valid_write() -> None:
    with bookinfo() as c:
        spec = reviews_spec()
        c.router.set_weights(spec, {"v1": 90, "v2": 10})
        before = len(c.vs_history())
        c.fake.fail_next(6, 409, method="PATCH", plural="virtualservices")
        c.router.set_weights(spec, {"v1": 75, "v2": 25})
        assert c.router.get_weights(spec) == {"v1": 75, "v2": 25}
        assert [r.status for r in c.fake.requests(method="PATCH")][-7:] == [409] * 6 + [200]
        assert len(c.vs_history()) == before + 1
        # A storm longer than our patience: the write gives up (the engine retries next tick), nothing changed.
        c.fake.fail_next(50, 409, method="PATCH", plural="virtualservices")
        with pytest.raises(RouteConflict, match="still conflicted"):
            c.router.set_weights(spec, {"v1": 50, "v2": 50})
        assert c.router.get_weights(spec) == {"v1": 75, "v2": 25}


def test_a_concurrent_edit_elsewhere_is_re_applied_but_one_of_our_route_is_not() -> None:
    with bookinfo() as c:
        spec = reviews_spec()
        c.router.set_weights(spec, {"v1": 90, "v2": 10})

        def racing(mutate, manager):  # type: ignore[no-untyped-def]
            fired = []

            def fault(req):  # type: ignore[no-untyped-def]
                if req.method == "PATCH" and not fired:
                    fired.append(1)
                    c.fake.write_direct(ISTIO, "virtualservices", NS, "reviews", mutate, manager=manager)
                return None  # the request then proceeds, and its resourceVersion test fails

            c.fake.faults.append(fault)

        def label(vs):  # type: ignore[no-untyped-def]
            vs["metadata"].setdefault("labels", {})["team"] = "reviews"

        racing(label, "kubectl-label")
        c.router.set_weights(spec, {"v1": 75, "v2": 25})
        assert c.router.get_weights(spec) == {"v1": 75, "v2": 25}
        assert c.vs()["metadata"]["labels"] == {"team": "reviews"}
        assert [r.status for r in c.fake.requests(method="PATCH")][-2:] == [422, 200]

        def weights_back(vs):  # type: ignore[no-untyped-def]
            for d in vs["spec"]["http"][0]["route"]:
                d["weight"] = 100 if d["destination"]["subset"] == "v1" else 0

        racing(weights_back, "kubectl-edit")
        with pytest.raises(DriftDetected) as caught:
            c.router.set_weights(spec, {"v1": 50, "v2": 50})
        assert caught.value.drift.manager == "kubectl-edit"
        assert dict(caught.value.drift.found) == {"v1": 100, "v2": 0}
        assert c.router.get_weights(spec) == {"v1": 100, "v2": 0}


# ---- header route, idempotency, subset checks ----


def test_header_route_and_weights_are_idempotent() -> None:
    with bookinfo() as c:
        spec = reviews_spec()
        for _ in range(3):
            c.router.set_weights(spec, {"v1": 100, "v2": 0})
            c.router.set_header_route(spec, JASON)
        assert len(c.fake.requests(method="PATCH")) == 2
        assert c.router.header_route(spec) == JASON
        http = c.vs()["spec"]["http"]
        assert [r.get("name") for r in http] == ["canary-analyzer-canary-header", None]
        for _ in range(2):
            c.router.set_header_route(spec, None)
        assert len(c.fake.requests(method="PATCH")) == 3
        assert c.router.header_route(spec) is None and len(c.vs()["spec"]["http"]) == 1


def test_a_subset_missing_from_the_destination_rule_fails_fast() -> None:
    with bookinfo() as c:
        spec = parse_spec(spec_data(**{"target.canary": {"subset": "v4", "deployment": "reviews-v2"}}))
        result = run_rollout(spec, load_scenario("healthy"), seed=1, cluster=c.adapters)
        assert result.outcome == "failed"
        assert "subset 'v4' is not defined in DestinationRule bookinfo/reviews (subsets: v1, v2, v3)" in result.reason
        assert result.ticks <= 1
        assert canary_weights(c.vs_history()) == [0] and not has_header_route(c.vs())  # no traffic moved


def test_a_subset_without_ready_pods_fails_before_traffic_moves() -> None:
    with bookinfo() as c:
        c.fake.write_direct(ISTIO, "destinationrules", NS, "reviews",
                            lambda dr: dr["spec"]["subsets"][1].update(labels={"version": "v2-typo"}),
                            manager="kubectl-edit")
        result = run_rollout(reviews_spec(), load_scenario("healthy"), seed=1, cluster=c.adapters)
        assert result.outcome == "failed"
        assert "subset 'v2'" in result.reason and "labels version=v2-typo" in result.reason
        assert "no ready pod" in result.reason
        vs = c.vs()
        assert canary_weights([vs]) == [0] and not has_header_route(vs)


def test_unready_pods_do_not_count() -> None:
    with bookinfo() as c:
        for pod in c.fake.items("", "pods", NS):
            if pod["metadata"]["labels"].get("version") == "v2":
                c.fake.write_direct("", "pods", NS, pod["metadata"]["name"],
                                    lambda p: p["status"].update(conditions=[{"type": "Ready", "status": "False"}]),
                                    manager="kubelet")
        with pytest.raises(SubsetCheckError, match=r"subset 'v2' .* \(labels version=v2\) selects no ready pod of "
                                                   r"Deployment reviews-v2 .* \(1 pods, 0 ready\)"):
            c.router.set_weights(reviews_spec(), {"v1": 90, "v2": 10})


def test_subset_labels_count_only_the_subsets_own_pods() -> None:
    """version=v1 alone also selects ratings-v1, details-v1 and productpage-v1: those must not count."""
    with bookinfo() as c:
        c.fake.write_direct("apps", "deployments", NS, "reviews-v1", lambda d: d["spec"].update(replicas=0),
                            manager="kubectl-scale")
        assert any(p["metadata"]["labels"].get("version") == "v1" for p in c.fake.items("", "pods", NS))
        with pytest.raises(SubsetCheckError, match=r"subset 'v1' .* selects no ready pod of Deployment reviews-v1"):
            c.router.set_weights(reviews_spec(), {"v1": 90, "v2": 10})
        pods = c.fake.requests(method="GET", plural="pods")
        assert pods[-1].query["labelSelector"] == "version=v1,app=reviews"


def test_an_unknown_route_name_is_named() -> None:
    with bookinfo() as c, pytest.raises(RouteNotFound, match=r"target\.route: 'primary' is not an http route"):
        c.router.get_weights(reviews_spec(**{"target.route": "primary"}))


# ---- a gateway-bound VirtualService with prefix matches ----

GATEWAY_VS = {
    "apiVersion": f"{ISTIO}/v1", "kind": "VirtualService", "metadata": {"name": "bookinfo"},
    "spec": {
        "hosts": ["*"], "gateways": ["bookinfo-gateway"],
        "http": [
            {"match": [{"uri": {"exact": "/productpage"}}, {"uri": {"prefix": "/static"}},
                       {"uri": {"exact": "/login"}}, {"uri": {"exact": "/logout"}},
                       {"uri": {"prefix": "/api/v1/products"}}],
             "route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]},
            {"name": "reviews-api", "match": [{"uri": {"prefix": "/reviews"}, "ignoreUriCase": True}],
             "rewrite": {"uri": "/"}, "timeout": "5s", "retries": {"attempts": 3, "perTryTimeout": "2s"},
             "route": [{"destination": {"host": "reviews", "subset": "v1", "port": {"number": 9080}}}]},
            {"name": "httpbin", "match": [{"uri": {"prefix": "/headers"}}],
             "route": [{"destination": {"host": "httpbin", "port": {"number": 8000}}}],
             "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}]}},
        ],
    },
}


def test_gateway_routes_other_than_ours_stay_byte_for_byte() -> None:
    spec = reviews_spec(**{"target.virtualService": "bookinfo", "target.route": "reviews-api",
                           "target.gateways": ["bookinfo-gateway"]})
    with bookinfo(vs=GATEWAY_VS) as c:
        before = c.vs("bookinfo")

        def others(vs):  # type: ignore[no-untyped-def]
            return [json.dumps(r) for r in vs["spec"]["http"] if r.get("name") not in ("reviews-api",)
                    and not r.get("name", "").endswith("-canary-header")]

        def ours_except_route(vs):  # type: ignore[no-untyped-def]
            r = next(r for r in vs["spec"]["http"] if r.get("name") == "reviews-api")
            return json.dumps({k: v for k, v in r.items() if k != "route"})

        c.router.set_weights(spec, {"v1": 100, "v2": 0})
        c.router.set_header_route(spec, JASON)
        header = c.vs("bookinfo")["spec"]["http"][1]
        assert header["name"] == "reviews-api-canary-header"
        assert header["match"] == [{"uri": {"prefix": "/reviews"}, "ignoreUriCase": True,
                                    "headers": {"end-user": {"exact": "jason"}}}]
        assert header["rewrite"] == {"uri": "/"} and header["timeout"] == "5s"
        assert header["route"] == [{"destination": {"host": "reviews", "subset": "v2", "port": {"number": 9080}}}]
        for w in (10, 25, 50, 100):
            c.router.set_header_route(spec, None)
            c.router.set_weights(spec, {"v1": 100 - w, "v2": w})
            vs = c.vs("bookinfo")
            assert others(vs) == others(before)
            assert ours_except_route(vs) == ours_except_route(before)
            assert json.dumps(vs["spec"]["gateways"]) == json.dumps(before["spec"]["gateways"])
            assert vs["spec"]["hosts"] == ["*"]
        assert canary_weights(c.vs_history("bookinfo"), route_name="reviews-api") == [0, 10, 25, 50, 100]
        _all_writes_valid(c.vs_history("bookinfo"))
        c.router.restore(spec)
        assert json.dumps(c.vs("bookinfo")["spec"]) == json.dumps(before["spec"])


def test_the_fake_refuses_what_a_real_api_server_refuses() -> None:
    """The validators bite: a schema error and weights not summing to 100 are 422s, and nothing is stored."""
    with bookinfo() as c:
        kubectl = c.other_client("kubectl/v1.34")
        bad = [{"op": "replace", "path": "/spec/http/0/route/0/weight", "value": "fifty"}]
        with pytest.raises(client.ApiException) as caught:
            kubectl.patch_namespaced_custom_object(ISTIO, "v1", NS, "virtualservices", "reviews", bad,
                                                   _content_type="application/json-patch+json")
        assert caught.value.status == 422
        split = [{"op": "add", "path": "/spec/http/0/route/-",
                  "value": {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20}},
                 {"op": "add", "path": "/spec/http/0/route/0/weight", "value": 70}]
        with pytest.raises(client.ApiException) as caught:
            kubectl.patch_namespaced_custom_object(ISTIO, "v1", NS, "virtualservices", "reviews", split,
                                                   _content_type="application/json-patch+json")
        assert caught.value.status == 422 and "sum to 90" in caught.value.body
        assert len(c.vs_history()) == 1
        stale = c.vs()
        c.router.set_weights(reviews_spec(), {"v1": 100, "v2": 0})
        with pytest.raises(client.ApiException) as caught:
            kubectl.replace_namespaced_custom_object(ISTIO, "v1", NS, "virtualservices", "reviews", stale)
        assert caught.value.status == 409


def test_the_router_reads_back_what_it_wrote_in_every_version() -> None:
    with bookinfo(istio_versions=("v1beta1",)) as c:
        router = IstioRouter(c.api)
        spec = reviews_spec()
        router.set_weights(spec, {"v1": 60, "v2": 40})
        assert router.get_weights(spec) == {"v1": 60, "v2": 40}
        assert router.drift(spec) is None


def test_another_virtual_service_for_the_same_host_is_reported() -> None:
    with bookinfo() as c:
        spec = reviews_spec()
        assert c.router.other_claims(spec) == []
        legacy = reviews_vs()
        legacy["metadata"]["name"] = "reviews-legacy"
        legacy["spec"]["hosts"] = ["reviews.bookinfo.svc.cluster.local"]
        c.fake.seed(legacy, NS)
        assert c.router.other_claims(spec) == ["bookinfo/reviews-legacy"]
