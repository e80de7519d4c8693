"""`canary-analyzer import kayenta CONFIG.json`: a Kayenta canary config -> rollout spec YAML."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from analyzer.errors import UserError
from analyzer.importers.kayenta import convert

import_app = typer.Typer(no_args_is_help=True, help="Turn other tools' configs into rollout specs.")


def read_json(path: Path) -> object:
    """The parsed file; a missing file or bad JSON is one line naming the file and the problem."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def spec_yaml(spec: dict) -> str:
    return yaml.safe_dump(spec, sort_keys=False, width=1000, allow_unicode=True)


@import_app.command("kayenta")
def import_kayenta(
    config: Annotated[Path, typer.Argument(help="Kayenta canary config (JSON)")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the spec here instead of stdout")] = None,
    name: Annotated[str | None, typer.Option(help="Rollout name (default: from the config's name)")] = None,
    namespace: Annotated[str, typer.Option(help="Namespace of the VirtualService")] = "default",
    service: Annotated[str | None, typer.Option(help="VirtualService and host (default: the rollout name)")] = None,
    baseline: Annotated[str, typer.Option(help="Baseline subset")] = "v1",
    canary: Annotated[str, typer.Option(help="Canary subset")] = "v2",
) -> None:
    """Convert a Kayenta canary config; what cannot be mapped is listed on stderr, one line each."""
    data = read_json(config)
    try:
        result = convert(data, name=name, namespace=namespace, service=service, baseline=baseline,
                         canary=canary)
    except UserError as exc:
        raise UserError(f"{config}: {exc}") from None
    for line in result.unmapped:
        sys.stderr.write(f"{config}: {line}\n")
    text = spec_yaml(result.spec)
    if out is None:
        sys.stdout.write(text)
    else:
        try:
            out.write_text(text)
        except OSError as exc:
            raise UserError(f"{out}: cannot write: {exc.strerror}") from None
