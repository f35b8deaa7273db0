"""Shared fixtures: tiny models of every family, and the real Hydra configs composed for tests."""

import os
from pathlib import Path

# pytest runs two test files at once (-n 2) on two cores: one thread each, in the processes
# they start too, or the threads of the two spin against each other
os.environ.setdefault("OMP_NUM_THREADS", "1")

import functools

import hydra
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from encdec.networks.encoder_decoder import EncoderDecoder
from encdec.training.building import build_model
from encdec.training.seq2seq_module import Seq2SeqModule
from encdec.utils.config import CONFIG_DIR, compose
from encdec.utils.special_tokens import BOS_ID, EOS_ID, PAD_ID

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VOCAB = 24
TRAINING = ["model/scheduler=constant", "model.optimizer.lr=3e-3"]
RNN_SIZES = [
    "model.net.embedding_dim=16",
    "model.net.encoder.hidden_size=32",
    "model.net.decoder.hidden_size=32",
]


def both_parts(*settings: str) -> list[str]:
    """The same settings for the encoder and the decoder: ``model.net.{encoder,decoder}.*``."""
    return [
        f"model.net.{part}.{setting}" for part in ("encoder", "decoder") for setting in settings
    ]


TRANSFORMER_SIZES = ["model.net.embedding_dim=32", *both_parts("dim=32", "ff_dim=64")]
HF_T5_SIZES = [  # Hugging Face models' own config keys
    *(f"model.net.config.{k}" for k in ("d_model=32", "d_kv=16", "d_ff=64", "num_heads=2")),
    "model.net.config.num_layers=2",
    "model.net.config.num_decoder_layers=2",
]
HF_BART_SIZES = [
    f"model.net.config.{k}"
    for k in (
        "d_model=32",
        "encoder_layers=2",
        "decoder_layers=2",
        "encoder_attention_heads=2",
        "decoder_attention_heads=2",
        "encoder_ffn_dim=64",
        "decoder_ffn_dim=64",
        "max_position_embeddings=128",
    )
]
HF_GPT2_SIZES = [
    f"model.net.config.{k}"
    for k in ("n_embd=32", "n_layer=2", "n_head=2", "n_inner=64", "n_positions=256")
]
DECODER_ONLY_SIZES = [
    "model.net.embedding_dim=32",
    *(f"model.net.decoder.{k}" for k in ("dim=32", "ff_dim=64", "num_layers=2")),
]

# The model configs and their main variants, tiny: overrides of the real configs.
TINY_OVERRIDES = {
    "rnn-gru": ["model=rnn", *RNN_SIZES],
    "rnn-lstm-bi": [
        "model=rnn",
        *RNN_SIZES,
        "model.net.encoder.cell=lstm",
        "model.net.decoder.cell=lstm",
        "model.net.encoder.bidirectional=true",
    ],
    "bahdanau": ["model=attention", *RNN_SIZES],
    "luong-general-feed": [
        "model=attention",
        *RNN_SIZES,
        "model.net.decoder.attention=general",
        "model.net.decoder.input_feeding=true",
        "model.net.encoder.cell=lstm",
        "model.net.decoder.cell=lstm",
    ],
    "luong-dot": [
        "model=attention",
        *RNN_SIZES,
        "model.net.decoder.attention=dot",
        "model.net.encoder.bidirectional=false",
    ],
    "transformer-prenorm": [
        "model=transformer",
        *TRANSFORMER_SIZES,
        *both_parts("num_layers=2"),
        "model.net.share_embeddings=true",
    ],
    "transformer-postnorm-learned": [
        "model=transformer",
        *TRANSFORMER_SIZES,
        *both_parts("num_heads=2", "norm_first=false", "positions=learned"),
        "model.net.share_embeddings=false",
        "model.net.tie_output=false",
    ],
    "transformer-prefix-lm": ["model=prefix_lm", *DECODER_ONLY_SIZES],
    "transformer-hf-t5": ["model=t5", *HF_T5_SIZES],
    "transformer-hf-bart": ["model=bart", *HF_BART_SIZES],
    "transformer-hf-gpt2": ["model=gpt2", *HF_GPT2_SIZES],
    "transformer-causal-lm": [
        "model=causal_lm",
        *DECODER_ONLY_SIZES,
        "model.net.decoder.positions=learned",
        "model.net.share_embeddings=true",
    ],
}


@functools.cache
def model_config(overrides: tuple[str, ...]) -> dict:
    """The resolved ``model`` node of the train config composed with ``overrides``."""
    with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra.compose("train", overrides=list(overrides))
    return OmegaConf.to_container(cfg.model, resolve=True)


def build_tiny(overrides: list[str], vocab_sizes: dict[str, int] | None = None) -> Seq2SeqModule:
    """A model built from the real configs with ``overrides`` (and the tiny training settings),
    for a vocabulary of ``VOCAB`` tokens on both sides unless ``vocab_sizes`` says otherwise."""
    sizes = vocab_sizes or {"source_vocab_size": VOCAB, "target_vocab_size": VOCAB}
    return build_model(model_config((*TRAINING, *overrides)), sizes)


TINY_MODELS = {name: functools.partial(build_tiny, o) for name, o in TINY_OVERRIDES.items()}


@pytest.fixture(params=sorted(TINY_MODELS))
def tiny_model(request: pytest.FixtureRequest) -> EncoderDecoder:
    """Each tiny model's network, in eval mode."""
    torch.manual_seed(0)
    return TINY_MODELS[request.param]().net.eval()


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


def target_batch(
    src: torch.Tensor, src_mask: torch.Tensor, targets: list[list[int]]
) -> dict[str, torch.Tensor]:
    """A training batch teaching ``targets`` (token lists, one per source row): ``target_in``
    BOS-first and ``target_out`` EOS-last, right-padded."""
    width = max(map(len, targets)) + 1
    target_in = torch.full((len(targets), width), PAD_ID)
    target_out = torch.full((len(targets), width), PAD_ID)
    for row, tokens in enumerate(targets):
        target_in[row, : len(tokens) + 1] = torch.tensor([BOS_ID, *tokens])
        target_out[row, : len(tokens) + 1] = torch.tensor([*tokens, EOS_ID])
    return {
        "source": src,
        "source_mask": src_mask,
        "target_in": target_in,
        "target_out": target_out,
    }


def learn_by_heart(lit: Seq2SeqModule, batch: dict[str, torch.Tensor], steps: int) -> None:
    """Adam on one batch for ``steps`` training steps (the model's own loss); the network left
    in eval mode."""
    optimizer = torch.optim.Adam(lit.net.parameters(), lr=3e-3)
    lit.net.train()
    for _ in range(steps):
        optimizer.zero_grad()
        lit.training_step(batch, 0).backward()
        optimizer.step()
    lit.net.eval()


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


def model_checkpoint(model: Seq2SeqModule, **changes: object) -> dict[str, object]:
    """What a training checkpoint of ``model`` holds (its ``on_save_checkpoint`` contents, the
    weights, a training state), with ``changes`` (None deletes a key)."""
    checkpoint: dict[str, object] = {
        "state_dict": model.state_dict(),
        "optimizer_states": [{"unused": 1}],
        "loops": {},
    }
    model.on_save_checkpoint(checkpoint)
    checkpoint.update(changes)
    return {key: value for key, value in checkpoint.items() if value is not None}
