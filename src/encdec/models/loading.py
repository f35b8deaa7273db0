"""Loading any family's checkpoint without Hydra."""

import importlib
from pathlib import Path
from typing import Any

import torch

from encdec.models.base import CHECKPOINT_FORMAT, Seq2SeqModule
from encdec.utils.errors import UserError

# family (the class name a checkpoint records) -> its module, imported only when loaded: a
# translation model never pays for the image stack (Pillow, torchvision) at start-up
FAMILIES: dict[str, str] = {
    "RNNSeq2Seq": "encdec.models.rnn",
    "AttentionSeq2Seq": "encdec.models.attention",
    "TransformerSeq2Seq": "encdec.models.transformer",
    "AttentionCaptioner": "encdec.models.captioning",
    "TransformerCaptioner": "encdec.models.captioning",
}


def family_class(family: str) -> type[Seq2SeqModule]:
    return getattr(importlib.import_module(FAMILIES[family]), family)


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
    family = checkpoint.get("encdec_family") if isinstance(checkpoint, dict) else None
    if family not in FAMILIES:
        raise UserError(f"'{path}' is not an encdec model checkpoint (no known model family)")
    if checkpoint.get("encdec_format", 1) > CHECKPOINT_FORMAT:
        raise UserError(
            f"'{path}' was written by a newer encdec (checkpoint format "
            f"{checkpoint['encdec_format']}; this version reads up to {CHECKPOINT_FORMAT}): "
            "upgrade encdec"
        )
    return checkpoint


def load_model(path: str | Path, map_location: str = "cpu") -> Seq2SeqModule:
    """The model in an ``encdec.train`` checkpoint, tokenizer attached, in eval mode. As
    ``Family.load_from_checkpoint`` does, from the one (memory-mapped) read of the file."""
    checkpoint = read_checkpoint(path)
    model = family_class(checkpoint["encdec_family"])(**checkpoint["hyper_parameters"])
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(map_location).eval()
