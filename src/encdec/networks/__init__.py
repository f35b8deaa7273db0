"""The composed encoder-decoder network as a plain nn.Module, without Lightning (inference loads
it alone), and reading it from a checkpoint; ``encdec.training`` trains it."""
