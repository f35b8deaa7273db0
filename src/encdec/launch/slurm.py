"""SLURM jobs through submitit (``hydra/launcher=slurm``): the start-up check, requeued jobs and
the requeue signal.

- :class:`SlurmCheck`, a Hydra callback (``conf/hydra/default.yaml``): a multirun with a SLURM
  launcher but no ``sbatch`` on PATH or no reachable controller stops at once with one line,
  not with a traceback from deep inside submitit.
- :func:`slurm_restart_count`: how often SLURM has requeued this job; a requeued job continues
  from its run dir's ``last.ckpt`` (:func:`encdec.launch.resuming.resume_checkpoint`).
- :class:`RequeueSignal`: submitit requeues a job when SLURM signals it (USR2 ``signal_delay_s``
  before the time limit, or on preemption where the cluster sends it). Its handler would stop
  training wherever it happens to be; :class:`encdec.callbacks.last_checkpoint.LastCheckpoint`
  holds the signal back until it has written ``last.ckpt`` at the next step boundary, then
  passes it on.
"""

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from encdec.utils.errors import UserError

log = logging.getLogger(__name__)

SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
LOCAL_CLUSTER_HINT = "for a local one-node cluster: scripts/slurm/local_cluster.sh start DIR"
REQUEUE_EXIT_WAIT_S = 180.0  # longer than any sane KillWait: then the job exits by itself anyway


def slurm_restart_count() -> int:
    """How many times SLURM has requeued the current job (0 outside SLURM)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def check_slurm_reachable() -> None:
    """``UserError`` unless ``sbatch`` is on PATH and the SLURM controller answers."""
    if shutil.which("sbatch") is None:
        raise UserError(f"hydra/launcher=slurm but no sbatch on PATH ({LOCAL_CLUSTER_HINT})")
    conf = os.environ.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):
        raise UserError(f"hydra/launcher=slurm but SLURM_CONF={conf} does not exist")
    try:
        answer = subprocess.run(
            ["sinfo", "--noheader", "--format=%P"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise UserError(f"hydra/launcher=slurm but sinfo failed: {error}") from None
    if answer.returncode != 0:
        lines = answer.stderr.strip().splitlines() or [f"exit status {answer.returncode}"]
        raise UserError(
            f"hydra/launcher=slurm but the SLURM controller does not answer ({lines[0]}; "
            f"is SLURM_CONF set? {LOCAL_CLUSTER_HINT})"
        )


class SlurmCheck(Callback):
    """Checks SLURM before a multirun submits anything to it (a Hydra callback)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.get("launcher") or {}
        if launcher.get("_target_") != SLURM_LAUNCHER:
            return
        try:
            check_slurm_reachable()
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)


def submitit_requeue_signal() -> signal.Signals | None:
    """The signal on which submitit checkpoints and requeues this job; None outside a submitit
    SLURM job."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
        return None
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")  # submitit's own setting
    return signal.Signals[f"SIG{name}"]


class RequeueSignal:
    """Holds submitit's requeue signal until :meth:`release` (training at a point where
    ``last.ckpt`` can be written), then hands it to submitit's handler, which saves the job
    for requeueing, calls ``scontrol requeue`` and exits."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self._signal: signal.Signals | None = None
        self._submitit_handler: Callable[[int, Any], Any] | None = None

    @property
    def installed(self) -> bool:
        return self._signal is not None

    def install(self) -> None:
        """Hold the signal back (only in a submitit SLURM job's main thread, where submitit
        has a handler for it)."""
        requeue_signal = submitit_requeue_signal()
        if self.installed or requeue_signal is None:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        handler = signal.getsignal(requeue_signal)
        if not callable(handler):
            return
        self._signal, self._submitit_handler = requeue_signal, handler
        signal.signal(requeue_signal, self._hold)

    def _hold(self, signum: int, frame: Any) -> None:
        log.warning("%s: requeue after the next checkpoint", signal.Signals(signum).name)
        self.pending = signum

    def release(self) -> None:
        """Give the signal back to submitit; pass on a held one (this usually exits)."""
        if self._signal is None:
            return
        signal.signal(self._signal, self._submitit_handler)
        handler, pending = self._submitit_handler, self.pending
        self._signal, self._submitit_handler, self.pending = None, None, None
        if pending is not None:
            try:
                handler(pending, None)
            except SystemExit:
                wait_to_be_stopped_by_slurm()
                raise


def wait_to_be_stopped_by_slurm(max_seconds: float = REQUEUE_EXIT_WAIT_S) -> None:
    """After ``scontrol requeue``, let SLURM end this job step (SIGTERM, then SIGKILL after its
    KillWait) instead of exiting first: a job that exits on its own with an error code before
    SLURM has requeued it is now and then recorded as FAILED for a moment, and submitit, polling
    ``sacct``, then reports the whole job failed although it is already queued again."""
    time.sleep(max_seconds)  # SIGTERM is logged and ignored by submitit's handler; SIGKILL ends it
