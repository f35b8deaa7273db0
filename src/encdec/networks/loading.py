"""Reading encdec checkpoints, and the network in one without Lightning (what translation needs)."""

import importlib
import inspect
from pathlib import Path
from typing import Any

import torch

from encdec.data.tokenization import Seq2SeqTokenizer
from encdec.decoding.search import DecodingConfig
from encdec.networks.base import Seq2SeqNetwork
from encdec.utils.errors import UserError

CHECKPOINT_FORMAT = 1  # bumped when a checkpoint's layout changes incompatibly

# family (the LightningModule class name a checkpoint records) -> its module, imported only when
# loaded: a translation model never pays for the image stack (Pillow, torchvision) at start-up
FAMILIES: dict[str, str] = {
    "RNNSeq2Seq": "encdec.models.rnn",
    "AttentionSeq2Seq": "encdec.models.attention",
    "TransformerSeq2Seq": "encdec.models.transformer",
    "AttentionCaptioner": "encdec.models.captioning",
    "TransformerCaptioner": "encdec.models.captioning",
}
# translation families -> their network (module, class); captioners caption images instead
NETWORKS: dict[str, tuple[str, str]] = {
    "RNNSeq2Seq": ("encdec.networks.rnn", "RNNNetwork"),
    "AttentionSeq2Seq": ("encdec.networks.attention", "AttentionNetwork"),
    "TransformerSeq2Seq": ("encdec.networks.transformer", "TransformerNetwork"),
}


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


def load_network(path: str | Path, map_location: str = "cpu") -> Seq2SeqNetwork:
    """The translation network in an ``encdec.train`` checkpoint, tokenizer attached, in eval
    mode, built without Lightning: from the checkpoint's hyperparameters that the network
    takes (not the optimizer's or the schedule's) and its weights."""
    checkpoint = read_checkpoint(path)
    family = checkpoint["encdec_family"]
    if family not in NETWORKS:
        raise UserError(
            f"'{path}' holds a {family}, which captions images: use python -m encdec.caption"
        )
    module, name = NETWORKS[family]
    network_class = getattr(importlib.import_module(module), name)
    parameters = inspect.signature(network_class).parameters
    taken = {n for n, p in parameters.items() if p.kind is not p.VAR_KEYWORD}
    network = network_class(
        **{k: v for k, v in checkpoint["hyper_parameters"].items() if k in taken}
    )
    if "tokenizer" in checkpoint:
        network.attach_tokenizer(Seq2SeqTokenizer.from_dict(checkpoint["tokenizer"]))
    network.decoding = DecodingConfig(**checkpoint.get("decoding", {}))
    network.load_state_dict(checkpoint["state_dict"])
    return network.to(map_location).eval()
