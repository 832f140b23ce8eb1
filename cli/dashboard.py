"""``python run.py dashboard``: a run folder or a live session in the browser (``dashboard``)."""
from __future__ import annotations

import logging
from pathlib import Path

from cli.common import add_config_option
from common.errors import UserError
from config import load_config

log = logging.getLogger("dashboard")


def add_arguments(parser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", metavar="DIR", help="a backtest or replay run folder, or a live state folder "
                                                     "(its journal.sqlite and live.log; default: live.state_dir)")
    source.add_argument("--journal", metavar="URL", help="a live journal's SQLAlchemy URL (sqlite:///... or "
                                                         "postgresql+psycopg://...)")
    parser.add_argument("--logs", metavar="DIR", help="with --journal: the state folder whose live.log the Logs view shows")
    parser.add_argument("--host", help="address to bind (default: dashboard.host, 127.0.0.1); another needs a token")
    parser.add_argument("--port", type=int, help="port (default: dashboard.port, 8050)")
    add_config_option(parser)


def build(args):
    """(app, host, port) for the arguments; UserError for a missing source or an unsafe binding."""
    from dashboard.app import Tokens, check_binding, create_app
    from dashboard.sources import open_source

    overrides = {k: v for k, v in (("dashboard.host", args.host), ("dashboard.port", args.port)) if v is not None}
    cfg = load_config(args.config, overrides)
    tokens = Tokens.from_config(cfg)
    try:
        check_binding(cfg.dashboard.host, tokens)
        run = Path(args.logs) if args.journal and args.logs else (Path(args.run) if args.run else None)
        source = open_source(cfg, run=run, journal=args.journal)
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    return create_app(source, cfg, tokens=tokens), cfg.dashboard.host, cfg.dashboard.port, tokens


def run(args) -> int:
    import uvicorn

    import time

    app, host, port, tokens = build(args)
    source = app.state.source
    started = time.perf_counter()
    source.overview()  # the first read of a journal takes its equity, fills and recent bars: before serving
    log.info("read %s in %.1f s", source.title(), time.perf_counter() - started)
    access = ("controls with the control token, reading with either token" if tokens.control else
              "read-only, a token needed" if tokens.required else "read-only (no DASHBOARD_TOKEN), this machine only")
    print(f"dashboard of {source.title()} at http://{host}:{port}/ ({access}); Ctrl-C stops it")
    # no access log: a request's query string may carry a token
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
    return 0
