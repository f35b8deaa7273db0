"""Start-up check of the run directory: writable, and with room for checkpoints and logs, so a
full or read-only disk stops a job at once rather than at its first checkpoint hours later."""

import shutil
from pathlib import Path

from encdec.utils.errors import UserError


def check_output_dir(path: Path, min_free_gb: float) -> None:
    """Raise ``UserError`` unless ``path`` can be written and has ``min_free_gb`` GiB free."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-check"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"cannot write to the output dir {path} ({reason})") from None
    free_gb = shutil.disk_usage(path).free / 2**30
    if free_gb < min_free_gb:
        raise UserError(
            f"only {free_gb:.2f} GiB free in {path}; a run needs paths.min_free_gb="
            f"{min_free_gb:g} GiB for checkpoints and logs: free some space or point "
            "paths.log_dir elsewhere"
        )
