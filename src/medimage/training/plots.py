"""Training curves, confusion matrices and coverage-accuracy curves as PNG files (matplotlib, headless Agg
backend)."""

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
    """One panel per split (``val``, ``test``, or whatever ``evaluation`` names), counts in each cell, rows =
    true class."""
    splits = list(evaluation)
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


def coverage_accuracy(evaluation: dict[str, dict[str, Any]], path: Path) -> bool:
    """Accuracy of the predictions kept against the share kept, one line per split that has a selective
    ``curve``, with the review threshold's operating point marked. False (and no file) when none has."""
    splits = [name for name, metrics in evaluation.items() if (metrics.get("selective") or {}).get("curve")]
    if not splits:
        return False
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for split in splits:
        selective = evaluation[split]["selective"]
        points = selective["curve"]
        line = ax.plot(
            [p["coverage"] for p in points],
            [p["accuracy_above"] for p in points],
            marker=".",
            label=f"{split} (n={evaluation[split]['n']})",
        )[0]
        if selective.get("accuracy_above") is not None:
            ax.plot(
                selective["coverage"],
                selective["accuracy_above"],
                "o",
                markersize=9,
                color=line.get_color(),
                markerfacecolor="none",
            )
            threshold = selective["threshold"]
            shown = (
                f"{threshold:.3f}"
                if isinstance(threshold, int | float)
                else "/".join(f"{t:.3f}" for t in threshold)
            )
            ax.annotate(
                f"threshold {shown}: {selective['coverage']:.0%} kept, "
                f"{selective['accuracy_above']:.3f} right",
                (selective["coverage"], selective["accuracy_above"]),
                textcoords="offset points",
                xytext=(-10, -16),
                ha="right",
                fontsize=8,
                color=line.get_color(),
            )
    ax.set_xlabel("coverage (share labelled without review)")
    ax.set_ylabel("accuracy on the labelled share")
    ax.set_xlim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title("coverage vs. accuracy: the rest goes to review")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
