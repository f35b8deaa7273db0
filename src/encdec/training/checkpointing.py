"""Checkpoints a crash cannot corrupt, and what may be resumed from them.

- :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file beside its target,
  flushes it to disk and renames it into place: a kill during the write leaves the previous
  ``last.ckpt`` intact, never a truncated one. (``encdec.callbacks.last_checkpoint`` writes
  ``last.ckpt``; ``encdec.launch.resuming`` picks the checkpoint a run continues from.)
- :func:`keep_wandb_run_id` keeps the W&B run id in the run dir, so a resumed run logs into
  the same W&B run.
- :func:`check_resumable` refuses, in one line, a checkpoint this model cannot continue from
  (another network, another vocabulary, another format, or no training state).

What a checkpoint holds to continue exactly (bit for bit on CPU): weights, optimizer, LR
scheduler, precision plugin (AMP scaler), loop progress, callbacks (best checkpoints, early
stopping, time budget) — all saved by Lightning — plus, saved by encdec, the RNG states and
the bucketed sampler's position (``encdec.callbacks.exact_resume``, with
``encdec.data.batching.ResumableDataLoader``) and the best-so-far val metrics (``Seq2SeqModule``).
"""

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig

from encdec.networks.loading import read_checkpoint
from encdec.training.seq2seq_module import Seq2SeqModule
from encdec.utils.config import flatten
from encdec.utils.errors import UserError


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file in the target's directory, fsync, then ``os.replace``
    (atomic on POSIX within one file system)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def keep_wandb_run_id(cfg: DictConfig, output_dir: Path) -> None:
    """Give ``logger.wandb`` the run id stored in ``output_dir/wandb_id.txt`` (created on the
    first start; every DDP rank reads the same one). An explicit ``logger.wandb.id`` wins."""
    wandb = (cfg.get("logger") or {}).get("wandb")
    if wandb is None or wandb.get("id"):
        return
    path = output_dir / "wandb_id.txt"
    try:
        with path.open("x") as file:  # exclusive create: one job writes it
            file.write(uuid.uuid4().hex[:12])
    except FileExistsError:
        pass
    wandb.id = path.read_text().strip()


def check_resumable(path: str, model: Seq2SeqModule) -> None:
    """One-line ``UserError`` unless ``path`` is a training checkpoint of this very network."""
    checkpoint = read_checkpoint(path)  # exists, loads with weights_only, is encdec, known format
    saved, built = flatten(checkpoint["encdec_model"]["net"]), flatten(model.model_config["net"])
    differing = sorted(k for k in saved.keys() | built.keys() if saved.get(k) != built.get(k))
    if differing:
        key = differing[0]
        raise UserError(
            f"ckpt_path '{path}' holds another network (model.net.{key}={saved.get(key)!r}, "
            f"this run builds {built.get(key)!r}; check model=...)"
        )
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise UserError(
            f"ckpt_path '{path}' has no training state (an averaged or exported checkpoint?): "
            "it can be evaluated, not resumed"
        )
    built_sizes = model.net.vocab_sizes()
    for name, saved_size in checkpoint["vocab_sizes"].items():
        if saved_size != built_sizes.get(name):
            raise UserError(
                f"ckpt_path '{path}' has {name}={saved_size}, but this run's tokenizer "
                f"gives {built_sizes.get(name)} (another corpus or data.tokenizer settings?)"
            )
