"""One-button Google OAuth2 for drivers (#6 phase 4): the signed `state`, PKCE, and refresh tokens
encrypted at rest. Pure functions and small classes; no I/O (the callback lives in bot/oauth.py, the
grant store in activities/oauth.py).

`state` is `v1.<payload>.<mac>`: base64url JSON `{"t": tenant, "c": chat, "n": nonce, "e": expiry,
"l": language}` and base64url HMAC-SHA256 over `v1.<payload>` with AUTODISPATCH_OAUTH_STATE_SECRET. The
signature binds the link to the chat (and tenant) it was made for and to its expiry; single use is
enforced by the `oauth_states` row of the nonce, consumed once at the callback.

The PKCE code verifier is never stored nor sent anywhere but the token endpoint: it is derived from the
nonce with the same secret (HMAC-SHA256(secret, "pkce:" + nonce)), so the callback can recompute it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from autodispatch.settings import Settings

STATE_TTL_SECONDS = 600  # the link in the chat works for 10 minutes
_STATE_VERSION = "v1"


class StateError(ValueError):
    """A `state` that does not prove we issued it to this chat in the last 10 minutes.

    `reason` is one of: malformed, bad_signature, expired, other_chat, used."""

    def __init__(self, reason: str, message: str, claims: StateClaims | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        # Set when the signature was good (expired / used / other chat): whose link it was.
        self.claims = claims


@dataclass(frozen=True)
class StateClaims:
    tenant_id: str
    chat_id: int
    nonce: str
    expires_at: int  # unix seconds
    language: str = "ru"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, message: str) -> bytes:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def sign_state(
    secret: str,
    tenant_id: str,
    chat_id: int,
    *,
    nonce: str | None = None,
    language: str = "ru",
    now: float | None = None,
    ttl: int = STATE_TTL_SECONDS,
) -> tuple[str, StateClaims]:
    claims = StateClaims(
        tenant_id=tenant_id,
        chat_id=chat_id,
        nonce=nonce or new_nonce(),
        expires_at=int((time.time() if now is None else now) + ttl),
        language=language,
    )
    payload = _b64(
        json.dumps(
            {"t": claims.tenant_id, "c": claims.chat_id, "n": claims.nonce, "e": claims.expires_at,
             "l": claims.language},
            separators=(",", ":"),
        ).encode()
    )  # fmt: skip
    signed = f"{_STATE_VERSION}.{payload}"
    return f"{signed}.{_b64(_mac(secret, signed))}", claims


def verify_state(
    secret: str, state: str, *, now: float | None = None, chat_id: int | None = None
) -> StateClaims:
    """The claims of a state we signed, unexpired (and, if `chat_id` is given, made for that chat).

    The signature is checked (constant time) before anything in the payload is believed."""
    parts = (state or "").split(".")
    if len(parts) != 3 or parts[0] != _STATE_VERSION:
        raise StateError("malformed", "the link is malformed")
    signed = f"{parts[0]}.{parts[1]}"
    try:
        given = _unb64(parts[2])
    except ValueError:
        raise StateError("malformed", "the link is malformed") from None
    if not hmac.compare_digest(given, _mac(secret, signed)):
        raise StateError("bad_signature", "the link's signature does not match (forged or altered)")
    try:
        raw = json.loads(_unb64(parts[1]))
        claims = StateClaims(
            tenant_id=str(raw["t"]), chat_id=int(raw["c"]), nonce=str(raw["n"]), expires_at=int(raw["e"]),
            language=str(raw.get("l") or "ru"),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        raise StateError("malformed", "the link is malformed") from None
    if (time.time() if now is None else now) >= claims.expires_at:
        raise StateError("expired", "the link has expired", claims)
    if chat_id is not None and chat_id != claims.chat_id:
        raise StateError("other_chat", "the link was made for another chat", claims)
    return claims


def code_verifier(secret: str, nonce: str) -> str:
    """PKCE verifier for this nonce: 43 characters of base64url (RFC 7636 allows 43–128)."""
    return _b64(_mac(secret, f"pkce:{nonce}"))


def code_challenge(verifier: str) -> str:
    """S256: base64url(SHA-256(verifier)) without padding."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


def authorization_url(settings: Settings, state: str, nonce: str) -> str:
    """Google's consent screen for this driver: authorization code + PKCE S256, offline access, and
    prompt=consent so Google returns a refresh token again on a reconnect."""
    assert settings.google_oauth_client_id and settings.oauth_state_secret
    verifier = code_verifier(settings.oauth_state_secret.get_secret_value(), nonce)
    query = {
        "client_id": settings.google_oauth_client_id,
        "redirect_uri": settings.oauth_redirect_url,
        "response_type": "code",
        "scope": settings.google_oauth_scopes,
        "state": state,
        "code_challenge": code_challenge(verifier),
        "code_challenge_method": "S256",
        "access_type": "offline",
        "prompt": "consent",
        "include_granted_scopes": "true",
    }
    return f"{settings.google_oauth_auth_uri}?{urlencode(query)}"


def oauth_problem(settings: Settings) -> str | None:
    """None when /connect can work; else the one setting that is missing (start-up refuses with it)."""
    if not settings.google_oauth_client_id:
        return None  # OAuth is off: /connect answers that it is not available
    for name in ("google_oauth_client_secret", "oauth_state_secret", "oauth_token_keys"):
        if getattr(settings, name) is None:
            return f"AUTODISPATCH_{name.upper()}: required when AUTODISPATCH_GOOGLE_OAUTH_CLIENT_ID is set"
    return None


# -- refresh tokens at rest ------------------------------------------------------------------------
class TokenCipher:
    """Fernet encryption of refresh tokens with key rotation (MultiFernet).

    Keys come newest first (AUTODISPATCH_OAUTH_TOKEN_KEYS="new,old"): the first encrypts, every one
    decrypts. A token decrypted with an older key is reported as stale so the caller re-encrypts it
    (lazily on use, or all at once with `autodispatch oauth rotate-keys`); then the old key can go."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is needed")
        self._fernets = [Fernet(k.encode() if isinstance(k, str) else k) for k in keys]
        self._multi = MultiFernet(self._fernets)

    @classmethod
    def from_setting(cls, value: str) -> TokenCipher:
        return cls([k.strip() for k in value.split(",") if k.strip()])

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCipher:
        if settings.oauth_token_keys is None:
            raise ValueError("AUTODISPATCH_OAUTH_TOKEN_KEYS is not set")
        return cls.from_setting(settings.oauth_token_keys.get_secret_value())

    def encrypt(self, plaintext: str) -> str:
        return self._multi.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> tuple[str, bool]:
        """(plaintext, stale): stale when an older key had to be used. Raises InvalidToken when no key
        fits (a key was dropped before its tokens were rotated)."""
        raw = token.encode("ascii")
        try:
            return self._fernets[0].decrypt(raw).decode(), False
        except InvalidToken:
            pass
        return self._multi.decrypt(raw).decode(), True

    def rotate(self, token: str) -> str:
        """The same plaintext under the newest key (keeps the original timestamp)."""
        return self._multi.rotate(token.encode("ascii")).decode("ascii")


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


__all__ = [
    "InvalidToken",
    "STATE_TTL_SECONDS",
    "StateClaims",
    "StateError",
    "TokenCipher",
    "authorization_url",
    "code_challenge",
    "code_verifier",
    "generate_key",
    "oauth_problem",
    "sign_state",
    "verify_state",
]
