"""Speed and quality benchmark of each Multi30k experiment's model (de->en).

    python scripts/benchmark.py --data-path ../shared/data/multi30k \
        --ckpt transformer=outputs/.../best.ckpt [--families transformer rnn attention] \
        [--precision bf16-mixed] [--device cpu|cuda] [--output docs/benchmarks/NAME]

For each family (an experiment ``conf/experiment/multi30k_<family>.yaml``: every one there by
default), in a fresh process of its own (so peak memory is that family's), at its configuration:

- training throughput through the real Lightning loop: target tokens/s and source+target
  tokens/s over ``--steps`` batches after ``--warmup`` batches;
- the FLOPs of those same batches (forward + backward, counted by ``torch.utils.flop_counter``:
  every matmul and attention, the 6·params·tokens of the textbook plus attention) per second,
  and their ratio to the fp32 and bf16 matmul peaks measured in the same process (MFU; no bf16
  peak on a CPU without bf16 units, where a bf16 matmul is emulated);
- peak memory: RSS of the process, and CUDA max allocated on a GPU;
- with a checkpoint: greedy and beam-5 decoding of test_2016_flickr in batches of
  ``--decode-batch-size`` sentences at ``--decode-precision`` (sentences/s inside the process,
  and the wall time of the whole ``encdec.translate`` process) and the sacreBLEU of each.

Writes ``benchmark.json`` and ``benchmark.md`` (a table) into ``--output``. Run it through
``python -m encdec.fast scripts/benchmark.py ...`` to measure with tcmalloc and the MKL shim
preloaded, as the documented figures were; the JSON records ``LD_PRELOAD``.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import sacrebleu
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity
from torch.utils.flop_counter import FlopCounterMode

from encdec.data.tokenization import PAD_ID
from encdec.decoding.search import DECODING_PRECISIONS, DecodingConfig, decoding_autocast
from encdec.inference.translator import Translator
from encdec.launch.precision import cpu_has_native_bf16
from encdec.train import build_data_and_model
from encdec.utils.config import CONFIG_DIR, compose
from encdec.utils.preload import first_cpu_info

# a "family" is an experiment of conf/experiment/multi30k_<family>.yaml: whichever exist
FAMILIES = tuple(
    sorted(p.stem.removeprefix("multi30k_") for p in Path(CONFIG_DIR).glob("experiment/multi30k_*"))
)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(
    device: torch.device, dtype: torch.dtype, size: int = 2048, reps: int = 10
) -> float:
    """Best FLOP/s of a size³ matmul in ``dtype`` over ``reps`` runs, after a warm-up."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(reps + 2):
        synchronize(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


class TimedBatches(L.Callback):
    """Times training batches ``warmup`` .. ``warmup + steps - 1`` and keeps them for counting.
    Batches are counted across epochs (``batch_idx`` restarts at each epoch)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.seen = 0
        self.start = self.seconds = 0.0
        self.batches: list[dict[str, torch.Tensor]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seen == self.warmup:
            synchronize(pl_module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.warmup <= self.seen < self.warmup + self.steps:
            keys = ("source", "source_mask", "target_in", "target_out")
            self.batches.append({key: batch[key] for key in keys})  # on device: no sync
        self.seen += 1
        if self.seen == self.warmup + self.steps:
            synchronize(pl_module.device)
            self.seconds = time.perf_counter() - self.start


class ProfiledBatches(L.Callback):
    """``torch.profiler`` over ``count`` training batches from batch ``start`` on (counted
    across epochs): the busiest ops, how many ops the host runs per step and, on a GPU, how
    much of a step the GPU is busy (well under 1: the GPU waits on the host)."""

    def __init__(self, start: int, count: int) -> None:
        self.start, self.count = start, count
        self.seen = 0
        self.begin = 0.0
        self.profiler: torch.profiler.profile | None = None
        self.summary: dict[str, Any] = {}
        self.table = ""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.count and self.seen == self.start:
            synchronize(pl_module.device)
            activities = [ProfilerActivity.CPU]
            if pl_module.device.type == "cuda":
                activities.append(ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.start()
            self.begin = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += 1
        if self.profiler is not None and self.seen == self.start + self.count:
            synchronize(pl_module.device)
            wall_ms = (time.perf_counter() - self.begin) * 1e3 / self.count
            self.profiler.stop()
            self._summarise(self.profiler, wall_ms, on_gpu=pl_module.device.type == "cuda")
            self.profiler = None

    def _summarise(self, profiler: torch.profiler.profile, wall_ms: float, on_gpu: bool) -> None:
        events = profiler.events()
        on_host = [e for e in events if e.device_type == DeviceType.CPU]
        host_ops = sum(e.name.startswith("aten::") for e in on_host)
        kernels = [e for e in events if e.device_type != DeviceType.CPU]
        busy_ms = sum(e.device_time_total for e in kernels) / 1e3 / self.count
        self.summary = {
            "profile_steps": self.count,
            "profile_wall_ms_per_step": wall_ms,  # with the profiler's own overhead
            "profile_aten_ops_per_step": host_ops / self.count,
            "profile_device_kernels_per_step": len(kernels) / self.count if on_gpu else None,
            "profile_device_busy_ms_per_step": busy_ms if on_gpu else None,
            "profile_device_busy_fraction": busy_ms / wall_ms if on_gpu else None,
        }
        sort_by = "self_device_time_total" if on_gpu else "self_cpu_time_total"
        self.table = profiler.key_averages().table(sort_by=sort_by, row_limit=30)


def count_flops(model: L.LightningModule, batches: list[dict[str, torch.Tensor]]) -> int:
    """Forward + backward FLOPs of a training step on each batch (the optimizer's are ignored)."""
    model.to(batches[0]["source"].device).train()  # Lightning moves the model to CPU after fit
    counter = FlopCounterMode(display=False)
    with counter:
        for batch in batches:
            logits = model(batch["source"], batch["source_mask"], batch["target_in"])
            loss_sum, tokens = model.loss(logits, batch["target_out"])
            (loss_sum / tokens).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def measure_training(
    cfg, datamodule, model, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    timer = TimedBatches(args.warmup, args.steps)
    profiled = ProfiledBatches(args.warmup + args.steps, args.profile_steps)
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        precision=args.precision,
        max_steps=args.warmup + args.steps + args.profile_steps,
        limit_val_batches=0,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        use_distributed_sampler=False,
        callbacks=[timer, profiled],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(model, datamodule=datamodule)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    target = sum(int((b["target_out"] != PAD_ID).sum()) for b in timer.batches)
    source = sum(int((b["source"] != PAD_ID).sum()) for b in timer.batches)
    padded = sum(b["target_out"].numel() + b["source"].numel() for b in timer.batches)
    flops = count_flops(model, timer.batches)
    if profiled.table:
        (Path(args.output) / f"{args.family}-profile.txt").write_text(profiled.table)
    return {
        **profiled.summary,
        "parameters": sum(p.numel() for p in model.parameters()),
        "timed_steps": len(timer.batches),
        "train_seconds": timer.seconds,
        "target_tokens_per_s": target / timer.seconds,
        "tokens_per_s": (target + source) / timer.seconds,
        "padding_fraction": 1 - (target + source) / padded,
        "flops_per_step": flops / len(timer.batches),
        "flops_per_s": flops / timer.seconds,
        "peak_rss_mib": peak_rss,
        "cuda_max_allocated_mib": cuda_peak,
    }


def measure_decoding(datamodule, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    sources, references = datamodule.texts("test")
    translator = Translator.from_checkpoint(args.ckpt[args.family], map_location=str(device))
    results: dict[str, Any] = {"test_sentences": len(sources)}
    source_file = Path(tempfile.mkdtemp()) / "test_source.txt"  # no corpus text in the output
    source_file.write_text("".join(f"{line}\n" for line in sources), encoding="utf-8")
    metric = sacrebleu.BLEU()  # 13a, cased, on detokenized output
    for beam in (1, 5):
        name = "greedy" if beam == 1 else f"beam{beam}"
        decoding = DecodingConfig(beam_size=beam)
        synchronize(device)
        start = time.perf_counter()
        with decoding_autocast(device.type, args.decode_precision):
            hypotheses = translator.translate(sources, decoding, batch_size=args.decode_batch_size)
        synchronize(device)
        seconds = time.perf_counter() - start
        bleu = metric.corpus_score(hypotheses, [references])
        results |= {
            f"{name}_seconds": seconds,
            f"{name}_sentences_per_s": len(sources) / seconds,
            f"{name}_bleu": bleu.score,
            f"{name}_process_seconds": translate_process_seconds(args, source_file, beam, device),
        }
    results["bleu_signature"] = str(metric.get_signature())
    results["decode_precision"] = args.decode_precision
    results["decode_batch_size"] = args.decode_batch_size
    return results


def translate_process_seconds(
    args: argparse.Namespace, source_file: Path, beam: int, device: torch.device
) -> float:
    """Wall time of the whole ``python -m encdec.translate`` process over the test sources."""
    command = [
        sys.executable,
        "-m",
        "encdec.translate",
        f"ckpt_path={args.ckpt[args.family]}",
        f"decoding.beam_size={beam}",
        f"device={device.type}",
        f"precision={args.decode_precision}",
        f"batch_size={args.decode_batch_size}",
    ]
    with source_file.open() as stdin:
        start = time.perf_counter()
        subprocess.run(command, stdin=stdin, stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - start


def run_family(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one family, in this process."""
    device = torch.device(args.device)
    torch.set_float32_matmul_precision("high")
    L.seed_everything(args.seed)
    overrides = [
        f"experiment=multi30k_{args.family}",
        f"data.path={Path(args.data_path).resolve()}",
        f"data.max_tokens={args.max_tokens}",
        *args.override,
    ]
    cfg = compose("train", overrides, Path(tempfile.mkdtemp()))  # no run dir is written
    peaks = {"fp32": matmul_peak(device, torch.float32)}
    if device.type == "cuda" or cpu_has_native_bf16():  # emulated bf16 has no peak to speak of
        peaks["bf16"] = matmul_peak(device, torch.bfloat16)
    result: dict[str, Any] = {"family": args.family, "precision": args.precision}
    datamodule, model = build_data_and_model(cfg)
    result |= measure_training(cfg, datamodule, model, args, device)
    result |= {f"matmul_peak_{k}_flops_per_s": v for k, v in peaks.items()}
    result |= {f"mfu_{k}": result["flops_per_s"] / v for k, v in peaks.items()}
    result.setdefault("mfu_bf16", None)  # a CPU without bf16 units
    if args.family in args.ckpt:
        result |= measure_decoding(datamodule, args, device)
    return result


def machine() -> dict[str, Any]:
    description = {
        "date": time.strftime("%Y-%m-%d"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": first_cpu_info().get("model name", ""),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "ld_preload": os.environ.get("LD_PRELOAD", ""),
    }
    if torch.cuda.is_available():
        description["gpu"] = torch.cuda.get_device_name()
    return description


def markdown_table(results: list[dict[str, Any]]) -> str:
    def number(value: Any, digits: int = 0) -> str:
        return "–" if value is None else f"{value:,.{digits}f}"

    def percent(value: float | None) -> str:
        return "–" if value is None else f"{value:.1%}"

    header = (
        "| family | params | target tok/s | src+tgt tok/s | padding | GFLOP/s | MFU fp32 | "
        "MFU bf16 | peak RSS MiB | CUDA MiB | greedy sent/s | greedy BLEU | greedy process s "
        "| beam5 sent/s | beam5 BLEU | beam5 process s |\n" + "|---" * 16 + "|\n"
    )
    rows = []
    for r in results:
        rows.append(
            f"| {r['family']} | {r['parameters'] / 1e6:.2f} M | {number(r['target_tokens_per_s'])} "
            f"| {number(r['tokens_per_s'])} | {r['padding_fraction']:.1%} "
            f"| {number(r['flops_per_s'] / 1e9)} | {r['mfu_fp32']:.1%} | {percent(r['mfu_bf16'])} "
            f"| {number(r['peak_rss_mib'])} | {number(r['cuda_max_allocated_mib'])} "
            f"| {number(r.get('greedy_sentences_per_s'), 1)} | {number(r.get('greedy_bleu'), 1)} "
            f"| {number(r.get('greedy_process_seconds'), 1)} "
            f"| {number(r.get('beam5_sentences_per_s'), 1)} | {number(r.get('beam5_bleu'), 1)} "
            f"| {number(r.get('beam5_process_seconds'), 1)} |"
        )
    profiles = [
        f"- {r['family']}: {r['profile_steps']} steps under torch.profiler, "
        f"{r['profile_wall_ms_per_step']:.1f} ms each, "
        f"{r['profile_aten_ops_per_step']:,.0f} aten ops each"
        + (
            f", GPU busy {r['profile_device_busy_fraction']:.0%} of the time "
            f"({r['profile_device_kernels_per_step']:,.0f} kernels each)"
            if r["profile_device_busy_fraction"] is not None
            else ""
        )
        for r in results
        if "profile_steps" in r
    ]
    return header + "\n".join(rows) + "\n" + "".join(f"\n{line}" for line in profiles)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-path", required=True, help="Multi30k directory (local files)")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument(
        "--ckpt",
        nargs="*",
        default=[],
        metavar="FAMILY=PATH",
        help="checkpoints to decode with (decoding is skipped for a family without one)",
    )
    parser.add_argument("--precision", default="bf16-mixed", help="Lightning precision")
    parser.add_argument("--decode-precision", default="32-true", choices=DECODING_PRECISIONS)
    parser.add_argument("--decode-batch-size", type=int, default=64, help="sentences")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-tokens", type=int, default=4096, help="padded tokens per batch")
    parser.add_argument("--warmup", type=int, default=10, help="untimed batches first")
    parser.add_argument("--steps", type=int, default=50, help="timed batches")
    parser.add_argument(
        "--profile-steps",
        type=int,
        default=0,
        help="batches after the timed ones to run under torch.profiler (FAMILY-profile.txt)",
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--override",
        nargs="*",
        default=[],
        help="more Hydra overrides, e.g. model.net.decoder.dropout=0.1",
    )
    parser.add_argument(
        "--output", default=f"outputs/benchmark/{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    )
    parser.add_argument("--family", choices=FAMILIES, help=argparse.SUPPRESS)  # one child's job
    args = parser.parse_args(argv)
    checkpoints = {}
    for item in args.ckpt:
        family, sep, path = item.partition("=")
        if not sep or family not in FAMILIES or not Path(path).is_file():
            parser.error(f"--ckpt {item!r}: expected FAMILY=PATH with an existing checkpoint")
        checkpoints[family] = path
    args.ckpt = checkpoints
    return args


def main() -> None:
    args = parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    if args.family:  # a child: one family, result as JSON
        result = run_family(args)
        (output / f"{args.family}.json").write_text(json.dumps(result, indent=2))
        return
    results = []
    for family in args.families:
        subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--output", str(output), "--family", family],
            check=True,
        )
        results.append(json.loads((output / f"{family}.json").read_text()))
    report = {
        "command": " ".join(["python", "scripts/benchmark.py", *sys.argv[1:]]),
        "machine": machine(),
        "results": results,
    }
    (output / "benchmark.json").write_text(json.dumps(report, indent=2))
    table = markdown_table(results)
    (output / "benchmark.md").write_text(f"`{report['command']}`\n\n{table}")
    print(table)
    print(f"written: {output}/benchmark.json, benchmark.md")


if __name__ == "__main__":
    main()
