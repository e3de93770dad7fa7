"""Style transfer after Gatys et al.: content is where features are, style is their correlations.

The image is optimised so that its activation at one layer matches the content photo's
(content loss: mean squared difference) while the Gram matrices of its activations at
several layers match the style image's (style loss). The Gram matrix discards where things
are and keeps which features occur together, which is why matching it carries the style
(texture, colour, strokes) and not the layout.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.analysis.backbone import Backbone, BackboneConfig, build_backbone, bundled_image
from cnnlab.core.claims import Claim, markdown_table
from cnnlab.core.devices import resolve_device
from cnnlab.core.errors import ConfigError
from cnnlab.core.io import write_text
from cnnlab.core.progress import progress
from cnnlab.core.threads import torch_threads


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """N x C x H x W -> N x C x C: channel correlations summed over positions, / (C*H*W)."""
    if features.dim() != 4:
        raise ValueError(f"gram_matrix needs N x C x H x W features, got {tuple(features.shape)}")
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def _relative_error(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(value, target) / target.pow(2).mean().clamp_min(1e-30)


@dataclass(frozen=True)
class StyleSettings:
    content_layer: str
    style_layers: tuple[str, ...]
    content_weight: float
    style_weight: float
    steps: int
    lr: float  # Adam's step on pixels in [0, 1]; ignored by L-BFGS (lr 1)
    optimizer: str  # adam | lbfgs
    init: str  # content | noise

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> StyleSettings:
        try:
            s = cls(str(cfg["content_layer"]), tuple(str(x) for x in cfg["style_layers"]),
                    float(cfg["content_weight"]), float(cfg["style_weight"]), int(cfg["steps"]),
                    float(cfg["lr"]), str(cfg["optimizer"]), str(cfg["init"]))
        except KeyError as exc:
            raise ConfigError(f"style: missing key {exc.args[0]!r}") from exc
        if not s.style_layers or s.steps < 1 or s.lr <= 0:
            raise ConfigError("style: needs at least one style layer, steps >= 1 and lr > 0")
        if s.optimizer not in ("adam", "lbfgs"):
            raise ConfigError(f"style.optimizer={s.optimizer!r}: choose adam or lbfgs")
        if s.init not in ("content", "noise"):
            raise ConfigError(f"style.init={s.init!r}: choose content or noise")
        return s


class StyleObjective:
    """Content and style losses of an image against fixed targets, on one backbone."""

    def __init__(self, backbone: Backbone, content: torch.Tensor, style: torch.Tensor,
                 settings: StyleSettings) -> None:
        self.backbone, self.s = backbone, settings
        self.layers = list(dict.fromkeys([settings.content_layer, *settings.style_layers]))
        backbone.check_layers(self.layers)
        with torch.no_grad():
            self.content_target = backbone.features(content, [settings.content_layer])[
                settings.content_layer]
            style_feats = backbone.features(style, list(settings.style_layers))
            self.style_targets = {k: gram_matrix(v) for k, v in style_feats.items()}

    def losses(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(content loss, style loss averaged over the style layers), unweighted.

        Both are relative squared errors (divided by the target's mean square), so they
        start near 1 whatever the images and layers, and one pair of weights fits all.
        """
        feats = self.backbone.features(image, self.layers)
        content = _relative_error(feats[self.s.content_layer], self.content_target)
        style = torch.stack([_relative_error(gram_matrix(feats[k]), self.style_targets[k])
                             for k in self.s.style_layers]).mean()
        return content, style

    def measure(self, image: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            content, style = self.losses(image)
        return {"content": float(content), "style": float(style)}


def transfer_style(objective: StyleObjective, content: torch.Tensor,
                   seed: int = 0) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Optimise the image (pixels clamped to [0, 1]) on the content's device; returns it and
    the loss history."""
    s = objective.s
    if s.init == "content":
        start = content.clone()
    else:
        start = torch.rand(content.shape, generator=torch.Generator().manual_seed(int(seed))
                           ).to(content.device)
    image = start.requires_grad_(True)
    history: list[dict[str, float]] = []

    def total() -> torch.Tensor:
        c, st = objective.losses(image)
        history.append({"content": float(c.detach()), "style": float(st.detach())})
        return s.content_weight * c + s.style_weight * st

    if s.optimizer == "adam":
        opt = torch.optim.Adam([image], lr=s.lr)
        for _ in progress(range(s.steps), "style transfer"):
            opt.zero_grad()
            total().backward()
            opt.step()
            with torch.no_grad():
                image.clamp_(0, 1)
    else:
        opt = torch.optim.LBFGS([image], lr=1.0, max_iter=s.steps, history_size=20)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            with torch.no_grad():
                image.clamp_(0, 1)
            loss = total()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            image.clamp_(0, 1)
    return image.detach(), history


def save_images(out_dir: Path, images: Mapping[str, torch.Tensor], title: str) -> None:
    """Each image as `images/<name>.png` and all of them side by side as `transfer.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays = {k: v[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() for k, v in images.items()}
    (out_dir / "images").mkdir(exist_ok=True)
    for name, array in arrays.items():
        plt.imsave(out_dir / "images" / f"{name}.png", array, format="png")
    fig, axes = plt.subplots(1, len(arrays), figsize=(3.1 * len(arrays), 3.4))
    for ax, (name, array) in zip(axes, arrays.items(), strict=True):
        ax.imshow(array)
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_dir / "transfer.png", format="png", dpi=100)
    plt.close(fig)


def save_loss_curves(path: Path, history: Sequence[Mapping[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for key in ("style", "content"):
        ax.plot([h[key] for h in history], label=f"{key} loss")
    ax.set_yscale("log")
    ax.set_xlabel("evaluation")
    ax.legend()
    ax.set_title("style transfer: losses while optimising the image", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


@dataclass
class StyleConfig:
    """analysis.style (values in conf/analysis/style.yaml)."""

    seed: int
    content: str
    style: str
    size: int
    content_layer: str
    style_layers: list[str]
    content_weight: float
    style_weight: float
    optimizer: str
    lr: float
    steps: int
    init: str
    min_style_drop: float
    max_content_fraction: float
    backbone: BackboneConfig
    threads: int | None
    device: str


def run_style(cfg: Mapping[str, Any], out_dir: Path, curves_file: Path
              ) -> tuple[dict[str, Any], list[Claim]]:
    """Transfer the style image's style onto the content photo and measure both losses.

    Writes `out_dir/{transfer,losses}.png, images/{content,style,result}.png, style.md` and
    the loss curves `curves_file`; returns the metrics and the claims.
    """
    device = resolve_device(cfg["device"], "analysis.style.device")
    with torch_threads(cfg["threads"], "analysis.style.threads"):
        return _run_style(cfg, out_dir, curves_file, device)


def _run_style(cfg: Mapping[str, Any], out_dir: Path, curves_file: Path, device: torch.device
               ) -> tuple[dict[str, Any], list[Claim]]:
    seed = int(cfg["seed"])
    settings = StyleSettings.from_cfg(cfg)
    size = int(cfg["size"])
    backbone = build_backbone(cfg["backbone"]).to(device)
    content = bundled_image(str(cfg["content"]), size)[None].to(device)
    style = bundled_image(str(cfg["style"]), size)[None].to(device)
    objective = StyleObjective(backbone, content, style, settings)
    start = time.perf_counter()
    before = objective.measure(content if settings.init == "content" else
                               torch.rand(content.shape,
                                          generator=torch.Generator().manual_seed(seed)
                                          ).to(device))
    result, history = transfer_style(objective, content, seed)
    seconds = time.perf_counter() - start
    after = objective.measure(result)
    reference = objective.measure(style)  # the content loss a picture of pure style has
    style_drop = before["style"] / max(after["style"], 1e-30)
    content_fraction = after["content"] / max(reference["content"], 1e-30)
    min_drop = float(cfg["min_style_drop"])
    max_fraction = float(cfg["max_content_fraction"])
    numbers = {
        "style_loss_before": before["style"], "style_loss_after": after["style"],
        "style_drop": style_drop, "content_loss_before": before["content"],
        "content_loss_after": after["content"],
        "content_loss_of_style_image": reference["content"],
        "content_fraction": content_fraction, "seconds": seconds, "evaluations": len(history),
    }
    claim = Claim(
        "style transfer: Gram matrices carry style", f"style {backbone.kind} backbone",
        f"{cfg['content']} in the style of {cfg['style']}: style loss /{style_drop:.1f} "
        f"({before['style']:.3g} -> {after['style']:.3g}) while content loss stays at "
        f"{content_fraction:.0%} of the style image's",
        style_drop, style_drop >= min_drop and content_fraction <= max_fraction)
    summary = {**numbers, "min_style_drop": min_drop, "max_content_fraction": max_fraction}
    save_images(out_dir, {"content": content, "style": style, "result": result},
                f"{cfg['content']} + style of {cfg['style']} ({backbone.kind} backbone, "
                f"style loss /{style_drop:.1f})")
    save_loss_curves(out_dir / "losses.png", history)
    write_text(curves_file, "evaluation,content,style\n" + "".join(
        f"{i},{h['content']:.6g},{h['style']:.6g}\n" for i, h in enumerate(history, 1)))
    rows = [{"measure": k, "value": v} for k, v in numbers.items()]
    write_text(out_dir / "style.md", "# Style transfer: losses before and after\n\n"
               + markdown_table(rows, ["measure", "value"]))
    return summary, [claim]
