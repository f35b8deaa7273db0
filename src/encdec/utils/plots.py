"""Attention heatmaps as PNG files, drawn on matplotlib's Agg canvas (``Figure`` without pyplot:
no display, no global state)."""

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image


def save_attention_heatmap(
    weights: np.ndarray,
    source_labels: list[str] | None,
    target_labels: list[str],
    path: Path,
    title: str = "",
    axis_labels: tuple[str, str] | None = None,
) -> Path:
    """Plot attention ``weights`` (T, S): one row per output token (``target_labels``), one
    column per source token (``source_labels``; None: numbered positions, such as the cells of
    an image grid); write it to ``path`` (PNG) and return the path. ``axis_labels``: (rows,
    columns) names other than output and source."""
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
    if axis_labels:
        axes.set_ylabel(axis_labels[0])
        axes.set_xlabel(axis_labels[1])
    if title:
        axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.05)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def save_attention_overlay(
    image: np.ndarray, weights: np.ndarray, words: list[str], path: Path, title: str = ""
) -> Path:
    """Show, Attend and Tell's figure: the image (H, W, 3, uint8), then one panel per generated
    word with its attention over the square grid of N cells (``weights`` (T, N)), upsampled to
    the image and laid over it. Written to ``path`` (PNG)."""
    steps, cells = weights.shape
    side = round(cells**0.5)
    if side * side != cells or len(words) != steps:
        raise ValueError(f"attention {weights.shape}: needs a square grid and {steps} words")
    height, width = image.shape[:2]
    columns = min(steps + 1, 6)
    rows = -(-(steps + 1) // columns)
    figure = Figure(figsize=(2.0 * columns, 2.1 * rows + 0.3), dpi=100, layout="constrained")
    panels = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes in panels:
        axes.axis("off")
    panels[0].imshow(image)
    panels[0].set_title("image", fontsize=9)
    if title:  # the whole caption, wrapped to the figure's width
        figure.suptitle(textwrap.fill(title, width=17 * columns), fontsize=9)
    for axes, word, cell_weights in zip(panels[1:], words, weights, strict=False):
        grid = Image.fromarray(cell_weights.reshape(side, side).astype(np.float32), mode="F")
        upsampled = np.asarray(grid.resize((width, height), Image.Resampling.BILINEAR))
        axes.imshow(image)
        axes.imshow(upsampled, cmap="gray", alpha=0.6, vmin=0.0, vmax=max(upsampled.max(), 1e-8))
        axes.set_title(word, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def save_attention_over_spectrogram(
    spectrogram: np.ndarray, weights: np.ndarray, labels: list[str], path: Path, title: str = ""
) -> Path:
    """A recognizer's attention under its input: the log-mel ``spectrogram`` (M, F) on top and,
    on the same time axis, ``weights`` (T, S) of the T output tokens (``labels``) over the S
    encoder frames, each spanning F / S spectrogram frames. Written to ``path`` (PNG)."""
    steps, positions = weights.shape
    if len(labels) != steps:
        raise ValueError(f"attention {weights.shape} does not match {len(labels)} labels")
    frames = spectrogram.shape[1]
    height = min(3.0 + 0.22 * steps, 18.0)
    figure = Figure(figsize=(min(4.0 + frames / 60, 18.0), height), dpi=100, layout="constrained")
    top, bottom = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [1, max(1.0, steps / 12)]}
    )
    top.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma", extent=(0, frames, 0, 1))
    top.set_yticks([])
    top.set_ylabel("log-mel")
    extent = (0, frames, steps - 0.5, -0.5)  # encoder frames stretched over the input frames
    bottom.imshow(weights, cmap="viridis", vmin=0.0, aspect="auto", extent=extent)
    bottom.set_yticks(range(steps), labels, fontsize=8)
    bottom.set_ylabel("output")
    bottom.set_xlabel(f"10-ms frame ({positions} encoder frames)")
    if title:
        top.set_title(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def pad_to_same_size(paths: list[Path]) -> None:
    """Pad PNGs with white on the right and bottom to the largest width and height among them:
    W&B shows images logged together under one key only when their sizes match."""
    images = [Image.open(path).convert("RGB") for path in paths]
    width = max((image.width for image in images), default=0)
    height = max((image.height for image in images), default=0)
    for path, image in zip(paths, images, strict=True):
        if image.size != (width, height):
            canvas = Image.new("RGB", (width, height), "white")
            canvas.paste(image, (0, 0))
            canvas.save(path)


def save_spectrograms(spectrograms: dict[str, np.ndarray], path: Path, title: str = "") -> Path:
    """Log-mel spectrograms (M, T) one above the other on a shared time axis and one colour
    scale, each labelled with its name (e.g. synthesized over reference). Written to ``path``."""
    frames = max(s.shape[1] for s in spectrograms.values())
    low = min(float(s.min()) for s in spectrograms.values())
    high = max(float(s.max()) for s in spectrograms.values())
    figure = Figure(
        figsize=(min(4.0 + frames / 60, 18.0), 1.8 * len(spectrograms) + 0.6),
        dpi=100, layout="constrained",
    )  # fmt: skip
    panels = figure.subplots(len(spectrograms), 1, sharex=True, squeeze=False).ravel()
    for axes, (name, spectrogram) in zip(panels, spectrograms.items(), strict=True):
        axes.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma", vmin=low, vmax=high)
        axes.set_xlim(0, frames)
        axes.set_ylabel(name, fontsize=8)
        axes.set_yticks([])
    panels[-1].set_xlabel("10-ms frame")
    if title:
        panels[0].set_title(textwrap.shorten(title, 120), fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
