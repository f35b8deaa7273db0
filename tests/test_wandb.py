"""What a run tells W&B (and its run dir): group, tags and job type; the resolved config with
parameter counts and no secret; sample tables and attention heatmaps at each validation."""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from lightning.pytorch.loggers.wandb import WandbLogger
from omegaconf import OmegaConf
from PIL import Image

from encdec.decoding.search import greedy_search, max_output_lengths
from encdec.modules.attention import MultiHeadAttention
from encdec.modules.transformer import TransformerDecoder
from encdec.train import train
from encdec.utils.config import print_config_tree
from encdec.utils.loggers import log_run_config, parameter_counts
from tests.conftest import (
    FAST,
    TINY_MODELS,
    TRANSFORMER_SIZES,
    both_parts,
    compose_config,
    random_batch,
)
from tests.test_captioning import TINY_SHAPES
from tests.test_entry_points import TINY
from tests.test_speech_cli import TINY_RECOGNIZER
from tests.warm_cli import run_module

ROOT = Path(__file__).resolve().parents[1]
FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # 40 characters, as a W&B API key


def _wandb_settings(config_name: str, overrides: list[str], tmp_path: Path) -> dict:
    cfg = compose_config(config_name, overrides, tmp_path / "run")
    return OmegaConf.to_container(cfg.logger.wandb, resolve=True)


def test_group_tags_and_job_type_of_single_runs_multiruns_and_evaluate(tmp_path):
    single = _wandb_settings("train", ["logger=wandb", "tags=[baseline]"], tmp_path)
    assert single["group"] == "train" and single["job_type"] == "train"
    assert single["tags"] == ["baseline", "attention", "scan", "RNNEncoder", "AttentionRNNDecoder"]

    sweep = ["logger=wandb", "hydra.mode=MULTIRUN", "hydra.sweep.dir=/x/multiruns/2026-11-26"]
    job = _wandb_settings("train", [*sweep, "experiment=scan_transformer"], tmp_path)
    assert job["group"] == "scan_transformer-2026-11-26"  # every job of the sweep
    assert job["tags"] == [
        "scan",
        "transformer",
        "scan_transformer",
        "TransformerEncoder",
        "TransformerDecoder",
    ]

    evaluation = _wandb_settings("evaluate", ["logger=wandb", "ckpt_path=x.ckpt"], tmp_path)
    assert evaluation["job_type"] == "eval" and evaluation["group"] == "evaluate"
    assert evaluation["tags"] == ["dev"]  # the model and its data come from the checkpoint
    given = _wandb_settings("evaluate", ["logger=wandb", "ckpt_path=x.ckpt", "data=scan"], tmp_path)
    assert given["tags"] == ["dev", "scan"]  # data given on the command line


class SpyLogger:
    def __init__(self) -> None:
        self.hyperparameters: dict = {}

    def log_hyperparams(self, params: dict) -> None:
        self.hyperparameters = params


def test_resolved_config_and_parameter_counts_are_logged_and_saved_without_secrets(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    cfg = compose_config("train", ["+leak=key ${oc.env:WANDB_API_KEY}"], tmp_path / "run")
    model = TINY_MODELS["transformer-postnorm-learned"]().net
    spy = SpyLogger()
    log_run_config([spy], cfg, model)
    logged = json.dumps(spy.hyperparameters)
    assert FAKE_KEY not in logged and "${" not in logged  # resolved, redacted
    assert spy.hyperparameters["leak"] == "key <redacted>"
    assert spy.hyperparameters["logger"]["wandb"]["group"] == "train"
    counts = spy.hyperparameters["parameters"]
    assert counts["total"] == counts["trainable"] == sum(p.numel() for p in model.parameters())
    assert {"encoder", "decoder", "generator"} <= set(counts)
    print_config_tree(cfg, tmp_path / "config.yaml")
    assert FAKE_KEY not in (tmp_path / "config.yaml").read_text()


def test_parameter_counts_count_shared_weights_once_and_frozen_ones_as_untrainable():
    model = TINY_MODELS["transformer-prenorm"]().net  # shared embedding table, tied output
    model.encoder.requires_grad_(False)
    counts = parameter_counts(model)
    assert counts["total"] < counts["encoder"] + counts["decoder"] + counts.get("generator", 0)
    frozen = {id(p): p.numel() for p in model.encoder.parameters()}
    assert counts["trainable"] == counts["total"] - sum(frozen.values())


def test_multi_head_attention_keeps_the_weights_sdpa_would_use():
    torch.manual_seed(0)
    attention = MultiHeadAttention(dim=16, num_heads=4, dropout=0.0).eval()
    query, source = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, None, :]
    expected = attention(query, *attention.project_kv(source), mask=mask)
    attention.keep_weights = True
    kept = attention(query, *attention.project_kv(source), mask=mask)
    assert torch.allclose(kept, expected, atol=1e-6)
    assert attention.weights.shape == (2, 4, 3, 5)
    assert torch.allclose(attention.weights.sum(-1), torch.ones(2, 4, 3))
    assert attention.weights[1, :, :, 3:].abs().max() == 0  # padding gets no weight
    causal = attention(query, *attention.project_kv(query), is_causal=True)
    attention.keep_weights = False
    assert torch.allclose(causal, attention(query, *attention.project_kv(query), is_causal=True))


@pytest.mark.parametrize("name", ["transformer-prenorm", "bahdanau", "rnn-gru"])
def test_greedy_search_keeps_attention_only_when_asked_and_changes_nothing_else(name):
    torch.manual_seed(0)
    model = TINY_MODELS[name]().net.eval()
    src, mask = random_batch(batch=3, src_len=6)
    limits = max_output_lengths(mask, 1.5, 4, 64)
    plain = greedy_search(model, src, mask, limits)
    with model.returning_attention():
        kept = greedy_search(model, src, mask, limits, keep_attention=True)
    assert [h.tokens for h in kept] == [h.tokens for h in plain]
    assert all(h.attention is None for h in plain)
    for hypothesis in kept:
        if name == "rnn-gru":  # no attention in the plain RNN family
            assert hypothesis.attention is None
            continue
        steps = len(hypothesis.tokens) + hypothesis.finished  # + the EOS step
        assert hypothesis.attention.shape == (steps, src.size(1))
        assert torch.allclose(hypothesis.attention.sum(-1), torch.ones(steps), atol=1e-5)
    if isinstance(model.decoder, TransformerDecoder):  # the explicit path is off again
        assert not model.decoder.layers[-1].cross_attention.keep_weights


@pytest.fixture
def logged_to_wandb(monkeypatch) -> Iterator[dict[str, list]]:
    """What the callbacks hand to ``WandbLogger.log_table`` / ``log_image`` (offline W&B)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    calls: dict[str, list] = {"tables": [], "images": []}
    monkeypatch.setattr(
        WandbLogger, "log_table", lambda self, key, **kwargs: calls["tables"].append((key, kwargs))
    )
    monkeypatch.setattr(
        WandbLogger,
        "log_image",
        lambda self, key, images, step=None, **kwargs: calls["images"].append((key, images)),
    )
    yield calls
    import wandb

    wandb.finish()  # the next test starts its own run


SMALL_BATCHES = ["data.max_tokens=512", "trainer.limit_train_batches=2"]
SAMPLES = ["+callbacks.sample_table._target_=encdec.callbacks.samples.ValidationSamples"]


@pytest.mark.parametrize("family", ["attention", "transformer", "rnn"])
def test_sample_table_and_attention_heatmaps_at_each_validation(tmp_path, family, logged_to_wandb):
    overrides = [f"model={family}", *TINY[family], *FAST, *SMALL_BATCHES, *SAMPLES]
    overrides += ["logger=wandb", "test=false", "trainer.max_epochs=2"]
    train(compose_config("train", overrides, tmp_path / "run"))
    run = tmp_path / "run"
    pages = sorted((run / "samples").glob("*.md"))
    assert [p.name for p in pages] == ["epoch0_step2.md", "epoch1_step4.md"]
    table = pages[0].read_text().splitlines()
    assert table[2] == "| # | source | reference | hypothesis |" and len(table) == 4 + 8
    assert [key for key, _ in logged_to_wandb["tables"]] == ["val/samples"] * 2
    columns, data = (logged_to_wandb["tables"][0][1][k] for k in ("columns", "data"))
    assert columns == ["source", "reference", "hypothesis"] and len(data) == 8
    assert f"| 0 | {data[0][0]} | {data[0][1]} |" in table[4]  # the same rows in both
    plots = sorted(p.name for p in (run / "attention").glob("*.png")) if family != "rnn" else []
    if family == "rnn":
        assert not (run / "attention").exists() and not logged_to_wandb["images"]
        return
    assert plots == [f"epoch{e}_step{s}_{i}.png" for e, s in ((0, 2), (1, 4)) for i in (0, 1)]
    key, images = logged_to_wandb["images"][0]
    assert key == "val/attention" and [Path(p).name for p in images] == plots[:2]
    assert len({Image.open(p).size for p in images}) == 1  # W&B shows one key's images alike


def test_caption_samples_show_the_image(tmp_path, logged_to_wandb):
    overrides = [
        "data=caption_shapes",
        "model=caption_attention",
        *TINY_SHAPES,
        "model.net.encoder.channels=[8, 16]",
        "model.net.embedding_dim=16",
        "model.net.decoder.hidden_size=32",
        *FAST,
        *SAMPLES,
        "+callbacks.sample_table.num_samples=3",
        "logger=wandb",
        "test=false",
    ]
    train(compose_config("train", overrides, tmp_path / "run"))
    run = tmp_path / "run"
    page = (run / "samples" / "epoch0_step3.md").read_text()
    assert "| # | image | references | hypothesis |" in page and "](images/2.png)" in page
    assert sorted(p.name for p in (run / "samples" / "images").iterdir()) == [
        "0.png",
        "1.png",
        "2.png",
    ]
    _, table = logged_to_wandb["tables"][0]
    assert table["columns"] == ["image", "references", "hypothesis"]
    assert type(table["data"][0][0]).__name__ == "Image"  # wandb.Image
    assert len(list((run / "attention").glob("*.png"))) == 2  # attention over the image grid


def test_speech_samples_keep_the_audio_and_plot_attention_over_the_spectrogram(
    tmp_path, logged_to_wandb
):
    overrides = [
        *TINY_RECOGNIZER,  # on a tiny synthesized corpus
        *FAST,
        *SAMPLES,
        "+callbacks.sample_table.num_samples=2",
        "logger=wandb",
        "test=false",
    ]
    train(compose_config("train", overrides, tmp_path / "run"))
    run = tmp_path / "run"
    [page] = [path.read_text() for path in (run / "samples").glob("*.md")]  # one validation
    assert "| # | audio | reference | hypothesis |" in page and "](audio/1.wav)" in page
    assert sorted(p.name for p in (run / "samples" / "audio").iterdir()) == ["0.wav", "1.wav"]
    _, table = logged_to_wandb["tables"][0]
    assert table["columns"] == ["audio", "reference", "hypothesis"]
    assert type(table["data"][0][0]).__name__ == "Audio"  # wandb.Audio
    assert len(list((run / "attention").glob("*.png"))) == 2  # attention over the spectrogram


def test_cli_multirun_shares_a_group_and_never_saves_the_api_key(tmp_path):
    sweep = tmp_path / "sweep"
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_API_KEY": FAKE_KEY,
        "PROJECT_ROOT": str(ROOT),
        "PYTHONPATH": str(ROOT / "src"),
    }
    overrides = [
        "model=scan_transformer",
        *TRANSFORMER_SIZES,
        *both_parts("num_heads=2", "num_layers=1"),
        *[o for o in FAST if not o.startswith(("logger", "callbacks"))],
        *SMALL_BATCHES,
        "callbacks=none",
        *SAMPLES,
        "test=false",
        "tags=[smoke]",
        "seed=1,2",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
    ]
    result = run_module("encdec.train", "-m", *overrides, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        wandb = OmegaConf.load(sweep / job / "config.yaml").logger.wandb
        assert wandb.group == "train-sweep" and wandb.job_type == "train"
        tags = ["smoke", "scan_transformer", "scan", "TransformerEncoder", "TransformerDecoder"]
        assert list(wandb.tags) == tags
        assert (sweep / job / "samples" / "epoch0_step2.md").is_file()
        assert len(list((sweep / job / "attention").glob("*.png"))) == 2
        media = next((sweep / job / "wandb").glob("offline-run-*")) / "files" / "media"
        assert list(media.glob("table/val/samples_*.table.json"))
        assert len(list(media.glob("images/val/attention_*.png"))) == 2
    files = [p for p in sweep.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and any(p.suffix == ".log" for p in files)
    leaked = [str(p) for p in files if FAKE_KEY.encode() in p.read_bytes()]
    assert not leaked
    assert FAKE_KEY not in result.stdout + result.stderr
