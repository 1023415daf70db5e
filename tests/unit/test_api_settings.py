"""The `api:` section of the config (netspectra.api.settings): defaults,
disabling, addresses, limits, the bearer token and TLS files, and the
one-line errors that name the dotted key."""

from __future__ import annotations

import textwrap

import pytest

from netspectra.api.settings import (
    DEFAULT_ADDRESS,
    DEFAULT_HTTP_ADDRESS,
    DEFAULT_KEEP_EPOCHS,
    DEFAULT_MAX_STREAMS,
    ApiConfig,
    TlsConfig,
)
from netspectra.config import ConfigError, defaults_yaml, load_config, parse_config

NCPUS = 2
TOKEN = "0123456789abcdef-token"


def api_of(text: str, env=None) -> ApiConfig:
    return parse_config(textwrap.dedent(text), env={} if env is None else env, ncpus=NCPUS).api


def error_of(text: str, env=None) -> str:
    with pytest.raises(ConfigError) as ei:
        api_of(text, env)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith("<string>: ")
    return msg.removeprefix("<string>: ")


@pytest.fixture
def pem(tmp_path):
    """Three readable files standing in for PEM certificates and a key."""
    out = {}
    for name in ("server.crt", "server.key", "ca.crt"):
        p = tmp_path / name
        p.write_text("-----BEGIN TEST-----\n-----END TEST-----\n")
        out[name] = str(p)
    return out


# --- defaults and disabling --------------------------------------------------------


def test_defaults():
    for text in ("", "api:", "api: {}", "sensor: {epoch: 2s}"):
        api = api_of(text)
        assert api == ApiConfig()
        assert (api.address, api.http_address) == ("127.0.0.1:9782", "127.0.0.1:9783")
        assert (api.keep_epochs, api.max_streams, api.token, api.tls) == (12, 32, "", None)
        assert api.enabled
    assert (DEFAULT_ADDRESS, DEFAULT_HTTP_ADDRESS, DEFAULT_KEEP_EPOCHS, DEFAULT_MAX_STREAMS) == (
        "127.0.0.1:9782",
        "127.0.0.1:9783",
        12,
        32,
    )
    assert load_config(None, env={}, ncpus=NCPUS).api == ApiConfig()


def test_defaults_yaml_documents_the_section():
    text = defaults_yaml()
    assert "\napi:\n" in text and "keep_epochs: 12" in text and "${NETSPECTRA_TOKEN}" in text
    assert parse_config(text, env={}, ncpus=NCPUS).api == ApiConfig()


def test_empty_address_disables():
    api = api_of('api: {address: ""}')
    assert (api.address, api.http_address, api.enabled) == ("", "127.0.0.1:9783", True)
    api = api_of('api: {http_address: ""}')
    assert (api.address, api.http_address, api.enabled) == ("127.0.0.1:9782", "", True)
    api = api_of('api: {address: "", http_address: ""}')
    assert (api.address, api.http_address, api.enabled) == ("", "", False)
    assert api_of("api: {address: null}").address == ""
    assert api_of("api: {address: '${ADDR:-}'}").address == ""  # an unset variable with an empty default


def test_addresses():
    api = api_of("""
        api:
          address: " 0.0.0.0:1234 "
          http_address: "[::]:8080"
    """)
    assert (api.address, api.http_address) == ("0.0.0.0:1234", "[::]:8080")
    assert api_of("api: {address: '${ADDR}'}", {"ADDR": "[::1]:9999"}).address == "[::1]:9999"
    assert api_of("api: {http_address: localhost:80}").http_address == "localhost:80"


@pytest.mark.parametrize(
    ("text", "env", "want"),
    [
        ("api: {address: nope}", {}, "api.address: 'nope' is not host:port (e.g. 127.0.0.1:9781,"),
        ("api: {address: 80}", {}, "api.address: 80 is not host:port"),
        ("api: {address: ':80'}", {}, "api.address: ':80' is not host:port"),
        ("api: {address: '::1:80'}", {}, "api.address: '::1:80' is not host:port"),
        ("api: {address: '127.0.0.1:0'}", {}, "api.address: '127.0.0.1:0': port 0 is out of range 1..65535"),
        ("api: {address: '127.0.0.1:70000'}", {}, "api.address: '127.0.0.1:70000': port 70000 is out of range"),
        ("api: {http_address: '[::1:80'}", {}, "api.http_address: '[::1:80' is not host:port"),
        ("api: {http_address: 'a b:80'}", {}, "api.http_address: 'a b:80' is not host:port"),
        ("api: {http_address: '${PORT}'}", {}, "api.http_address: environment variable PORT is not set"),
        ("api: {http_address: '${PORT}'}", {"PORT": "x"}, "api.http_address: 'x' is not host:port"),
    ],
)
def test_bad_addresses(text, env, want):
    assert error_of(text, env).startswith(want)


# --- limits ------------------------------------------------------------------------------


def test_keep_epochs_and_max_streams():
    assert api_of("api: {keep_epochs: 1, max_streams: 1}").keep_epochs == 1
    api = api_of("api: {keep_epochs: 1000, max_streams: 1024}")
    assert (api.keep_epochs, api.max_streams) == (1000, 1024)
    assert api_of("api: {keep_epochs: '${KEEP}'}", {"KEEP": "60"}).keep_epochs == 60
    assert api_of("api: {keep_epochs: ' 7 '}").keep_epochs == 7


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("api: {keep_epochs: 0}", "api.keep_epochs: 0 is out of range 1..1000"),
        ("api: {keep_epochs: 1001}", "api.keep_epochs: 1001 is out of range 1..1000"),
        ("api: {keep_epochs: -3}", "api.keep_epochs: -3 is out of range 1..1000"),
        ("api: {keep_epochs: lots}", "api.keep_epochs: 'lots' is not an integer"),
        ("api: {keep_epochs: 2.5}", "api.keep_epochs: 2.5 is not an integer"),
        ("api: {keep_epochs: true}", "api.keep_epochs: True is not an integer"),
        ("api: {max_streams: 0}", "api.max_streams: 0 is out of range 1..1024"),
        ("api: {max_streams: 1025}", "api.max_streams: 1025 is out of range 1..1024"),
    ],
)
def test_bad_limits(text, want):
    assert error_of(text) == want


# --- token ---------------------------------------------------------------------------------


def test_token():
    assert api_of(f"api: {{token: {TOKEN}}}").token == TOKEN
    assert api_of("api: {token: '${NETSPECTRA_TOKEN}'}", {"NETSPECTRA_TOKEN": TOKEN}).token == TOKEN
    assert api_of("api: {token: 'x${T}'}", {"T": "y" * 15}).token == "x" + "y" * 15  # 16: just enough
    assert api_of("api: {token: ''}").token == ""
    assert api_of("api: {token: null}").token == ""
    assert api_of("api: {token: '${NETSPECTRA_TOKEN:-}'}").token == ""


@pytest.mark.parametrize(
    ("text", "env", "want"),
    [
        ("api: {token: short}", {}, "api.token: too short (5 characters, at least 16)"),
        ("api: {token: '${T}'}", {"T": "abc"}, "api.token: too short (3 characters, at least 16)"),
        ("api: {token: 'x${T}'}", {"T": "y" * 14}, "api.token: too short (15 characters, at least 16)"),
        ("api: {token: 'has spaces in it, 0123456789'}", {}, "api.token: must be a string without spaces"),
        ("api: {token: ' 0123456789abcdefgh'}", {}, "api.token: must be a string without spaces"),
        ('api: {token: "0123456789\\tabcdefgh"}', {}, "api.token: must be a string without spaces"),
        ("api: {token: '${T}'}", {"T": "0123456789 abcdefgh"}, "api.token: must be a string without spaces"),
        ("api: {token: 12345678901234567890}", {}, "api.token: must be a string without spaces"),
        ("api: {token: [a]}", {}, "api.token: must be a string without spaces"),
        (
            "api: {token: '${NETSPECTRA_TOKEN}'}",
            {},
            "api.token: environment variable NETSPECTRA_TOKEN is not set (use ${NETSPECTRA_TOKEN:-default} for a default)",
        ),
        ("api: {token: '${bad name}'}", {}, "api.token: bad variable reference ${bad name}"),
    ],
)
def test_bad_token(text, env, want):
    assert error_of(text, env).startswith(want)


# --- TLS ---------------------------------------------------------------------------------------


def test_tls(pem):
    api = api_of(f"api: {{tls: {{cert: {pem['server.crt']}, key: {pem['server.key']}}}}}")
    assert api.tls == TlsConfig(cert=pem["server.crt"], key=pem["server.key"], client_ca="")
    api = api_of(
        f"""
        api:
          tls:
            cert: {pem["server.crt"]}
            key: "${{KEY}}"
            client_ca: {pem["ca.crt"]}
        """,
        {"KEY": pem["server.key"]},
    )
    assert api.tls == TlsConfig(pem["server.crt"], pem["server.key"], pem["ca.crt"])
    assert api_of("api: {tls: null}").tls is None
    assert api_of(f"api: {{tls: {{cert: {pem['server.crt']}, key: {pem['server.key']}, client_ca: ''}}}}").tls == (
        TlsConfig(pem["server.crt"], pem["server.key"])
    )


def test_bad_tls(pem, tmp_path):
    crt, key = pem["server.crt"], pem["server.key"]
    cases = [
        (f"api: {{tls: {{cert: {crt}}}}}", "api.tls: missing 'key' (a PEM file)"),
        (f"api: {{tls: {{key: {key}}}}}", "api.tls: missing 'cert' (a PEM file)"),
        (f"api: {{tls: {{cert: '', key: {key}}}}}", "api.tls: missing 'cert' (a PEM file)"),
        ("api: {tls: {}}", "api.tls: missing 'cert' (a PEM file)"),
        (
            f"api: {{tls: {{cert: {tmp_path}/absent.crt, key: {key}}}}}",
            f"api.tls.cert: cannot read {tmp_path}/absent.crt: No such file or directory",
        ),
        (
            f"api: {{tls: {{cert: {crt}, key: {tmp_path}}}}}",
            f"api.tls.key: cannot read {tmp_path}: a directory, not a regular file",
        ),
        (
            f"api: {{tls: {{cert: {crt}, key: {key}, client_ca: /nonexistent/ca.crt}}}}",
            "api.tls.client_ca: cannot read /nonexistent/ca.crt: No such file or directory",
        ),
        (f"api: {{tls: {{cert: [1], key: {key}}}}}", "api.tls.cert: [1] is not a file path"),
        (f"api: {{tls: {{cert: {crt}, key: '${{NOKEY}}'}}}}", "api.tls.key: environment variable NOKEY is not set"),
        (f"api: {{tls: {{cert: {crt}, key: {key}, ca: {crt}}}}}", "api.tls.ca: unknown option (valid: cert, key"),
        ("api: {tls: yes}", "api.tls: expected a mapping, got a boolean"),
        (f"api: {{tls: [{crt}]}}", "api.tls: expected a mapping, got a list"),
    ]
    for text, want in cases:
        assert error_of(text).startswith(want), text


# --- the section itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("api: []", "api: expected a mapping, got a list"),
        ("api: 9782", "api: expected a mapping, got"),
        ("api: {adress: x}", "api.adress: unknown option (did you mean 'address'?)"),
        ("api: {keep: 3}", "api.keep: unknown option"),
        ("api: {grpc: {port: 1}}", "api.grpc: unknown option (valid: address, http_address, keep_epochs"),
    ],
)
def test_bad_section(text, want):
    assert error_of(text).startswith(want)


def test_errors_name_the_file(tmp_path):
    p = tmp_path / "netspectra.yaml"
    p.write_text("sensor:\n  epoch: 1s\napi:\n  address: 127.0.0.1:9782\n  token: tiny\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(p), env={}, ncpus=NCPUS)
    assert str(ei.value) == f"{p}: api.token: too short (4 characters, at least 16)"
    p.write_text(f"api:\n  token: {TOKEN}\n  keep_epochs: 3\n  http_address: ''\n")
    api = load_config(str(p), env={}, ncpus=NCPUS).api
    assert api == ApiConfig(address="127.0.0.1:9782", http_address="", keep_epochs=3, token=TOKEN)
