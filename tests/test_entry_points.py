"""The real Hydra configs: every option of every group composes and instantiates; train,
evaluate and translate run end to end on tiny budgets; bad input ends in one clear line."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from encdec.decoding.search import DecodingConfig
from encdec.evaluate import evaluate
from encdec.inference.loading import load_network
from encdec.inference.translator import Translator
from encdec.launch.validation import validate_config
from encdec.networks.encoder_decoder import EncoderDecoder
from encdec.train import train
from encdec.training.building import build_model, load_model
from encdec.training.seq2seq_module import Seq2SeqModule
from encdec.utils.config import CONFIG_DIR, flatten
from encdec.utils.errors import UserError
from tests.conftest import (
    DECODER_ONLY_SIZES,
    FAST,
    SHARED_DATA,
    TRANSFORMER_SIZES,
    both_parts,
    compose_config,
)
from tests.readme_commands import readme_commands
from tests.warm_cli import run_module

ROOT = Path(__file__).resolve().parents[1]
GROUP_OPTIONS = [  # every option of every group, the model's nested groups included
    (path.parent.relative_to(CONFIG_DIR).as_posix(), path.stem)
    for path in sorted(Path(CONFIG_DIR).rglob("*.yaml"))
    if path.parent != Path(CONFIG_DIR)
    and path.parts[-2] not in ("hparams_search", "paths")
    and "hydra" not in path.relative_to(CONFIG_DIR).parts
]
TINY = {
    "rnn": [
        "model.net.embedding_dim=16",
        "model.net.encoder.hidden_size=32",
        "model.net.decoder.hidden_size=32",
    ],
    "attention": [
        "model.net.embedding_dim=16",
        "model.net.encoder.hidden_size=32",
        "model.net.decoder.hidden_size=32",
    ],
    "transformer": [
        *TRANSFORMER_SIZES,
        *both_parts("num_heads=2"),
        "model.net.share_embeddings=false",
        "model.net.tie_output=false",
    ],
    "prefix_lm": [*DECODER_ONLY_SIZES, "model.net.decoder.num_heads=2"],
}

TINY_TRAIN = {
    family: [
        f"model={family}",
        *overrides,
        *FAST,
        "callbacks=default",  # its progress bar gives way to trainer.enable_progress_bar=false
        "~callbacks.lr_monitor",
    ]
    for family, overrides in TINY.items()
}


def option_settings(group: str, option: str) -> dict[str, object]:
    """The plain values an option file sets itself, by their key in the composed config (its
    defaults, Hydra's own keys and interpolations left out)."""
    path = Path(CONFIG_DIR) / group / f"{option}.yaml"
    settings = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    settings.pop("defaults", None)
    settings.pop("hydra", None)
    is_global = path.read_text().startswith("# @package _global_")
    for key in reversed(group.split("/")):  # model/net/encoder -> {model: {net: {encoder: ..}}}
        settings = settings if is_global else {key: settings}
    flat = flatten(settings)
    return {k: v for k, v in flat.items() if not (isinstance(v, str) and "${" in v)}


def assert_instance_of_target(built: object, node: DictConfig) -> None:
    assert isinstance(built, get_class(node._target_)), node._target_


def takes_images(encoder_option: str) -> bool:
    """Whether an encoder config's class reads images (an image encoder's module)."""
    path = Path(CONFIG_DIR) / "model" / "net" / "encoder" / f"{encoder_option}.yaml"
    node = OmegaConf.load(path)
    while "_target_" not in node:  # an option that extends another: its defaults' first
        node = OmegaConf.load(path.with_name(f"{node.defaults[0]}.yaml"))
    return node._target_.startswith("encdec.modules.image_encoders.")


def model_option(overrides: list[str]) -> str:
    """The model option a list of overrides chooses (train.yaml's default if none)."""
    chosen = [o.split("=")[1] for o in overrides if o.startswith("model=")]
    defaults = OmegaConf.load(Path(CONFIG_DIR) / "train.yaml").defaults
    return chosen[0] if chosen else next(d.model for d in defaults if "model" in d)


def option_overrides(group: str, option: str) -> list[str]:
    """The overrides that choose an option, with what it needs beside it: the values it
    leaves to the user, the data a captioning reader reads, an image model for an image
    encoder."""
    overrides = [f"{group}={option}"]
    if group == "data" and option == "parallel_text":
        overrides += ["data.path=/tmp", "data.source_lang=de", "data.target_lang=en"]
    if group == "data/source" and option.startswith("single_voice"):  # speech synthesis's
        overrides += ["data=synthesis_commands"]
        overrides += ["data.source.texts.path=/tmp"] if option.endswith("multi30k") else []
    elif group == "data/source" and option in SPEECH_SOURCES:  # a speech data's reader
        overrides += ["data=speech_commands"]
        overrides += [SPEECH_SOURCES[option]] if SPEECH_SOURCES[option] else []
    elif group == "data/source":  # a captioning data's reader, with what it must be given
        overrides += ["data=flickr8k", "data.path=/tmp"]
        required = {"karpathy": "data.source.annotations=x.json", "hf": "data.source.hub_id=x"}
        overrides += [required[option]] if option in required else []
    if group == "data/noise":  # pretraining's noise: a pretraining data's
        overrides = ["data=multi30k_denoising", "data.path=/tmp", *overrides]
    if group == "data" and option in ("speech_multi30k", "synthesis_multi30k"):
        overrides += [SPEECH_SOURCES["speech_multi30k"]]
    if group in ("model/net/prenet", "model/net/postnet"):  # a speech synthesizer's parts
        overrides += ["model=tacotron"]
    if group in ("model/net/prenet", "model/net/postnet", "data/text_frontend") or (
        option in SYNTHESIZERS
    ):
        overrides += ["data=synthesis_commands"]  # the audio's sample rate
    if group == "model/net/encoder" and takes_images(option):
        overrides += ["model=caption_attention", "data=caption_shapes"]
    if group in ("model/net/frontend", "model/language_model"):  # a speech model's part
        overrides += ["model=speech_transformer"]
    if group in ("model/net/frontend", "model/language_model") or (
        group == "model" and option.startswith("speech")
    ):
        overrides += ["data=speech_commands"]  # the audio's sample rate
    return overrides


SYNTHESIZERS = ("tacotron", "transformer_tts")
TINY_SPEECH_CORPUS = [
    "data.source.speakers={train:4,val:1,test:1,test_unseen_engine:1}",
    "data.source.utterances_per_speaker=3",
]
SPEECH_SOURCES = {  # the speech readers, with what each must be given
    "speech_commands": None,
    "speech_multi30k": "data.source.texts.path=/tmp",
    "manifest": "data.source.path=/tmp",
    "hf_audio": "data.source.dataset=x",
}


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_config_composes_and_instantiates(tmp_path, group, option):
    overrides = option_overrides(group, option)
    cfg = compose_config("train", overrides, tmp_path / "run")
    OmegaConf.resolve(cfg)
    validate_config(cfg)  # every key known to the class it configures, in type and range
    given = {override.split("=")[0] for override in overrides}
    if "/" in group:  # a model part: the model config's own settings for it come after it
        given |= set(option_settings("model", model_option(overrides)))
    for key, value in option_settings(group, option).items():
        if key not in given:
            assert OmegaConf.select(cfg, key) == value, f"{group}={option}: {key}={value!r}"
    if group.startswith("data"):
        data = instantiate(cfg.data)
        assert_instance_of_target(data, cfg.data)
        if "source" in cfg.data:
            assert_instance_of_target(data.source, cfg.data.source)
    elif group.startswith("model"):
        vocab_sizes = {"target_vocab_size": 50}  # captioners and recognizers: no source text
        if not cfg.model.metrics._target_.endswith(("CaptionMetrics", "SpeechMetrics")):
            vocab_sizes["source_vocab_size"] = 50
        model = build_model(OmegaConf.to_container(cfg.model), vocab_sizes)
        assert_instance_of_target(model, cfg.model)
        assert_instance_of_target(model.net, cfg.model.net)
        for part in ("encoder", "decoder"):
            if part not in cfg.model.net:  # a network that makes its own (transformers models)
                continue
            if cfg.model.net[part] is None:  # a CTC-only recognizer has no decoder
                assert getattr(model.net, part) is None
                continue
            assert_instance_of_target(getattr(model.net, part), cfg.model.net[part])
        assert model.net.vocab_sizes() == vocab_sizes
    elif group == "trainer" and cfg.trainer.accelerator == "cpu":
        assert instantiate(cfg.trainer).max_epochs == cfg.trainer.max_epochs
    elif group in ("logger", "callbacks"):
        for node in (cfg[group] or {}).values():
            if node is not None:  # null: a callback an option turns off
                assert_instance_of_target(instantiate(node), node)


@pytest.mark.parametrize("family", sorted(TINY))
def test_train_then_evaluate_reproduces_test_metrics(tmp_path, family):
    overrides = [*TINY_TRAIN[family], "decoding.beam_size=2", "data.max_tokens=1024"]
    cfg = compose_config("train", overrides, tmp_path / "train")
    metrics = train(cfg)
    run = tmp_path / "train"
    best = run / "checkpoints" / "best.ckpt"
    assert best.is_file() and (run / "tokenizer").is_dir() and (run / "config.yaml").is_file()
    record = json.loads((run / "test_metrics_beam2.json").read_text())
    assert "tok:13a" in record["signature"]
    predictions = (run / "predictions" / "test_beam2.txt").read_text()
    assert predictions.count("\n") >= 1
    for name in ("test/bleu_beam2", "test/chrf_beam2", "test/exact_match_beam2", "test/ppl"):
        assert name in metrics

    cfg = compose_config(
        "evaluate",
        [
            f"ckpt_path={best}",
            "logger=csv",
            "decoding.beam_size=2",
            "trainer.limit_test_batches=1",
            "trainer.enable_progress_bar=false",
        ],
        tmp_path / "eval",
    )
    evaluated = evaluate(cfg)
    for name, value in evaluated.items():
        assert value == pytest.approx(metrics[name], abs=1e-6), name
    assert (tmp_path / "eval" / "predictions" / "test_beam2.txt").read_text() == predictions
    if family == "transformer":  # sampling through the test stage: its own metric names
        sampled = [
            f"ckpt_path={best}",
            "logger=csv",
            "decoding.sample=true",
            "decoding.beam_size=1",
        ]
        sampled_metrics = evaluate(compose_config("evaluate", sampled, tmp_path / "sampled"))
        assert "test/bleu_sample" in sampled_metrics
        assert (tmp_path / "sampled" / "predictions" / "test_sample.txt").is_file()
    model = load_model(best)
    assert model.model_config == OmegaConf.to_container(cfg_model(family), resolve=True)
    translator = Translator(model.net)
    sentences = ["jump twice", "walk left after run", "look", "run around right thrice and jump"]
    one_by_one = [translator.translate([sentence])[0] for sentence in sentences]
    assert translator.translate(sentences, batch_size=2) == one_by_one  # length-sorted, in order
    network, _ = load_network(best)  # the same weights without Lightning: the same translations
    assert isinstance(network, EncoderDecoder) and not isinstance(network, Seq2SeqModule)
    assert Translator(network).translate(sentences, batch_size=2) == one_by_one


def cfg_model(family: str) -> DictConfig:
    return compose_config("train", TINY_TRAIN[family], Path("/tmp/unused")).model


def test_checkpoint_loads_without_hydra_and_refuses_what_it_cannot_read(tmp_path):
    cfg = compose_config("train", [*TINY_TRAIN["transformer"], "test=false"], tmp_path / "run")
    train(cfg)
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    model = load_model(path)  # from the config and tokenizer the checkpoint holds
    assert model.tokenizer is not None and Translator(model.net).translate(["look"])[0] is not None
    checkpoint = torch.load(path, weights_only=True)
    old = {"encdec_family": "TransformerSeq2Seq", "state_dict": checkpoint["state_dict"]}
    torch.save(old, tmp_path / "old.ckpt")  # the layout before models were composed
    with pytest.raises(
        UserError, match=r"checkpoint format 1 .* use encdec 0.1.0 \(git tag v0.1.0\)"
    ):
        load_model(tmp_path / "old.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(UserError, match="not an encdec model checkpoint"):
        load_model(tmp_path / "other.ckpt")
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_model(tmp_path / "junk.ckpt")


def test_config_errors_name_the_key(tmp_path):
    cfg = compose_config("train", [*FAST, "+model.net.decoder.hiden_size=3"], tmp_path / "a")
    with pytest.raises(
        UserError, match=r"unknown key 'model.net.decoder.hiden_size'; did you mean"
    ):
        train(cfg)
    cfg = compose_config("train", [*FAST, "model.net.decoder.cell=transistor"], tmp_path / "b")
    with pytest.raises(
        UserError, match="model.net.decoder.cell='transistor': expected one of 'gru', 'lstm'"
    ):
        train(cfg)
    cfg = compose_config(
        "train",
        [
            *FAST,
            "model=transformer",
            "model.net.share_embeddings=true",
            "data.tokenizer.joint=false",
        ],
        tmp_path / "c",
    )
    with pytest.raises(UserError, match="share_embeddings=true needs data.tokenizer.joint=true"):
        train(cfg)


def _cli(
    module: str, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PROJECT_ROOT": str(ROOT), **(env or {})}
    return run_module(module, *args, cwd=ROOT, env=env, stdin=stdin)


def train_and_translate(run: Path, overrides: list[str], sentences: list[str]) -> Path:
    """Train through the CLI (a tiny budget, best.ckpt kept) into ``run``, check the test stage
    wrote its predictions, and translate ``sentences`` with the checkpoint through the CLI (one
    line each); returns the checkpoint."""
    checkpoints = ["callbacks=default", "~callbacks.lr_monitor"]
    trained = _cli("encdec.train", *overrides, *FAST, *checkpoints, f"hydra.run.dir={run}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert any((run / "predictions").glob("test*.txt"))
    best = run / "checkpoints" / "best.ckpt"
    stdin = "".join(f"{sentence}\n" for sentence in sentences)
    translated = _cli("encdec.translate", f"ckpt_path={best}", stdin=stdin)
    assert translated.returncode == 0, translated.stderr[-2000:]
    assert len(translated.stdout.splitlines()) == len(sentences)
    return best


def write_parallel_text(folder: Path, source: bytes, target: bytes) -> Path:
    """``{train,validation,test}.{de,en}`` files in ``folder``: the given training text, one
    good pair for the others."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.de").write_bytes(source)
    (folder / "train.en").write_bytes(target)
    for split in ("validation", "test"):
        (folder / f"{split}.de").write_text("ein Hund\n")
        (folder / f"{split}.en").write_text("a dog\n")
    return folder


PARALLEL_TEXT = ["data=parallel_text", "data.source_lang=de", "data.target_lang=en"]
BAD_INPUTS = {  # args ({tmp}: the test's tmp dir) -> the one line that must say what is wrong
    "unknown option": (["model=foo"], "Could not find 'model/foo'"),
    "unknown data": (["data=wmt99"], "Could not find 'data/wmt99'"),
    "missing path": (["data=parallel_text"], "error: Missing mandatory value: data.path"),
    "absent dir": (
        ["data=multi30k", "data.path=/nonexistent"],
        "error: data.path '/nonexistent' is not a dir",
    ),
    "mismatched files": (
        [*PARALLEL_TEXT, "data.path={tmp}/mismatched"],
        "error: {tmp}/mismatched/train.de has 2 lines but {tmp}/mismatched/train.en has 1",
    ),
    "not UTF-8": (
        [*PARALLEL_TEXT, "data.path={tmp}/latin1"],
        "error: {tmp}/latin1/train.de:2: not valid UTF-8",
    ),
    "hub id offline": (
        ["data=multi30k", "data.hub_id=nobody/no-such-corpus"],
        "error: cannot load 'nobody/no-such-corpus'",
    ),
    "wrong type": (["data.max_tokens=lots"], "error: data.max_tokens='lots': expected an integer"),
    "out of range": (
        ["model.net.decoder.dropout=1.5"],
        "error: model.net.decoder.dropout=1.5: must be in [0, 1)",
    ),
    "beam of 0": (["decoding.beam_size=0"], "error: decoding.beam_size=0: must be in [1, inf)"),
    "shared embeddings": (
        ["model=transformer", "model.net.share_embeddings=true"],
        "error: model.net.share_embeddings=true needs data.tokenizer.joint=true",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_cli_bad_input_is_one_clear_line(tmp_path, case):
    """What a user sees on the console: the error in one line, no traceback (on stdout, where
    the log goes, or stderr); the run dir's log has the line too."""
    write_parallel_text(tmp_path / "mismatched", b"ein Hund\nzwei Hunde\n", b"a dog\n")
    write_parallel_text(tmp_path / "latin1", b"ein Hund\nein Ma\xdf\n", b"a dog\na measure\n")
    args, expected = BAD_INPUTS[case]
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    run_dir = tmp_path / "run"
    result = _cli(
        "encdec.train",
        *args,
        f"hydra.run.dir={run_dir}",
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    assert result.returncode != 0
    assert expected.replace("{tmp}", str(tmp_path)) in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "the run failed" not in result.stdout + result.stderr
    if result.stderr.startswith("error: ") and (run_dir / "train.log").is_file():
        assert result.stderr.strip() in (run_dir / "train.log").read_text()


def test_translate_cli_reads_stdin(tmp_path):
    overrides = [*TINY_TRAIN["attention"], "test=false", "decoding.beam_size=3"]
    train(compose_config("train", overrides, tmp_path / "run"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    sentences = ["jump twice", "walk left"]
    stdin = "".join(f"{sentence}\n" for sentence in sentences)
    result = _cli(
        "encdec.translate",
        f"ckpt_path={ckpt}",
        stdin=stdin,
        env={"PYTHONPROFILEIMPORTTIME": "1"},  # every import, on stderr
    )
    assert result.returncode == 0, result.stderr
    model = load_model(ckpt)
    as_configured = model.decoding  # translate.yaml: the checkpoint's search and limits
    assert as_configured.beam_size == 3
    expected = Translator(model.net).translate(sentences, as_configured)
    assert result.stdout.splitlines() == expected
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    assert "encdec.networks.loading" in imported
    packages = {name.split(".")[0] for name in imported}
    assert not {"lightning", "torchmetrics", "torchvision"} & packages  # seconds of start-up
    bf16 = _cli(
        "encdec.translate", f"ckpt_path={ckpt}", "precision=bf16-mixed", stdin="jump twice\n"
    )
    assert bf16.returncode == 0 and len(bf16.stdout.splitlines()) == 1, bf16.stderr
    missing = _cli("encdec.translate", f"ckpt_path={tmp_path}/none.ckpt", stdin="x\n")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    typo = _cli("encdec.translate", f"ckpt_path={ckpt}", "precision=bf16", stdin="x\n")
    assert typo.returncode == 2 and "precision=bf16 is not one of" in typo.stderr
    # n-best: n lines per sentence, "<number>\t<score>\t<translation>", best first
    nbest = _cli("encdec.translate", f"ckpt_path={ckpt}", "decoding.n_best=3", stdin=stdin)
    assert nbest.returncode == 0, nbest.stderr
    expected_nbest = Translator(model.net).translate_nbest(
        sentences, model.decoding.updated({"n_best": 3})
    )
    rows = [line.split("\t") for line in nbest.stdout.splitlines()]
    assert [(int(n), t) for n, _, t in rows] == [
        (i, text) for i, hypotheses in enumerate(expected_nbest) for text, _ in hypotheses
    ]
    scores = [float(score) for _, score, _ in rows]
    assert scores[:3] == sorted(scores[:3], reverse=True) and rows[0][2] == expected[0]
    # sampling through the same search: seeded, n samples per sentence
    sampling = ["decoding.sample=true", "decoding.beam_size=1", "decoding.n_best=4"]
    drawn = [
        _cli(
            "encdec.translate", f"ckpt_path={ckpt}", *sampling, f"decoding.seed={seed}", stdin=stdin
        )
        for seed in (1, 1)
    ]
    assert drawn[0].returncode == 0, drawn[0].stderr
    assert drawn[0].stdout == drawn[1].stdout and len(drawn[0].stdout.splitlines()) == 8
    refused = _cli("encdec.translate", f"ckpt_path={ckpt}", "decoding.sample=true", stdin=stdin)
    assert refused.returncode == 2 and "beam_size=1" in refused.stderr
    assert refused.stderr.strip().count("\n") == 0


def test_a_checkpoint_keeps_its_data_and_decoding_limits(tmp_path):
    """SCAN's outputs are long: the limits its run decoded with travel in the checkpoint, to
    every entry point; evaluate finds the checkpoint's data itself and refuses data whose
    tokenizer is not the checkpoint's."""
    cfg = compose_config("train", [*TINY_TRAIN["attention"], "test=false"], tmp_path / "run")
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    limits = DecodingConfig(
        max_len_a=cfg.decoding.max_len_a, max_len_b=cfg.decoding.max_len_b, seed=cfg.seed
    )  # the sampling seed is the run's
    assert limits.max_len_a == 4  # data=scan's, not DecodingConfig's 1.5
    assert load_network(ckpt)[0].decoding == limits
    assert load_model(ckpt).decoding == limits
    assert load_model(ckpt).data_config["_target_"] == cfg.data._target_

    evaluate_args = [f"ckpt_path={ckpt}", "logger=csv", "trainer.enable_progress_bar=false"]
    own = compose_config(
        "evaluate", [*evaluate_args, "trainer.limit_test_batches=1"], tmp_path / "a"
    )
    assert "data" not in own  # no data given: the checkpoint's
    assert "test/exact_match" in evaluate(own)
    corpus = write_parallel_text(tmp_path / "corpus", b"ein Hund\n", b"a dog\n")
    other = [*evaluate_args, *PARALLEL_TEXT, f"data.path={corpus}"]
    with pytest.raises(UserError, match="does not build the tokenizer of"):
        evaluate(compose_config("evaluate", other, tmp_path / "b"))


def test_wandb_logs_offline_into_the_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "secret-key-that-must-not-be-saved-0123456789")
    cfg = compose_config(
        "train",
        [
            *FAST,
            "logger=wandb",
            "model.net.encoder.hidden_size=16",
            "model.net.decoder.hidden_size=16",
            "model.net.embedding_dim=8",
        ],
        tmp_path / "run",
    )
    train(cfg)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    saved = [p for p in (tmp_path / "run").rglob("*") if p.is_file() and p.suffix != ".ckpt"]
    assert not any(b"secret-key-that-must-not-be-saved" in p.read_bytes() for p in saved)


EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
IN_README = {
    e for e in EXPERIMENTS if any(f"experiment={e} " in f"{c} " for c in readme_commands())
}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(set(EXPERIMENTS) - IN_README))
def test_every_experiment_smoke_runs(tmp_path, experiment):
    """The experiments that README does not run (tests/test_readme.py runs those)."""
    text = (Path(CONFIG_DIR) / "experiment" / f"{experiment}.yaml").read_text()
    corpus = next(
        (n for n in ("multi30k", "flickr8k") if n in experiment or f"/data: {n}\n" in text), None
    )  # named in the experiment's name, or the data it chooses
    if corpus and not (SHARED_DATA / corpus).is_dir():
        pytest.skip("../shared/data absent")
    overrides = [
        f"experiment={experiment}",
        *FAST,
        "trainer.limit_train_batches=2",
        "trainer.max_time=null",
    ]
    if experiment.startswith("synthesis_"):  # one voice, a few sentences
        overrides += ["data.source.utterances={train:8,val:2,test:2}",
                      f"data.source.texts.path={SHARED_DATA / corpus}",
                      "data.source.texts.max_sentences=20", "trainer.val_check_interval=null",
                      "trainer.check_val_every_n_epoch=1", "model.net.max_frames=200"]  # fmt: skip
    elif experiment.startswith("speech_"):  # the synthesized corpus, small: its text, 4 voices
        overrides += TINY_SPEECH_CORPUS
        overrides += ["trainer.val_check_interval=null", "trainer.check_val_every_n_epoch=1"]
        if corpus:
            overrides += [f"data.source.texts.path={SHARED_DATA / corpus}",
                          "data.source.texts.max_sentences=20"]  # fmt: skip
    elif corpus:
        overrides.append(f"data.path={SHARED_DATA / corpus}")
        if corpus == "multi30k":  # batches of a few sentences: an untrained model's test
            overrides.append("data.max_tokens=512")  # search runs to the length limit
    metrics = train(compose_config("train", overrides, tmp_path / "run"))
    assert any(name.startswith(("test/bleu", "test/wer", "test/mcd")) for name in metrics)


@pytest.mark.slow
def test_two_process_ddp_metrics_equal_single_process(tmp_path):
    """trainer=ddp_sim (2 CPU processes, ddp_spawn): the same BLEU and predictions as 1 process."""
    cfg = compose_config("train", [*TINY_TRAIN["attention"], "test=false"], tmp_path / "train")
    train(cfg)
    ckpt = tmp_path / "train" / "checkpoints" / "best.ckpt"
    results = {}
    for name, trainer in (("single", "default"), ("ddp", "ddp_sim")):
        overrides = [
            f"ckpt_path={ckpt}",
            "logger=csv",
            f"trainer={trainer}",
            "trainer.enable_progress_bar=false",
        ]
        results[name] = evaluate(compose_config("evaluate", overrides, tmp_path / name))
    for metric in ("test/bleu", "test/chrf", "test/exact_match"):
        assert results["ddp"][metric] == pytest.approx(results["single"][metric], abs=1e-9)
    assert results["ddp"]["test/loss"] == pytest.approx(results["single"]["test/loss"], rel=1e-5)
    single = (tmp_path / "single" / "predictions" / "test.txt").read_text()
    assert (tmp_path / "ddp" / "predictions" / "test.txt").read_text() == single
    assert single.count("\n") == 4182


def test_a_step_budget_that_ends_before_any_validation_still_tests(tmp_path):
    """max_steps ends the run inside its first epoch: no val metric exists, so early stopping
    has nothing to stop on and the current weights are tested."""
    overrides = [
        "model=scan_transformer",
        "model.net.embedding_dim=32",
        "model.net.encoder.dim=32",
        "model.net.decoder.dim=32",
        "model.net.encoder.ff_dim=64",
        "model.net.decoder.ff_dim=64",
        "logger=csv",
        "trainer.max_steps=2",
        "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false",
    ]
    metrics = train(compose_config("train", overrides, tmp_path / "run"))
    assert "test/exact_match" in metrics and "val/exact_match" not in metrics


def test_a_wall_clock_budget_ends_the_run_inside_its_first_epoch(tmp_path):
    """max_time stops training at the batch where the budget runs out, also in the first
    epoch (a minimum epoch count would silently outlast it), and validates what it stopped on."""
    overrides = [
        "model=scan_transformer",
        *TRANSFORMER_SIZES,
        "logger=csv",
        "trainer.max_time=00:00:00:01",
        "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false",
    ]
    metrics = train(compose_config("train", overrides, tmp_path / "run"))
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["train_seconds"] < 3  # a whole epoch: 6.6 s unloaded
    # SCAN's simple split: 16,728 commands, over 5 times the tokens trained in a second here
    assert summary["target_tokens"] < 16_728 * 5
    assert "val/exact_match" in metrics
