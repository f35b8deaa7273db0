"""Extending a comparison report with runs of a later sitting: the report's rows (its
``comparison.csv``) pooled with the rows of new runs, seeds added.

Each row holds a count, a mean and a sample standard deviation, which are enough to pool two
groups exactly (Chan et al.'s parallel variance); the other columns are means over runs,
pooled weighted by their runs. So a table over seeds 1-3 made from a report of seeds 1-2 and
the run dir of seed 3 equals the table made from all three run dirs, although the first two
run dirs are gone.
"""

import csv
import json
import math
from pathlib import Path
from typing import Any

from encdec.reports.comparison import NUMERIC_COLUMNS
from encdec.utils.errors import UserError

SPREAD_COLUMNS = ("quality", "bleu")  # <name>_mean and <name>_std per row


def read_report_rows(report_dir: Path) -> list[dict[str, Any]]:
    """The rows of a report written by ``scripts/compare.py --out``; one line naming the file
    when it is missing or not such a table."""
    path = report_dir / "comparison.csv"
    if not path.is_file():
        raise UserError(f"{report_dir}: no comparison.csv (not a report of scripts/compare.py)")
    with path.open(newline="") as file:
        records = list(csv.DictReader(file))
    rows = []
    for line, record in enumerate(records, start=2):
        try:
            row: dict[str, Any] = {
                "data": record["data"],
                "model": record["model"],
                "runs": int(record["runs"]),
                "seeds": json.loads(record["seeds"]),
                "metric": record["metric"],
            }
            for name in (f"{c}_{s}" for c in SPREAD_COLUMNS for s in ("mean", "std")):
                row[name] = float(record[name])
            for key, _ in NUMERIC_COLUMNS:
                row[key] = float(record[key])
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"{path}:{line}: not a comparison row ({error})") from None
        rows.append(row)
    return rows


def pooled_spread(
    first: tuple[int, float, float], second: tuple[int, float, float]
) -> tuple[float, float]:
    """Mean and sample std of two groups given as (count, mean, sample std) each."""
    (n1, mean1, std1), (n2, mean2, std2) = first, second
    count = n1 + n2
    mean = (n1 * mean1 + n2 * mean2) / count
    squares = (n1 - 1) * std1**2 + (n2 - 1) * std2**2 + n1 * n2 / count * (mean1 - mean2) ** 2
    return mean, math.sqrt(squares / (count - 1))


def pooled_mean(first: tuple[int, float], second: tuple[int, float]) -> float:
    """The mean over both groups' runs; a missing value (NaN) leaves the other group's."""
    present = [(n, value) for n, value in (first, second) if not math.isnan(value)]
    if not present:
        return math.nan
    return sum(n * value for n, value in present) / sum(n for n, _ in present)


def pool_rows(earlier: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``earlier``'s rows with ``rows`` pooled in where data and model agree (the others
    added), sorted as :func:`summarise` sorts; a seed in both is refused, as is a row whose
    metric differs."""
    pooled = {(row["data"], row["model"]): dict(row) for row in earlier}
    for row in rows:
        key = (row["data"], row["model"])
        if key not in pooled:
            pooled[key] = dict(row)
            continue
        old = pooled[key]
        if old["metric"] != row["metric"]:
            raise UserError(
                f"{row['data']} / {row['model']}: the report measured {old['metric']}, "
                f"the runs {row['metric']}"
            )
        if twice := sorted(set(old["seeds"]) & set(row["seeds"])):
            raise UserError(
                f"{row['data']} / {row['model']}: seed {twice} is in the report already"
            )
        counts = old["runs"], row["runs"]
        merged = {**old, "runs": sum(counts), "seeds": sorted(old["seeds"] + row["seeds"])}
        for column in SPREAD_COLUMNS:
            mean, std = f"{column}_mean", f"{column}_std"
            if math.isnan(old[mean]) or math.isnan(row[mean]):
                merged[mean] = merged[std] = math.nan
                continue
            merged[mean], merged[std] = pooled_spread(
                (counts[0], old[mean], old[std]), (counts[1], row[mean], row[std])
            )
        for column, _ in NUMERIC_COLUMNS:
            merged[column] = pooled_mean((counts[0], old[column]), (counts[1], row[column]))
        pooled[key] = merged
    return [pooled[key] for key in sorted(pooled)]
