"""DNS-1123 checks for every name and label value that the API passes on to PromQL or Kubernetes."""

from __future__ import annotations

import re

from analyzer.config import RolloutSpec
from analyzer.errors import UserError

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL = re.compile(rf"^{_LABEL}$")
DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


class NameError_(UserError):
    """A name that Kubernetes would refuse, or that could change the meaning of a query."""


def check_label(field: str, value: str) -> str:
    if len(value) > 63 or not DNS1123_LABEL.match(value):
        raise NameError_(f"{field}: {value!r} is not a DNS-1123 label (lower-case letters, digits and '-', "
                         "at most 63, starting and ending with a letter or digit)")
    return value


def check_subdomain(field: str, value: str) -> str:
    if len(value) > 253 or not DNS1123_SUBDOMAIN.match(value):
        raise NameError_(f"{field}: {value!r} is not a DNS-1123 name (lower-case letters, digits, '-' and '.')")
    return value


def check_spec(spec: RolloutSpec) -> RolloutSpec:
    """Every Kubernetes name and telemetry label value of the spec, checked before it is stored or queried."""
    t = spec.target
    check_subdomain("metadata.name", spec.name)
    check_label("target.namespace", t.namespace)
    check_subdomain("target.virtualService", t.virtual_service)
    check_subdomain("target.host", t.host)
    if t.destination_rule is not None:
        check_subdomain("target.destinationRule", t.destination_rule)
    if t.route is not None:
        check_subdomain("target.route", t.route)
    for side, ref in (("baseline", t.baseline), ("canary", t.canary)):
        check_label(f"target.{side}.subset", ref.subset)
        check_label(f"target.{side}.version", ref.label_value)
    return spec
