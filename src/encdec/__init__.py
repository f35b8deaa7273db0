"""encdec: encoder-decoder models (RNN, attention, Transformer Seq2Seq) with Hydra + Lightning."""

__version__ = "0.1.0"
