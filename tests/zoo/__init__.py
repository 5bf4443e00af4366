"""A zoo of tiny, random-weight builds of real diffusers video pipeline classes (issue #22).

Each module of this package covers one diffusers pipeline folder and exposes ``CASES``: a list of
:class:`ZooCase`. A case builds a real pipeline class from small configs with seeded random
weights, offline (byte-level tokenizers from :func:`vidmem.tiny.tiny_tokenizer`, text and image
encoders from small ``transformers`` configs), and says how to call it for a clip that takes a
few seconds on a CPU. The decode-capture tests render every case with ``vidmem.render`` after a
``save_pretrained`` / ``from_pretrained`` round trip, and compare with the pipeline's own
``output_type="np"`` frames.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: the zoo's modules, one per diffusers pipeline folder.
MODULES = ("wan_zoo", "skyreels_zoo", "ltx_zoo", "ltx2_zoo", "hunyuan_zoo", "kandinsky_zoo",
           "sana_zoo", "cosmos_zoo", "helios_zoo", "easyanimate_zoo", "allegro_zoo",
           "latte_zoo", "motif_zoo", "anyflow_zoo", "lucy_zoo", "cogvideo_zoo",
           "animatediff_zoo", "classic_zoo")


@dataclass(frozen=True)
class ZooCase:
    """One tiny pipeline build and the call that renders a short clip with it."""

    #: a unique, readable id, e.g. ``"wan-animate"``.
    name: str
    #: the diffusers pipeline class name it builds, e.g. ``"WanAnimatePipeline"``.
    pipeline_class: str
    #: the diffusers pipeline folder, e.g. ``"wan"``.
    folder: str
    #: ``build(seed)`` -> the pipeline (random weights from ``seed``; eval mode; CPU; float32).
    build: Callable[[int], Any]
    #: ``call()`` -> fresh keyword arguments for ``pipe(...)`` (without ``output_type``), with a
    #: new seeded ``generator`` each time, small sizes and 2 inference steps.
    call: Callable[[], dict[str, Any]]
    #: frames per second the pipeline's examples export at.
    fps: int = 16
    #: how the pipeline decodes (``"final"``: one ``vae.decode`` after the loop; ``"chunks"``:
    #: several calls over frame batches; ``"in-loop"``: decodes inside its generation loop;
    #: ``"tiles"``: its own spatial tiling), for the tests' expectations.
    decode_pattern: str = "final"
    #: free text: anything a reader of the tests should know (a deviation, a workaround).
    notes: str = ""
    #: pytest marks to add (e.g. ``("slow",)`` when a build takes over ~15 s).
    marks: tuple[str, ...] = field(default_factory=tuple)


def all_cases() -> list[ZooCase]:
    """Every case of every zoo module that exists (modules are added one folder at a time)."""
    cases: list[ZooCase] = []
    for name in MODULES:
        if not (Path(__file__).parent / f"{name}.py").exists():
            continue
        cases += importlib.import_module(f"zoo.{name}").CASES
    return cases


def save_and_load(pipe: Any, directory: str | Path) -> Any:
    """``save_pretrained`` then ``from_pretrained`` with the pipeline's own class: the real
    loading path a user's checkpoint takes."""
    pipe.save_pretrained(directory)
    loaded = type(pipe).from_pretrained(directory)
    loaded.set_progress_bar_config(disable=True)
    return loaded
