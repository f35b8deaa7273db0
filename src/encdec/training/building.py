"""The LightningModule a ``model`` config describes, fresh or from a checkpoint, without Hydra's
config files: the config (``_target_`` nodes) is all it needs, and a checkpoint holds it."""

from pathlib import Path
from typing import Any

import hydra
import torch

from encdec.networks.loading import build_network, network_weights, read_checkpoint
from encdec.training.seq2seq_module import Seq2SeqModule
from encdec.utils.errors import UserError


def build_model(model_config: dict[str, Any], vocab_sizes: dict[str, int]) -> Seq2SeqModule:
    """A fresh module from a resolved ``model`` config (plain values), its network sized to
    ``vocab_sizes`` (``Seq2SeqTokenizer.vocab_sizes``); the config is kept for checkpoints."""
    network = build_network(model_config, vocab_sizes)
    settings = {k: v for k, v in model_config.items() if k != "net"}
    model = hydra.utils.instantiate(settings, net=network, _convert_="all")
    model.model_config = {**model_config, "net": network.config_node(model_config["net"])}
    return model


def load_model(path: str | Path, map_location: str = "cpu") -> Seq2SeqModule:
    """The module in an ``encdec.train`` checkpoint, tokenizer attached, in eval mode, from
    the one (memory-mapped) read of the file."""
    checkpoint = read_checkpoint(path)
    model = build_model(checkpoint["encdec_model"], checkpoint["vocab_sizes"])
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(map_location).eval()


def initialize_from(
    network: torch.nn.Module, checkpoint: dict[str, Any], name: str
) -> tuple[int, list[str]]:
    """Copy into ``network`` every tensor of the checkpoint's network (read by
    ``read_checkpoint`` from ``name``) whose name and shape match (fine-tuning after a
    pretraining stage); returns how many were copied and the names of the network's tensors
    that kept their fresh initialization (a tensor tied to a copied one, such as a shared
    embedding, is not fresh)."""
    weights = network_weights(checkpoint)
    own = network.state_dict()
    matched = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise UserError(
            f"init_from={name}: no tensor of its network matches this model's in name and "
            "shape (another architecture or vocabulary)"
        )
    network.load_state_dict(matched, strict=False)
    copied = {own[k].data_ptr() for k in matched}  # a tied tensor is copied with its twin
    fresh = [k for k in own if k not in matched and own[k].data_ptr() not in copied]
    return len(matched), sorted(fresh)
