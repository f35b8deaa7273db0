"""Libraries that make CPU training faster when preloaded, and the launcher that preloads them:
``python -m encdec.fast encdec.train [overrides]`` (see :mod:`encdec.fast`). The entry points
themselves never restart or compile anything; each run logs which of them it got.

- **tcmalloc.** On this kind of VM glibc's allocator returns freed memory to the kernel and
  faults it back in on every training step; tcmalloc keeps it, which made CPU training 14-50%
  faster here with identical results. Used when ``libtcmalloc_minimal`` is installed (Debian:
  ``apt-get install libtcmalloc-minimal4``). ``ENCDEC_TCMALLOC=0`` turns it off.
- **MKL's AVX-512 kernels on AMD CPUs.** PyTorch's fp32 matmuls on x86 run in Intel MKL, which
  picks its kernels by CPU vendor and gives every non-Intel CPU the AVX2 ones. On an AMD CPU
  with AVX-512 a one-function library that answers MKL's "is this an Intel CPU?" with yes
  makes it take the AVX-512 kernels: the fp32 2048² matmul went from 214 to 493 GFLOP/s and
  fp32 training from 3,289 to 6,079 target tokens/s here (docs/results.md). The kernels are
  those MKL runs on Intel CPUs with AVX-512, so sums may round differently from the AVX2 ones.
  The launcher compiles the library once with the C compiler (``cc``) into
  ``~/.cache/encdec``; without a compiler nothing changes. ``ENCDEC_MKL_AVX512=0`` turns it off.
"""

import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from encdec.utils.allocator import allocator_description

LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
TCMALLOC_NAME = "libtcmalloc_minimal.so.4"
MKL_SHIM_NAME = "libencdec_mkl_intel_cpu.so"
MKL_SHIM_SOURCE = "int mkl_serv_intel_cpu_true(void) { return 1; }\n"
CPUINFO = Path("/proc/cpuinfo")


def turned_on(variable: str) -> bool:
    return os.environ.get(variable, "1") != "0"


def find_tcmalloc() -> Path | None:
    return next(
        (Path(d) / TCMALLOC_NAME for d in LIBRARY_DIRS if (Path(d) / TCMALLOC_NAME).is_file()),
        None,
    )


def first_cpu_info() -> dict[str, str]:
    """The fields of the first CPU in /proc/cpuinfo ("vendor_id", "flags", ...), or {}."""
    if not CPUINFO.is_file():
        return {}
    first_cpu = CPUINFO.read_text().split("\n\n", 1)[0]
    return {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in first_cpu.splitlines())
    }


def is_amd_cpu_with_avx512() -> bool:
    if platform.machine() != "x86_64":
        return False
    fields = first_cpu_info()
    has_avx512 = "avx512f" in fields.get("flags", "").split()
    return fields.get("vendor_id") == "AuthenticAMD" and has_avx512


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "encdec"


def build_mkl_shim() -> Path | None:
    """The MKL vendor shim, compiled into the cache on first use; None without a compiler."""
    library = cache_dir() / MKL_SHIM_NAME
    if library.is_file():
        return library
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    try:
        library.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=library.parent) as scratch:
            source = Path(scratch) / "shim.c"
            source.write_text(MKL_SHIM_SOURCE)
            built = Path(scratch) / MKL_SHIM_NAME
            subprocess.run(
                [compiler, "-shared", "-fPIC", "-O2", "-o", str(built), str(source)],
                check=True,
                capture_output=True,
            )
            os.replace(built, library)  # atomic: processes building at once agree
    except (OSError, subprocess.CalledProcessError):
        return None
    return library


def fast_libraries() -> list[Path]:
    """The libraries to preload that this process has not loaded yet."""
    preloaded = os.environ.get("LD_PRELOAD", "")
    libraries = []
    if turned_on("ENCDEC_TCMALLOC") and "tcmalloc" not in preloaded:
        libraries.append(find_tcmalloc())
    shim_wanted = turned_on("ENCDEC_MKL_AVX512") and MKL_SHIM_NAME not in preloaded
    if shim_wanted and is_amd_cpu_with_avx512():
        libraries.append(build_mkl_shim())
    return [library for library in libraries if library is not None]


def preload_environment() -> dict[str, str]:
    """This process's environment with the fast libraries it lacks added to ``LD_PRELOAD``."""
    libraries = [str(library) for library in fast_libraries()]
    preloaded = os.environ.get("LD_PRELOAD", "")
    return dict(os.environ, LD_PRELOAD=":".join(filter(None, [*libraries, preloaded])))


def loaded_libraries() -> str:
    """Which allocator and which MKL kernels this process runs with, for the run's log."""
    preloaded = os.environ.get("LD_PRELOAD", "")
    has_tcmalloc = "tcmalloc" in preloaded
    allocator = allocator_description()
    shim_missing = MKL_SHIM_NAME not in preloaded and is_amd_cpu_with_avx512()
    if MKL_SHIM_NAME in preloaded:
        blas = "MKL with its AVX-512 kernels (vendor shim)"
    elif shim_missing:
        blas = "MKL with its AVX2 kernels (AMD CPU without the vendor shim)"
    else:
        blas = "MKL as it chooses"
    faster = shim_missing or (not has_tcmalloc and find_tcmalloc() is not None)
    hint = " (python -m encdec.fast ... preloads faster ones)" if faster else ""
    return f"allocator: {allocator}; fp32 matmuls: {blas}{hint}"
