"""Checkpoint averaging: the mean of the weights of the k best checkpoints (Vaswani et al., 2017).

``TopKAveraging`` keeps the ``top_k`` best checkpoints by the val metric during training and, when
the fit ends, writes their average as ``checkpoints/averaged.ckpt``; ``encdec.train`` then
validates it and tests whichever of it and ``best.ckpt`` scores higher on val. The average is a
plain checkpoint of the same network (tokenizer included), without optimizer state.
"""

import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from encdec.networks.loading import read_checkpoint
from encdec.utils.errors import UserError

TRAINING_STATE = ("optimizer_states", "lr_schedulers", "loops", "callbacks", "MixedPrecision")


def average_checkpoints(paths: list[str | Path], output: str | Path) -> Path:
    """Write the element-wise mean of the checkpoints' floating-point weights to ``output``.

    Integer buffers are taken from the first checkpoint; every checkpoint must hold the same
    network (the same ``model.net`` config) with the same parameter names and shapes.
    """
    if not paths:
        raise UserError("no checkpoints to average")
    first = read_checkpoint(paths[0])
    state = first["state_dict"]
    sums = {name: tensor.double() for name, tensor in state.items() if tensor.is_floating_point()}
    for path in paths[1:]:
        checkpoint = read_checkpoint(path)
        if checkpoint["encdec_model"]["net"] != first["encdec_model"]["net"]:
            raise UserError(f"{path} holds another network than {paths[0]}")
        other = checkpoint["state_dict"]
        if other.keys() != state.keys() or any(
            other[name].shape != state[name].shape for name in state
        ):
            raise UserError(f"{path} has other parameters than {paths[0]}: cannot average them")
        for name in sums:
            sums[name] += other[name].double()
    averaged = {
        name: (sums[name] / len(paths)).to(tensor.dtype) if name in sums else tensor
        for name, tensor in state.items()
    }
    result = {k: v for k, v in first.items() if k not in TRAINING_STATE}
    result["state_dict"] = averaged
    result["averaged_from"] = [str(path) for path in paths]
    output = Path(output)
    temporary = output.with_name(output.name + ".tmp")
    torch.save(result, temporary)
    os.replace(temporary, output)  # atomic: never a half-written checkpoint
    return output


class TopKAveraging(ModelCheckpoint):
    """Keeps the ``top_k`` best checkpoints (by the val metric) in ``dirpath`` and writes their
    average to ``averaged_path`` (beside ``dirpath``) when the fit ends."""

    def __init__(self, top_k: int, dirpath: str, monitor: str, mode: str = "max") -> None:
        if top_k < 2:
            raise UserError(f"checkpoint averaging needs top_k >= 2, got {top_k}")
        super().__init__(
            dirpath=dirpath,
            filename="epoch{epoch:03d}-step{step}",
            monitor=monitor,
            mode=mode,
            save_top_k=top_k,
            auto_insert_metric_name=False,
        )

    @property
    def averaged_path(self) -> Path:
        return Path(self.dirpath).parent / "averaged.ckpt"

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.averaged_path.unlink(missing_ok=True)  # never leave a stale average
            if len(self.best_k_models) >= 2:
                average_checkpoints(sorted(self.best_k_models, key=str), self.averaged_path)
        trainer.strategy.barrier()
