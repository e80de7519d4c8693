"""`history export`: the history frames as Parquet files, one per frame, for tools outside Python."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from analyzer.store.history import (
    Source,
    actions_frame,
    events_frame,
    rollouts_frame,
    ticks_frame,
    verdicts_frame,
)

FRAMES: dict[str, Callable[[Source], pd.DataFrame]] = {
    "rollouts": rollouts_frame,
    "ticks": ticks_frame,
    "verdicts": verdicts_frame,
    "events": events_frame,
    "actions": actions_frame,
}


def _flat(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, dict | list | tuple) else value


def _parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Nested values (weights, actions, meta) become JSON text: their keys differ from row to row."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object and out[col].map(lambda v: isinstance(v, dict | list | tuple)).any():
            out[col] = out[col].map(_flat)
    return out


def export_parquet(source: Source, out_dir: str | Path) -> list[Path]:
    """Write <out_dir>/<frame>.parquet for every history frame; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in FRAMES.items():
        path = out / f"{name}.parquet"
        _parquet_ready(make(source)).to_parquet(path, engine="pyarrow", index=False)
        written.append(path)
    return written
