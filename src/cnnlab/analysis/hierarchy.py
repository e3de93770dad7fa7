"""A hierarchy of features: deeper layers respond to larger patterns of the input.

Per layer: the receptive field by the lecture's formula (how many input pixels one unit can
see), and the measured effective receptive field: the mean |gradient| of a layer's central
unit with respect to real test digits, summarised by its spread (root-mean-square distance
from its centre of mass, in pixels) and by the area holding 90% of it. The figure sets the
images that maximise each layer's units (from the filters and neurons stages) side by side
above these gradient maps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.analysis.ascent import LayerProbe, frozen, layer_output_shape
from cnnlab.analysis.grids import tile_grid
from cnnlab.analysis.trained import load_inputs
from cnnlab.core.claims import Claim, csv_text, markdown_table
from cnnlab.core.devices import resolve_device
from cnnlab.core.errors import ConfigError, DataError
from cnnlab.core.io import write_text
from cnnlab.core.threads import torch_threads
from cnnlab.models.geometry import receptive_fields


def formula_fields(model: nn.Module, layers: Sequence[str], input_shape: Sequence[int]
                   ) -> dict[str, int]:
    """Receptive field (pixels along the height) of each layer by r_out = r_in + (k-1) j_in;
    a dense layer sees the whole input."""
    plan = getattr(model, "plan", None)
    if plan is None:
        raise ConfigError("the model has no layer plan: receptive fields need a convnet")
    fields = receptive_fields(plan)
    out = {}
    for layer in layers:
        kind = next((p.kind for p in plan if p.name == layer), None)
        if layer in fields:
            out[layer] = fields[layer]
        elif kind == "dense":
            out[layer] = int(input_shape[-2])
        else:
            raise ConfigError(f"layer {layer!r} is neither a conv/pool nor a dense layer of the "
                              f"plan {[p.name for p in plan]}")
    return out


def gradient_map(model: nn.Module, layer: str, inputs: torch.Tensor) -> torch.Tensor:
    """Mean |d unit / d input| over `inputs` and over the channels (or neurons) of `layer`,
    taking the unit at the centre of each feature map: an [H, W] map of what one unit sees."""
    shape = layer_output_shape(model, layer, inputs.shape[1:])
    count = shape[0]
    x = inputs.repeat_interleave(count, dim=0).requires_grad_(True)  # row i*count + c: unit c
    units = torch.arange(count, device=inputs.device).repeat(len(inputs))
    with frozen(model), LayerProbe(model, layer) as probe:
        acts = probe(x)
        if acts.dim() == 4:
            picked = acts[torch.arange(len(x), device=x.device), units, acts.shape[2] // 2,
                          acts.shape[3] // 2]
        else:
            picked = acts[torch.arange(len(x), device=x.device), units]
        picked.sum().backward()
    return x.grad.abs().mean(dim=(0, 1))


def spread(energy: torch.Tensor) -> tuple[float, int]:
    """(RMS distance from the centre of mass, pixels holding 90% of the mass) of a 2-D map."""
    p = energy.double() / energy.sum().clamp_min(1e-30)
    ys, xs = torch.meshgrid(torch.arange(p.shape[0], dtype=torch.double, device=p.device),
                            torch.arange(p.shape[1], dtype=torch.double, device=p.device),
                            indexing="ij")
    cy, cx = (p * ys).sum(), (p * xs).sum()
    rms = float(torch.sqrt((p * ((ys - cy) ** 2 + (xs - cx) ** 2)).sum()))
    cumulative = p.flatten().sort(descending=True).values.cumsum(0)
    area = int((cumulative < 0.9).sum()) + 1
    return rms, min(area, p.numel())


def load_images(files: Sequence[Path]) -> dict[str, torch.Tensor]:
    """The maximising images the filters/neurons stages saved, by layer."""
    images: dict[str, torch.Tensor] = {}
    for path in files:
        if not path.is_file():
            raise DataError(f"{path}: maximising images are missing (run its stage first)")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt file
            raise DataError(f"{path}: cannot load the maximising images ({exc})") from exc
        if not isinstance(blob, dict):
            raise DataError(f"{path}: expected a dict of layer -> images")
        images.update(blob)
    return images


def increasing(values: Sequence[float]) -> bool:
    return all(a < b for a, b in zip(values, values[1:], strict=False))


@dataclass
class HierarchyConfig:
    """analysis.hierarchy (values in conf/analysis/hierarchy.yaml)."""

    experiment: str
    dataset: str
    images_from: list[str]
    layers: list[str]
    digits: int
    grid_columns: int
    threads: int | None
    device: str


def run_hierarchy(cfg: Mapping[str, Any], checkpoint: Path, data_dir: Path,
                  image_files: Sequence[Path], out_dir: Path
                  ) -> tuple[dict[str, Any], list[Claim]]:
    """Receptive field by formula and effective receptive field per layer.

    Writes `out_dir/{hierarchy.png, hierarchy.csv, hierarchy.md}`; returns metrics and claims.
    """
    layers = list(cfg["layers"])
    if len(layers) < 2:
        raise ConfigError("analysis.hierarchy.layers: name at least two layers, shallow first")
    images = load_images(image_files)
    missing = [layer for layer in layers if layer not in images]
    if missing:
        raise DataError(f"{', '.join(map(str, image_files))}: no maximising images for layers "
                        f"{missing} (they hold {sorted(images)})")
    device = resolve_device(cfg["device"], "analysis.hierarchy.device")
    with torch_threads(cfg["threads"], "analysis.hierarchy.threads"):
        inputs = load_inputs(checkpoint, data_dir, int(cfg["digits"]), device)
        shape = tuple(inputs.meta["input_shape"])
        fields = formula_fields(inputs.model, layers, shape)
        maps, rows = {}, []
        for layer in layers:
            maps[layer] = gradient_map(inputs.model, layer, inputs.test_x).cpu()
            rms, area = spread(maps[layer])
            rows.append({"layer": layer, "receptive_field": fields[layer],
                         "gradient_spread": rms, "gradient_area90": area,
                         "units": int(images[layer].shape[0])})
    experiment = str(inputs.meta.get("experiment", checkpoint.parent.name))
    claims = hierarchy_claims(experiment, rows)
    metrics = {row["layer"]: {k: v for k, v in row.items() if k != "layer"} for row in rows}
    columns = ["layer", "receptive_field", "gradient_spread", "gradient_area90", "units"]
    save_hierarchy_figure(out_dir / "hierarchy.png", layers, images, maps, rows,
                          int(cfg["grid_columns"]))
    write_text(out_dir / "hierarchy.csv", csv_text(rows, columns))
    write_text(out_dir / "hierarchy.md", hierarchy_markdown(experiment, rows, columns))
    return metrics, claims


def hierarchy_claims(experiment: str, rows: Sequence[Mapping[str, Any]]) -> list[Claim]:
    def chain(key: str, fmt: str = "{}") -> str:
        return " -> ".join(fmt.format(r[key]) for r in rows)

    spreads = [r["gradient_spread"] for r in rows]
    areas = [r["gradient_area90"] for r in rows]
    return [Claim(
        "Deeper layers respond to larger patterns (what one unit sees grows with depth)",
        f"hierarchy {experiment}",
        f"{chain('layer')}: receptive field {chain('receptive_field')} px by formula; "
        f"measured spread of one unit's input gradient {chain('gradient_spread', '{:.2f}')} px, "
        f"area holding 90% of it {chain('gradient_area90')} px",
        spreads[-1], increasing(spreads) and increasing(areas))]


def hierarchy_markdown(experiment: str, rows: Sequence[Mapping[str, Any]],
                       columns: Sequence[str]) -> str:
    return (f"# hierarchy: pattern size by layer of {experiment}\n\n"
            "receptive_field: pixels one unit sees, by formula (dense: the whole input). "
            "gradient_spread: RMS distance (px) of the mean |d unit / d input| of a central "
            "unit from its centre, over real test digits; gradient_area90: pixels holding 90% "
            "of it. `hierarchy.png`: top, images that maximise the layer's units (filters and "
            "neurons stages); bottom, the mean |gradient| map of one central unit.\n\n"
            + markdown_table(rows, columns))


def save_hierarchy_figure(path: Path, layers: Sequence[str], images: Mapping[str, torch.Tensor],
                          maps: Mapping[str, torch.Tensor], rows: Sequence[Mapping[str, Any]],
                          ncols: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(layers), figsize=(3.2 * len(layers), 6.4),
                             gridspec_kw={"height_ratios": [1.4, 1]}, squeeze=False)
    for i, (layer, row) in enumerate(zip(layers, rows, strict=True)):
        shown = images[layer][: ncols * ncols]
        axes[0, i].imshow(tile_grid(shown, ncols))
        axes[0, i].set_title(f"{layer}: receptive field {row['receptive_field']} px",
                             fontsize=9)
        axes[1, i].imshow(maps[layer].numpy(), cmap="magma")
        axes[1, i].set_title(f"|gradient| of one unit\nspread {row['gradient_spread']:.2f} px",
                             fontsize=9)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)

