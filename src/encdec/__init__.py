"""encdec: encoder-decoder models (RNN, attention and Transformer Seq2Seq) with Hydra and Lightning."""

__version__ = "0.1.0"
