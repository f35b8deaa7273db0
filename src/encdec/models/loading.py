"""Loading any family's checkpoint as its LightningModule, without Hydra."""

import importlib
from pathlib import Path

from encdec.models.base import Seq2SeqModule
from encdec.networks.loading import FAMILIES, read_checkpoint


def family_class(family: str) -> type[Seq2SeqModule]:
    return getattr(importlib.import_module(FAMILIES[family]), family)


def load_model(path: str | Path, map_location: str = "cpu") -> Seq2SeqModule:
    """The model in an ``encdec.train`` checkpoint, tokenizer attached, in eval mode. As
    ``Family.load_from_checkpoint`` does, from the one (memory-mapped) read of the file."""
    checkpoint = read_checkpoint(path)
    model = family_class(checkpoint["encdec_family"])(**checkpoint["hyper_parameters"])
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(map_location).eval()
