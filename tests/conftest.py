"""Fixtures for the whole suite."""
from __future__ import annotations

import pytest

from features.cache import FeatureCache


@pytest.fixture(autouse=True, scope="session")
def feature_cache_outside_the_repository(tmp_path_factory):
    """Runs with the default config (``features.cache`` on, ``cache_dir`` relative to the working
    directory) keep their feature cache in a temporary folder of the session, not in the repository.
    A cache given an absolute folder (the cache's own tests) is left where it is."""
    root = tmp_path_factory.mktemp("feature-cache")
    configured = FeatureCache.from_config.__func__

    def from_config(cls, config):
        cache = configured(cls, config)
        if cache is not None and not cache.directory.is_absolute():
            cache = FeatureCache(root / cache.directory, cache.dtype)
        return cache

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FeatureCache, "from_config", classmethod(from_config))
        yield root


# ---- PostgreSQL ------------------------------------------------------------------------------------
POSTGRES_ENV = "TRADER_TEST_POSTGRES_URL"


def _admin_engine():
    """An engine on the test server's admin URL (``.ci/postgres.sh``), AUTOCOMMIT (CREATE DATABASE
    runs outside a transaction); skip without the variable, fail without it under CI."""
    import os

    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} unset under CI: .ci/run starts a PostgreSQL server and sets it")
        pytest.skip(f"{POSTGRES_ENV} unset: no PostgreSQL server (start one with .ci/postgres.sh)")
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def terminate_connections(admin_engine, database: str) -> int:
    """Cut every connection to ``database`` (the server rolls back their open transactions): a
    dropped connection, for the retry tests, and before a DROP DATABASE."""
    from sqlalchemy import text

    with admin_engine.connect() as conn:
        return len(conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database}).all())


@pytest.fixture
def postgres_admin():
    engine = _admin_engine()
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_admin):
    """A fresh, empty database on the test server for one test (unique name: safe under xdist), its
    SQLAlchemy URL; dropped afterwards, its leftover connections cut first."""
    import uuid

    from sqlalchemy import text

    name = f"test_{uuid.uuid4().hex[:16]}"
    with postgres_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield postgres_admin.url.set(database=name).render_as_string(hide_password=False)
    terminate_connections(postgres_admin, name)
    with postgres_admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_url(request, tmp_path):
    """A new journal's URL on each backend: a SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        from brokers.journal import sqlite_url

        return sqlite_url(tmp_path / "journal.sqlite")
    return request.getfixturevalue("postgres_url")
