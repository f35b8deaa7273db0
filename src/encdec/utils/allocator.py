"""glibc's malloc told to keep the memory it frees, set in-process when encdec is imported.

By default glibc serves every allocation of 32 MB or more (a batch's logits, 4,096 tokens x
8,000 types x 4 bytes, is 131 MB) with a fresh ``mmap`` and unmaps it on ``free``, and returns
the top of its heap to the kernel whenever 128 kB or more are free there. A training step
frees and reallocates the same sizes every time, so each step faults the same pages back in
(zeroed by the kernel): here that was a fifth of the CPU time in the kernel. Two ``mallopt``
calls stop it: ``M_MMAP_MAX = 0`` (every allocation comes from the heap, whose freed chunks are
reused) and ``M_TRIM_THRESHOLD`` at its maximum (the heap is never trimmed). The process then
keeps its high-water mark, as PyTorch's CUDA allocator does on a GPU; docs/results.md measures
speed and memory over an hour.

Nothing is changed where another allocator is preloaded (tcmalloc, jemalloc: ``LD_PRELOAD``),
where the C library is not glibc, or with ``ENCDEC_MALLOC_TUNING=0``. Processes started from
this one (DDP ranks, data loader workers) import encdec or inherit the settings.
"""

import ctypes
import os
import platform

# mallopt's parameter numbers, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # mallopt takes an int; this is glibc's largest threshold
OTHER_ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")


def preloaded_allocator() -> str | None:
    """The other allocator ``LD_PRELOAD`` puts in place of malloc, if any."""
    preloaded = os.environ.get("LD_PRELOAD", "")
    return next((name for name in OTHER_ALLOCATORS if name in preloaded), None)


def tuning_wanted() -> bool:
    return os.environ.get("ENCDEC_MALLOC_TUNING", "1") != "0" and preloaded_allocator() is None


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as the module says; True when it was tuned (now or before)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or not tuning_wanted():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))


def allocator_description() -> str:
    """Which allocator this process runs with, for the run's log."""
    if (other := preloaded_allocator()) is not None:
        return other
    if platform.libc_ver()[0] == "glibc" and tuning_wanted():
        return "glibc malloc keeping freed memory (ENCDEC_MALLOC_TUNING=0 turns it off)"
    return "the C library's malloc"
