"""Attention Seq2Seq (``AttentionNetwork``: Bahdanau or Luong) trained by the shared Lightning
steps."""

from encdec.models.base import Seq2SeqModule
from encdec.networks.attention import AttentionNetwork


class AttentionSeq2Seq(AttentionNetwork, Seq2SeqModule):
    """``AttentionNetwork``'s arguments, and ``Seq2SeqModule``'s (optimizer, scheduler, ...)."""
