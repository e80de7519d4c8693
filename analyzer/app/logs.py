"""structlog set-up: a console renderer on a terminal, JSON lines otherwise; always on stderr."""

from __future__ import annotations

import logging
import sys

import structlog


class _Stderr:
    """Looks up sys.stderr at each write, so a swapped stream (tests, daemons) is always honoured."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


LEVELS = ("debug", "info", "warning", "error")
_level = "warning"


def debug_enabled() -> bool:
    """True after `configure("debug")`: internal errors then print their traceback."""
    return _level == "debug"


def configure(level: str = "warning", *, json: bool | None = None) -> None:
    global _level
    _level = level.lower()
    as_json = not sys.stderr.isatty() if json is None else json
    renderer = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.WARNING)),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
