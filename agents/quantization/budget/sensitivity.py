"""How much KL divergence each tensor adds at each type, by measurement.

Two measurements, combined:

1. **Output error on captured activations** (every tensor, every offered type). The model is quantized once
   per type with llama-quantize (each tensor that can take the type named at it), each tensor dequantized with
   gguf-py and compared with its f16 weights, weighted by the importance matrix's mean squared activation of each input
   column: sum_j E[x_j^2] * ||W_q[:, j] - W[:, j]||^2, the expected squared error of the tensor's matmul on
   calibration text. It ranks types within a tensor and tensors within a role well, but says nothing of how an
   error in layer 3's attn_v reaches the logits compared with one in layer 27's ffn_down.
2. **KL divergence of the final logits** (one probe per group: a role in a band of layers). The group alone is
   quantized (everything else f16) and the KLD against f16 measured on calibration text. The ratio of that KLD
   to the group's summed output error at the probe type converts every tensor's output error in the group to
   predicted KLD. The token embedding (tied to the output head in many small models) is measured directly at
   every offered type: it is one tensor that acts twice.

The predicted KLD of a mix is the sum over tensors (small errors add: KLD is quadratic in small logit changes
and independent errors do not correlate). How well that holds is checked against measured mixes (validate()).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from agents.quantization.budget.evaluate import KldMeter
from agents.quantization.budget.mixwrite import write_mix
from agents.quantization.budget.space import MixSpace, Slot, is_embedding
from lqmf.base.errors import QuantizationError
from lqmf.base.tools import LlamaTools

log = logging.getLogger(__name__)

PROBES = 21  # role x band probes aimed for (each ~ one pass over the calibration windows)
PROBE_BITS = 4.5  # the probe type: the offered type nearest 4.5 bits (Q4_0 / Q4_K), inside the range that matters
F16 = "F16"

Tick = Callable[[str, int, int], None]


@dataclass
class GroupProbe:
    """One measured group: its tensors, the probe type, the measured KLD and the scale it gives."""

    group: str
    tensors: list[str]
    probe_type: str
    kld: float
    output_error: float  # summed over the group's tensors at the probe type
    scale: float  # KLD per unit of output error


@dataclass
class Sensitivity:
    """Predicted KLD of every (tensor, type), and how it was measured."""

    costs: dict[str, dict[str, float]]
    probes: list[GroupProbe]
    text: str  # the calibration text's description (windows, tokens)
    imatrix_quantization: bool
    seconds: float
    output_errors: dict[str, dict[str, float]] = field(default_factory=dict)

    def predict(self, types: Mapping[str, str]) -> float:
        """The sum of the tensors' predicted KLD at their types."""
        return float(sum(self.costs[name][t] for name, t in types.items()))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Sensitivity":
        probes = [GroupProbe(**p) for p in data["probes"]]
        return cls(costs=data["costs"], probes=probes, text=data["text"],
                   imatrix_quantization=data["imatrix_quantization"], seconds=data["seconds"],
                   output_errors=data.get("output_errors", {}))


def groups(space: MixSpace, target: int = PROBES) -> dict[str, list[Slot]]:
    """Role x band of layers (bands sized so the groups number about `target`); the embedding on its own."""
    layered = [s for s in space.slots if s.layer >= 0]
    roles = sorted({s.role for s in layered})
    n_layer = max((s.layer for s in layered), default=-1) + 1
    bands = max(1, min(n_layer, round(target / max(len(roles), 1))))
    width = math.ceil(n_layer / bands) if n_layer else 1
    out: dict[str, list[Slot]] = {}
    for s in space.slots:
        if s.layer < 0:
            out.setdefault(s.role if is_embedding(s) else s.name, []).append(s)
        else:
            first = s.layer // width * width
            out.setdefault(f"{s.role} layers {first}-{min(first + width, n_layer) - 1}", []).append(s)
    return out


def probe_type(slots: list[Slot]) -> str:
    """The type offered to every slot of the group nearest PROBE_BITS bits."""
    from agents.quantization.budget.space import bits

    common = set(slots[0].options).intersection(*(s.options for s in slots[1:]))
    return min(sorted(common), key=lambda t: (abs(bits(t) - PROBE_BITS), bits(t)))


def output_errors(space: MixSpace, tools: LlamaTools, imatrix_file: Path, workdir: Path, *,
                  quant_imatrix: bool, threads: int, tick: Optional[Tick] = None) -> dict[str, dict[str, float]]:
    """sum_j E[x_j^2] ||dW[:, j]||^2 for every (tensor, offered type), from one quantization per type."""
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize

    weights = activation_weights(imatrix_file)
    reference = {t.name: t for t in GGUFReader(str(space.source)).tensors}
    types = sorted({t for s in space.slots if not is_embedding(s) for t in s.options})
    errors: dict[str, dict[str, float]] = {s.name: {} for s in space.slots if not is_embedding(s)}
    for i, ggml_type in enumerate(types):
        if tick:
            tick(f"output error at {ggml_type}", i, len(types))
        out = workdir / f"all-{ggml_type.lower()}.gguf"
        _quantize_all(space, tools, out, ggml_type, imatrix_file if quant_imatrix else None, threads)
        try:
            for t in GGUFReader(str(out)).tensors:
                if t.name not in errors or t.tensor_type.name != ggml_type:
                    continue
                ref = reference[t.name]
                w = np.asarray(dequantize(ref.data, ref.tensor_type), dtype=np.float32)
                wq = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(w.shape)
                a = weights.get(t.name)
                col = ((wq - w) ** 2).sum(axis=0)
                errors[t.name][ggml_type] = float(col @ a) if a is not None else float(col.sum())
        finally:
            out.unlink(missing_ok=True)
    missing = [(n, t) for s in space.slots if s.name in errors for n, t in [(s.name, o) for o in s.options]
               if t not in errors[n]]
    if missing:
        raise QuantizationError(f"no output error for {len(missing)} tensor types (e.g. {missing[0]})",
                                "llama-quantize wrote other types than offered; see logs/lqmf.log")
    return errors


def activation_weights(imatrix_file: Path) -> dict[str, Any]:
    """Each tensor's mean squared input activation per column, from a GGUF importance matrix."""
    from gguf import GGUFReader

    tensors = {t.name: t for t in GGUFReader(str(imatrix_file)).tensors}
    out = {}
    for name, t in tensors.items():
        if name.endswith(".in_sum2"):
            base = name[: -len(".in_sum2")]
            counts = tensors.get(base + ".counts")
            count = float(counts.data[0]) if counts is not None and counts.data[0] > 0 else 1.0
            out[base] = t.data.astype("float64").reshape(-1) / count
    return out


def _quantize_all(space: MixSpace, tools: LlamaTools, out: Path, ggml_type: str, imatrix: Optional[Path],
                   threads: int) -> None:
    """Every tensor that can take `ggml_type` at it, named tensor by tensor (llama-quantize's level names are not
    type names: its IQ2_S level writes IQ2_XS)."""
    types = {s.name: ggml_type for s in space.slots if ggml_type in s.options}
    write_mix(tools, space.source, out, types, imatrix=imatrix, threads=threads)


def measure_sensitivity(space: MixSpace, tools: LlamaTools, meter: KldMeter, imatrix_file: Path, workdir: Path, *,
                        quant_imatrix: bool, threads: int, tick: Optional[Tick] = None) -> Sensitivity:
    """Output errors of every (tensor, type) scaled to KLD by one measured probe per group."""
    start = time.perf_counter()
    errors = output_errors(space, tools, imatrix_file, workdir, quant_imatrix=quant_imatrix, threads=threads,
                           tick=tick)
    imatrix = imatrix_file if quant_imatrix else None
    all_f16 = {s.name: F16 for s in space.slots}
    costs: dict[str, dict[str, float]] = {}
    probes: list[GroupProbe] = []
    jobs = [(name, slots, t) for name, slots in groups(space).items()
            for t in (slots[0].options if is_embedding(slots[0]) else (probe_type(slots),))]
    for i, (name, slots, ggml_type) in enumerate(jobs):
        if tick:
            tick(f"KLD with {name} at {ggml_type}", i, len(jobs))
        kld = _probe(space, tools, meter, workdir, {**all_f16, **{s.name: ggml_type for s in slots}}, imatrix, threads)
        if is_embedding(slots[0]):
            costs.setdefault(slots[0].name, {})[ggml_type] = kld
            probes.append(GroupProbe(name, [slots[0].name], ggml_type, kld, 0.0, 0.0))
            continue
        total = sum(errors[s.name][ggml_type] for s in slots)
        scale = kld / total if total > 0 else 0.0
        probes.append(GroupProbe(name, [s.name for s in slots], ggml_type, kld, total, scale))
        for s in slots:
            costs[s.name] = {t: scale * errors[s.name][t] for t in s.options}
    return Sensitivity(costs=costs, probes=probes, text=meter.scored, imatrix_quantization=quant_imatrix,
                       seconds=round(time.perf_counter() - start, 1), output_errors=errors)


def _probe(space: MixSpace, tools: LlamaTools, meter: KldMeter, workdir: Path, types: Mapping[str, str],
           imatrix: Optional[Path], threads: int) -> float:
    out = workdir / "probe.gguf"
    write_mix(tools, space.source, out, types, imatrix=imatrix, threads=threads)
    try:
        return meter.measure(out).kld_mean
    finally:
        out.unlink(missing_ok=True)
