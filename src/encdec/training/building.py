"""The LightningModule a ``model`` config describes, fresh or from a checkpoint, without Hydra's
config files: the config (``_target_`` nodes) is all it needs, and a checkpoint holds it."""

from pathlib import Path
from typing import Any

import hydra

from encdec.networks.loading import build_network, read_checkpoint
from encdec.training.seq2seq_module import Seq2SeqModule


def build_model(model_config: dict[str, Any], vocab_sizes: dict[str, int]) -> Seq2SeqModule:
    """A fresh module from a resolved ``model`` config (plain values), its network sized to
    ``vocab_sizes`` (``Seq2SeqTokenizer.vocab_sizes``); the config is kept for checkpoints."""
    network = build_network(model_config, vocab_sizes)
    settings = {k: v for k, v in model_config.items() if k != "net"}
    model = hydra.utils.instantiate(settings, net=network, _convert_="all")
    model.model_config = model_config
    return model


def load_model(path: str | Path, map_location: str = "cpu") -> Seq2SeqModule:
    """The module in an ``encdec.train`` checkpoint, tokenizer attached, in eval mode, from
    the one (memory-mapped) read of the file."""
    checkpoint = read_checkpoint(path)
    model = build_model(checkpoint["encdec_model"], checkpoint["vocab_sizes"])
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(map_location).eval()
