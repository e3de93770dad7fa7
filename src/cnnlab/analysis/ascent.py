"""Gradient ascent on the input: which image most excites a unit, with the weights held fixed.

An objective is a function of one layer's activations, captured by a forward hook (the
forward pass stops at that layer, so nothing after it is computed). A batch of images is
optimised at once, one image per target unit: in eval mode each image's objective depends on
that image alone, so the batch gives the same images as a loop over units, in one pass.

Images stay in [0, 1], either by clamping after every step (`clamp`) or by optimising a
free parameter passed through a sigmoid (`sigmoid`). Regularisers are composable terms:
a term may add a per-image penalty (L1 "few ink pixels", total variation), transform the
image the network sees (jitter) or change the image between steps (blur).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.core.progress import progress

Objective = Callable[[torch.Tensor], torch.Tensor]  # activations [B, ...] -> one score per image
PARAMETRISATIONS = ("clamp", "sigmoid")


class _StopForward(Exception):
    """Raised by the hook once the probed layer has run: the rest of the model is not needed."""


def find_layer(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if not name or name not in modules:
        names = [n for n in modules if n]
        raise ConfigError(f"layer {name!r} is not in the model; its layers are {names}")
    return modules[name]


class LayerProbe(contextlib.AbstractContextManager):
    """Run the model up to layer `name` and return that layer's output.

    With `stop=True` the forward pass is cut right after the layer, which makes probing an
    early layer as cheap as the layers before it. Use as a context manager (removes the hook).
    """

    def __init__(self, model: nn.Module, name: str, stop: bool = True) -> None:
        self.model = model
        self.name = name
        self.stop = stop
        self._out: torch.Tensor | None = None
        self._handle = find_layer(model, name).register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self._out = output
        if self.stop:
            raise _StopForward

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._out = None
        with contextlib.suppress(_StopForward):
            self.model(x)
        if self._out is None:
            raise ConfigError(f"layer {self.name!r} did not run in the forward pass")
        return self._out

    def close(self) -> None:
        self._handle.remove()

    def __exit__(self, *exc: object) -> None:
        self.close()


def unit_objective(units: Sequence[int] | torch.Tensor,
                   activation: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Objective:
    """Image b scores the activation of unit `units[b]` (channel or neuron), summed over space.

    For a conv layer this is the lecture's degree of activation of filter k: the sum of its
    whole feature map; for a dense layer or the class scores it is the one value.
    `activation` is applied to the layer's output first (e.g. ReLU on a conv's output).
    """
    index = torch.as_tensor(units, dtype=torch.long)

    def objective(acts: torch.Tensor) -> torch.Tensor:
        if acts.shape[0] != len(index):
            raise ValueError(f"{acts.shape[0]} images for {len(index)} target units")
        picked = acts[torch.arange(len(index), device=acts.device), index.to(acts.device)]
        if activation is not None:
            picked = activation(picked)
        return picked.reshape(len(index), -1).sum(dim=1)

    return objective


def relu(z: torch.Tensor) -> torch.Tensor:
    return F.relu(z)


def leaky(slope: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Leaky ReLU: the surrogate to ascend on. A unit that is silent (all ReLU outputs 0) on
    the starting image has no ReLU gradient; the small negative slope still shows the way."""

    def activation(z: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(z, slope)

    return activation


def unit_activations(acts: torch.Tensor,
                     activation: Callable[[torch.Tensor], torch.Tensor] | None = None
                     ) -> torch.Tensor:
    """Every unit's activation per image, summed over space: [B, C, ...] -> [B, C]."""
    if activation is not None:
        acts = activation(acts)
    return acts.reshape(acts.shape[0], acts.shape[1], -1).sum(dim=2)


# --- regularisers: composable terms -------------------------------------------------------

class Term:
    """A regulariser. Override any of: penalty (subtracted from the objective), view (what the
    network sees this step), after_step (an edit of the image between steps)."""

    def penalty(self, images: torch.Tensor) -> torch.Tensor | None:
        return None

    def view(self, images: torch.Tensor, step: int, gen: torch.Generator) -> torch.Tensor:
        return images

    def after_step(self, images: torch.Tensor, step: int) -> torch.Tensor | None:
        return None


@dataclass(frozen=True)
class L1Ink(Term):
    """Each unit of ink costs `weight`: penalty = weight * sum of pixel values ("few ink")."""

    weight: float

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        return self.weight * images.abs().reshape(len(images), -1).sum(dim=1)


@dataclass(frozen=True)
class TotalVariation(Term):
    """Penalise differences between neighbouring pixels: smooth strokes instead of noise."""

    weight: float

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        dh = (images[..., 1:, :] - images[..., :-1, :]).abs().reshape(len(images), -1).sum(1)
        dw = (images[..., :, 1:] - images[..., :, :-1]).abs().reshape(len(images), -1).sum(1)
        return self.weight * (dh + dw)


@dataclass(frozen=True)
class Jitter(Term):
    """Show the network the image shifted by a random offset of up to `pixels` (zero fill),
    so the image cannot rely on one exact pixel position."""

    pixels: int

    def view(self, images: torch.Tensor, step: int, gen: torch.Generator) -> torch.Tensor:
        if self.pixels <= 0:
            return images
        dy, dx = torch.randint(-self.pixels, self.pixels + 1, (2,), generator=gen).tolist()
        return shift(images, dy, dx)


@dataclass(frozen=True)
class Blur(Term):
    """Every `every` steps replace the image by its Gaussian blur (std `sigma` pixels)."""

    sigma: float
    every: int

    def after_step(self, images: torch.Tensor, step: int) -> torch.Tensor | None:
        if self.every <= 0 or self.sigma <= 0 or (step + 1) % self.every:
            return None
        return gaussian_blur(images, self.sigma)


def shift(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move images down by dy and right by dx pixels (negative: up/left); vacated pixels are 0."""
    h, w = images.shape[-2:]
    out = torch.zeros_like(images)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src_h = slice(max(0, -dy), h - max(0, dy))
    dst_h = slice(max(0, dy), h - max(0, -dy))
    src_w = slice(max(0, -dx), w - max(0, dx))
    dst_w = slice(max(0, dx), w - max(0, -dx))
    out[..., dst_h, dst_w] = images[..., src_h, src_w]
    return out


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, H, W] images, edges replicated."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(padded, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)


def build_terms(cfg: Mapping[str, Any], where: str = "ascent") -> list[Term]:
    """The regularisers a config asks for: l1, tv (weights), jitter (pixels), blur_sigma and
    blur_every. Zero or absent means off."""
    terms: list[Term] = []
    for key in ("l1", "tv", "jitter", "blur_sigma", "blur_every"):
        if float(cfg.get(key) or 0) < 0:
            raise ConfigError(f"{where}.{key}={cfg.get(key)}: must not be negative")
    if cfg.get("l1"):
        terms.append(L1Ink(float(cfg["l1"])))
    if cfg.get("tv"):
        terms.append(TotalVariation(float(cfg["tv"])))
    if cfg.get("jitter"):
        terms.append(Jitter(int(cfg["jitter"])))
    if cfg.get("blur_sigma") and cfg.get("blur_every"):
        terms.append(Blur(float(cfg["blur_sigma"]), int(cfg["blur_every"])))
    return terms


# --- the optimisation ----------------------------------------------------------------------

@dataclass(frozen=True)
class AscentSettings:
    steps: int = 200
    lr: float = 0.05
    parametrisation: str = "clamp"  # clamp | sigmoid
    init_mean: float = 0.5  # start from grey noise: mean and std of the first images
    init_std: float = 0.05
    seed: int = 0

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any], where: str = "ascent") -> AscentSettings:
        casts = {"steps": int, "lr": float, "parametrisation": str, "init_mean": float,
                 "init_std": float, "seed": int}
        try:
            settings = cls(**{k: cast(cfg[k]) for k, cast in casts.items() if k in cfg})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if settings.parametrisation not in PARAMETRISATIONS:
            raise ConfigError(f"{where}.parametrisation={settings.parametrisation!r}: choose one "
                              f"of {PARAMETRISATIONS}")
        if settings.steps < 0 or settings.lr <= 0:
            raise ConfigError(f"{where}: steps must be >= 0 and lr > 0 "
                              f"(got steps={settings.steps}, lr={settings.lr})")
        if not 0.0 < settings.init_mean < 1.0 or settings.init_std < 0:
            raise ConfigError(f"{where}: init_mean must lie in (0, 1) and init_std >= 0")
        return settings


@dataclass
class AscentResult:
    images: torch.Tensor  # [B, *input_shape], in [0, 1]
    objective_start: torch.Tensor  # [B] measure of the starting images
    objective_end: torch.Tensor  # [B] measure of the final images (no jitter)
    penalty_end: torch.Tensor  # [B] summed penalties of the final images
    trace: list[float] = field(default_factory=list)  # mean objective per step


def _to_param(images: torch.Tensor, parametrisation: str) -> torch.Tensor:
    if parametrisation == "sigmoid":
        return torch.logit(images.clamp(1e-4, 1 - 1e-4))
    return images.clone()


def _to_images(param: torch.Tensor, parametrisation: str) -> torch.Tensor:
    return torch.sigmoid(param) if parametrisation == "sigmoid" else param


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no weight gradients for the duration; restores both afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


@contextlib.contextmanager
def channels_last(model: nn.Module, images: torch.Tensor) -> Iterator[torch.Tensor]:
    """Image batches in channels-last layout for the duration (the model's weights too).

    On CPU the convolutions and max pools of a batch of images run about 1.4x faster so;
    other inputs (sequences, vectors) pass through unchanged. Restores the weights after.
    """
    if images.dim() != 4:
        yield images
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield images.contiguous(memory_format=torch.channels_last)
    finally:
        model.to(memory_format=torch.contiguous_format)


def model_device(model: nn.Module) -> torch.device:
    """Where the model's weights (or, without weights, its buffers) live; CPU if it has none."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def start_images(n: int, input_shape: Sequence[int], settings: AscentSettings,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Grey noise from a CPU generator (the same images on every device), moved to `device`."""
    gen = torch.Generator().manual_seed(settings.seed)
    noise = torch.randn((n, *input_shape), generator=gen)
    return (settings.init_mean + settings.init_std * noise).clamp(0.0, 1.0).to(device)


def _penalty(terms: Sequence[Term], images: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(len(images), dtype=images.dtype, device=images.device)
    for term in terms:
        value = term.penalty(images)
        if value is not None:
            total = total + value
    return total


def ascend(model: nn.Module, layer: str, objective: Objective, n_images: int,
           input_shape: Sequence[int], settings: AscentSettings,
           terms: Sequence[Term] = (), start: torch.Tensor | None = None,
           measure: Objective | None = None) -> AscentResult:
    """Maximise objective(activations of `layer`) - penalties over n_images input images.

    All images are optimised as one batch with Adam; the model's weights do not change.
    `measure` (default: the objective) is what the result reports before and after, e.g.
    the plain ReLU activation when the objective is its leaky surrogate. The ascent runs on
    the model's device; the result's tensors stay there.
    """
    measure = measure or objective
    device = model_device(model)
    start = start_images(n_images, input_shape, settings, device) if start is None \
        else start.to(device)
    gen = torch.Generator().manual_seed(settings.seed + 1)
    trace: list[float] = []
    with (frozen(model), channels_last(model, start) as start,
          LayerProbe(model, layer, stop=True) as probe):
        with torch.no_grad():
            objective_start = measure(probe(start)).detach()
        param = _to_param(start, settings.parametrisation).requires_grad_(True)
        optimiser = torch.optim.Adam([param], lr=settings.lr)
        for step in progress(range(settings.steps), f"ascent on {layer}"):
            images = _to_images(param, settings.parametrisation)
            seen = images
            for term in terms:
                seen = term.view(seen, step, gen)
            score = objective(probe(seen))
            loss = -(score - _penalty(terms, images)).sum()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            trace.append(float(score.detach().mean()))
            with torch.no_grad():
                if settings.parametrisation == "clamp":
                    param.clamp_(0.0, 1.0)
                for term in terms:
                    edited = term.after_step(_to_images(param, settings.parametrisation), step)
                    if edited is not None:
                        param.copy_(_to_param(edited, settings.parametrisation))
        with torch.no_grad():
            images = _to_images(param, settings.parametrisation).detach().contiguous()
            objective_end = measure(probe(images)).detach()
            penalty_end = _penalty(terms, images).detach()
    return AscentResult(images, objective_start, objective_end, penalty_end, trace)


def max_over_inputs(model: nn.Module, layer: str, inputs: torch.Tensor,
                    activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    batch_size: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
    """Per unit of `layer`: the highest activation (summed over space) any input gives it,
    and the index of that input. `inputs` are model inputs (floats in [0, 1])."""
    best = best_idx = None
    with frozen(model), LayerProbe(model, layer) as probe, torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            acts = unit_activations(probe(inputs[start:start + batch_size]), activation)
            value, idx = acts.max(dim=0)
            idx = idx + start
            if best is None:
                best, best_idx = value, idx
            else:
                better = value > best
                best = torch.where(better, value, best)
                best_idx = torch.where(better, idx, best_idx)
    if best is None:
        raise ValueError("max_over_inputs needs at least one input")
    return best, best_idx


def layer_output_shape(model: nn.Module, layer: str, input_shape: Sequence[int]) -> tuple[int, ...]:
    """The shape of one example's output of `layer` ([channels, h, w] or [neurons])."""
    with frozen(model), LayerProbe(model, layer) as probe, torch.no_grad():
        return tuple(probe(torch.zeros((1, *input_shape), device=model_device(model))).shape[1:])
