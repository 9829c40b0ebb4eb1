"""The credentials, made and checked with PyJWT (HS256):

- a service token: {iss, sub: the calling service, aud: the called service, iat, exp},
  minutes long, signed with SERVICE_TOKEN_SECRET; the JWT header's kid is "service";
- a user's API token: {iss: "user_svc", sub: the user id, aud: "mcsv-user", iat, exp},
  signed with USER_TOKEN_SECRET; kid "user";
- the operator's token: OPERATOR_TOKEN itself, an opaque secret compared in constant time.

verify() answers the Principal a bearer token stands for, or raises InvalidCredential. A
token that verified is remembered until it expires (VerifiedTokens, bounded): checking the
signature and claims of every call's token took 14% of a served call (py-spy, under load),
while a caller sends the same service token for minutes."""

from __future__ import annotations

import hmac
import threading
import time

import jwt

from internal import config
from internal.auth.policy import OPERATOR, USER, Principal

ALGORITHM = "HS256"
SERVICE_KIND = "service"
USER_KIND = "user"
USER_AUDIENCE = "mcsv-user"
USER_ISSUER = "user_svc"
LEEWAY_SECONDS = 5  # clock skew between the machines of one deployment


class InvalidCredential(Exception):
    """The token is malformed, forged, expired or not meant for this service."""


def service_token(
    settings: config.Settings, caller: str, audience: str, now: float | None = None
) -> str:
    """A token saying `caller` (a service name) calls `audience` (a service name)."""
    return _signed(
        settings.service_token_secret, SERVICE_KIND, caller, caller, audience,
        settings.service_token_ttl_seconds, now,
    )  # fmt: skip


def user_token(settings: config.Settings, user_id: str, now: float | None = None) -> str:
    """The API token of a user (CreateUser answers it)."""
    return _signed(
        settings.user_token_secret, USER_KIND, USER_ISSUER, user_id, USER_AUDIENCE,
        settings.user_token_ttl_seconds, now,
    )  # fmt: skip


def _signed(
    secret: str, kind: str, issuer: str, subject: str, audience: str, ttl: float,
    now: float | None,
) -> str:  # fmt: skip
    issued = int(time.time() if now is None else now)
    claims = {"iss": issuer, "sub": subject, "aud": audience, "iat": issued, "exp": issued + ttl}
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": kind})


class VerifiedTokens:
    """Tokens that verified, with whom they stand for, until their expiry; at most `size`
    (the oldest go first). Only successes are kept: a bad token is checked afresh each time.
    Keyed by the secrets too, so that settings with other keys never share an entry."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str, str, str], tuple[Principal, float]] = {}

    def get(self, key: tuple[str, str, str, str], now: float) -> Principal | None:
        with self._lock:
            found = self._known.get(key)
            if found is None:
                return None
            if now >= found[1]:
                del self._known[key]
                return None
            return found[0]

    def put(self, key: tuple[str, str, str, str], principal: Principal, expires: float) -> None:
        with self._lock:
            if len(self._known) >= self.size:
                del self._known[next(iter(self._known))]
            self._known[key] = (principal, expires)


_VERIFIED = VerifiedTokens()


def verify(settings: config.Settings, token: str, audience: str) -> Principal:
    """Who `token` stands for, when presented to the service named `audience`."""
    if hmac.compare_digest(token.encode(), settings.operator_token.encode()):
        return Principal(OPERATOR, OPERATOR)
    key = (token, audience, settings.service_token_secret, settings.user_token_secret)
    now = time.time()
    if (known := _VERIFIED.get(key, now)) is not None:
        return known
    principal, expires = _verify_jwt(settings, token, audience)
    _VERIFIED.put(key, principal, expires + LEEWAY_SECONDS)
    return principal


def _verify_jwt(settings: config.Settings, token: str, audience: str) -> tuple[Principal, float]:
    """The Principal of a JWT and when it expires; raises InvalidCredential."""
    try:
        kind = jwt.get_unverified_header(token).get("kid")
        if kind == SERVICE_KIND:
            claims = _decode(token, settings.service_token_secret, audience, issuer=None)
            if claims["iss"] != claims["sub"]:
                raise InvalidCredential("iss and sub differ")
            return Principal(SERVICE_KIND, str(claims["sub"])), _expiry(claims)
        if kind == USER_KIND:
            claims = _decode(token, settings.user_token_secret, USER_AUDIENCE, USER_ISSUER)
            return Principal(USER, str(claims["sub"])), _expiry(claims)
    except jwt.PyJWTError as exc:
        raise InvalidCredential(str(exc)) from exc
    raise InvalidCredential("not a token of this system")


def _expiry(claims: dict[str, object]) -> float:
    expires = claims["exp"]
    return float(expires) if isinstance(expires, int | float) else 0.0


def _decode(token: str, key: str, audience: str, issuer: str | None) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(
        token,
        key,
        algorithms=[ALGORITHM],
        audience=audience,
        issuer=issuer,
        leeway=LEEWAY_SECONDS,
        options={"require": ["exp", "iat", "iss", "sub", "aud"]},
    )
    if not claims["sub"]:
        raise InvalidCredential("empty subject")
    return claims
