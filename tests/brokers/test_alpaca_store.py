"""The store's REST sessions read the proxy and CA-bundle settings of the environment once, at start."""
from brokers.alpaca.credentials import Credentials
from brokers.alpaca.store import AlpacaStore
from config import load_config


def store(**overrides) -> AlpacaStore:
    cfg = load_config(overrides={"live.trading_url": "https://paper-api.example.test", **overrides})
    return AlpacaStore(Credentials("k", "s"), cfg.live)


def test_proxy_and_ca_bundle_come_from_the_environment_once(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    s = store()
    for client in (s.trading, s.data, s.cancel_client):
        session = client._session
        assert session.proxies.get("https") == "http://proxy.example.test:3128"
        assert session.verify == str(bundle)
        assert session.trust_env is False  # not read again on every request
    monkeypatch.setenv("HTTPS_PROXY", "http://other.example.test:1")  # a later change is not seen
    assert s.trading._session.proxies["https"] == "http://proxy.example.test:3128"


def test_no_proxy_is_honoured_and_nothing_is_set_without_variables(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                 "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    plain = store()
    assert "https" not in plain.trading._session.proxies and plain.trading._session.verify is True
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("NO_PROXY", "paper-api.example.test")
    assert "https" not in store().trading._session.proxies
