"""Shared fixtures: tiny models of every family, and the real Hydra configs composed for tests."""

import os
from pathlib import Path

# pytest runs two test files at once (-n 2) on two cores: one thread each, in the processes
# they start too, or the threads of the two spin against each other
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch
from omegaconf import DictConfig

from encdec.models.attention import AttentionSeq2Seq
from encdec.models.base import Seq2SeqModule
from encdec.models.rnn import RNNSeq2Seq
from encdec.models.transformer import TransformerSeq2Seq
from encdec.utils.config import compose

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VOCAB = 24
TRAINING = {"optimizer": {"lr": 3e-3}, "scheduler": {"name": "constant"}}

# Every family and the main variants, tiny.
TINY_MODELS = {
    "rnn-gru": lambda: RNNSeq2Seq(VOCAB, VOCAB, **TRAINING, embedding_dim=16, hidden_size=32),
    "rnn-lstm-bi": lambda: RNNSeq2Seq(
        VOCAB, VOCAB, **TRAINING, cell="lstm", embedding_dim=16, hidden_size=32, bidirectional=True
    ),
    "bahdanau": lambda: AttentionSeq2Seq(
        VOCAB, VOCAB, **TRAINING, embedding_dim=16, hidden_size=32
    ),
    "luong-general-feed": lambda: AttentionSeq2Seq(
        VOCAB,
        VOCAB,
        **TRAINING,
        embedding_dim=16,
        hidden_size=32,
        attention="general",
        input_feeding=True,
        cell="lstm",
    ),
    "luong-dot": lambda: AttentionSeq2Seq(
        VOCAB,
        VOCAB,
        **TRAINING,
        embedding_dim=16,
        hidden_size=32,
        attention="dot",
        bidirectional=False,
    ),
    "transformer-prenorm": lambda: TransformerSeq2Seq(
        VOCAB,
        VOCAB,
        **TRAINING,
        d_model=32,
        num_heads=4,
        ff_dim=64,
        encoder_layers=2,
        decoder_layers=2,
    ),
    "transformer-postnorm-learned": lambda: TransformerSeq2Seq(
        VOCAB,
        VOCAB,
        **TRAINING,
        d_model=32,
        num_heads=2,
        ff_dim=64,
        norm_first=False,
        positions="learned",
        share_embeddings=False,
        tie_output=False,
    ),
}


@pytest.fixture(params=sorted(TINY_MODELS))
def tiny_model(request: pytest.FixtureRequest) -> Seq2SeqModule:
    torch.manual_seed(0)
    return TINY_MODELS[request.param]().eval()


def random_batch(
    batch: int = 4, src_len: int = 7, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids (B, S) with EOS and right padding of varying length, and the mask."""
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(4, VOCAB, (batch, src_len), generator=generator)
    lengths = torch.randint(2, src_len + 1, (batch,), generator=generator)
    lengths[0] = src_len
    for row, length in enumerate(lengths.tolist()):
        src[row, length - 1] = 3  # EOS
        src[row, length:] = 0  # PAD
    return src, src != 0


def training_batches(count: int) -> list[dict[str, torch.Tensor]]:
    """``count`` random translation batches (right-padded sources and targets) as a loader
    yields them: ``source``, ``source_mask``, ``target_in``, ``target_out``."""
    result = []
    for seed in range(count):
        src, src_mask = random_batch(seed=seed)
        tgt, _ = random_batch(src_len=5, seed=seed + 100)
        result.append({"source": src, "source_mask": src_mask, "target_in": tgt, "target_out": tgt})
    return result


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """The real config as the CLI would build it, with the run dir at ``output_dir``."""
    cfg = compose(config_name, overrides, output_dir)
    cfg.paths.cache_dir = str(output_dir.parents[1] / "cache")  # shared by the session
    return cfg


FAST = [
    "logger=csv",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The README test first: it takes minutes, and with two tests running at once (-n 2) it
    should not be the one left running alone at the end."""
    items.sort(key=lambda item: item.path.name != "test_readme.py")
