"""OAuth 2.0 client-credentials tokens for the carriers that use them.

UPS, FedEx and USPS hand out bearer tokens for a client id and secret. An
``OAuthAdapter`` fetches one token per credential, keeps it until shortly
before it expires, and on a 401 from the tracking API fetches a fresh token
and sends the request once more: a token can be revoked before its expiry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, field_validator

from mailhandler.carriers.base import (
    DEFAULT_TIMEOUT,
    Credentials,
    HttpAdapter,
    parse_model,
)
from mailhandler.carriers.errors import CarrierAuthError
from mailhandler.carriers.transport import decode_json, excerpt, send

log = logging.getLogger("bcctrack.poller")

# A token is renewed this many seconds before its stated expiry,
# so that a request never leaves with a token that lapses on the way.
EXPIRY_MARGIN = 60.0
# Lifetime assumed when a token response has no expires_in.
DEFAULT_LIFETIME = 600.0


class TokenResponse(BaseModel):
    """The fields of an RFC 6749 token response that bcctrack uses."""

    model_config = ConfigDict(extra="ignore")

    access_token: str
    # UPS sends expires_in as a string ("14399"), FedEx and USPS as a number.
    expires_in: float | None = None

    @field_validator("access_token")
    @classmethod
    def _check_token(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty access_token")
        return value


@dataclass
class _Token:
    value: str
    expires_at: float


class TokenCache:
    """Bearer tokens per credential, each kept until shortly before expiry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def current(self, key: tuple[str, str]) -> str | None:
        """Return the cached token for ``key`` while it is still valid."""
        token = self._tokens.get(key)
        if token is None or self._clock() >= token.expires_at:
            return None
        return token.value

    def store(self, key: tuple[str, str], value: str, lifetime: float) -> None:
        """Keep ``value`` for ``lifetime`` seconds less the safety margin."""
        usable = max(0.0, lifetime - EXPIRY_MARGIN)
        self._tokens[key] = _Token(value, self._clock() + usable)

    def discard(self, key: tuple[str, str], value: str) -> None:
        """Forget ``value``, unless another request has already replaced it."""
        token = self._tokens.get(key)
        if token is not None and token.value == value:
            del self._tokens[key]

    def lock(self, key: tuple[str, str]) -> asyncio.Lock:
        """Return the lock that lets one request at a time fetch for ``key``."""
        return self._locks.setdefault(key, asyncio.Lock())


class OAuthAdapter(HttpAdapter):
    """An adapter whose API takes a client-credentials bearer token."""

    token_path: ClassVar[str]

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(base_url, credentials, client=client, timeout=timeout)
        self._tokens = TokenCache(clock)

    def has_credentials(self, credentials: Credentials | None = None) -> bool:
        chosen = credentials or self.credentials
        return bool(chosen.client_id and chosen.client_secret)

    def _token_request(self, credentials: Credentials) -> httpx.Request:
        """Build the carrier's token request for ``credentials``."""
        raise NotImplementedError

    async def _send_authorized(
        self,
        build: Callable[[str], httpx.Request],
        credentials: Credentials,
    ) -> httpx.Response:
        """Send the request that ``build`` makes for a bearer token.

        A 401 makes the adapter drop the token, fetch a new one and send the
        request once more; a second 401 raises CarrierAuthError.
        """
        token = await self._access_token(credentials)
        try:
            return await self._send(build(token), credentials)
        except CarrierAuthError as error:
            if error.status != 401:
                raise
            log.info(
                "%s: 401 with a cached token for credential %r; fetching a new one",
                self.name,
                credentials.label,
            )
            self._tokens.discard(_key(credentials), token)
        token = await self._access_token(credentials)
        return await self._send(build(token), credentials)

    async def _send(
        self, request: httpx.Request, credentials: Credentials
    ) -> httpx.Response:
        return await send(
            self._client, self.name, request, credential=credentials.label
        )

    async def _access_token(self, credentials: Credentials) -> str:
        key = _key(credentials)
        cached = self._tokens.current(key)
        if cached is not None:
            return cached
        async with self._tokens.lock(key):
            cached = self._tokens.current(key)
            if cached is not None:
                return cached
            token = await self._fetch_token(credentials)
            self._tokens.store(key, token.access_token, _lifetime(token))
            return token.access_token

    async def _fetch_token(self, credentials: Credentials) -> TokenResponse:
        request = self._token_request(credentials)
        response = await self._send(request, credentials)
        # RFC 6749 returns invalid_client with 400 or 401. Both mean that the
        # credential does not work, and retrying will not change that.
        if response.status_code == 400:
            raise CarrierAuthError(
                self.name,
                f"token request rejected (400): {excerpt(response)}",
                credentials.label,
                status=400,
            )
        if response.status_code != 200:
            raise CarrierAuthError(
                self.name,
                f"token request returned {response.status_code}: {excerpt(response)}",
                credentials.label,
                status=response.status_code,
            )
        token = parse_model(TokenResponse, decode_json(response, self.name), self.name)
        log.debug(
            "%s: new token for credential %r, valid %.0f s",
            self.name,
            credentials.label,
            _lifetime(token),
        )
        return token


def _key(credentials: Credentials) -> tuple[str, str]:
    return (credentials.label, credentials.client_id)


def _lifetime(token: TokenResponse) -> float:
    if token.expires_in is None or token.expires_in <= 0:
        return DEFAULT_LIFETIME
    return token.expires_in
