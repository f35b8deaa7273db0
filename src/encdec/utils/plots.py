"""Attention heatmaps as PNG files, drawn on matplotlib's Agg canvas (``Figure`` without pyplot:
no display, no global state)."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def save_attention_heatmap(
    weights: np.ndarray,
    source_labels: list[str] | None,
    target_labels: list[str],
    path: Path,
    title: str = "",
) -> Path:
    """Plot attention ``weights`` (T, S): one row per output token (``target_labels``), one
    column per source token (``source_labels``; None: numbered positions, such as the cells of
    an image grid); write it to ``path`` (PNG) and return the path."""
    steps, positions = weights.shape
    if len(target_labels) != steps or (source_labels and len(source_labels) != positions):
        raise ValueError(
            f"attention {weights.shape} does not match {len(target_labels)} target and "
            f"{len(source_labels or [])} source labels"
        )
    width = min(3.0 + 0.28 * (len(source_labels) if source_labels else 12), 18.0)
    height = min(2.0 + 0.25 * steps, 18.0)
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(weights, cmap="viridis", vmin=0.0, aspect="auto")  # vmax: the largest
    axes.set_yticks(range(steps), target_labels, fontsize=8)
    axes.set_ylabel("output")
    if source_labels:
        axes.set_xticks(range(positions), source_labels, fontsize=8, rotation=90)
        axes.set_xlabel("source")
    else:
        axes.set_xlabel("source position (image: grid cell)")
    if title:
        axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.05)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
