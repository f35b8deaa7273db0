"""What Lightning does not keep for an exact resume: the random generators' states (dropout,
sampling) and the training loader's position inside the epoch. With both, a run resumed from
``last.ckpt`` ends bit for bit where an uninterrupted one would (on CPU)."""

import random
from typing import Any

import lightning as L
import torch

from encdec.data.batching import restore_loader_position


def rng_states() -> dict[str, Any]:
    """Every random generator training draws from, to resume exactly."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ExactResume(L.Callback):
    """Saves the RNG states in every checkpoint; a fit resumed from one restores them and
    goes on with the loader's next batch."""

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if "rng_states" in checkpoint:  # Lightning restores callbacks only when fitting
            set_rng_states(checkpoint["rng_states"])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        restore_loader_position(trainer)  # a mid-epoch resume goes on with the next batch
