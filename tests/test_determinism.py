"""seed=N makes a CPU run repeatable bit for bit: data order, dropout, bucketing, tokenizer."""

import torch

from encdec.data.tokenization import Seq2SeqTokenizer
from encdec.train import train
from tests.conftest import compose_config
from tests.test_entry_points import TINY_TRAIN


def run(tmp_path, name: str, seed: int) -> tuple[dict[str, torch.Tensor], str]:
    # data.seed stays: the SCAN split (and so the cached tokenizer) is the session's
    overrides = [
        *TINY_TRAIN["transformer"],
        f"seed={seed}",
        "data.seed=1234",
        "model.net.decoder.dropout=0.3",
    ]
    train(compose_config("train", overrides, tmp_path / name))
    checkpoint = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
    return checkpoint["state_dict"], (tmp_path / name / "predictions" / "test.txt").read_text()


def test_same_seed_same_weights_and_predictions(tmp_path):
    first, first_predictions = run(tmp_path, "a", seed=7)
    second, second_predictions = run(tmp_path, "b", seed=7)
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(second[name], tensor), name
    assert first_predictions == second_predictions
    other, _ = run(tmp_path, "c", seed=8)
    assert any(not torch.equal(other[name], tensor) for name, tensor in first.items())


def test_bpe_tokenizer_training_is_repeatable():
    sources = [f"ein Hund läuft über die Wiese Nummer {i}" for i in range(200)]
    targets = [f"a dog runs across the meadow number {i}" for i in range(200)]
    settings = {"kind": "bpe", "vocab_size": 300, "joint": True, "min_frequency": 2}
    first = Seq2SeqTokenizer.train(sources, targets, **settings).to_dict()
    second = Seq2SeqTokenizer.train(sources, targets, **settings).to_dict()
    assert first == second
