"""Reading encdec checkpoints, and the network in one, without Lightning or Hydra's config files.

A checkpoint describes itself: ``encdec_model`` is the model's config (``_target_`` nodes:
the network's encoder and decoder, the optimizer, the schedule), ``vocab_sizes`` the sizes the
network was built for, ``tokenizer`` the tokenizer; so any composition loads with no list of
model kinds anywhere.
"""

from pathlib import Path
from typing import Any

import hydra
import torch

from encdec.networks.network import Network
from encdec.utils.errors import UserError

CHECKPOINT_FORMAT = 2  # bumped when a checkpoint's layout changes incompatibly
# the last release that reads each older format
READ_BY: dict[int, str] = {1: "encdec 0.1.0 (git tag v0.1.0)"}


def check_model_checkpoint(checkpoint: Any, name: str) -> None:
    """A clear error unless ``checkpoint`` (``name`` in messages) is an encdec model
    checkpoint of the format this version reads."""
    if not isinstance(checkpoint, dict) or not (
        "encdec_model" in checkpoint or "encdec_family" in checkpoint
    ):
        raise UserError(f"{name} is not an encdec model checkpoint")
    written = checkpoint.get("encdec_format", 1)
    if written > CHECKPOINT_FORMAT:
        raise UserError(
            f"{name} was written by a newer encdec (checkpoint format {written}; this version "
            f"reads format {CHECKPOINT_FORMAT}): upgrade encdec"
        )
    if written < CHECKPOINT_FORMAT:
        raise UserError(
            f"{name} has the checkpoint format {written} of an older encdec; this version "
            f"reads format {CHECKPOINT_FORMAT}: use {READ_BY[written]} to read it"
        )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The contents of an encdec checkpoint (on the CPU, plain values only), or a clear error.
    Tensors are memory-mapped: nothing is read that is not used (optimizer states)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise UserError(f"'{path}' is not a readable checkpoint ({type(error).__name__})") from None
    check_model_checkpoint(checkpoint, f"'{path}'")
    return checkpoint


def build_network(model_config: dict[str, Any], vocab_sizes: dict[str, int]) -> Network:
    """The network a model config's ``net`` node describes, sized to ``vocab_sizes``."""
    return hydra.utils.instantiate(model_config["net"], _convert_="all", **vocab_sizes)


def network_weights(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The network's parameters and buffers in a checkpoint (the module's ``net.`` entries)."""
    return {
        key.removeprefix("net."): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith("net.")
    }


def load_checkpoint_network(checkpoint: dict[str, Any]) -> Network:
    """The network of a checkpoint read by ``read_checkpoint``, with its weights, in eval mode
    (no tokenizer attached: ``encdec.inference`` does that)."""
    network = build_network(checkpoint["encdec_model"], checkpoint["vocab_sizes"])
    network.load_state_dict(network_weights(checkpoint))
    return network.eval()
