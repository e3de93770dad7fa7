"""Deep Dream: change the input so that one layer responds more strongly to what it already sees.

Gradient ascent on the image of the layer's mean squared activation, over octaves (the image
is dreamt at growing scales, and the detail found at one scale is carried to the next) with
random jitter (a circular shift per step, so patterns do not lock to the pixel grid). The
measure of "amplifies what the layer detects" is the ratio of the layer's activation norm
after dreaming to before, on the lecture's MNIST CNN (real digits) and on a photograph seen
through the image backbone.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.analysis.backbone import BackboneConfig, build_backbone, bundled_image
from cnnlab.core.claims import Claim, markdown_table
from cnnlab.core.devices import resolve_device
from cnnlab.core.errors import ConfigError, DataError
from cnnlab.core.io import write_text
from cnnlab.core.threads import torch_threads

LayerFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class DreamSettings:
    octaves: int  # number of scales, the last one the image's own size
    octave_scale: float  # size ratio between consecutive octaves
    steps: int  # ascent steps per octave
    step_size: float  # pixel change per step, for a gradient of mean magnitude 1
    jitter: int  # maximal random shift in pixels per step

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any], where: str) -> DreamSettings:
        s = cls(int(cfg["octaves"]), float(cfg["octave_scale"]), int(cfg["steps"]),
                float(cfg["step_size"]), int(cfg["jitter"]))
        if s.octaves < 1 or s.steps < 1 or s.step_size <= 0 or s.jitter < 0:
            raise ConfigError(f"{where}: octaves and steps must be >= 1, step_size > 0 and "
                              f"jitter >= 0 (got {asdict(s)})")
        if s.octaves > 1 and s.octave_scale <= 1:
            raise ConfigError(f"{where}.octave_scale must be > 1, got {s.octave_scale}")
        return s


def truncate(model: nn.Module, layer: str) -> nn.Sequential:
    """The part of a named nn.Sequential up to and including `layer`."""
    names = [name for name, _ in model.named_children()]
    if not isinstance(model, nn.Sequential) or layer not in names:
        raise ConfigError(f"layer={layer!r} is not a layer of the model; choose from {names}")
    children = list(model.named_children())[: names.index(layer) + 1]
    return nn.Sequential(OrderedDict(children)).eval()


def activation_norms(layer_fn: LayerFn, images: torch.Tensor) -> torch.Tensor:
    """L2 norm of the layer's activation, one per image."""
    with torch.no_grad():
        return layer_fn(images).flatten(1).norm(dim=1)


def octave_sizes(height: int, width: int, s: DreamSettings) -> list[tuple[int, int]]:
    """Image sizes from the smallest octave to the full size."""
    scales = [s.octave_scale ** k for k in reversed(range(s.octaves))]
    return [(max(1, round(height / f)), max(1, round(width / f))) for f in scales]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                         antialias=size[0] < x.shape[-2])


def deep_dream(layer_fn: LayerFn, images: torch.Tensor, settings: DreamSettings,
               seed: int = 0, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Dream a batch of images (N x C x H x W in [low, high]); each image is its own problem.

    The objective per image is the mean squared activation of the layer; its gradient is
    normalised per image, so every image moves by about `step_size` per step.
    """
    gen = torch.Generator().manual_seed(int(seed))
    images = images.detach().float()
    sizes = octave_sizes(images.shape[-2], images.shape[-1], settings)
    detail = torch.zeros_like(_resize(images, sizes[0]))
    x = images
    for size in sizes:
        base = _resize(images, size)
        x = (base + _resize(detail, size)).clamp(low, high)
        for _ in range(settings.steps):
            dy, dx = (torch.randint(-settings.jitter, settings.jitter + 1, (2,), generator=gen)
                      .tolist())
            shifted = torch.roll(x, (dy, dx), dims=(-2, -1)).requires_grad_(True)
            try:
                act = layer_fn(shifted)
            except RuntimeError as exc:
                raise ConfigError(f"octave of size {size[0]}x{size[1]} is too small for the "
                                  f"layer (use fewer octaves or a smaller octave_scale): "
                                  f"{str(exc).splitlines()[0]}") from exc
            objective = act.flatten(1).pow(2).mean(dim=1).sum()
            (grad,) = torch.autograd.grad(objective, shifted)
            grad = torch.roll(grad, (-dy, -dx), dims=(-2, -1))
            grad = grad / (grad.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-12)
            x = (x + settings.step_size * grad).clamp(low, high)
        detail = x - base
    return x.detach()


def dream_and_measure(layer_fn: LayerFn, images: torch.Tensor, settings: DreamSettings,
                      seed: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
    """Dream `images` and measure how the layer's activation norm grew.

    The control is random noise of the same mean absolute pixel change per image: a layer
    that Deep Dream "amplifies" must grow more under the dream than under that noise.
    """
    start = time.perf_counter()
    before = activation_norms(layer_fn, images)
    dreamt = deep_dream(layer_fn, images, settings, seed)
    seconds = time.perf_counter() - start
    after = activation_norms(layer_fn, dreamt)
    change = (dreamt - images).abs().mean(dim=(1, 2, 3), keepdim=True)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(int(seed) + 1))
    noise = noise.to(images.device)
    noise = noise * change / noise.abs().mean(dim=(1, 2, 3), keepdim=True)
    control = activation_norms(layer_fn, (images + noise).clamp(0, 1))
    ratios = after / before.clamp_min(1e-12)
    mean_before = before.mean().clamp_min(1e-12)
    return dreamt, {
        "norm_before": float(before.mean()),
        "norm_after": float(after.mean()),
        "ratio": float(after.mean() / mean_before),
        "min_image_ratio": float(ratios.min()),
        "control_ratio": float(control.mean() / mean_before),
        "pixel_change": float(change.mean()),
        "seconds": seconds,
    }


def save_before_after(path: Path, before: torch.Tensor, after: torch.Tensor, title: str) -> None:
    """A PNG of inputs over their dreams (one input: side by side)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(before)
    rows, cols = (1, 2) if n == 1 else (2, n)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4, 3.6) if n == 1 else (1.4 * n + 0.6, 3.4),
                             squeeze=False)
    for i in range(n):
        for j, (batch, label) in enumerate(((before, "before"), (after, "after"))):
            ax = axes[0][j] if n == 1 else axes[j][i]
            image = batch[i].clamp(0, 1).cpu()
            if image.shape[0] == 1:
                ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(image.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if n == 1:
                ax.set_title(label)
            elif i == 0:
                ax.set_ylabel(label)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def _digits(data_dir: Path, count: int, input_shape: tuple[int, ...]) -> torch.Tensor:
    from cnnlab.data.prepared import load_prepared

    test = load_prepared(data_dir).test
    x = test.x[:count]
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise DataError(f"{data_dir}: test inputs have shape {list(x.shape[1:])}, but the "
                        f"checkpoint expects {list(input_shape)}")
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


@dataclass
class DreamDigits(DreamSettings):
    experiment: str  # models/<experiment>/model.ckpt
    dataset: str
    count: int
    layer: str


@dataclass
class DreamPhoto(DreamSettings):
    image: str
    size: int
    layer: str


@dataclass
class DeepDreamConfig:
    """analysis.deepdream (values in conf/analysis/deepdream.yaml)."""

    seed: int
    min_ratio: float
    digits: DreamDigits
    photo: DreamPhoto
    backbone: BackboneConfig
    threads: int | None
    device: str


def run_deepdream(cfg: Mapping[str, Any], checkpoint: Path, data_dir: Path, out_dir: Path
                  ) -> tuple[dict[str, Any], list[Claim]]:
    """Dream real digits through the trained CNN and a photo through the backbone.

    Writes `out_dir/{digits.png, photo.png, dream.md}`; returns the metrics and the claims.
    """
    device = resolve_device(cfg["device"], "analysis.deepdream.device")
    with torch_threads(cfg["threads"], "analysis.deepdream.threads"):
        return _run_deepdream(cfg, checkpoint, data_dir, out_dir, device)


def _run_deepdream(cfg: Mapping[str, Any], checkpoint: Path, data_dir: Path, out_dir: Path,
                   device: torch.device) -> tuple[dict[str, Any], list[Claim]]:
    from cnnlab.training.checkpoint import load_checkpoint

    seed = int(cfg["seed"])
    min_ratio = float(cfg["min_ratio"])
    dcfg, pcfg = cfg["digits"], cfg["photo"]
    model, meta = load_checkpoint(checkpoint)
    model.to(device)
    digit_layer = truncate(model, dcfg["layer"])
    digits = _digits(data_dir, int(dcfg["count"]), tuple(meta["input_shape"])).to(device)
    dreamt_digits, digit_stats = dream_and_measure(
        digit_layer, digits, DreamSettings.from_cfg(dcfg, "digits"), seed)

    backbone = build_backbone(cfg["backbone"]).to(device)
    photo_layer = str(pcfg["layer"])
    backbone.check_layers([photo_layer])
    photo = bundled_image(str(pcfg["image"]), int(pcfg["size"]))[None].to(device)
    dreamt_photo, photo_stats = dream_and_measure(
        lambda x: backbone.features(x, [photo_layer])[photo_layer], photo,
        DreamSettings.from_cfg(pcfg, "photo"), seed)

    experiment = str(meta.get("experiment", checkpoint.parent.name))
    rows = [
        {"input": f"{len(digits)} MNIST test digits", "network": experiment,
         "layer": dcfg["layer"], **digit_stats},
        {"input": f"photo {pcfg['image']} ({photo.shape[-1]} px)",
         "network": f"{backbone.kind} backbone", "layer": photo_layer, **photo_stats},
    ]
    claims = [Claim("Deep Dream amplifies what a layer detects",
                    f"deepdream {row['network']}:{row['layer']}",
                    f"{row['input']}: activation norm x{row['ratio']:.2f} after dreaming "
                    f"({row['norm_before']:.3g} -> {row['norm_after']:.3g}); random noise of "
                    f"the same pixel change: x{row['control_ratio']:.2f}",
                    row["ratio"], row["ratio"] >= min_ratio and row["ratio"] > row["control_ratio"])
              for row in rows]
    result = {"digits": rows[0], "photo": rows[1], "min_ratio": min_ratio}
    save_before_after(out_dir / "digits.png", digits, dreamt_digits,
                      f"Deep Dream on {experiment}:{dcfg['layer']} "
                      f"(activation norm x{digit_stats['ratio']:.2f})")
    save_before_after(out_dir / "photo.png", photo, dreamt_photo,
                      f"Deep Dream on {backbone.kind} backbone:{photo_layer} "
                      f"(activation norm x{photo_stats['ratio']:.2f})")
    write_text(out_dir / "dream.md", "# Deep Dream: activation norm before and after\n\n"
               + markdown_table(rows, ["input", "network", "layer", "norm_before",
                                       "norm_after", "ratio", "min_image_ratio",
                                       "control_ratio", "pixel_change", "seconds"]))
    return result, claims
