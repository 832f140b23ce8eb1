"""The Docker deployment (Dockerfile, docker-compose.yml, deploy/) agrees with itself, with the config,
with the command line, with the README and with what the exporter really serves.

No Docker engine runs on the project's machines, so nothing here builds or starts a container: the
files are parsed (PyYAML, json, tomllib, the Dockerfile's instructions) and cross-checked, the image's
command is parsed by ``run.py``'s own parser, and every metric a Grafana panel queries is looked up in
the metric families of a real scrape (``tests/live/metrics_session.py``: a live session against the
local Alpaca server, its exporter scraped and parsed by prometheus_client's text parser).
"""
from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "trader.json"
LIVE_CONFIG = "deploy/live.toml"

# The exporter's metrics as the brief names them (ops/metrics.py implements them): the fast
# tests use these; the slow test checks the dashboard against a real scrape instead.
BRIEF_GAUGES = ["trader_equity_dollars", "trader_cash_dollars", "trader_daily_pnl_dollars", "trader_exposure_ratio",
                "trader_open_positions", "trader_open_orders", "trader_last_bar_age_seconds",
                "trader_last_bar_decided_timestamp_seconds", "trader_calibration_error",
                "trader_feature_drift_psi_max", "trader_features_drifting", "trader_risk_score",
                "trader_kill_switch_tripped", "trader_daily_loss_limit_reached", "trader_entries_halted",
                "trader_trading"]
BRIEF_COUNTERS = ["trader_bars_total", "trader_orders_total", "trader_order_rejections_total",
                  "trader_reconnects_total", "trader_broker_errors_total"]
BRIEF_HISTOGRAMS = ["trader_bar_to_order_seconds", "trader_feature_update_seconds", "trader_model_confidence"]
BRIEF_LABELS = {"trader_last_bar_age_seconds": ("symbol", "AAPL"), "trader_orders_total": ("status", "filled"),
                "trader_reconnects_total": ("stream", "bars")}


# --- reading the files -------------------------------------------------------------------------------

def _yaml(path: Path):
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def compose() -> dict:
    return _yaml(ROOT / "docker-compose.yml")


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def _exec_form(instructions, keyword: str) -> list[str]:
    values = [args for kw, args in instructions if kw == keyword]
    assert values, f"the Dockerfile has no {keyword}"
    form = json.loads(values[-1])  # the exec (JSON) form: no shell between tini and python, SIGTERM reaches the bot
    assert isinstance(form, list) and all(isinstance(a, str) for a in form), f"{keyword} is not in exec form"
    return form


def image_command() -> list[str]:
    instructions = dockerfile()
    return _exec_form(instructions, "ENTRYPOINT") + _exec_form(instructions, "CMD")


def env_example() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"deploy/.env.example: not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])[^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolated_variables(node) -> dict[str, bool]:
    """The variables compose interpolates in a parsed compose file (its strings, not its comments) ->
    whether one is required (``${VAR:?message}``); ``$$`` is compose's literal dollar."""
    found: dict[str, bool] = {}
    if isinstance(node, str):
        for match in _INTERPOLATION.finditer(node.replace("$$", "")):
            name = match.group(1) or match.group(3)
            found[name] = found.get(name, False) or (match.group(2) or "").endswith("?")
        return found
    parts = [*node.keys(), *node.values()] if isinstance(node, dict) else node if isinstance(node, list) else []
    for part in parts:
        for name, required in interpolated_variables(part).items():
            found[name] = found.get(name, False) or required
    return found


def readme_docker_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^(#+) Deployment with Docker\s*$", text, flags=re.M)
    assert match, 'README.md has no "Deployment with Docker" section'
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, flags=re.M)
    return rest[:end.start()] if end else rest


def live_config():
    from config import load_config

    return load_config(ROOT / LIVE_CONFIG)


def service_volumes(service: dict) -> dict[str, str]:
    """target -> source of a service's volumes (short syntax ``source:target[:mode]``)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        mounts[target] = source
    return mounts


def dashboard_panels() -> list[dict]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return [p for p in panels if p["type"] != "row"]


def dashboard_queries() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in dashboard_panels() for target in panel["targets"]]


# --- PromQL: which metrics a query names -------------------------------------------------------------

_PROMQL_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_PROMQL_MATCHERS = re.compile(r"\{[^{}]*\}")                     # {status="filled"}
_PROMQL_RANGE = re.compile(r"\[[^\[\]]*\]")                      # [5m], [$window], [1h:5m]
_PROMQL_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.I)
_PROMQL_MODIFIER = re.compile(r"\boffset\s+-?[\w$.]+|@\s*[\w.]+(?:\s*\(\s*\))?", re.I)
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_PROMQL_TOKEN = re.compile(r"\d[\w.]*|([A-Za-z_:][\w:]*)(\s*\()?")
_PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left",
                    "group_right", "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric (series) names a PromQL expression selects: what is left once strings, label
    matchers, ranges, ``by (...)``-style label lists, modifiers, Grafana variables, numbers, keywords
    and function names (a name followed by ``(``) are taken away."""
    text = _PROMQL_STRING.sub(" ", expr)
    text = _GRAFANA_VARIABLE.sub(" 1 ", text)
    for pattern in (_PROMQL_MATCHERS, _PROMQL_RANGE, _PROMQL_LABEL_LIST, _PROMQL_MODIFIER):
        text = pattern.sub(" ", text)
    names = set()
    for match in _PROMQL_TOKEN.finditer(text):
        name, call = match.group(1), match.group(2)
        if name and not call and name.lower() not in _PROMQL_KEYWORDS:
            names.add(name)
    return names


_SUFFIX_TYPES = {"_bucket": ("histogram",), "_sum": ("histogram", "summary"), "_count": ("histogram", "summary"),
                 "_total": ("counter",), "_created": ("counter", "histogram", "summary")}


def exposing_family(families: dict, series: str):
    """The metric family (as prometheus_client's text parser names it: counters without ``_total``,
    histograms without ``_bucket/_sum/_count``) whose scrape holds samples named ``series``; None if none."""
    candidates = [(series, None)] + [(series[:-len(suffix)], types) for suffix, types in _SUFFIX_TYPES.items()
                                     if series.endswith(suffix)]
    for name, types in candidates:
        family = families.get(name)
        if family is None or (types is not None and family.type not in types):
            continue
        if types is None and family.type in ("counter", "histogram", "summary"):
            continue  # a counter is queried as ..._total, a histogram by its _bucket/_sum/_count
        if any(sample.name == series for sample in family.samples):
            return family
    return None


def brief_families() -> dict:
    """The brief's metrics rendered by prometheus_client as the exporter renders them, read back by the
    same text parser as the live scrape: the fast tests' stand-in for a real scrape."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    for kind, names in ((Gauge, BRIEF_GAUGES), (Counter, BRIEF_COUNTERS), (Histogram, BRIEF_HISTOGRAMS)):
        for name in names:
            label = BRIEF_LABELS.get(name)
            metric = kind(name, name, [label[0]] if label else [], registry=registry)
            if label:
                metric.labels(label[1])  # a labelled series is exposed once it exists
    families = {family.name: family for family in text_string_to_metric_families(generate_latest(registry).decode())}
    # the text format serves a counter's or histogram's creation time as a gauge family of its own
    return {name: family for name, family in families.items()
            if not (name.endswith("_created") and name.removesuffix("_created") in families)}


def unexposed_queries(families: dict) -> list[str]:
    return [f"{title}: {expr} names {name}" for title, expr in dashboard_queries()
            for name in sorted(promql_metric_names(expr)) if exposing_family(families, name) is None]


# --- the PromQL reader itself ------------------------------------------------------------------------

@pytest.mark.parametrize("expr, names", [
    ("trader_equity_dollars", {"trader_equity_dollars"}),
    ('sum by (status) (increase(trader_orders_total{status="rejected", x=~"a|b"}[$window]))', {"trader_orders_total"}),
    ("histogram_quantile(0.99, sum(rate(trader_bar_to_order_seconds_bucket[5m])) by (le))",
     {"trader_bar_to_order_seconds_bucket"}),
    ("rate(a_seconds_sum[${window}]) / on(instance) group_left(symbol) rate(a_seconds_count[1h:5m] offset 1d)",
     {"a_seconds_sum", "a_seconds_count"}),
    ("time() - trader_last_bar_decided_timestamp_seconds > bool 3600", {"trader_last_bar_decided_timestamp_seconds"}),
    ('label_replace(up, "dst", "$1", "src", "(.*)") unless absent(b) and 1e3 < Inf', {"up", "b"}),
])
def test_promql_metric_names(expr, names):
    assert promql_metric_names(expr) == names


def test_a_series_maps_to_its_family_as_the_parser_names_it():
    families = brief_families()
    assert families["trader_orders"].type == "counter"                       # the parser drops _total
    assert exposing_family(families, "trader_orders_total").name == "trader_orders"
    assert exposing_family(families, "trader_bar_to_order_seconds_bucket").type == "histogram"
    assert exposing_family(families, "trader_model_confidence_count").name == "trader_model_confidence"
    assert exposing_family(families, "trader_equity_dollars").type == "gauge"
    for wrong in ("trader_orders", "trader_bar_to_order_seconds", "trader_equity_dollars_total",
                  "trader_equity_dollars_bucket", "trader_equity", "trader_orders_bucket"):
        assert exposing_family(families, wrong) is None, wrong


def test_the_container_config_passes_the_live_start_checks():
    """A container whose config the live start refuses would only restart, again and again."""
    from engine.live import check_warmup_bars
    from strategies import get_strategy

    cfg = live_config()
    check_warmup_bars(cfg, get_strategy(cfg.backtest.strategy))


# --- Dockerfile and the image's command ---------------------------------------------------------------

def test_dockerfile_basics():
    instructions = dockerfile()
    keywords = [kw for kw, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [args for kw, args in instructions if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the bot must not run as root"
    runs = [args for kw, args in instructions if kw == "RUN"]
    install = next(i for i, (kw, args) in enumerate(instructions)
                   if kw == "RUN" and "pip install --only-binary=:all: -r requirements.txt" in args)
    copy_pins = next(i for i, (kw, args) in enumerate(instructions) if kw == "COPY" and "requirements.txt" in args)
    assert copy_pins < install < keywords.index("USER")
    # LightGBM's wheel links libgomp.so.1, which python:3.11-slim lacks
    assert any("libgomp1" in args for args in runs)
    assert ("EXPOSE", str(live_config().live.metrics_port)) in instructions


def test_dockerfile_volumes_hold_the_state_and_the_runs():
    cfg = live_config()
    instructions = dockerfile()
    workdir = Path([args for kw, args in instructions if kw == "WORKDIR"][-1])
    volumes = set(_exec_form(instructions, "VOLUME"))
    assert cfg.live.state_dir in volumes
    assert str(workdir / cfg.backtest.out_root) in volumes                  # runs/, the backtests' outputs
    assert str(workdir / cfg.features.cache_dir).startswith(tuple(volumes))  # the feature cache is writable
    # the bot's named volumes in compose are exactly the image's volumes
    assert set(service_volumes(compose()["services"]["bot"])) == volumes


def test_the_image_runs_the_readme_command():
    command = image_command()
    assert command[:2] == ["python", "run.py"]
    assert " ".join(command) == f"python run.py live --config {LIVE_CONFIG}"
    assert shlex.join(command) in readme_docker_section()
    assert "command" not in compose()["services"]["bot"], "compose must run the image's command, the README's"


def test_the_image_command_parses_as_paper_trading_with_the_container_config():
    from run import build_parser

    args = build_parser().parse_args(image_command()[2:])
    assert args.command == "live" and args.config == LIVE_CONFIG
    assert not args.live_money and args.replay is None


def test_real_money_takes_the_override_file_and_the_confirmation_phrase():
    from cli.live import CONFIRMATION
    from run import build_parser

    override = DEPLOY / "compose.live-money.yml"
    command = _yaml(override)["services"]["bot"]["command"]
    assert command[:-1] == image_command()[2:] + ["--live-money", "--confirm-live-money"]
    assert interpolated_variables(command[-1]) == {"TRADER_CONFIRM_LIVE_MONEY": True}
    args = build_parser().parse_args(command[:-1] + [CONFIRMATION])
    assert args.live_money and args.confirm_live_money == CONFIRMATION
    section = readme_docker_section()
    assert CONFIRMATION in section and "deploy/compose.live-money.yml" in section


def test_dockerignore_keeps_secrets_and_local_state_out_but_not_the_code():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(fnmatch.fnmatch(prefix, pattern.rstrip("/").removeprefix("**/"))
                   or fnmatch.fnmatch(parts[i - 1], pattern.rstrip("/").removeprefix("**/"))
                   for pattern in patterns if not pattern.startswith("!")
                   for i, prefix in enumerate(prefixes, 1))

    for path in (".env", ".venv/bin/python", "runs/live/journal.sqlite", ".git/HEAD", "models/registry/m/x.json",
                 ".cache/features/k.npy", "brokers/__pycache__/journal.cpython-311.pyc"):
        assert ignored(path), path
    for path in ("requirements.txt", "run.py", LIVE_CONFIG, "config/default.toml", "data/sample/AAPL_data.csv",
                 "brokers/journal.py", "models/registry.py"):
        assert not ignored(path), path


# --- docker-compose.yml and the env file --------------------------------------------------------------

def test_compose_has_the_five_services_on_named_volumes():
    spec = compose()
    services = spec["services"]
    assert set(services) == {"bot", "postgres", "prometheus", "grafana", "dashboard"}
    declared = set(spec["volumes"])
    for name, service in services.items():
        mounts = service_volumes(service)
        named = {source for source in mounts.values() if not source.startswith((".", "/"))}
        assert named, f"{name} keeps its data on no named volume"
        assert named <= declared, f"{name}: volumes not declared at the top level: {named - declared}"
    assert service_volumes(services["postgres"])["/var/lib/postgresql/data"] in declared
    assert service_volumes(services["prometheus"])["/prometheus"] in declared
    assert service_volumes(services["grafana"])["/var/lib/grafana"] in declared
    assert services["bot"]["build"] == "."
    assert services["postgres"]["image"].split(":")[1].split("-")[0] == "15"


def test_compose_takes_every_variable_from_the_env_file_and_the_repo_holds_no_secret():
    example = env_example()
    used: dict[str, bool] = {}
    for path in (ROOT / "docker-compose.yml", DEPLOY / "compose.live-money.yml"):
        for name, required in interpolated_variables(_yaml(path)).items():
            used[name] = used.get(name, False) or required
    assert set(used) == set(example), (f"used, not in deploy/.env.example: {set(used) - set(example)}; "
                                       f"documented, never used: {set(example) - set(used)}")
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
                 "DASHBOARD_TOKEN"):
        assert used[name], f"{name}: compose must refuse to start without it (${{{name}:?...}})"
    secrets = [name for name in example if re.search(r"KEY|SECRET|PASSWORD|CONFIRM|URLS|TOKEN", name)]
    assert {"APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
            "TRADER_ALERT_URLS", "DASHBOARD_TOKEN", "DASHBOARD_READ_TOKEN"} <= set(secrets)
    assert all(example[name] == "" for name in secrets), "deploy/.env.example must hold no secret value"
    # nothing secret is written into a compose file: every value of a secret-looking key is interpolated
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"KEY|SECRET|PASSWORD|TOKEN", key):
                assert str(value).startswith("${"), f"{name}.{key} is written in the file"
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()


def test_compose_bot_reaches_the_journal_it_is_configured_with():
    from sqlalchemy.engine import make_url

    services = compose()["services"]
    url = make_url(live_config().live.journal)
    postgres = services["postgres"]["environment"]
    assert url.drivername == "postgresql+psycopg"
    assert url.host == "postgres" and (url.port or 5432) == 5432
    assert url.username == postgres["POSTGRES_USER"] and url.database == postgres["POSTGRES_DB"]
    assert url.password is None, "the journal URL is in the repo: its password comes from PGPASSWORD"
    # libpq reads PGPASSWORD: the bot gets the password PostgreSQL was given
    assert services["bot"]["environment"]["PGPASSWORD"] == postgres["POSTGRES_PASSWORD"]
    assert services["bot"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    environment = services["bot"]["environment"]
    assert {"APCA_API_KEY_ID", "APCA_API_SECRET_KEY"} <= set(environment)  # brokers/alpaca/credentials.py


def test_compose_dashboard_reads_the_bots_journal_and_state_and_needs_its_token():
    from cli.dashboard import add_arguments
    import argparse

    services = compose()["services"]
    dashboard = services["dashboard"]
    assert dashboard["image"] == services["bot"]["image"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(dashboard["command"][3:])  # after python run.py dashboard
    assert (ROOT / args.config).resolve() == (ROOT / LIVE_CONFIG).resolve() and args.host == "0.0.0.0"
    assert args.run is None and args.journal is None  # the config's journal and state folder
    cfg = live_config()
    mounts = service_volumes(dashboard)
    assert mounts[cfg.live.state_dir] == service_volumes(services["bot"])[cfg.live.state_dir]
    assert dashboard["environment"]["PGPASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert dashboard["environment"]["DASHBOARD_TOKEN"].startswith("${DASHBOARD_TOKEN:?")  # refused without it
    assert any(str(port).endswith(":8050") for port in dashboard["ports"])
    assert "/healthz" in " ".join(dashboard["healthcheck"]["test"])


# --- Prometheus ---------------------------------------------------------------------------------------

def test_prometheus_scrapes_the_bot_at_the_configured_port():
    cfg = live_config()
    assert cfg.live.metrics_host == "0.0.0.0", "the exporter must listen beyond loopback for Prometheus's container"
    assert cfg.live.metrics_port > 0
    prometheus = compose()["services"]["prometheus"]
    config_file = next(arg.split("=", 1)[1] for arg in prometheus["command"] if arg.startswith("--config.file="))
    mounts = service_volumes(prometheus)
    assert Path(mounts[config_file]).resolve() == (DEPLOY / "prometheus" / "prometheus.yml").resolve()
    scrape = _yaml(DEPLOY / "prometheus" / "prometheus.yml")
    targets = [(job.get("metrics_path", "/metrics"), target) for job in scrape["scrape_configs"]
               for static in job["static_configs"] for target in static["targets"]]
    assert ("/metrics", f"bot:{cfg.live.metrics_port}") in targets
    assert str(cfg.live.metrics_port) in [str(port) for port in compose()["services"]["bot"]["expose"]]


# --- Grafana ------------------------------------------------------------------------------------------

def test_grafana_provisioning_finds_the_datasource_and_the_dashboard():
    grafana = compose()["services"]["grafana"]
    mounts = service_volumes(grafana)
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert Path(mounts["/etc/grafana/provisioning"]).resolve() == provisioning.resolve()
    datasources = _yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    (prometheus,) = [d for d in datasources if d["type"] == "prometheus"]
    assert prometheus["url"] == "http://prometheus:9090"  # the compose service
    providers = _yaml(provisioning / "dashboards" / "trader.yml")["providers"]
    (provider,) = providers
    dashboards_dir = provider["options"]["path"]
    assert Path(mounts[dashboards_dir]).resolve() == DASHBOARD.parent.resolve()
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{dashboards_dir}/{DASHBOARD.name}"
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"]
    panels = dashboard_panels()
    ids = [p["id"] for p in dashboard["panels"]] + [p["id"] for row in dashboard["panels"] for p in row.get("panels", [])]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"], panel["title"]
        for node in [panel] + panel["targets"]:
            assert node["datasource"] == {"type": "prometheus", "uid": prometheus["uid"]}, panel["title"]
    used_variables = {v for _, expr in dashboard_queries() for v in re.findall(r"\$(\w+)", expr)}
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    assert used_variables <= defined | {"__rate_interval", "__interval", "__range"}


def test_the_dashboard_shows_every_metric_of_the_brief():
    queried = {name for _, expr in dashboard_queries() for name in promql_metric_names(expr)}
    families = brief_families()
    shown = {exposing_family(families, name).name for name in queried if exposing_family(families, name)}
    assert shown == set(families), f"not on the dashboard: {sorted(set(families) - shown)}"


def test_every_panel_queries_metrics_of_the_brief():
    assert unexposed_queries(brief_families()) == []


@pytest.mark.slow
def test_every_panel_queries_metrics_the_exporter_really_serves(tmp_path):
    """The families of a real scrape: a live session against the local Alpaca server with the exporter on."""
    from tests.live.metrics_session import exported_metric_families

    families = exported_metric_families(tmp_path)
    assert unexposed_queries(families) == []
    # the fast tests' stand-in is what the exporter serves
    missing = {name: family.type for name, family in brief_families().items()
               if name not in families or families[name].type != family.type}
    assert missing == {}


# --- README -------------------------------------------------------------------------------------------

def test_readme_documents_compose_every_variable_and_the_volumes():
    section = readme_docker_section()
    assert "docker compose up" in section
    for name in env_example():
        assert name in section, f"README's Docker section does not describe {name}"
    for volume in compose()["volumes"]:
        assert volume in section, f"README's Docker section does not name the volume {volume}"
    assert "deploy/.env.example" in section and LIVE_CONFIG in section
    assert "docker compose run --rm --no-deps bot backtest" in section
