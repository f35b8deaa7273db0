"""Every use of Lightning's private API, in one place: what encdec needs that Lightning has no
public hook for. ``pyproject.toml`` bounds Lightning to the versions the suite has passed on;
a new Lightning release is checked here first."""

import warnings
from collections.abc import Callable, Sequence

import lightning as L
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher, subprocess_script

# Lightning 2.6 asks torch >= 2.10 a question torch deprecated, at every fit and test; nothing a
# user can act on
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def runs_in_spawned_processes(trainer: L.Trainer) -> bool:
    """Whether the trainer's ranks are processes it spawned (``ddp_spawn``), which exit when
    the stage ends."""
    return isinstance(trainer.strategy.launcher, _MultiProcessingLauncher)


def set_child_command(command: Callable[..., tuple[Sequence[str], str]]) -> None:
    """Make Lightning's ``ddp`` launcher start ranks > 0 with ``command(local_rank)`` -> (argv,
    working dir): its one hook for Hydra programs."""
    subprocess_script._hydra_subprocess_cmd = command


def load_pending_loader_position(trainer: L.Trainer) -> None:
    """Load the training loader's position that a restored checkpoint left pending, and
    restart its iterator (see ``encdec.data.batching.restore_loader_position``)."""
    fit_loop = trainer.fit_loop
    pending = fit_loop._combined_loader_states_to_load
    if fit_loop.restarting and pending and fit_loop._combined_loader is not None:
        fit_loop._combined_loader._load_state_dicts(pending)
        fit_loop._combined_loader_states_to_load = []
        iter(fit_loop._data_fetcher)
