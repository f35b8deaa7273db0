"""encdec: encoder-decoder models composed from parts (any encoder with any decoder: RNN,
attention RNN, Transformer; image encoders) with Hydra + Lightning."""

__version__ = "0.2.0"
