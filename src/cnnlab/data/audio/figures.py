"""Example pictures of a prepared audio dataset (matplotlib, written next to the tensors)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnlab.data.audio.prepare import AudioDataset


def save_examples(dataset: AudioDataset, out_dir: Path) -> list[Path]:
    """Two pictures: one test clip per class, and one word said by several training speakers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = dataset.manifest["classes"]
    paths = []
    test, test_clips = dataset.splits["test"], dataset.clips["test"]
    firsts = [next((i for i, c in enumerate(test_clips) if c.label == k), None)
              for k in range(len(classes))]
    shown = [(classes[k], i) for k, i in enumerate(firsts) if i is not None][:10]
    if shown:
        fig, axes = plt.subplots(2, (len(shown) + 1) // 2, figsize=(2.2 * len(shown) / 2 + 1, 5),
                                 squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, (name, i) in zip(axes.flat, shown, strict=False):
            ax.imshow(test.x[i, 0].numpy(), origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"'{name}' ({test_clips[i].speaker})", fontsize=8)
        fig.suptitle("one test clip per class: frequency up, time right")
        fig.tight_layout()
        paths.append(out_dir / "examples_classes.png")
        fig.savefig(paths[-1], dpi=80)
        plt.close(fig)
    train, train_clips = dataset.splits["train"], dataset.clips["train"]
    label = train_clips[0].label
    seen: dict[str, int] = {}
    for i, c in enumerate(train_clips):
        if c.label == label and c.speaker not in seen and "augmented" not in c.origin:
            seen[c.speaker] = i
    chosen = list(seen.items())[:: max(1, len(seen) // 6)][:6]
    fig, axes = plt.subplots(1, len(chosen), figsize=(2.2 * len(chosen), 2.8), squeeze=False)
    for ax, (speaker, i) in zip(axes.flat, chosen, strict=True):
        ax.imshow(train.x[i, 0].numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set_title(speaker, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"'{classes[label]}' said by {len(chosen)} training speakers")
    fig.tight_layout()
    paths.append(out_dir / "examples_speakers.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)
    return paths
