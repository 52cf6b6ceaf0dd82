"""The performance knobs: ``server.event_loop``, the scrypt cost
(``passwords.check_cost``, ``pop3suite init --scrypt-n``) and the faster
dot-stuffer RETR uses (byte-identical to the core's)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from pop3suite.cli import main as cli_main
from pop3suite.server import config, passwords
from pop3suite.server.server import loop_factory

BASE = """
[server]
pop3_port = 11110
{line}
"""


def _parse(line: str) -> config.Settings:
    return config.parse(tomllib.loads(BASE.format(line=line)), Path("/lab/pop3suite.toml"))


@pytest.mark.parametrize("value", ["asyncio", "uvloop", "auto"])
def test_event_loop_values(value: str) -> None:
    assert _parse(f'event_loop = "{value}"').event_loop == value


def test_event_loop_default_is_asyncio() -> None:
    assert _parse("").event_loop == "asyncio"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'event_loop = "libuv"',
            "key 'server.event_loop': expected one of asyncio, uvloop, auto, got 'libuv'",
        ),
        ("event_loop = 1", "key 'server.event_loop': expected a string, got 1"),
    ],
)
def test_event_loop_bad_values(line: str, message: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        _parse(line)
    assert str(caught.value) == f"/lab/pop3suite.toml: {message}"


def test_loop_factory_asyncio() -> None:
    assert loop_factory("asyncio") == (None, "")


def test_loop_factory_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    factory, note = loop_factory("uvloop")
    assert factory is uvloop.new_event_loop and "uvloop" in note
    assert loop_factory("auto")[0] is uvloop.new_event_loop


def test_loop_factory_falls_back_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    factory, note = loop_factory("uvloop")
    assert factory is None and "not installed" in note and "asyncio" in note
    assert loop_factory("auto") == (None, "")


@pytest.mark.parametrize("n", [2, 2**10, 2**14, 2**17])
def test_check_cost_accepts_powers_of_two(n: int) -> None:
    passwords.check_cost(n)


@pytest.mark.parametrize("n", [0, 1, 3, 1000, 2**18, True, "1024"])
def test_check_cost_refuses(n: object) -> None:
    with pytest.raises(passwords.BadHash, match="power of two from 2 to 131072"):
        passwords.check_cost(n)  # type: ignore[arg-type]


def test_init_scrypt_n_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["init", str(tmp_path / "lab"), "--password", "pw", "--scrypt-n", "1024"]) == 0
    settings = config.load(tmp_path / "lab" / "pop3suite.toml")
    hashed = settings.accounts["alice"].password
    assert hashed.startswith("$scrypt$n=1024,r=8,p=1$")
    assert passwords.verify_password(hashed, b"pw")


def test_init_bad_scrypt_n_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["init", str(tmp_path / "lab"), "--password", "pw", "--scrypt-n", "1000"]) != 0
    assert "--scrypt-n: scrypt n must be a power of two" in capsys.readouterr().err
    assert not (tmp_path / "lab" / "pop3suite.toml").exists()
