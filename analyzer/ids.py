"""Rollout ids: ULIDs, unique across processes and sortable by creation time.

A readable name (e.g. reviews-healthy-1) is not unique: three runs started in the same second on one
database collided. It is kept as the rollout's label instead (`history list` shows it).
"""

from __future__ import annotations

import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_rollout_id(now_ms: int | None = None) -> str:
    """A ULID: 48 bits of milliseconds since the epoch, then 80 random bits, as 26 Crockford base32 characters."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms & ((1 << 48) - 1)) << 80 | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
