"""glibc's malloc set up for training, in the process itself: nothing to install, no restart.

Left as it comes, glibc hands memory back to the kernel all through a training step: every
block of 32 MB or more (a batch's logits: 4,096 tokens x 8,000 words x 4 bytes) is a fresh
``mmap`` that is unmapped when freed, and free memory at the top of the heap is trimmed. The
next step faults all of it back in, page by page; on this kind of VM that was a fifth of the CPU
time (in the kernel). Two ``mallopt`` settings keep it instead: no ``mmap`` for big blocks
(``M_MMAP_MAX`` 0: they come from the heap and go back to it) and trimming only past 2 GiB of
free top (``M_TRIM_THRESHOLD``). Memory then stays at its high-water mark, which a training run
reaches in its first steps, rather than going up and down every step.

Nothing changes under another allocator (tcmalloc preloaded, or a C library without
``mallopt``); ``ENCDEC_MALLOC_TUNING=0`` leaves glibc as it comes.
"""

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2**31 - 1  # the largest value mallopt takes (an int)


def keep_freed_memory() -> bool:
    """Apply the settings above to this process; whether they were applied."""
    if os.environ.get("ENCDEC_MALLOC_TUNING", "1") == "0":
        return False
    if "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False  # not glibc (musl has no such tunables)
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
