"""Loading any family's checkpoint without Hydra."""

from pathlib import Path
from typing import Any

import torch

from encdec.models.attention import AttentionSeq2Seq
from encdec.models.base import CHECKPOINT_FORMAT, Seq2SeqModule
from encdec.models.captioning import AttentionCaptioner, TransformerCaptioner
from encdec.models.rnn import RNNSeq2Seq
from encdec.models.transformer import TransformerSeq2Seq
from encdec.utils.errors import UserError

FAMILIES: dict[str, type[Seq2SeqModule]] = {
    cls.__name__: cls
    for cls in (
        RNNSeq2Seq,
        AttentionSeq2Seq,
        TransformerSeq2Seq,
        AttentionCaptioner,
        TransformerCaptioner,
    )
}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The contents of an encdec checkpoint (on the CPU, plain values only), or a clear error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
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
    """The model in an ``encdec.train`` checkpoint, tokenizer attached, in eval mode."""
    family = read_checkpoint(path)["encdec_family"]
    model = FAMILIES[family].load_from_checkpoint(
        path, map_location=map_location, weights_only=True
    )
    return model.eval()
