"""Training curves and confusion matrices as PNG files (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def training_curves(history: dict[str, list[float]], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + metric)
            if values:
                epochs = range(1, len(values) + 1)
                name = ("validation " if prefix else "train ") + metric
                ax.plot(epochs, values, style, marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_matrices(evaluation: dict[str, dict[str, Any]], path: Path) -> None:
    """One panel per split (``val``, ``test``), counts in each cell, rows = true class."""
    splits = [s for s in ("val", "test") if s in evaluation]
    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 4.5), squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        metrics = evaluation[split]
        matrix, labels = metrics["confusion_matrix"], metrics["labels"]
        ax.imshow(matrix, cmap="Blues")
        top = max((max(row) for row in matrix), default=0)
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(
                    j,
                    i,
                    str(count),
                    ha="center",
                    va="center",
                    color="white" if top and count > top / 2 else "black",
                )
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{split}: accuracy {metrics['accuracy']:.3f} (n={metrics['n']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
