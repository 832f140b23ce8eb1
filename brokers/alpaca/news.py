"""Alpaca's historical news (Benzinga's headlines) on alpaca-py's ``NewsClient``.

:func:`news_client` builds the client (``live.data_url`` overrides the URL, the local test server's in
tests); :func:`news_pages` yields the articles of some symbols between two times one page at a time
(Alpaca's ``GET /v1beta1/news``, 50 articles a page at most, oldest first, following
``next_page_token``), each a dict in Alpaca's JSON shape (``id``, ``headline``, ``summary``,
``created_at``, ``symbols`` ...).

Rate limit: alpaca-py's ``RESTClient`` retries a 429 (and 504) answer by itself, waiting a fixed time
between attempts; ``NewsClient`` takes no retry settings, so :func:`news_client` sets the client's
(``live.retry_attempts`` attempts in all, ``live.retry_max_seconds`` apart: Alpaca's limit is per
minute, so a short wait would only be refused again). Past them, and on any other refusal, the
request fails with a one-line :class:`common.errors.UserError` (no key in it).

Licence: the articles are Benzinga's, served to an Alpaca account holder under Alpaca's market data
terms; the project ships none (check Alpaca's terms before sharing a downloaded file).
"""
from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence

import pandas as pd
import requests

from brokers.alpaca.credentials import Credentials, redact
from common.errors import UserError

PAGE_SIZE = 50  # Alpaca's most articles per page
SYMBOLS_PER_REQUEST = 50  # symbols named in one request (the query string stays short)
RETRY_CODES = [429, 504]


def news_client(credentials: Credentials, live_cfg):
    """alpaca-py's ``NewsClient`` (raw JSON) with the retries of ``live.retry_*`` and the HTTP timeout
    ``live.request_timeout_seconds``. alpaca-py 0.44 (pinned) has no public setting for either: the
    client's ``_retry*`` attributes and its session's default timeout are set here."""
    from alpaca.data.historical.news import NewsClient

    client = NewsClient(credentials.key_id, credentials.secret_key, raw_data=True,
                        url_override=live_cfg.data_url or None)
    client._retry = max(live_cfg.retry_attempts - 1, 0)  # retries after the first attempt
    client._retry_wait = live_cfg.retry_max_seconds
    client._retry_codes = list(RETRY_CODES)
    session = client._session
    session.request = functools.partial(session.request, timeout=live_cfg.request_timeout_seconds)
    return client


def rfc3339(stamp) -> str:
    """A time (naive: UTC) as Alpaca's queries take it."""
    stamp = pd.Timestamp(stamp)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def news_pages(client, symbols: Sequence[str], start, end) -> Iterator[list[dict]]:
    """The articles tagged with any of ``symbols`` created between ``start`` and ``end`` (inclusive),
    oldest first, one page (at most :data:`PAGE_SIZE` articles) at a time. ``symbols``: at most
    :data:`SYMBOLS_PER_REQUEST`."""
    if not symbols:
        return
    if len(symbols) > SYMBOLS_PER_REQUEST:
        raise ValueError(f"at most {SYMBOLS_PER_REQUEST} symbols a request, not {len(symbols)}")
    params = {"symbols": ",".join(symbols), "start": rfc3339(start), "end": rfc3339(end),
              "sort": "asc", "limit": PAGE_SIZE}
    while True:
        response = _get(client, params) or {}
        yield list(response.get("news") or [])
        token = response.get("next_page_token")
        if not token:
            return
        params["page_token"] = token


def _get(client, params: dict) -> dict:
    host = str(getattr(client._base_url, "value", client._base_url))
    secrets = (client._api_key, client._secret_key)
    try:
        return client.get("/news", dict(params))
    except (requests.ConnectionError, requests.Timeout) as exc:
        problem = "no connection" if isinstance(exc, requests.ConnectionError) else "timed out"
        raise UserError(f"Alpaca news unreachable at {host}: {problem}; run the same command again to "
                        f"resume") from None
    except Exception as exc:  # alpaca-py's APIError
        status = getattr(exc, "status_code", None)
        if status is None:
            raise
        message = redact(_message(exc), secrets)
        if status in (401, 403):
            raise UserError(f"Alpaca refused the keys for news (HTTP {status}: {message}); check "
                            f"APCA_API_KEY_ID and APCA_API_SECRET_KEY") from None
        if status in RETRY_CODES:
            raise UserError(f"Alpaca news: HTTP {status} ({message}) after {client._retry + 1} attempts "
                            f"(live.retry_attempts); run the same command again later to resume") from None
        raise UserError(f"Alpaca news request failed: HTTP {status}: {message}") from None


def _message(exc: Exception) -> str:
    text = str(exc)
    try:
        return str(json.loads(text).get("message", text))
    except (ValueError, AttributeError):
        return text.splitlines()[0] if text else type(exc).__name__
