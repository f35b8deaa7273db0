"""Compare runs: a markdown + CSV table and PNG plots, seeds aggregated per data and model.

    python scripts/compare.py outputs/compare_scan/multiruns/<date>/* --out docs/comparisons/scan
    python scripts/compare.py --wandb-group compare_scan --wandb-project encdec --out report/
    python scripts/compare.py RUN_A RUN_B --significance      # paired bootstrap, A = baseline
    python scripts/compare.py <seed-3 runs> --with-report <report of seeds 1-2> --out <report>

Quality is each run's monitored metric on the test split (``test/exact_match`` for SCAN,
``test/bleu[_beamK]`` for translation); checkpoints were selected on val by training.
"""

import argparse
import sys
from pathlib import Path

from encdec.reports.comparison import (
    markdown_table,
    paired_bootstrap,
    plot,
    read_run_dir,
    read_wandb_group,
    summarise,
    write_csv,
)
from encdec.reports.pooled_rows import pool_rows, read_report_rows
from encdec.utils.errors import UserError, exit_on_user_error


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="*", type=Path, help="encdec.train run dirs")
    parser.add_argument("--wandb-group", help="read the runs of this W&B group instead")
    parser.add_argument("--wandb-project", default="encdec")
    parser.add_argument("--wandb-entity", default=None)
    parser.add_argument("--out", type=Path, help="dir for comparison.md/.csv and the plots")
    parser.add_argument(
        "--significance", action="store_true", help="paired bootstrap of two runs' test outputs"
    )
    parser.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--skip-unfinished", action="store_true", help="leave out (and list) unfinished runs"
    )
    parser.add_argument(
        "--with-report",
        type=Path,
        help="a report dir whose rows the runs are pooled into (seeds of a later sitting); "
        "its plots are not redrawn, as they need every run",
    )
    args = parser.parse_args()
    if args.wandb_group:
        runs = read_wandb_group(args.wandb_group, args.wandb_project, args.wandb_entity)
    elif args.run_dirs:
        runs = []
        for path in (p for p in args.run_dirs if p.is_dir()):
            try:
                runs.append(read_run_dir(path))
            except UserError as error:
                if not args.skip_unfinished:
                    raise
                print(f"skipped: {error}", file=sys.stderr)
    else:
        raise UserError("give run dirs or --wandb-group")
    if args.significance:
        if len(runs) != 2:
            raise UserError(f"--significance compares two runs, got {len(runs)}")
        print(paired_bootstrap(*runs, samples=args.samples))
        return
    rows = summarise(runs)
    if args.with_report:
        rows = pool_rows(read_report_rows(args.with_report), rows)
    table = markdown_table(rows)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "comparison.md").write_text(table)
        write_csv(rows, args.out / "comparison.csv")
        if args.with_report:
            print(f"no plots: the rows pooled from {args.with_report} keep no per-run values")
            return
        for path in plot(runs, args.out):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
