"""PromQL text built from spec values, with every value checked so no spec field can inject PromQL.

Values go through two gates: a whitelist regex (what a Kubernetes label value or name can hold) and
then string escaping, so a value that somehow passed the regex still cannot end the string literal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from analyzer.config import ErrorRateMetric, PrometheusSource, RolloutSpec, SpecError

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:/-]+$")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
TEMPLATE_KEYS = ("namespace", "service", "subset_label", "subset", "interval")

REQUESTS_METRIC = "istio_requests_total"
BUCKET_METRIC = "istio_request_duration_milliseconds_bucket"


def safe_value(value: str, what: str) -> str:
    if not _SAFE_VALUE.match(value):
        raise SpecError(f"{what}: {value!r} is not a safe label value (allowed: letters, digits, . _ : / -)")
    return value


def safe_label_name(name: str, what: str) -> str:
    if not _LABEL_NAME.match(name):
        raise SpecError(f"{what}: {name!r} is not a Prometheus label name")
    return name


def escape_string(value: str) -> str:
    """Body of a double-quoted PromQL string literal."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def quote(value: str) -> str:
    return f'"{escape_string(value)}"'


def regex_alternation(values: list[str]) -> str:
    """An anchored (PromQL regexes are) alternation matching exactly these values."""
    return "|".join(re.escape(v) for v in values)


def duration(seconds: float) -> str:
    """A PromQL duration; whole milliseconds because PromQL durations take no fractions."""
    return f"{max(1, round(seconds * 1000))}ms"


@dataclass(frozen=True)
class Selection:
    """The validated label values that pick one service's two subsets."""

    reporter: str
    namespace_label: str
    namespace: str
    service_label: str
    service: str
    subset_label: str
    baseline: str
    canary: str

    def matchers(self) -> str:
        pairs = [
            f"reporter={quote(self.reporter)}",
            f"{self.namespace_label}={quote(self.namespace)}",
            f"{self.service_label}={quote(self.service)}",
            f"{self.subset_label}=~{quote(regex_alternation([self.baseline, self.canary]))}",
        ]
        return ",".join(pairs)

    def raw_samples(self, metric: str, window_s: float) -> str:
        """Range selector: an instant query of it returns the raw samples, not an extrapolated rate."""
        return f"{metric}{{{self.matchers()}}}[{duration(window_s)}]"

    def sample_counts(self, metric: str, pod_label: str, pods: list[str], window_s: float) -> str:
        """Samples per series of these pods over a range: which series existed before it."""
        pod_matcher = f"{safe_label_name(pod_label, 'pod label')}=~{quote(regex_alternation(pods))}"
        return f"count_over_time({metric}{{{self.matchers()},{pod_matcher}}}[{duration(window_s)}])"


def selection(spec: RolloutSpec, source: PrometheusSource) -> Selection:
    service = source.service or spec.target.host.split(".", 1)[0]
    sel = Selection(
        reporter=safe_value(source.reporter, "sources.metrics.reporter"),
        namespace_label=safe_label_name(source.namespace_label, "sources.metrics.namespaceLabel"),
        namespace=safe_value(spec.target.namespace, "target.namespace"),
        service_label=safe_label_name(source.service_label, "sources.metrics.serviceLabel"),
        service=safe_value(service, "sources.metrics.service (or target.host)"),
        subset_label=safe_label_name(source.subset_label, "sources.metrics.subsetLabel"),
        baseline=safe_value(spec.target.baseline.label_value, "target.baseline"),
        canary=safe_value(spec.target.canary.label_value, "target.canary"),
    )
    if sel.baseline == sel.canary:
        raise SpecError(f"target: baseline and canary share the label value {sel.baseline!r}")
    return sel


def render_template(template: str, values: Mapping[str, str], what: str) -> str:
    """Fill {{ key }} placeholders; unknown keys and unsafe values are spec errors."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise SpecError(f"{what}: unknown placeholder {{{{ {key} }}}} (known: {', '.join(TEMPLATE_KEYS)})")
        return values[key]

    return _PLACEHOLDER.sub(fill, template)


def template_values(sel: Selection, subset_value: str, window_s: float) -> dict[str, str]:
    # Values land inside quotes the user wrote, so they are escaped; names and durations are bare.
    return {
        "namespace": escape_string(sel.namespace),
        "service": escape_string(sel.service),
        "subset_label": sel.subset_label,
        "subset": escape_string(safe_value(subset_value, "subset")),
        "interval": duration(window_s),
    }


def _grpc_error(status: str) -> bool:
    return status.isdigit() and 1 <= int(status) <= 16


@dataclass(frozen=True)
class ErrorDefinition:
    """Which `istio_requests_total` series count as errors (formats.md §1.4, Kiali's definition)."""

    include_no_response: bool = False
    include_grpc: bool = False
    include_4xx: bool = False

    @classmethod
    def from_spec(cls, spec: RolloutSpec) -> ErrorDefinition:
        for m in spec.analysis.metrics:
            if isinstance(m, ErrorRateMetric):
                return cls(m.include_no_response, m.include_grpc, m.include_4xx)
        return cls()

    def is_error(self, labels: Mapping[str, str]) -> bool:
        code = labels.get("response_code", "")
        if len(code) == 3 and code.isdigit():
            if code[0] == "5" or (self.include_4xx and code[0] == "4"):
                return True
        elif code == "0" and self.include_no_response:
            return True
        return self.include_grpc and _grpc_error(labels.get("grpc_response_status", ""))
