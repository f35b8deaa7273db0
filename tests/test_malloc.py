"""The entry points restart once with tcmalloc preloaded when it is installed, and only then."""

import sys

import pytest

from encdec.utils import malloc


@pytest.fixture
def fake_library(tmp_path, monkeypatch):
    (tmp_path / malloc.LIBRARY_NAME).write_bytes(b"")
    monkeypatch.setattr(malloc, "LIBRARY_DIRS", (str(tmp_path),))
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("ENCDEC_TCMALLOC", raising=False)
    calls = []
    monkeypatch.setattr(malloc.os, "execve", lambda *args: calls.append(args))
    return tmp_path / malloc.LIBRARY_NAME, calls


def test_restarts_the_same_command_with_tcmalloc_preloaded(fake_library, monkeypatch):
    library, calls = fake_library
    monkeypatch.setenv("LD_PRELOAD", "/other.so")
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "encdec.train", "model=rnn"])
    malloc.restart_with_tcmalloc()
    ((executable, argv, environment),) = calls
    assert executable == sys.executable
    assert argv == [sys.executable, "-m", "encdec.train", "model=rnn"]
    assert environment["LD_PRELOAD"] == f"{library}:/other.so"


@pytest.mark.parametrize(
    ("variable", "value"), [("ENCDEC_TCMALLOC", "0"), ("LD_PRELOAD", "/x/libtcmalloc.so")]
)
def test_no_restart_when_turned_off_or_already_loaded(fake_library, monkeypatch, variable, value):
    _, calls = fake_library
    monkeypatch.setenv(variable, value)
    malloc.restart_with_tcmalloc()
    assert calls == []


def test_no_restart_without_the_library(fake_library, monkeypatch, tmp_path):
    _, calls = fake_library
    monkeypatch.setattr(malloc, "LIBRARY_DIRS", (str(tmp_path / "empty"),))
    malloc.restart_with_tcmalloc()
    assert calls == []
