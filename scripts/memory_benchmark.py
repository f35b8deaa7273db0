"""Memory of a training run over time: runs ``encdec.train`` for ``--minutes`` and records the
resident memory (RSS, summed over the run's processes: DDP ranks, loader workers) every
``--interval`` seconds, then writes it as JSON and a markdown table.

    python scripts/memory_benchmark.py --minutes 60 --output docs/benchmarks/NAME -- \
        experiment=multi30k_transformer data.path=../shared/data/multi30k

Everything after ``--`` is passed to ``encdec.train`` (``trainer.max_time`` is set from
``--minutes``, and the test stage is skipped). A run of a day must not grow: the table gives
each sample's RSS and its change from the sample at ``--reference-minute``.
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from encdec.utils.preload import first_cpu_info


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def rss_mb(pids: list[int]) -> float:
    """Summed resident memory of ``pids`` (MB; pages shared between them count once each)."""
    total_kb = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total_kb += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
    return total_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="training time")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--reference-minute", type=float, default=10.0)
    parser.add_argument("--output", type=Path, required=True, help="dir for memory.json/.md")
    parser.add_argument("overrides", nargs="*", help="encdec.train overrides (after --)")
    args = parser.parse_args()
    seconds = round(args.minutes * 60)
    budget = f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    command = [
        sys.executable,
        "-m",
        "encdec.train",
        *args.overrides,
        f"trainer.max_time={budget}",
        "test=false",
    ]
    started = time.monotonic()
    process = subprocess.Popen(command)
    samples = []
    while process.poll() is None:
        time.sleep(min(args.interval, 5.0))
        elapsed = time.monotonic() - started
        due = not samples or elapsed - samples[-1]["seconds"] >= args.interval
        if due and (rss := rss_mb(process_tree(process.pid))) > 0:  # 0: the run is ending
            samples.append(
                {
                    "seconds": round(elapsed, 1),
                    "rss_mb": round(rss, 1),
                }
            )
    args.output.mkdir(parents=True, exist_ok=True)
    record = {
        "command": command,
        "exit_code": process.returncode,
        "cpu": first_cpu_info().get("model name", platform.processor()),
        "samples": samples,
    }
    (args.output / "memory.json").write_text(json.dumps(record, indent=2))
    reference = min(samples, key=lambda s: abs(s["seconds"] - 60 * args.reference_minute))
    lines = [f"| minute | RSS (MB) | vs minute {args.reference_minute:g} |", "|---|---|---|"]
    for sample in samples:
        change = 100 * (sample["rss_mb"] / reference["rss_mb"] - 1)
        lines.append(f"| {sample['seconds'] / 60:.1f} | {sample['rss_mb']:,.0f} | {change:+.1f}% |")
    (args.output / "memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    sys.exit(process.returncode)


if __name__ == "__main__":
    main()
