"""Transformer Seq2Seq (``TransformerNetwork``, KV-cached decoding) trained by the shared
Lightning steps."""

from encdec.models.base import Seq2SeqModule
from encdec.networks.transformer import TransformerNetwork


class TransformerSeq2Seq(TransformerNetwork, Seq2SeqModule):
    """``TransformerNetwork``'s arguments, and ``Seq2SeqModule``'s (optimizer, scheduler, ...)."""
