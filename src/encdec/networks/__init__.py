"""Whole encoder-decoder networks as plain nn.Modules, without Lightning: each family's layers
and step interface, greedy/beam decoding and raw-text translation. ``encdec.translate`` loads
these alone; the LightningModules in ``encdec.models`` train them."""
