"""encdec: encoder-decoder models composed from parts (any encoder with any decoder: RNN,
attention RNN, Transformer; image encoders) with Hydra + Lightning."""

__version__ = "0.2.0"

from encdec.utils.allocator import keep_freed_memory

keep_freed_memory()  # glibc keeps freed memory instead of faulting it back in each step
