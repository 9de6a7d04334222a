"""`s2ccrop.envvars`: how every S2CCROP_ variable is read."""

from __future__ import annotations

import pytest

from s2ccrop import envvars
from s2ccrop.errors import ConfigError


@pytest.mark.parametrize("value, default, want", [
    (None, False, False), (None, True, True), ("", True, True), ("  ", False, False),
    ("0", True, False), ("false", True, False), ("No", True, False), (" OFF ", True, False),
    ("1", False, True), ("yes", False, True), ("on", False, True), ("2", False, True),
])
def test_switches_read_alike(monkeypatch, value, default, want):
    if value is None:
        monkeypatch.delenv(envvars.DEBUG, raising=False)
    else:
        monkeypatch.setenv(envvars.DEBUG, value)
    assert envvars.switch(envvars.DEBUG, default) is want


def test_threads_is_a_whole_number_or_a_config_error(monkeypatch):
    monkeypatch.delenv(envvars.THREADS, raising=False)
    assert envvars.threads() is None
    monkeypatch.setenv(envvars.THREADS, " 3 ")
    assert envvars.threads() == 3
    monkeypatch.setenv(envvars.THREADS, "two")
    with pytest.raises(ConfigError, match="S2CCROP_THREADS='two' is not a whole number"):
        envvars.threads()


def test_paths_are_none_when_unset_or_empty(monkeypatch):
    monkeypatch.setenv(envvars.CACHE, "")
    assert envvars.path(envvars.CACHE) is None
    monkeypatch.setenv(envvars.CACHE, "/tmp/x")
    assert envvars.path(envvars.CACHE) == "/tmp/x"


def test_every_variable_is_described():
    names = [getattr(envvars, n) for n in dir(envvars) if n.isupper() and isinstance(getattr(envvars, n), str)]
    assert sorted(n for n in names if n.startswith("S2CCROP_")) == sorted(envvars.VARIABLES)
