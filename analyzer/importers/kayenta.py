"""Kayenta canary config (peers.md §b.8) -> rollout spec with `analysis.judge: kayenta` and `analysis.kayenta`.

Pure: takes the parsed JSON and the target the user names, returns the spec as plain data plus one line per
thing it could not map. With `judge: kayenta` the converted metrics get the settings NetflixACAJudge would read
(same parsing of direction, nanStrategy, outliers and effect sizes), so the judge keeps Kayenta's verdicts.

Queries: Kayenta's Prometheus query is either a full `PromQL:` inline template, or `avg(metricName{filters})`
with the filters from `customFilterTemplate` / `customInlineTemplate` / `customFilter`. Each side of Kayenta's
comparison is a scope; ours is a subset, so a matcher on `${scope}` becomes `{{ subset_label }}="{{ subset }}"`
and other `${scope}` uses become `{{ subset }}`. `${namespace}` (an extended scope parameter) becomes
`{{ namespace }}`; `${location}`, `${project}`, `${resourceType}` and other parameters have no equivalent and are
reported. Kayenta queries a range at a step; we evaluate each query once per interval (step = interval).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analyzer.errors import UserError

JUDGE_NAME = "NetflixACAJudge-v1.0"
_VAR = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")
# `label = '${scope}'`, `label=~"${scope}.*"`: Kayenta's scope selector, i.e. which side this is.
_SCOPE_MATCHER = re.compile(r"""\b[A-Za-z_][A-Za-z0-9_]*\s*=~?\s*(['"])\$\{\s*scope\s*\}(?:\.\*)?\1""")
_QUOTED_VAR = re.compile(r"""'(\$\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\})'""")
_SUBSET_MATCHER = '{{ subset_label }}="{{ subset }}"'
_OURS = {"namespace": "{{ namespace }}", "service": "{{ service }}", "scope": "{{ subset }}"}
_DIRECTIONS = ("increase", "decrease", "either")
_KNOWN_CANARY_KEYS = {"direction", "nanStrategy", "critical", "mustHaveData", "muted", "effectSize", "outliers"}
_KNOWN_EFFECT_KEYS = {"measure", "allowedIncrease", "allowedDecrease", "criticalIncrease", "criticalDecrease"}
_KNOWN_QUERY_KEYS = {"type", "metricName", "customInlineTemplate", "customFilterTemplate", "customFilter",
                     "serviceType"}


class KayentaImportError(UserError):
    """A canary config this converter cannot read; the message names the field and the value."""


@dataclass(frozen=True)
class Conversion:
    spec: dict[str, Any]  # the rollout spec as plain data (camelCase keys), ready for YAML
    unmapped: tuple[str, ...]  # one line per setting that has no equivalent or was changed


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise KayentaImportError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise KayentaImportError(f"{where}: {value!r} is not a number")
    return float(value)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise KayentaImportError(f"{where}: {value!r} is not true or false")
    return value


def map_template(template: str, where: str, notes: list[str]) -> str:
    """Kayenta `${...}` variables -> our `{{ ... }}` placeholders; what has no equivalent is noted and kept."""
    out = _SCOPE_MATCHER.sub(_SUBSET_MATCHER, template)
    if out != template:
        notes.append(f"{where}: changed: the ${{scope}} matcher becomes {_SUBSET_MATCHER} (a side is a subset)")
    out = _QUOTED_VAR.sub(r'"\1"', out)  # our placeholders are filled escaped for double quotes

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "scope":
            notes.append(f"{where}: changed: ${{scope}} becomes {{{{ subset }}}} (the subset's label value)")
        if name in _OURS:
            return _OURS[name]
        notes.append(f"{where}: not mapped: ${{{name}}} has no equivalent; left in the query, edit it before use")
        return match.group(0)

    return _VAR.sub(fill, out)


def _query(metric: Mapping[str, Any], templates: Mapping[str, Any], where: str, notes: list[str]) -> str | None:
    query = _mapping(metric.get("query"), f"{where}.query")
    qtype = query.get("type", "prometheus")
    if qtype != "prometheus":
        notes.append(f"{where}: not mapped: query type {qtype!r} is not Prometheus; metric skipped")
        return None
    for key in sorted(set(query) - _KNOWN_QUERY_KEYS):
        if query[key] not in (None, [], {}, ""):
            notes.append(f"{where}.query.{key}: not mapped: {query[key]!r} has no equivalent; dropped")
    inline = query.get("customInlineTemplate")
    if isinstance(inline, str) and inline.startswith("PromQL:"):
        return map_template(inline.removeprefix("PromQL:").strip(), f"{where}.query.customInlineTemplate", notes)
    name = query.get("metricName")
    if not isinstance(name, str) or not name:
        raise KayentaImportError(f"{where}.query.metricName: {name!r}: needs a metric name or a PromQL: template")
    template_name = query.get("customFilterTemplate")
    if template_name is not None:
        if template_name not in templates:
            raise KayentaImportError(f"{where}.query.customFilterTemplate: {template_name!r} is not in templates")
        filters, what = str(templates[template_name]), f"templates.{template_name}"
    elif isinstance(inline, str) and inline:
        filters, what = inline, f"{where}.query.customInlineTemplate"
    elif isinstance(query.get("customFilter"), str) and query["customFilter"]:
        filters, what = str(query["customFilter"]), f"{where}.query.customFilter"
    else:
        notes.append(f"{where}.query: changed: no filter (Kayenta's scope filter) becomes {_SUBSET_MATCHER}")
        filters, what = "", ""
    mapped = _SUBSET_MATCHER if not what else map_template(filters, what, notes)
    return f"avg({name}{{{mapped}}})"


def _metric(metric: Any, index: int, templates: Mapping[str, Any], notes: list[str]) -> dict[str, Any] | None:
    where = f"metrics[{index}]"
    metric = _mapping(metric, where)
    name = metric.get("name")
    if not isinstance(name, str) or not name:
        raise KayentaImportError(f"{where}.name: {name!r} is not a metric name")
    where = f"{where} ({name})"
    canary = _mapping(_mapping(metric.get("analysisConfigurations"), f"{where}.analysisConfigurations")
                      .get("canary"), f"{where}.analysisConfigurations.canary")
    if canary.get("muted") is True:
        notes.append(f"{where}: not mapped: muted (left out of the score); metric skipped")
        return None
    scope = metric.get("scopeName", "default")
    if scope != "default":
        notes.append(f"{where}.scopeName: not mapped: {scope!r}; we compare one baseline with one canary")
    query = _query(metric, templates, where, notes)
    if query is None:
        return None
    for key in sorted(set(canary) - _KNOWN_CANARY_KEYS):
        notes.append(f"{where}.analysisConfigurations.canary.{key}: not mapped: {canary[key]!r}; dropped")

    out: dict[str, Any] = {"name": name, "query": query}
    groups = metric.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise KayentaImportError(f"{where}.groups: {groups!r} is not a list of group names")
    if groups:
        out["groups"] = list(groups)
    else:
        notes.append(f"{where}: note: no groups, so the metric counts in no group score (as in Kayenta)")
    direction = canary.get("direction", "either")
    if direction not in _DIRECTIONS:  # Kayenta parses anything else as either
        notes.append(f"{where}.direction: changed: {direction!r} is read as 'either', as Kayenta does")
        direction = "either"
    if direction != "either":
        out["direction"] = direction
    if canary.get("nanStrategy", "remove") == "replace":  # anything else is remove, as in Kayenta
        out["nanStrategy"] = "replace"
    for key in ("critical", "mustHaveData"):
        if key in canary and _flag(canary[key], f"{where}.analysisConfigurations.canary.{key}"):
            out[key] = True
    effect = _mapping(canary.get("effectSize"), f"{where}.effectSize")
    for key in sorted(set(effect) - _KNOWN_EFFECT_KEYS):
        notes.append(f"{where}.effectSize.{key}: not mapped: {effect[key]!r}; dropped")
    mapped_effect: dict[str, Any] = {}
    if effect.get("measure", "meanRatio") == "cles":
        mapped_effect["measure"] = "cles"
    for key in ("allowedIncrease", "allowedDecrease", "criticalIncrease", "criticalDecrease"):
        if effect.get(key) is not None:
            mapped_effect[key] = _number(effect[key], f"{where}.effectSize.{key}")
    if mapped_effect:
        out["effectSize"] = mapped_effect
    outliers = _mapping(canary.get("outliers"), f"{where}.outliers")
    if outliers.get("strategy") == "remove":
        out["outliers"] = {"strategy": "remove",
                           "outlierFactor": _number(outliers.get("outlierFactor", 3.0), f"{where}.outlierFactor")}
    return out


def convert(
    canary_config: Any,
    *,
    name: str | None = None,
    namespace: str = "default",
    service: str | None = None,
    baseline: str = "v1",
    canary: str = "v2",
    steps: tuple[int, ...] = (10, 25, 50),
) -> Conversion:
    """Turn a Kayenta canary config into a rollout spec for `service` in `namespace`, baseline -> canary."""
    config = _mapping(canary_config, "canary config")
    notes: list[str] = []
    judge = _mapping(config.get("judge"), "judge").get("name", JUDGE_NAME)
    if judge != JUDGE_NAME:
        notes.append(f"judge.name: changed: {judge!r} becomes {JUDGE_NAME}")
    metrics_in = config.get("metrics")
    if not isinstance(metrics_in, list) or not metrics_in:
        raise KayentaImportError(f"metrics: {metrics_in!r}: needs a list of at least one metric")
    templates = _mapping(config.get("templates"), "templates")
    metrics = [m for i, raw in enumerate(metrics_in) if (m := _metric(raw, i, templates, notes)) is not None]
    if not metrics:
        raise KayentaImportError("metrics: none of the metrics can be judged from Prometheus")
    seen: set[str] = set()
    for m in metrics:
        if m["name"] in seen:
            raise KayentaImportError(f"metrics: {m['name']!r} is used twice")
        seen.add(m["name"])

    classifier = _mapping(config.get("classifier"), "classifier")
    block: dict[str, Any] = {"metrics": metrics}
    weights = _mapping(classifier.get("groupWeights"), "classifier.groupWeights")
    if weights:
        block["groupWeights"] = {str(g): _number(w, f"classifier.groupWeights.{g}") for g, w in weights.items()}
    thresholds = _mapping(classifier.get("scoreThresholds"), "classifier.scoreThresholds")
    if thresholds:
        block["scoreThresholds"] = {k: _number(thresholds[k], f"classifier.scoreThresholds.{k}")
                                    for k in ("pass", "marginal") if k in thresholds}
    for key in ("applications", "configVersion", "createdTimestamp", "updatedTimestamp", "id"):
        if config.get(key) not in (None, [], ""):
            notes.append(f"{key}: not mapped: {config[key]!r} (Kayenta bookkeeping); dropped")

    rollout = name or _dns_name(str(config.get("name") or "kayenta-import"))
    host = service or rollout
    spec: dict[str, Any] = {
        "apiVersion": "canary-analyzer/v1",
        "kind": "Rollout",
        "metadata": {"name": rollout, "labels": {"imported-from": "kayenta"}},
        "target": {"namespace": namespace, "virtualService": host, "host": host,
                   "baseline": {"subset": baseline}, "canary": {"subset": canary}},
        "strategy": {"type": "canary", "steps": list(steps)},
        "analysis": {"judge": "kayenta", "kayenta": block},
    }
    if config.get("description"):
        spec["metadata"]["labels"]["description"] = _label(str(config["description"]))
    return Conversion(spec, tuple(notes))


def _dns_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name[:63].strip("-") or "kayenta-import"


def _label(text: str) -> str:
    return text[:200]
