"""``python -m encdec.fast`` runs a command once with tcmalloc and, on AMD CPUs with AVX-512, the
MKL vendor shim preloaded, when each is there and not yet loaded; the entry points themselves
never restart."""

import ctypes
import subprocess
import sys

import pytest
import torch

from encdec import fast
from encdec.utils import preload

AMD_CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512bw\n\n"


@pytest.fixture
def fake_libraries(tmp_path, monkeypatch):
    (tmp_path / preload.TCMALLOC_NAME).write_bytes(b"")
    shim = tmp_path / preload.MKL_SHIM_NAME
    monkeypatch.setattr(preload, "LIBRARY_DIRS", (str(tmp_path),))
    monkeypatch.setattr(preload, "is_amd_cpu_with_avx512", lambda: True)
    monkeypatch.setattr(preload, "build_mkl_shim", lambda: shim)
    for variable in ("LD_PRELOAD", "ENCDEC_TCMALLOC", "ENCDEC_MKL_AVX512"):
        monkeypatch.delenv(variable, raising=False)
    calls = []
    monkeypatch.setattr(fast.os, "execve", lambda *args: calls.append(args))
    return tmp_path / preload.TCMALLOC_NAME, shim, calls


@pytest.mark.parametrize(
    ("arguments", "command"),
    [
        (["encdec.train", "model=rnn"], ["-m", "encdec.train", "model=rnn"]),
        (["scripts/benchmark.py", "--steps", "3"], ["scripts/benchmark.py", "--steps", "3"]),
    ],
)
def test_the_launcher_runs_the_command_once_with_the_libraries_preloaded(
    fake_libraries, monkeypatch, arguments, command
):
    tcmalloc, shim, calls = fake_libraries
    monkeypatch.setenv("LD_PRELOAD", "/other.so")
    monkeypatch.setattr(sys, "argv", ["encdec.fast", *arguments])
    fast.main()
    ((executable, argv, environment),) = calls
    assert executable == sys.executable and argv == [sys.executable, *command]
    assert environment["LD_PRELOAD"] == f"{tcmalloc}:{shim}:/other.so"
    monkeypatch.setenv("LD_PRELOAD", environment["LD_PRELOAD"])
    assert "tcmalloc" in preload.loaded_libraries() and "vendor shim" in preload.loaded_libraries()


@pytest.mark.parametrize(
    ("turned_off", "expected"),
    [("ENCDEC_TCMALLOC", [preload.MKL_SHIM_NAME]), ("ENCDEC_MKL_AVX512", [preload.TCMALLOC_NAME])],
)
def test_each_library_can_be_turned_off(fake_libraries, monkeypatch, turned_off, expected):
    monkeypatch.setenv(turned_off, "0")
    assert [library.name for library in preload.fast_libraries()] == expected


def test_nothing_added_when_turned_off_or_already_loaded(fake_libraries, monkeypatch):
    tcmalloc, shim, _ = fake_libraries
    monkeypatch.setenv("LD_PRELOAD", f"{tcmalloc}:{shim}")
    assert preload.preload_environment()["LD_PRELOAD"] == f"{tcmalloc}:{shim}"
    monkeypatch.delenv("LD_PRELOAD")
    monkeypatch.setenv("ENCDEC_TCMALLOC", "0")
    monkeypatch.setenv("ENCDEC_MKL_AVX512", "0")
    assert preload.preload_environment()["LD_PRELOAD"] == ""


def test_without_the_libraries_the_log_says_what_a_run_got(fake_libraries, monkeypatch, tmp_path):
    monkeypatch.setattr(preload, "LIBRARY_DIRS", (str(tmp_path / "empty"),))
    monkeypatch.setattr(preload, "is_amd_cpu_with_avx512", lambda: False)
    monkeypatch.setenv("ENCDEC_MALLOC_TUNING", "0")
    assert preload.preload_environment()["LD_PRELOAD"] == ""
    line = preload.loaded_libraries()
    assert line == "allocator: the C library's malloc; fp32 matmuls: MKL as it chooses"


def test_entry_points_never_restart_themselves(tmp_path):
    """No re-exec (debuggers and profilers follow one process): the process that Python started
    is the one that prints the config."""
    script = "import os, runpy, sys; print(os.getpid()); sys.argv = ['x', '--cfg', 'job']; "
    script += "runpy.run_module('encdec.train', run_name='__main__')"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    first, *config = result.stdout.splitlines()
    assert first.isdigit() and any(line.startswith("model:") for line in config)
    assert result.stdout.count(first) == 1


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (AMD_CPUINFO, True),
        (AMD_CPUINFO.replace("AuthenticAMD", "GenuineIntel"), False),
        (AMD_CPUINFO.replace(" avx512f", ""), False),
        # only the first CPU counts
        ("vendor_id : GenuineIntel\nflags : avx512f\n\n" + AMD_CPUINFO, False),
    ],
)
def test_recognises_amd_cpus_with_avx512(tmp_path, monkeypatch, cpuinfo, expected):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    monkeypatch.setattr(preload, "CPUINFO", tmp_path / "cpuinfo")
    monkeypatch.setattr(preload.platform, "machine", lambda: "x86_64")
    assert preload.is_amd_cpu_with_avx512() is expected


def test_the_shim_is_built_once_and_answers_intel(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    library = preload.build_mkl_shim()
    assert library == tmp_path / "encdec" / preload.MKL_SHIM_NAME
    assert ctypes.CDLL(str(library)).mkl_serv_intel_cpu_true() == 1
    modified = library.stat().st_mtime_ns
    assert preload.build_mkl_shim() == library
    assert library.stat().st_mtime_ns == modified


def test_no_shim_without_a_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(preload.shutil, "which", lambda name: None)
    assert preload.build_mkl_shim() is None


@pytest.mark.skipif(not preload.is_amd_cpu_with_avx512(), reason="the shim is for AMD CPUs")
def test_matmuls_under_the_shim_equal_the_default_ones_within_rounding(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    library = preload.build_mkl_shim()
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 300, 500, generator=generator)
    torch.save((a, b), tmp_path / "inputs.pt")
    script = "import sys, torch; a, b = torch.load(sys.argv[1]); torch.save(a @ b.T, sys.argv[2])"
    environment = {"LD_PRELOAD": str(library), "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "-c", script, tmp_path / "inputs.pt", tmp_path / "product.pt"],
        check=True,
        env=environment,
    )
    # sums of 500 products of about 1, added in another order by the AVX-512 kernels
    torch.testing.assert_close(torch.load(tmp_path / "product.pt"), a @ b.T, atol=1e-4, rtol=1e-5)
