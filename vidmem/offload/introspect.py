"""What the offload planner learns by looking: module sizes and block lists, the pipeline's
components, the device, and the device's free memory.

Why a module of its own: the plan (:mod:`vidmem.offload.plan`) is pure data and arithmetic, which
can be tested with made-up numbers and no pipeline; everything here reads a live object (a
module's tensors, ``torch.cuda``). Keeping the two apart also keeps the offload modules free of
import cycles: this module imports none of vidmem's others, and the plan, the hook installer
(:mod:`~vidmem.offload.apply`) and float8 storage (:mod:`~vidmem.offload.fp8`) all read modules
through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidOptions


def module_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """A module's parameters and buffers: what it holds on a device."""
    return list(module.parameters()) + list(module.buffers())


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for t in module_tensors(module):
        key = t.data_ptr() if t.device.type != "meta" else id(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def find_block_list(module: torch.nn.Module) -> tuple[str, torch.nn.ModuleList] | None:
    """The largest ``ModuleList`` of repeated blocks (transformer layers, encoder blocks)."""
    best = None
    best_bytes = 0
    for name, child in module.named_modules():
        if isinstance(child, torch.nn.ModuleList) and len(child) >= 2:
            size = module_bytes(child)
            if size > best_bytes:
                best, best_bytes = (name, child), size
    return best


def offload_sequence(pipe: Any) -> list[tuple[str, torch.nn.Module]]:
    """The pipeline's modules in ``model_cpu_offload_seq`` order, then any others."""
    seq = [n for n in (getattr(pipe, "model_cpu_offload_seq", None) or "").split("->") if n]
    modules = {name: comp for name, comp in getattr(pipe, "components", {}).items()
               if isinstance(comp, torch.nn.Module)}
    ordered = [(n, modules[n]) for n in seq if n in modules]
    ordered += [(n, m) for n, m in modules.items() if n not in seq]
    return ordered


def is_vae(name: str, module: Any) -> bool:
    """Whether the component ``name`` is a VAE (decoded by vidmem's streaming decode)."""
    return name.startswith("vae") or type(module).__name__.startswith(("Autoencoder", "VQModel"))


@dataclass(frozen=True)
class ComponentSizes:
    """One component's weights as the plan needs them: all of it, its largest list of repeated
    blocks (``blocks`` of at most ``block_bytes`` each; none for a VAE, which is never
    block-streamed), and what lies outside that list (``leftover_bytes``)."""

    name: str
    weights_bytes: int
    blocks: int
    block_bytes: int
    leftover_bytes: int


def component_sizes(pipe: Any) -> list[ComponentSizes]:
    """Every component of ``pipe`` in offload order, measured."""
    sizes = []
    for name, module in offload_sequence(pipe):
        size = module_bytes(module)
        # VAEs are never block-streamed: their decode is already tiled and chunked by vidmem, and
        # group offloading does not work well with VAE tiling (diffusers #12096).
        found = None if is_vae(name, module) else find_block_list(module)
        blocks = len(found[1]) if found else 0
        block_bytes = max((module_bytes(b) for b in found[1]), default=0) if found else 0
        leftover = size - module_bytes(found[1]) if found else size
        sizes.append(ComponentSizes(name, size, blocks, block_bytes, leftover))
    return sizes


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | None) -> str:
    """``None`` -> the default (cuda if available); ``cuda``, ``cuda:N`` and ``cpu`` pass;
    anything else is refused."""
    if device is None:
        return default_device()
    text = str(device).strip().lower()
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise InvalidOptions(f"unknown device {device!r}: use cuda, cuda:N or cpu")


def cuda_memory(device: str) -> tuple[int, int]:
    """``(free, total)`` bytes of the CUDA ``device`` now (for ``budget="auto"``)."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        raise InvalidOptions("budget 'auto' reads the free memory of a CUDA device, and there is "
                             "none here; give a size such as 8GiB")
    free, total = torch.cuda.mem_get_info(torch.device(device))
    return int(free), int(total)
