"""The HTTP listener of ``bcctrack serve``: one-click opt-out (RFC 8058).

Update emails link to ``unsubscribe_base_url?token=<token>``. The operator
runs a TLS reverse proxy at that https URL, which forwards the requests to
``/unsubscribe`` on ``web_host:web_port``. This listener speaks plain HTTP
and serves that one path.

- ``POST`` with ``List-Unsubscribe=One-Click`` in the form body opts out the
  recipient of the notification that the token names. Mail providers send it
  when the customer uses their "unsubscribe" button.
- ``GET`` records nothing. It returns a page with a button that sends that
  POST, because mail security scanners fetch the links in an email without
  anybody clicking them.

The token is a capability, so it is never logged: the access log shows the
path without the query string, and opt-outs are logged by notification id.
"""

from __future__ import annotations

import asyncio
import logging
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from multidict import MultiDictProxy
from sqlalchemy import Engine

from mailhandler.optout import opt_out_by_token, shop_name_of_token
from mailhandler.render import templates_dir
from mailhandler.settings import Settings

log = logging.getLogger("bcctrack.web")
# aiohttp's own errors: malformed requests and failures outside the handlers.
protocol_log = logging.getLogger("bcctrack.web.protocol")

UNSUBSCRIBE_PATH = "/unsubscribe"
# A one-click body is "List-Unsubscribe=One-Click", a few dozen bytes with
# the token; 4 KiB leaves room for multipart boundaries.
MAX_BODY_SIZE = 4 * 1024
ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"
# The page's own form sets format=html to get a page back instead of text.
FORMAT_FIELD = "format"

MISSING_TOKEN = (
    "The opt-out link has no token. Open the link from the update email "
    "again, complete and unchanged."
)
INVALID_TOKEN = (
    "The opt-out link is invalid or was changed. Open the link from the "
    "update email again, complete and unchanged."
)
TWO_TOKENS = "The query string and the form body contain different tokens."
MISSING_ONE_CLICK = (
    f"The request body must contain {ONE_CLICK_FIELD}={ONE_CLICK_VALUE} (RFC 8058)."
)
BODY_TIMEOUT = "The request body did not arrive in time."
URL_TOO_LONG = (
    "The link is too long. Open the link from the update email again, "
    "complete and unchanged."
)
HEADER_TOO_LONG = "A request header is too long."
MALFORMED_REQUEST = "The request is not valid HTTP."
SERVER_ERROR = "The opt-out could not be recorded. Please try again later."
DONE = "Opt-out recorded: no more parcel updates from this shop go to this address."

# Every page is self-contained: no scripts, no external resources, no frames.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

_ENGINE = web.AppKey("engine", Engine)
_SETTINGS = web.AppKey("settings", Settings)


class WebListenerError(Exception):
    """The HTTP listener cannot start; the message names the address."""


def make_app(engine: Engine, settings: Settings) -> web.Application:
    """Build the aiohttp application that serves ``/unsubscribe``.

    Other paths get 404, and methods other than GET, HEAD and POST get 405.
    """
    app = web.Application(client_max_size=MAX_BODY_SIZE, middlewares=[_contain_errors])
    app[_ENGINE] = engine
    app[_SETTINGS] = settings
    app.router.add_get(UNSUBSCRIBE_PATH, show_confirmation)
    app.router.add_post(UNSUBSCRIBE_PATH, record_opt_out)
    return app


async def start_web(engine: Engine, settings: Settings) -> web.AppRunner:
    """Start the HTTP listener on ``web_host:web_port``; return its runner.

    ``keepalive_timeout`` also runs from the moment a connection opens, so a
    client that sends its headers slower than ``web_timeout`` is cut off.
    """
    runner = _Runner(
        make_app(engine, settings),
        access_log_class=_AccessLogger,
        access_log=log,
        logger=protocol_log,
        keepalive_timeout=settings.web_timeout,
        # After an early reply (413, 408) aiohttp reads and drops the rest of
        # the body for this long, so that the client sees the reply.
        lingering_time=settings.web_timeout,
        shutdown_timeout=5.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.web_host, settings.web_port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise WebListenerError(
            f"cannot listen on {settings.web_host}:{settings.web_port} "
            f"for HTTP: {error}"
        ) from error
    return runner


def warn_about_web_settings(settings: Settings) -> None:
    """Log the settings that keep one-click links from reaching the listener."""
    base_url = settings.unsubscribe_base_url
    if base_url is None:
        log.warning(
            "the HTTP listener runs but unsubscribe_base_url is not set: "
            "updates sent with these settings carry no one-click link"
        )
    elif urlsplit(base_url).path != UNSUBSCRIBE_PATH:
        log.info(
            "the reverse proxy must forward %s to %s on the HTTP listener",
            urlsplit(base_url).path or "/",
            UNSUBSCRIBE_PATH,
        )


async def show_confirmation(request: web.Request) -> web.Response:
    """Return the page on which the customer confirms the opt-out."""
    token = request.query.get("token", "")
    if not token:
        return _page(400, "invalid", reason=MISSING_TOKEN)
    shop_name = await asyncio.to_thread(
        shop_name_of_token,
        request.app[_ENGINE],
        request.app[_SETTINGS],
        token,
    )
    if shop_name is None:
        return _page(400, "invalid", reason=INVALID_TOKEN)
    return _page(200, "confirm", shop_name=shop_name)


async def record_opt_out(request: web.Request) -> web.Response:
    """Record the opt-out of a one-click POST, or of the page's form."""
    settings = request.app[_SETTINGS]
    try:
        async with asyncio.timeout(settings.web_timeout):
            form = await request.post()
    except TimeoutError:
        response = web.Response(status=408, text=BODY_TIMEOUT + "\n")
        # The rest of the body may still come; the connection is unusable.
        response.force_close()
        return response
    as_page = form.get(FORMAT_FIELD) == "html"

    token, problem = _token_of(request, form)
    if problem is None and form.get(ONE_CLICK_FIELD) != ONE_CLICK_VALUE:
        problem = MISSING_ONE_CLICK
    if problem is not None:
        return _reply(as_page, 400, "invalid", problem)

    engine = request.app[_ENGINE]
    recorded = await asyncio.to_thread(opt_out_by_token, engine, settings, token, "url")
    if not recorded:
        return _reply(as_page, 400, "invalid", INVALID_TOKEN)
    if not as_page:
        return _reply(as_page, 200, "done", DONE)
    shop_name = await asyncio.to_thread(shop_name_of_token, engine, settings, token)
    return _page(200, "done", shop_name=shop_name or "this shop")


def _token_of(
    request: web.Request, form: MultiDictProxy[Any]
) -> tuple[str, str | None]:
    """Return the token of a POST and, when it is unusable, the reason."""
    in_query = request.query.get("token", "")
    in_form = form.get("token", "")
    if not isinstance(in_form, str):
        in_form = ""
    if in_query and in_form and in_query != in_form:
        return "", TWO_TOKENS
    token = in_query or in_form
    if not token:
        return "", MISSING_TOKEN
    return token, None


def _reply(as_page: bool, status: int, page: str, text: str) -> web.Response:
    if as_page:
        return _page(status, page, reason=text)
    return web.Response(status=status, text=text + "\n", headers=_PAGE_HEADERS)


# TODO(page words in templates/i18n): the pages are in English only; they
# would follow the update's language once the i18n files carry their words.
_TITLES = {
    "confirm": "Unsubscribe from parcel updates",
    "done": "You are unsubscribed",
    "invalid": "This opt-out link does not work",
}


def _page(status: int, page: str, **values: str) -> web.Response:
    html = _pages().render(page=page, title=_TITLES[page], **values)
    return web.Response(
        status=status,
        text=html,
        content_type="text/html",
        charset="utf-8",
        headers=_PAGE_HEADERS,
    )


@cache
def _pages() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir() / "web"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("optout.html.j2")


@web.middleware
async def _contain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    # A failing store must cost one request a 500, never the listener.
    try:
        response = await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return web.Response(status=500, text=SERVER_ERROR + "\n")
    return response


class _AccessLogger(AbstractAccessLogger):
    """One log line per request, with the path but not the token's query."""

    def log(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float
    ) -> None:
        self.logger.info(
            "%s %s %s %.3fs", request.method, request.path, response.status, time
        )


class _PlainErrorHandler(RequestHandler):
    """A connection handler whose replies to unparsable requests quote nothing.

    aiohttp's own reply quotes up to 100 bytes of the bad line, which may be
    part of an opt-out token.
    """

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            status, message = _rejection(exc)
            log.info(
                "request from %s rejected with %d: %s", request.remote, status, message
            )
            message += "\n"
        return super().handle_error(request, status, exc, message)


def _rejection(error: HttpProcessingError) -> tuple[int, str]:
    """Return the status and the reply sentence for an unparsable request."""
    if not isinstance(error, LineTooLong):
        return 400, MALFORMED_REQUEST
    # The first argument is the start of the line that was too long: a
    # request target starts with "/", a header with its name.
    line = error.args[0] if error.args else b""
    if isinstance(line, bytes | bytearray | str) and line[:1] in (b"/", "/"):
        return 414, URL_TOO_LONG
    return 431, HEADER_TOO_LONG


class _Server(web.Server):
    """aiohttp's low-level server, with connections that quote no request bytes."""

    def __call__(self) -> RequestHandler:
        # NOTE: this repeats aiohttp 3.x Server.__call__, reading its private
        # _loop and _kwargs, to choose the handler class.
        return _PlainErrorHandler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    """An AppRunner that serves the application through ``_Server``."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _Server(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


class _DropMalformedRequests(logging.Filter):
    """Drop aiohttp's tracebacks of malformed requests.

    aiohttp logs each one at ERROR with the request's first bytes, which may
    contain an opt-out token. The client gets a 400 and the access log gets
    its line, so the traceback would only repeat what a client sent.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, HttpProcessingError)


protocol_log.addFilter(_DropMalformedRequests())
