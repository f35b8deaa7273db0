"""Sutskever/Cho RNN Seq2Seq (``RNNNetwork``) trained by the shared Lightning steps."""

from encdec.models.base import Seq2SeqModule
from encdec.networks.rnn import RNNNetwork


class RNNSeq2Seq(RNNNetwork, Seq2SeqModule):
    """``RNNNetwork``'s arguments, and ``Seq2SeqModule``'s (optimizer, scheduler, ...)."""
