"""The network in an ``encdec.train`` checkpoint ready to decode: tokenizer attached, decoding
as training configured it, in eval mode. No Lightning, torchmetrics or torchvision is imported
(a translation model starts in a fraction of the time)."""

from pathlib import Path
from typing import Any

from encdec.data.tokenization import Seq2SeqTokenizer
from encdec.decoding.search import DecodingConfig
from encdec.networks.loading import load_checkpoint_network, read_checkpoint
from encdec.networks.network import Network
from encdec.utils.errors import UserError


def load_network(path: str | Path, map_location: str = "cpu") -> tuple[Network, dict[str, Any]]:
    """The checkpoint's network and the checkpoint's contents (image settings, data, ...)."""
    checkpoint = read_checkpoint(path)
    network = load_checkpoint_network(checkpoint)
    if "tokenizer" not in checkpoint:
        raise UserError(f"'{path}' holds no tokenizer")
    network.attach_tokenizer(Seq2SeqTokenizer.from_dict(checkpoint["tokenizer"]))
    network.decoding = DecodingConfig(**checkpoint.get("decoding", {}))
    network.attach_language_model(checkpoint)
    return network.to(map_location), checkpoint
