"""The dashboard's web app (FastAPI): pages rendered from one Jinja2 template, a JSON API per view, and
the controls, behind tokens.

Access (``[dashboard]``, README "Dashboard"): without any token the dashboard only reads and only on a
loopback address. With tokens, every page and answer needs one: the control token (``token`` or
DASHBOARD_TOKEN) reads and controls, the read token (``read_token`` or DASHBOARD_READ_TOKEN) only reads.
A browser brings it once as ``?token=``; the answer moves it into an HttpOnly, SameSite=Strict cookie
and redirects to the address without it, so it stays out of the address bar, the history and any
Referer. A control also needs the ``X-Dashboard-Control`` header, which no other site's form can send.
Tokens are compared in constant time and never logged (there is no access log with query strings).
"""
from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
import time
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from dashboard.sources import ACTIONS, Source

log = logging.getLogger("dashboard")

HERE = Path(__file__).resolve().parent
VIEWS = {"overview": "Overview", "positions": "Positions", "orders": "Orders and fills", "risk": "Risk",
         "models": "Models", "chart": "Chart", "logs": "Logs"}
COOKIE = "dashboard_token"
CONTROL_HEADER = "X-Dashboard-Control"
RESET_CONFIRMATION = "RESET"
SECURITY_HEADERS = {
    # plotly.js sets inline styles on the elements it draws: styles may be inline, scripts never
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class Tokens:
    """The control and read tokens (the environment over the config); ``level(given)``: what a token
    may do: ``control``, ``read`` or None."""

    def __init__(self, control: str = "", read: str = ""):
        self.control, self.read = control, read

    @classmethod
    def from_config(cls, cfg) -> Tokens:
        return cls(os.environ.get("DASHBOARD_TOKEN") or cfg.dashboard.token,
                   os.environ.get("DASHBOARD_READ_TOKEN") or cfg.dashboard.read_token)

    @property
    def required(self) -> bool:
        return bool(self.control or self.read)

    def level(self, given: str | None) -> str | None:
        if not self.required:
            return "read"
        if given:
            if self.control and hmac.compare_digest(given.encode(), self.control.encode()):
                return "control"
            if self.read and hmac.compare_digest(given.encode(), self.read.encode()):
                return "read"
        return None


class ControlRequest(BaseModel):
    action: str
    symbol: str | None = None
    confirm: str | None = None


def _given_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def _age(as_of: str | None) -> float | None:
    if not as_of:
        return None
    then = dt.datetime.fromisoformat(as_of)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return max(0.0, (now - then.replace(tzinfo=None)).total_seconds())


def create_app(source: Source, cfg, *, tokens: Tokens | None = None) -> FastAPI:
    """The app over ``source``; ``tokens``: from the config and environment when not given."""
    tokens = tokens or Tokens.from_config(cfg)
    settings = cfg.dashboard
    app = FastAPI(title="trader dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.source = source
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    plotly_js = Path(__import__("plotly").__file__).parent / "package_data" / "plotly.min.js"

    @app.middleware("http")
    async def guard(request: Request, call_next):
        started = time.perf_counter()
        path = request.url.path
        query_token = request.query_params.get("token")
        if query_token is not None and tokens.level(query_token) is not None:
            # into the cookie, out of the address bar
            kept = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = path + ("?" + urlencode(kept) if kept else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, query_token, httponly=True, samesite="strict", path="/")
        elif path.startswith("/static/") or path in ("/healthz", "/favicon.ico"):
            response = await call_next(request)
        else:
            level = tokens.level(_given_token(request))
            if level is None:
                response = (JSONResponse({"detail": "a dashboard token is needed"}, status_code=401)
                            if path.startswith("/api/") else
                            HTMLResponse(_TOKEN_PAGE, status_code=401))
            else:
                request.state.level = level
                response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        if not path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        # the path only: a query string may hold a token
        log.debug("%s %s %d %.1f ms", request.method, path, response.status_code, (time.perf_counter() - started) * 1e3)
        return response

    def answer(data: dict) -> dict:
        """A view's data with its age and whether it is stale (a finished run never is)."""
        age = _age(data.get("as_of")) if source.kind == "live" else None
        return {**data, "age_seconds": age, "stale": age is not None and age > settings.stale_after_seconds}

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly():
        return FileResponse(plotly_js, media_type="text/javascript")

    def page(request: Request, view: str):
        level = request.state.level
        return templates.TemplateResponse(request, "page.html", {
            "view": view, "views": VIEWS, "title": source.title(), "kind": source.kind,
            "controls": source.controls_allowed and level == "control",
            "read_only_reason": _read_only_reason(source, tokens, level),
            "refresh_ms": int(settings.refresh_seconds * 1000), "stale_after": settings.stale_after_seconds,
            "symbols": source.symbols(), "reset_confirmation": RESET_CONFIRMATION})

    @app.get("/", response_class=HTMLResponse)
    def overview_page(request: Request):
        return page(request, "overview")

    @app.get("/{view}", response_class=HTMLResponse)
    def view_page(request: Request, view: str):
        if view not in VIEWS:
            raise HTTPException(404, f"no view {view!r}")
        return page(request, view)

    @app.get("/api/overview")
    def api_overview():
        return answer(source.overview())

    @app.get("/api/positions")
    def api_positions():
        return answer(source.positions())

    @app.get("/api/orders")
    def api_orders(limit: int = Query(200, ge=1, le=1000), offset: int = Query(0, ge=0),
                   symbol: str | None = None, status: str | None = None):
        return answer(source.orders(limit=limit, offset=offset, symbol=symbol or None, status=status or None))

    @app.get("/api/risk")
    def api_risk():
        return answer(source.risk())

    @app.get("/api/models")
    def api_models():
        return answer(source.models())

    @app.get("/api/chart")
    def api_chart(symbol: str | None = None, bars: int = Query(500, ge=10, le=5000)):
        symbols = source.symbols()
        if not symbols:
            return answer({"as_of": None, "symbol": None, "candles": None, "note": "no symbols yet"})
        symbol = symbol or symbols[0]
        if symbol not in symbols:
            raise HTTPException(404, f"no symbol {symbol!r} in this {source.kind}")
        return answer(source.chart(symbol, bars))

    @app.get("/api/logs")
    def api_logs(which: str = Query("session", pattern="^(session|decisions|events)$"), q: str = ""):
        return answer(source.logs(which, q, settings.log_lines))

    @app.get("/api/controls")
    def api_controls(request: Request):
        return {**source.controls(), "allowed": source.controls_allowed and request.state.level == "control"}

    @app.post("/api/controls")
    def api_control(request: Request, body: ControlRequest):
        if not source.controls_allowed:
            raise HTTPException(403, "a finished run takes no controls")
        if request.state.level != "control":
            raise HTTPException(403, "controls need the control token (read-only access)")
        if request.headers.get(CONTROL_HEADER) != "1":
            raise HTTPException(403, f"controls need the {CONTROL_HEADER} header")
        if body.action not in ACTIONS:
            raise HTTPException(422, f"unknown control {body.action!r}: one of {', '.join(ACTIONS)}")
        if body.action == "reset_kill_switch" and body.confirm != RESET_CONFIRMATION:
            raise HTTPException(422, f"resetting the kill switch needs the confirmation {RESET_CONFIRMATION!r}")
        symbol = (body.symbol or "").strip().upper() or None
        if symbol is not None and (body.action != "flatten" or symbol not in source.symbols()):
            raise HTTPException(422, f"{symbol}: not a symbol of this session" if body.action == "flatten"
                                else f"{body.action} takes no symbol")
        who = f"dashboard {request.client.host if request.client else '?'}"
        control_id = source.request_control(body.action, who=who, symbol=symbol)
        log.warning("control %d asked: %s%s by %s", control_id, body.action, f" {symbol}" if symbol else "", who)
        return {"id": control_id, "status": "pending",
                "message": "the session applies it at its next bar; see Controls for its outcome"}

    @app.exception_handler(FileNotFoundError)
    def missing(_request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    # after the plotly route, which it would otherwise shadow
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    return app


def _read_only_reason(source: Source, tokens: Tokens, level: str) -> str | None:
    if not source.controls_allowed:
        return "a finished run: read-only"
    if not tokens.control:
        return "read-only: start the dashboard with DASHBOARD_TOKEN set to enable controls"
    if level != "control":
        return "read-only link"
    return None


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, tokens: Tokens) -> None:
    """ValueError for a non-loopback address without a token: anyone on the network would see the
    account (and, with a control token leaked, steer it); use an SSH tunnel instead."""
    if not is_loopback(host) and not tokens.required:
        raise ValueError(f"dashboard.host = {host} is reachable from other machines: set DASHBOARD_TOKEN (or "
                         "DASHBOARD_READ_TOKEN) first, or keep 127.0.0.1 and use an SSH tunnel (README)")


_TOKEN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>token needed</title></head>
<body><h1>A dashboard token is needed</h1><p>Open the link you were given (it ends in <code>?token=...</code>).</p>
</body></html>"""

