"""Pretraining and fine-tuning: the noise that turns monolingual sentences into (source,
target) pairs, the pretraining data (both languages of a corpus, noised anew in training and
fixed in evaluation, read with the translation tokenizer), and ``init_from`` carrying a
pretrained checkpoint's weights and vocabulary into a fine-tuning run through the real CLI."""

import pytest
import torch

from encdec.data.monolingual import MonolingualDataModule
from encdec.data.noising import MASK_ID, Noise, PrefixSplit, SpanInfilling, TokenMasking
from encdec.data.translation import TranslationDataModule
from encdec.training.building import initialize_from
from encdec.utils.errors import UserError
from encdec.utils.special_tokens import PAD_ID
from tests.conftest import (
    FAST,
    SHARED_DATA,
    TINY_MODELS,
    TRANSFORMER_SIZES,
    build_tiny,
    learn_by_heart,
    random_batch,
)
from tests.test_entry_points import _cli

MULTI30K = SHARED_DATA / "multi30k"
needs_multi30k = pytest.mark.skipif(not MULTI30K.is_dir(), reason="../shared/data absent")
SENTENCE = list(range(10, 40))  # 30 token ids


def test_span_infilling_masks_its_share_in_spans_and_keeps_the_sentence_as_target():
    noise = SpanInfilling(mask_ratio=0.3, mean_span_length=3.0)
    source, target = noise(SENTENCE, torch.Generator().manual_seed(0))
    assert target == SENTENCE
    kept = [t for t in source if t != MASK_ID]
    assert len(SENTENCE) - len(kept) == 9  # 30 % of 30 tokens masked
    assert kept == [t for t in SENTENCE if t in kept]  # the rest in order
    pairs = zip(source, source[1:], strict=False)
    assert all(a != MASK_ID or b != MASK_ID for a, b in pairs)  # one mask per span
    again = noise(SENTENCE, torch.Generator().manual_seed(0))[0]
    other = noise(SENTENCE, torch.Generator().manual_seed(1))[0]
    assert again == source and other != source
    with pytest.raises(ValueError, match="mask_ratio must be in"):
        SpanInfilling(mask_ratio=1.0)


def test_the_prefix_split_cuts_each_sentence_in_two():
    cuts = set()
    for seed in range(20):
        source, target = PrefixSplit()(SENTENCE, torch.Generator().manual_seed(seed))
        assert source + target == SENTENCE and source and target
        cuts.add(len(source))
    assert len(cuts) > 5
    assert PrefixSplit()([7]) == ([7], [])


def test_token_masking_corrupts_its_share_and_asks_for_those_tokens_only():
    chosen = []
    for seed in range(200):
        source, target = TokenMasking(0.2)(SENTENCE, torch.Generator().manual_seed(seed))
        asked = [i for i, t in enumerate(target) if t != PAD_ID]
        assert len(source) == len(SENTENCE) and len(asked) == 6  # 20 % of 30
        assert all(target[i] == SENTENCE[i] for i in asked)
        assert all(source[i] == SENTENCE[i] for i in range(30) if i not in asked)
        chosen += [source[i] for i in asked]
    masked = sum(t == MASK_ID for t in chosen) / len(chosen)
    kept = sum(t in SENTENCE for t in chosen) / len(chosen)  # replaced by a sentence token, or kept
    assert 0.75 < masked < 0.85 and 0.15 < kept < 0.25


def test_a_masked_lm_fills_in_a_batch_and_starts_an_encoder_decoder():
    """BERT on one batch by heart, then its embeddings and encoder under a fresh decoder: every
    tensor but the decoder's comes from it (BERT2RND)."""
    sizes = [
        "model.net.embedding_dim=32",
        "model.net.encoder.dim=32",
        "model.net.encoder.ff_dim=64",
    ]
    torch.manual_seed(0)
    mlm = build_tiny(["model=masked_lm", *sizes])
    src, mask = random_batch(batch=4, src_len=8, seed=5)
    masked = src.clone()
    masked[:, 1] = MASK_ID  # every row's second token asked for
    target_out = torch.full_like(src, PAD_ID)
    target_out[:, 1] = src[:, 1]
    batch = {"source": masked, "source_mask": mask, "target_in": src, "target_out": target_out}
    learn_by_heart(mlm, batch, steps=150)
    with torch.no_grad():
        filled = mlm.net.generate(masked, mask)
    assert [h[0].tokens[1] for h in filled] == src[:, 1].tolist()
    with pytest.raises(UserError, match="fills in its input"):
        mlm.net.encode(src, mask)
    tuned = build_tiny(["model=transformer", *TRANSFORMER_SIZES, "model.net.share_embeddings=true",
                        "model.net.encoder.num_layers=3"])  # fmt: skip
    weights = {f"net.{k}": v for k, v in mlm.net.state_dict().items()}
    copied, fresh = initialize_from(tuned.net, {"state_dict": weights}, "mlm.ckpt")
    assert fresh and all(name.startswith("decoder.") for name in fresh)
    assert "decoder.embedding.weight" not in fresh  # the source embedding's, shared
    torch.testing.assert_close(tuned.net.source_embedding.weight, mlm.net.source_embedding.weight)
    torch.testing.assert_close(tuned.net.decoder.embedding.weight, mlm.net.source_embedding.weight)


def test_initializing_from_a_checkpoint_of_another_network_is_one_clear_error():
    network = TINY_MODELS["transformer-prenorm"]().net
    checkpoint = {"state_dict": {"net.elsewhere.weight": torch.zeros(3)}}
    with pytest.raises(UserError, match="init_from=x.ckpt: no tensor of its network matches"):
        initialize_from(network, checkpoint, "x.ckpt")
    own = {f"net.{k}": v.clone() + 1 for k, v in network.state_dict().items()}
    copied, fresh = initialize_from(network, {"state_dict": own}, "same.ckpt")
    assert copied == len(own) and fresh == []
    assert all(torch.equal(v, own[f"net.{k}"]) for k, v in network.state_dict().items())


def pretraining_data(tmp_path, noise: Noise | None = None) -> MonolingualDataModule:
    return MonolingualDataModule(
        noise=noise or SpanInfilling(),
        source_lang="en",
        target_lang="de",
        cache_dir=str(tmp_path / "cache"),
        path=str(MULTI30K),
        splits={"train": "train", "val": "val", "test": "test_2016_flickr"},
        max_tokens=1024,
        seed=3,
    )


@needs_multi30k
def test_pretraining_data_reads_both_languages_with_the_translation_tokenizer(tmp_path):
    data = pretraining_data(tmp_path)
    data.prepare_data()
    data.setup("fit")
    translation = TranslationDataModule("en", "de", str(tmp_path / "cache"), path=str(MULTI30K))
    assert data.load_tokenizer().to_dict() == translation.load_tokenizer().to_dict()
    assert len(data.datasets["val"]) == 2 * 1014  # every val sentence of both languages
    val = [next(iter(data.val_dataloader())) for _ in range(2)]
    assert torch.equal(val[0]["source"], val[1]["source"])  # evaluation: the same noise
    assert MASK_ID in val[0]["source"]
    assert val[0]["references"][0] == data.load_tokenizer().decode_target(
        val[0]["target_out"][0].tolist()
    )
    masking = pretraining_data(tmp_path, TokenMasking())  # scored on the filled-in sentence
    masking.prepare_data()
    masking.setup("fit")
    batch = next(iter(masking.val_dataloader()))
    chosen = batch["target_out"][0] != PAD_ID  # (B, T) and the source (B, S) end in EOS: T == S
    original = torch.where(chosen, batch["target_out"][0], batch["source"][0])
    assert batch["references"][0] == data.load_tokenizer().decode_target(original.tolist())
    train = data.train_dataloader()
    torch.manual_seed(0)
    first = next(iter(train))
    torch.manual_seed(1)
    second = next(iter(train))
    assert torch.equal(first["target_out"], second["target_out"])  # the same sentences
    assert not torch.equal(first["source"], second["source"])  # noised anew


@needs_multi30k
def test_pretrain_then_fine_tune_from_its_checkpoint_through_the_cli(tmp_path):
    tiny = ["model=transformer", "model.net.embedding_dim=32", "model.net.share_embeddings=true",
            *(f"model.net.{p}.{k}" for p in ("encoder", "decoder")
              for k in ("dim=32", "ff_dim=64", "num_layers=1"))]  # fmt: skip
    corpus = [f"data.path={MULTI30K}", "data.source_lang=en", "data.target_lang=de",
              "data.max_tokens=512", f"paths.cache_dir={tmp_path}/cache"]  # fmt: skip
    checkpoints = ["callbacks=default", "~callbacks.lr_monitor"]
    pretrained = _cli("encdec.train", "data=multi30k_denoising", *corpus, *tiny, *FAST,
                      *checkpoints, f"hydra.run.dir={tmp_path}/pretrain")  # fmt: skip
    assert pretrained.returncode == 0, pretrained.stderr[-3000:]
    assert "val/ppl" in (tmp_path / "pretrain" / "csv" / "metrics.csv").read_text()
    best = tmp_path / "pretrain" / "checkpoints" / "best.ckpt"
    tuned = _cli("encdec.train", "data=multi30k", *corpus, *tiny, *FAST, f"init_from={best}",
                 f"hydra.run.dir={tmp_path}/tune")  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    log = next((tmp_path / "tune").glob("*.log")).read_text()
    assert "init_from: " in log and "initialized afresh: none" in log
    other = _cli("encdec.train", "data=multi30k", *corpus, "model=transformer", *FAST,
                 f"init_from={best}", f"hydra.run.dir={tmp_path}/other")  # fmt: skip
    assert other.returncode != 0
    assert "no tensor of its network matches" in other.stderr.strip().splitlines()[-1]
