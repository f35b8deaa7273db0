"""Hugging Face models (model=t5, bart, gpt2) behind the step interface: the generic network
tests take them as tiny models (conftest's TINY_OVERRIDES); here, loading through
``from_pretrained`` from a ``save_pretrained`` directory (the real loading path, never the
network), checkpoints that keep the architecture instead of the path, the clear errors, and
training, testing and translating through the real entry points."""

import pytest
import torch

from encdec.networks.loading import build_network
from encdec.training.building import build_model
from encdec.utils.config import user_errors
from encdec.utils.errors import UserError
from tests.conftest import (
    FAST,
    HF_BART_SIZES,
    HF_GPT2_SIZES,
    HF_T5_SIZES,
    VOCAB,
    build_tiny,
    model_config,
    random_batch,
)
from tests.pretrained_directories import save_pretrained
from tests.test_entry_points import _cli, train_and_translate

TINY = {"t5": HF_T5_SIZES, "bart": HF_BART_SIZES, "gpt2": HF_GPT2_SIZES}
JOINT = {"source_vocab_size": VOCAB, "target_vocab_size": VOCAB}


def logits_of(network: torch.nn.Module) -> torch.Tensor:
    src, mask = random_batch(seed=4)
    tgt_in = torch.randint(4, VOCAB, (src.size(0), 5), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return network.eval()(src, mask, tgt_in)


@pytest.mark.parametrize("family", sorted(TINY))
def test_a_saved_pretrained_model_loads_and_its_checkpoint_keeps_the_architecture(tmp_path, family):
    torch.manual_seed(0)
    saved = build_tiny([f"model={family}", *TINY[family]]).net
    saved.model.save_pretrained(tmp_path / "pretrained")
    config = dict(model_config(("model=" + family, f"model.net.pretrained={tmp_path}/pretrained")))
    loaded = build_model(config, JOINT)  # from_pretrained: the saved weights
    torch.testing.assert_close(logits_of(loaded.net), logits_of(saved))
    node = loaded.model_config["net"]  # what a checkpoint keeps: no path, the architecture
    assert node["pretrained"] is None and node["config"]["vocab_size"] == VOCAB
    rebuilt = build_network(loaded.model_config, JOINT)
    rebuilt.load_state_dict(loaded.net.state_dict())
    torch.testing.assert_close(logits_of(rebuilt), logits_of(saved))


def test_pretrained_models_it_cannot_use_are_one_clear_error(tmp_path):
    torch.manual_seed(0)
    build_tiny(["model=t5", *HF_T5_SIZES]).net.model.save_pretrained(tmp_path / "t5")
    config = dict(model_config(("model=t5", f"model.net.pretrained={tmp_path}/t5")))
    with pytest.raises(UserError, match="has a vocabulary of 24 tokens, the tokenizer 30"):
        with user_errors("model"):  # as the entry points build models
            build_model(config, {"source_vocab_size": 30, "target_vocab_size": 30})
    config = dict(model_config(("model=t5", f"model.net.pretrained={tmp_path}/none")))
    with pytest.raises(UserError, match=f"model.net.pretrained={tmp_path}/none: ") as error:
        with user_errors("model"):
            build_model(config, JOINT)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="needs a joint vocabulary, data.tokenizer.joint=true"):
        with user_errors("model"):
            build_tiny(["model=gpt2", *HF_GPT2_SIZES], {**JOINT, "source_vocab_size": 20})


def test_a_transformers_model_trains_tests_and_translates_through_the_entry_points(tmp_path):
    """A pretrained T5 with its own tokenizer (T5's special ids, renumbered to the project's on
    both sides) through the CLI; without data.tokenizer.pretrained, one line says to add it.
    (Built from a config, GPT-2 and BART take the same paths: the generic tests above.)"""
    pretrained, run = save_pretrained("t5", tmp_path / "t5"), tmp_path / "run"
    overrides = [
        "model=t5",
        f"model.net.pretrained={pretrained}",
        f"data.tokenizer.pretrained={pretrained}",
        "decoding.beam_size=2",
    ]
    train_and_translate(run, overrides, ["jump twice", "look"])
    assert (run / "predictions" / "test_beam2.txt").is_file()
    without = _cli(
        "encdec.train", *overrides[:2], "data.tokenizer.joint=true", *FAST, f"hydra.run.dir={run}2"
    )
    assert without.returncode != 0
    last_line = without.stderr.strip().splitlines()[-1]
    assert f"read the data with its tokenizer, data.tokenizer.pretrained={pretrained}" in last_line
