"""Architecture comparison reports: runs grouped by data and architecture (the encoder and
decoder their config names, e.g. "RNN + AttentionRNN"), seeds aggregated.

A run is read from its run dir (``config.yaml``, ``test_metrics*.json``, ``train_summary.json``,
``train_flops.json`` where FLOPs were counted, ``csv/metrics.csv``) or from W&B (config,
summary and history of a run in a group). The report is a markdown + CSV table (quality mean ±
std over seeds, parameters, training wall time, tokens/s, decoding sentences/s, peak memory,
training FLOPs where counted) and PNG plots (quality against parameters and against wall time,
validation curves). :func:`paired_bootstrap` tests two runs' test outputs for a significant
difference with sacreBLEU's paired bootstrap resampling.
"""

import csv
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from encdec.utils.config import flatten
from encdec.utils.errors import UserError

NUMERIC_COLUMNS = (
    ("parameters", "params"),
    ("train_wall_seconds", "train wall time (s)"),
    ("target_tokens_per_s", "train target tok/s"),
    ("sentences_per_s", "decode sent/s"),
    ("peak_rss_mb", "peak RSS (MB)"),
    ("train_flops", "train PFLOPs"),
)


@dataclass
class Run:
    name: str
    family: str
    data: str  # e.g. "scan/simple", "multi30k"
    seed: int
    quality_metric: str  # e.g. "test/exact_match", "test/bleu_beam5"
    metrics: dict[str, float]
    parameters: float | None = None
    train_wall_seconds: float | None = None
    target_tokens_per_s: float | None = None
    sentences_per_s: float | None = None
    peak_rss_mb: float | None = None
    train_flops: float | None = None  # counted where the run had callbacks=flops
    val_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, reported val value)
    config: dict[str, Any] = field(default_factory=dict)
    predictions: Path | None = None

    @property
    def quality(self) -> float:
        return self.metrics[self.quality_metric]


def class_name(target: str, suffix: str = "") -> str:
    return target.rsplit(".", 1)[-1].removesuffix(suffix) or target


def family_of(config: dict[str, Any]) -> str:
    """The architecture of a run's model, from the ``_target_`` of its encoder and decoder
    ("RNN + AttentionRNN", "Upsampled + CTC" without a decoder), of a transformers model's
    config ("T5"), or of its network ("MaskedLanguageModel"); the model's class for a config
    without a network node."""
    model = config["model"]
    net = model.get("net")
    if not isinstance(net, dict):
        return class_name(model["_target_"])
    if isinstance(net.get("config"), dict):  # a transformers model: its architecture
        return class_name(net["config"]["_target_"], "Config")
    if "encoder" not in net or "decoder" not in net:
        return class_name(net["_target_"])
    encoder = class_name(net["encoder"]["_target_"], "Encoder")
    if net["decoder"] is None:
        return f"{encoder} + CTC"
    return f"{encoder} + {class_name(net['decoder']['_target_'], 'Decoder')}"


def data_of(config: dict[str, Any]) -> str:
    data = config["data"]
    name = data["_target_"].rsplit(".", 1)[-1].removesuffix("DataModule").lower()
    if data.get("split"):
        return f"{name}/{data['split']}"
    if data.get("path"):
        return Path(str(data["path"])).name
    return name


def decoding_suffix(config: dict[str, Any]) -> str:
    """The test metrics' suffix of a run's decoding (``_beam5``, ``_beam5_ctc0.3``), as the
    module named them."""
    from encdec.decoding.search import DecodingConfig  # imports torch: only once a run is read

    return DecodingConfig().updated(config.get("decoding", {})).suffix


def reported(config: dict[str, Any]) -> str:
    """The val metric whose test value a run is compared by: ``report_metric`` (the monitor,
    unless the task names another: speech synthesis selects on its loss, reports MCD)."""
    return config.get("report_metric") or config.get("monitor", "val/bleu")


def read_val_curve(csv_path: Path, monitor: str) -> list[tuple[int, float]]:
    if not csv_path.is_file():
        return []
    with csv_path.open(newline="") as file:
        return [
            (int(row["step"]), float(row[monitor]))
            for row in csv.DictReader(file)
            if row.get(monitor) not in (None, "")
        ]


def count_parameters(checkpoint: Path) -> int | None:
    """Parameters of a checkpoint's model (tied weights once), for runs that predate
    ``train_summary.json``'s count."""
    if not checkpoint.is_file():
        return None
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    unique = {t.data_ptr(): t.numel() for t in state.values() if t.is_floating_point()}
    return sum(unique.values())


def read_run_dir(run_dir: Path) -> Run:
    """A finished ``encdec.train`` run; one line naming the dir when it is not one."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{run_dir}: no config.yaml (not an encdec run dir)")
    config = yaml.safe_load(config_path.read_text())
    suffix = decoding_suffix(config)
    test_path = run_dir / f"test_metrics{suffix}.json"
    if not test_path.is_file():
        raise UserError(f"{run_dir}: no {test_path.name} (the run has not finished testing)")
    test = json.loads(test_path.read_text())
    summary_path = run_dir / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    flops_path = run_dir / "train_flops.json"
    flops = json.loads(flops_path.read_text())["train_flops"] if flops_path.is_file() else None
    parameters = summary.get("parameters") or count_parameters(
        run_dir / "checkpoints" / "best.ckpt"
    )
    return Run(
        name=str(run_dir),
        family=family_of(config),
        data=data_of(config),
        seed=int(config.get("seed", 0)),
        quality_metric=f"test/{reported(config).split('/', 1)[1]}{suffix}",
        metrics=test["metrics"],
        parameters=parameters,
        train_wall_seconds=summary.get("fit_wall_seconds"),
        target_tokens_per_s=summary.get("target_tokens_per_s"),
        sentences_per_s=test.get("sentences_per_s"),
        peak_rss_mb=summary.get("peak_rss_mb"),
        train_flops=flops,
        val_curve=read_val_curve(run_dir / "csv" / "metrics.csv", reported(config)),
        config=config,
        predictions=predictions_file(run_dir, Path(test["predictions"])),
    )


def predictions_file(run_dir: Path, logged: Path) -> Path:
    """The logged predictions file, or the file of that name in the run dir's
    ``predictions/`` when the run dir was moved (copied from a cluster, say)."""
    moved = run_dir / "predictions" / logged.name
    return logged if logged.is_file() or not moved.is_file() else moved


def total_parameters(logged: Any) -> float | None:
    """The logged parameter count: a number, or ``{"total": ..., per module}``."""
    return logged.get("total") if isinstance(logged, dict) else logged


def read_wandb_group(group: str, project: str, entity: str | None = None) -> list[Run]:
    """Every finished run of a W&B group (needs the network and a W&B login)."""
    import wandb

    path = f"{entity}/{project}" if entity else project
    runs = []
    for wandb_run in wandb.Api().runs(path, filters={"group": group}):
        config, summary = dict(wandb_run.config), dict(wandb_run.summary)
        suffix = decoding_suffix(config)
        metrics = {k: float(v) for k, v in summary.items() if k.startswith("test/")}
        quality_metric = f"test/{reported(config).split('/', 1)[1]}{suffix}"
        if quality_metric not in metrics:
            continue  # not finished
        history = wandb_run.history(keys=["trainer/global_step", reported(config)], pandas=False)
        runs.append(
            Run(
                name=wandb_run.name,
                family=family_of(config),
                data=data_of(config),
                seed=int(config.get("seed", 0)),
                quality_metric=quality_metric,
                metrics=metrics,
                parameters=total_parameters(config.get("parameters")),
                train_wall_seconds=summary.get("_runtime"),
                target_tokens_per_s=summary.get("train/target_tokens_per_s"),
                val_curve=[
                    (int(r["trainer/global_step"]), float(r[reported(config)])) for r in history
                ],
                config=config,
            )
        )
    if not runs:
        raise UserError(f"W&B group '{group}' in project '{path}' has no finished runs")
    return runs


# settings that cannot change a run's result (where it writes, what it logs and shows), and
# every *seed
IGNORED_IN_VARIANTS = (
    "paths",
    "logger",
    "task_name",
    "tags",
    "ckpt_path",
    "resume",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    *(  # callbacks that only log, show or save (a run made before one existed is no variant)
        f"callbacks.{name}."
        for name in (
            "sample_table",
            "synthesis_samples",
            "progress_bar",
            "lr_monitor",
            "throughput",
            "last_checkpoint",
        )
    ),
)
RUN_PATH_KEYS = ("dir", "dirpath", "path", "save_dir", "default_root_dir")  # differ per run


def variants(runs: list[Run]) -> dict[str, str]:
    """Run name -> a label of the settings that set its config apart from the other runs of
    the same data and family ("" when the runs differ in seed only)."""
    labels = {}
    for key in {(r.data, r.family) for r in runs}:
        members = [r for r in runs if (r.data, r.family) == key]
        flat = {
            r.name: {
                k: v
                for k, v in flatten(r.config).items()
                if not k.startswith(IGNORED_IN_VARIANTS)
                and k != "parameters"
                and k.rsplit(".", 1)[-1] != "seed"  # the run's seed, wherever it is used
            }
            for r in members
        }
        keys = sorted({k for f in flat.values() for k in f})
        differing = [
            k
            for k in keys
            if len(values_of(k, flat.values())) > 1
            and not k.rsplit(".", 1)[-1].endswith(RUN_PATH_KEYS)
        ]
        for run in members:
            labels[run.name] = describe(flat[run.name], differing)
    return labels


def values_of(key: str, configs: Iterable[dict[str, Any]]) -> set[str]:
    """The values the runs give ``key``. A callback is there or not; any other key absent from
    a run's config is not counted (the config had no such setting when that run was made)."""
    if key.startswith("callbacks."):
        return {repr(config.get(key)) for config in configs}
    return {repr(config[key]) for config in configs if key in config}


def describe(flat: dict[str, Any], differing: list[str]) -> str:
    """A short label: ``+averaging`` for an added callback, ``key=value`` otherwise."""
    parts: list[str] = []
    for key in differing:
        if key.startswith("callbacks."):
            group = ".".join(key.split(".")[:2])
            label = "+" + group.split(".")[1]
            present = any(k.startswith(group + ".") for k in flat)
            if present and label not in parts:
                parts.append(label)
        else:
            parts.append(f"{key.rsplit('.', 1)[-1]}={short_value(flat.get(key))}")
    return ", ".join(parts[:3])


def short_value(value: Any) -> Any:
    """A checkpoint path as the name of its run dir (``init_from=<run>``), else the value."""
    if isinstance(value, str) and "/checkpoints/" in value:
        return Path(value.split("/checkpoints/")[0]).name
    return value


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per data, family and configuration: seeds aggregated, sorted."""
    labels = variants(runs)
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.data, run.family, labels[run.name]), []).append(run)
    rows = []
    for (data, family, variant), members in sorted(groups.items()):
        metrics = {m.quality_metric for m in members}
        if len(metrics) > 1:
            raise UserError(f"{data} / {family}: runs measured differently ({sorted(metrics)})")
        row: dict[str, Any] = {
            "data": data,
            "model": f"{family} ({variant})" if variant else family,
            "runs": len(members),
            "seeds": sorted(m.seed for m in members),
            "metric": metrics.pop(),
        }
        row["quality_mean"], row["quality_std"] = mean_std([m.quality for m in members])
        bleu = [m.metrics[k] for m in members for k in m.metrics if k.startswith("test/bleu")]
        row["bleu_mean"], row["bleu_std"] = mean_std(bleu) if bleu else (math.nan, math.nan)
        for key, _ in NUMERIC_COLUMNS:
            values = [getattr(m, key) for m in members if getattr(m, key) is not None]
            row[key] = statistics.fmean(values) if values else math.nan
        rows.append(row)
    return rows


def _number(value: float, digits: int = 0) -> str:
    return "—" if math.isnan(value) else f"{value:,.{digits}f}"


def _mean_std(mean: float, std: float, runs: int) -> str:
    """``mean ± std`` over seeds; the mean alone for one run (no spread to show)."""
    return _number(mean, 1) if runs == 1 or math.isnan(mean) else f"{mean:.1f} ± {std:.1f}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = ["data", "model", "seeds", "metric", "test quality (mean ± std)", "test BLEU"]
    header += [title for _, title in NUMERIC_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["data"],
            row["model"],
            str(row["runs"]),
            row["metric"],
            _mean_std(row["quality_mean"], row["quality_std"], row["runs"]),
            _mean_std(row["bleu_mean"], row["bleu_std"], row["runs"]),
            _number(row["parameters"] / 1e6, 2) + " M",
            _number(row["train_wall_seconds"]),
            _number(row["target_tokens_per_s"]),
            _number(row["sentences_per_s"]),
            _number(row["peak_rss_mb"]),
            _number(row["train_flops"] / 1e15, 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(runs: list[Run], out_dir: Path) -> list[Path]:
    """quality_vs_params.png, quality_vs_time.png and val_curves.png: one panel per data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r.data for r in runs})
    families = sorted({r.family for r in runs})
    colours = {f: plt.cm.tab10(i) for i, f in enumerate(families)}
    paths = []
    for name, x_of, x_label in (
        ("quality_vs_params", lambda r: r.parameters, "parameters"),
        ("quality_vs_time", lambda r: r.train_wall_seconds, "training wall time (s)"),
        ("val_curves", None, "training step"),
    ):
        figure, axes = plt.subplots(
            1, len(datasets), figsize=(4 * len(datasets), 3.4), squeeze=False
        )
        for axis, data in zip(axes[0], datasets, strict=True):
            for family in families:
                members = [r for r in runs if r.data == data and r.family == family]
                for i, run in enumerate(members):
                    label = family if i == 0 else None
                    if x_of is None:
                        steps, values = (
                            zip(*run.val_curve, strict=True) if run.val_curve else ((), ())
                        )
                        axis.plot(steps, values, color=colours[family], alpha=0.7, label=label)
                    elif x_of(run) is not None:
                        axis.scatter(x_of(run), run.quality, color=colours[family], label=label)
            axis.set_title(data)
            axis.set_xlabel(x_label)
            if x_of is not None and name == "quality_vs_params":
                axis.set_xscale("log")
            axis.grid(alpha=0.3)
        metric = runs[0].quality_metric if x_of else reported(runs[0].config)
        axes[0][0].set_ylabel(metric)
        axes[0][0].legend(fontsize=8)
        figure.tight_layout()
        path = out_dir / f"{name}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def test_split(run: Run) -> tuple[list[str], list[str]]:
    """The test split's (sources, references), read as the run's data config reads them."""
    import hydra

    data_config = dict(run.config["data"])
    datamodule = hydra.utils.instantiate(data_config)
    sources, references = datamodule.read_split("test")
    return list(sources), list(references)


def check_same_sources(baseline: Run, system: Run) -> tuple[list[str], list[str]]:
    """The shared test split; a UserError naming the first line where the two runs' test
    sources differ (outputs of different inputs cannot be paired)."""
    sources, references = test_split(baseline)
    other_sources, _ = test_split(system)
    if len(sources) != len(other_sources):
        raise UserError(
            f"the runs were tested on different sources: {len(sources)} test lines in "
            f"{baseline.name}, {len(other_sources)} in {system.name}; outputs cannot be paired"
        )
    for line, (ours, theirs) in enumerate(zip(sources, other_sources, strict=True), start=1):
        if ours != theirs:
            raise UserError(
                f"the runs were tested on different sources (line {line}: {ours!r} in "
                f"{baseline.name}, {theirs!r} in {system.name}); outputs cannot be paired"
            )
    return sources, references


def paired_bootstrap(baseline: Run, system: Run, samples: int = 1000) -> str:
    """sacreBLEU's paired bootstrap resampling of BLEU and chrF: the report as text."""
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    if baseline.data != system.data:
        raise UserError(f"runs are on different data: {baseline.data} vs {system.data}")
    _, references = check_same_sources(baseline, system)
    outputs = []
    for run in (baseline, system):
        lines = run.predictions.read_text(encoding="utf-8").splitlines()
        if len(lines) != len(references):
            raise UserError(
                f"{run.predictions}: {len(lines)} lines for {len(references)} test references"
            )
        outputs.append((run.name, lines))
    if outputs[0][1] == outputs[1][1]:  # sacreBLEU's p-value is meaningless for a tie
        return f"{baseline.name} and {system.name} have identical test outputs: no difference"
    test = PairedTest(
        outputs,
        {"BLEU": BLEU(), "chrF": CHRF()},
        references=[references],
        test_type="bs",
        n_samples=samples,
    )
    _, scores = test()
    report = [
        f"paired bootstrap, {samples} resamples: baseline {baseline.name}, system {system.name}"
    ]
    for metric in (name for name in scores if name != "System"):  # "BLEU", "chrF2"
        base, other = scores[metric]
        verdict = "significant at 0.05" if other.p_value < 0.05 else "not significant at 0.05"
        report.append(
            f"{metric}: baseline {base.score:.2f} (mean {base.mean:.2f} ± {base.ci:.2f}), "
            f"system {other.score:.2f} (mean {other.mean:.2f} ± {other.ci:.2f}), "
            f"p = {other.p_value:.4f}, {verdict}"
        )
    return "\n".join(report)
