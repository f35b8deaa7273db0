"""Any encoder with any decoder, with no new code: every encoder option of
``conf/model/net/encoder`` composes with every decoder option of ``conf/model/net/decoder``,
steps as it trains and searches consistently; two pairs no model config has (a Transformer
encoder under the attention RNN decoder, a ViT under the fixed-context RNN decoder) learn a
batch by heart and train, test and decode through the real entry points."""

from pathlib import Path

import pytest
import torch

from encdec.data.shapes import draw_scene, generate_scene
from encdec.decoding.search import beam_search, greedy_search, max_output_lengths
from encdec.utils.config import CONFIG_DIR
from tests.conftest import FAST, VOCAB, build_tiny, learn_by_heart, random_batch, target_batch
from tests.test_captioning import TINY_SHAPES
from tests.test_entry_points import _cli, takes_images

PARTS = Path(CONFIG_DIR) / "model" / "net"
ENCODERS = sorted(path.stem for path in (PARTS / "encoder").glob("*.yaml"))
DECODERS = sorted(path.stem for path in (PARTS / "decoder").glob("*.yaml"))
CHECKPOINTS = ["callbacks=default", "~callbacks.lr_monitor"]  # best.ckpt to decode with
IMAGE_MODEL = ["model=caption_attention", "model.attention_regularization=0"]
TRANSFORMER_UNDER_ATTENTION_RNN = [
    "model=attention",
    "model/net/encoder=transformer",
    "model.net.embedding_dim=16",
    *(f"model.net.encoder.{k}" for k in ("dim=32", "ff_dim=64", "num_layers=1", "num_heads=2")),
    "model.net.decoder.hidden_size=32",
]
VIT_UNDER_CONTEXT_RNN = [
    *IMAGE_MODEL,
    "model/net/encoder=vit",
    "model/net/decoder=context_rnn",
    "model.net.embedding_dim=16",
    *(f"model.net.encoder.{k}" for k in ("patch_size=8", "dim=16", "num_layers=1", "ff_dim=32")),
    "model.net.decoder.hidden_size=32",
    "model.net.decoder.num_layers=1",
]


def pair(encoder: str, decoder: str) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Overrides composing the pair, and a source batch it reads (token ids or images)."""
    overrides = [f"model/net/encoder={encoder}", f"model/net/decoder={decoder}"]
    if takes_images(encoder):
        images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        return [*IMAGE_MODEL, *overrides], images, torch.ones(3, 1, dtype=torch.bool)
    return ["model=attention", *overrides], *random_batch(batch=3, src_len=6)


def vocab_sizes(overrides: list[str]) -> dict[str, int]:
    if "model=caption_attention" in overrides:
        return {"target_vocab_size": VOCAB}
    return {"source_vocab_size": VOCAB, "target_vocab_size": VOCAB}


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_encoder_with_every_decoder_steps_as_it_trains(encoder, decoder):
    overrides, src, mask = pair(encoder, decoder)
    torch.manual_seed(0)
    network = build_tiny(overrides, vocab_sizes(overrides)).net.eval()
    tgt_in = torch.randint(4, VOCAB, (src.size(0), 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = network(src, mask, tgt_in)  # (B, T, V)
        memory = network.encode(src, mask)
        state, stepped = network.init_state(memory), []
        for t in range(tgt_in.size(1)):
            logits, state, _ = network.step(tgt_in[:, t], state, memory)
            stepped.append(logits)
        torch.testing.assert_close(torch.stack(stepped, 1), whole, atol=1e-5, rtol=1e-4)
        limits = max_output_lengths(mask, 0.0, 6, cap=100)
        greedy = greedy_search(network, src, mask, limits)
        beam = beam_search(network, src, mask, limits, beam_size=1)
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]


@pytest.mark.parametrize(
    "overrides",
    [TRANSFORMER_UNDER_ATTENTION_RNN, VIT_UNDER_CONTEXT_RNN],
    ids=["transformer-encoder+attention-rnn", "vit+context-rnn"],
)
def test_cross_pairs_learn_a_batch_by_heart(overrides):
    torch.manual_seed(0)
    model = build_tiny(overrides, vocab_sizes(overrides))
    if "model=caption_attention" in overrides:
        src = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        mask = torch.ones(4, 1, dtype=torch.bool)
    else:
        src, mask = random_batch(batch=4, src_len=7, seed=2)
    targets = torch.randint(4, VOCAB, (4, 5), generator=torch.Generator().manual_seed(3))
    learn_by_heart(model, target_batch(src, mask, targets.tolist()), steps=150)
    limits = max_output_lengths(mask, 0.0, 8, cap=100)
    with torch.no_grad():
        decoded = greedy_search(model.net, src, mask, limits)
    assert [h.tokens for h in decoded] == targets.tolist()


def test_cross_pairs_train_test_and_decode_through_the_entry_points(tmp_path):
    run = tmp_path / "text"
    text = _cli(
        "encdec.train",
        *TRANSFORMER_UNDER_ATTENTION_RNN,
        *FAST,
        *CHECKPOINTS,
        "decoding.beam_size=2",
        f"hydra.run.dir={run}",
    )
    assert text.returncode == 0, text.stderr[-3000:]
    assert (run / "predictions" / "test_beam2.txt").is_file()
    translated = _cli(
        "encdec.translate", f"ckpt_path={run}/checkpoints/best.ckpt", stdin="jump twice\nlook\n"
    )
    assert translated.returncode == 0 and len(translated.stdout.splitlines()) == 2

    run = tmp_path / "images"
    images = _cli(
        "encdec.train",
        "data=caption_shapes",
        *TINY_SHAPES,
        *VIT_UNDER_CONTEXT_RNN,
        *FAST,
        *CHECKPOINTS,
        f"hydra.run.dir={run}",
    )
    assert images.returncode == 0, images.stderr[-3000:]
    assert any((run / "predictions").glob("test*.txt"))
    scene = tmp_path / "scene.png"
    draw_scene(generate_scene(0, "test", 0), 32).save(scene)
    captioned = _cli("encdec.caption", f"ckpt_path={run}/checkpoints/best.ckpt", f"image={scene}")
    assert captioned.returncode == 0 and len(captioned.stdout.splitlines()) == 1, captioned.stderr
