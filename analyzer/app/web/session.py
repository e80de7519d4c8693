"""Dashboard sessions: a signed cookie carrying a token's scope and an expiry, and CSRF tokens bound to it.

The cookie never holds the API token itself. Its HMAC key is derived from the token file's contents,
so every replica that shares the file accepts the same cookie, and rotating the tokens signs everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from analyzer.app.settings import Tokens

COOKIE = "ca_session"
LOGIN_COOKIE = "ca_login"  # binds the sign-in form's CSRF token before any session exists
TTL_S = 8 * 3600
LOGIN_TTL_S = 1800


@dataclass(frozen=True)
class Session:
    scope: str  # read | operate
    expires: int  # unix seconds
    nonce: str  # ties CSRF tokens to this session

    @property
    def can_operate(self) -> bool:
        return self.scope == "operate"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, tokens: Tokens, ttl_s: int = TTL_S) -> None:
        material = b"\n".join(scope.encode() + b" " + secret for scope, secret in sorted(tokens.entries))
        self.key = hashlib.sha256(b"canary-analyzer dashboard session\n" + material).digest()
        self.tokens = tokens
        self.ttl_s = ttl_s

    def _mac(self, purpose: str, payload: str) -> str:
        return _b64(hmac.new(self.key, f"{purpose}\n{payload}".encode(), hashlib.sha256).digest())

    # ---- the session cookie ----

    def sign_in(self, token: str, now: float | None = None) -> tuple[Session, str] | None:
        """The session and its cookie value for a valid API token, else None."""
        scope = self.tokens.scope_of(token)
        if scope is None:
            return None
        now = time.time() if now is None else now
        session = Session(scope, int(now) + self.ttl_s, secrets.token_urlsafe(12))
        payload = _b64(json.dumps({"s": session.scope, "e": session.expires, "n": session.nonce}).encode())
        return session, f"{payload}.{self._mac('session', payload)}"

    def session(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie carries, or None when it is missing, forged or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(str(data["s"]), int(data["e"]), str(data["n"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.scope not in ("read", "operate"):
            return None
        if session.expires <= (time.time() if now is None else now):
            return None
        return session

    # ---- CSRF ----

    def csrf(self, session: Session) -> str:
        return self._mac("csrf", session.nonce)

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf(session))

    def login_nonce(self) -> tuple[str, str]:
        """A nonce for the sign-in cookie and the form token that goes with it."""
        nonce = f"{int(time.time())}.{secrets.token_urlsafe(12)}"
        return nonce, self._mac("login", nonce)

    def login_ok(self, nonce: str | None, given: str | None) -> bool:
        if not nonce or not given or not hmac.compare_digest(str(given), self._mac("login", nonce)):
            return False
        issued = nonce.split(".")[0]
        return issued.isdigit() and time.time() - int(issued) < LOGIN_TTL_S
