"""Importing encdec makes glibc's malloc keep freed memory (encdec.utils.allocator): a 64 MB
tensor then comes from the heap instead of a fresh mmap, unless ENCDEC_MALLOC_TUNING=0 or
another allocator is preloaded."""

import os
import platform
import subprocess
import sys

import pytest

from encdec.utils.allocator import allocator_description

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# mallinfo2's hblkhd: bytes in chunks that malloc served with mmap
MMAPPED_BYTES_AFTER_A_64MB_TENSOR = """
import ctypes, encdec, torch

class MallocInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallocInfo
before = mallinfo2().hblkhd
tensor = torch.ones(2**24)  # 64 MB
print(mallinfo2().hblkhd - before)
"""


def mmapped_bytes_for_a_tensor(**environment: str) -> int:
    completed = subprocess.run(
        [sys.executable, "-c", MMAPPED_BYTES_AFTER_A_64MB_TENSOR],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(completed.stdout)


def test_importing_encdec_serves_large_tensors_from_the_heap():
    assert mmapped_bytes_for_a_tensor(ENCDEC_MALLOC_TUNING="1") == 0


def test_the_tuning_can_be_turned_off():
    assert mmapped_bytes_for_a_tensor(ENCDEC_MALLOC_TUNING="0") >= 2**26


def test_the_log_names_the_allocator(monkeypatch):
    monkeypatch.setenv("ENCDEC_MALLOC_TUNING", "1")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert allocator_description().startswith("glibc malloc keeping freed memory")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
    assert allocator_description() == "tcmalloc"
