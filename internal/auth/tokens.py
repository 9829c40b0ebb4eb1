"""The credentials, made and checked with PyJWT (HS256):

- a service token: {iss, sub: the calling service, aud: the called service, iat, exp},
  minutes long, signed with SERVICE_TOKEN_SECRET; the JWT header's kid is "service";
- a user's API token: {iss: "user_svc", sub: the user id, aud: "mcsv-user", iat, exp},
  signed with USER_TOKEN_SECRET; kid "user";
- the operator's token: OPERATOR_TOKEN itself, an opaque secret compared in constant time.

verify() answers the Principal a bearer token stands for, or raises InvalidCredential."""

from __future__ import annotations

import hmac
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
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": caller,
        "sub": caller,
        "aud": audience,
        "iat": issued,
        "exp": issued + settings.service_token_ttl_seconds,
    }
    return jwt.encode(
        claims, settings.service_token_secret, algorithm=ALGORITHM, headers={"kid": SERVICE_KIND}
    )


def user_token(settings: config.Settings, user_id: str, now: float | None = None) -> str:
    """The API token of a user (CreateUser answers it)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": USER_ISSUER,
        "sub": user_id,
        "aud": USER_AUDIENCE,
        "iat": issued,
        "exp": issued + settings.user_token_ttl_seconds,
    }
    return jwt.encode(
        claims, settings.user_token_secret, algorithm=ALGORITHM, headers={"kid": USER_KIND}
    )


def verify(settings: config.Settings, token: str, audience: str) -> Principal:
    """Who `token` stands for, when presented to the service named `audience`."""
    if hmac.compare_digest(token.encode(), settings.operator_token.encode()):
        return Principal(OPERATOR, OPERATOR)
    try:
        kind = jwt.get_unverified_header(token).get("kid")
        if kind == SERVICE_KIND:
            claims = _decode(token, settings.service_token_secret, audience, issuer=None)
            if claims["iss"] != claims["sub"]:
                raise InvalidCredential("iss and sub differ")
            return Principal(SERVICE_KIND, str(claims["sub"]))
        if kind == USER_KIND:
            claims = _decode(token, settings.user_token_secret, USER_AUDIENCE, USER_ISSUER)
            return Principal(USER, str(claims["sub"]))
    except jwt.PyJWTError as exc:
        raise InvalidCredential(str(exc)) from exc
    raise InvalidCredential("not a token of this system")


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
