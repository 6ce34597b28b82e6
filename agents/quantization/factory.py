"""The factory: plan a quantization from a request, run it step by step with progress, record every run.

Two steps, so a face can show the plan and ask between them: `plan()` (nothing runs) and `run()`.
Every output is loaded once by the runtime that will serve it (the plan's last step, `VERIFY_STEP`)
while it is still in its hidden temporary; any exception in any step ends the run as `failed` with
the step, the library's own words and the log file that holds the traceback, and leaves nothing on disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from agents.quantization.encoder import embedding_reference, is_embedding_role, is_embedding_source
from agents.quantization.faults import step_failure
from agents.quantization.plan import MARGIN, QuantPlan, QuantRequest, machine_now, make_plan, source_facts
from agents.quantization.verify import EMBED_VERIFY_STEP, VERIFY_STEP, verify_embeddings, verify_output
from lqmf.base.atomic import sweep_stale_temps, temp_sibling
from lqmf.base.errors import PlanRefused
from lqmf.base.manifest import (
    RunMeasure,
    manifest_path_for,
    measure_run,
    read_manifest,
    tree_sha256,
    weight_split,
    write_manifest,
)
from lqmf.base.progress import Progress
from lqmf.base.settings import Settings

log = logging.getLogger(__name__)

BUILD_TOOLS_STEP = "build llama.cpp's llama-imatrix and llama-quantize"
IMATRIX_DIR = ".imatrix"  # inside the models folder; hidden, so discovery skips it


@dataclass
class QuantRun:
    """A finished run: its record id, the plan, the output's manifest and the whole run's measurements."""

    run_id: int
    plan: QuantPlan
    manifest: dict
    wall_time_s: float
    peak_rss_bytes: int


class QuantizationAgent:
    """Plans and runs quantizations against one models folder and one history store."""

    def __init__(self, settings: Settings, manager, store) -> None:
        self.settings = settings
        self.manager = manager
        self.store = store

    def plan(self, request: QuantRequest) -> QuantPlan:
        """The plan for a request (refused plans carry their problems; nothing runs)."""
        from agents.quantization.converter import converter_dir

        record = self.manager.record(request.model)
        facts = source_facts(record)
        models_dir = self.settings.models_dir
        history = self.store.quantization_runs(status="done", limit=200)
        conv = converter_dir(self.settings)
        if request.budget is not None:
            from agents.quantization.budget.runner import make_budget_plan

            plan = make_budget_plan(request, facts, models_dir, machine_now(models_dir), self.store, self.settings,
                                    conv if conv.is_dir() else None)
        else:
            plan = make_plan(request, facts, models_dir, machine_now(models_dir), history,
                             converter_dir=conv if conv.is_dir() else None)
        if plan.imatrix or plan.method == "budget":
            from lqmf.base.tools import LlamaTools, tools_folder

            if not LlamaTools.in_folder(tools_folder(self.settings)).ready():
                plan.steps.insert(0, f"{BUILD_TOOLS_STEP} (once, about 2 minutes)")
        if plan.steps:  # a plan without a level makes nothing, so there is nothing to verify
            plan.steps.append(EMBED_VERIFY_STEP if is_embedding_role(record.role) else VERIFY_STEP)
        return plan

    def run(self, plan: QuantPlan, progress: Optional[Progress] = None) -> QuantRun:
        """Run a plan: every step under one measurement, recorded running -> done / failed / incomplete.

        Any exception inside a step is re-raised as QuantizationFailed (the step, the library's message,
        the log file); its traceback goes to the log, never to the caller's screen.
        """
        if not plan.runnable:
            raise PlanRefused("; ".join(plan.problems), "change the request (see the plan) and try again")
        if not {VERIFY_STEP, EMBED_VERIFY_STEP} & set(plan.steps):  # a plan made by make_plan() directly
            plan.steps.append(VERIFY_STEP)
        sweep_stale_temps(self.settings.models_dir)
        run_id = self.store.start_quantization(plan.source, plan.output_name, plan.method, plan.level, plan.bits,
                                               plan.to_dict())
        steps = _Steps(plan.steps, progress)
        measure = None
        try:
            with measure_run() as measure:
                manifest = RUNNERS[plan.method](self, plan, steps)
        except KeyboardInterrupt:
            self._finish(run_id, "incomplete", measure, error="stopped with Ctrl-C")
            raise
        except (Exception, SystemExit) as exc:  # a library's sys.exit() is a failed step too
            failure = step_failure(exc, steps.current, self.log_path)
            log.error("quantization run %s (%s -> %s) failed at step %r: %s", run_id, plan.source, plan.output_name,
                      steps.current, failure.message, exc_info=exc)
            self._finish(run_id, "failed", measure, error=str(failure))
            raise failure from exc
        manifest = self._whole_run(Path(plan.output_path), manifest, measure)
        self._finish(run_id, "done", measure, manifest=manifest)
        self._check_ram_estimate(run_id, plan, measure.peak_rss_bytes)
        steps.done()
        log.info("quantization run %s: %s -> %s in %.1f s", run_id, plan.source, plan.output_name, measure.wall_time_s)
        return QuantRun(run_id, plan, manifest, round(measure.wall_time_s, 3), measure.peak_rss_bytes)

    @staticmethod
    def _whole_run(output: Path, manifest: dict, measure: RunMeasure) -> dict:
        """The output's manifest with the whole run's figures (what the run reports), where the quantizer wrote
        its own step's; and, for a folder, where its bits go (quantized layers, tensors kept in float)."""
        data = dict(manifest)
        details = dict(data.get("details") or {})
        details["quantizer_step"] = {"wall_time_s": data.get("wall_time_s"),
                                     "peak_rss_bytes": data.get("peak_rss_bytes")}
        data.update(wall_time_s=round(measure.wall_time_s, 3), peak_rss_bytes=measure.peak_rss_bytes, details=details)
        try:
            split = weight_split(output)
            if split is not None:
                data["weights"] = split.to_dict()
            write_manifest(output, data)
        except OSError as exc:  # the output is made and verified: a manifest left with its step's figures
            log.warning("could not record the whole run's figures in the manifest of %s: %s", output, exc)
            return manifest
        return read_manifest(output) or data

    @staticmethod
    def _check_ram_estimate(run_id: int, plan: QuantPlan, peak: int) -> None:
        """Hold the plan's RAM estimate against the measured peak; the next plan corrects itself from this run."""
        planned = plan.expected_peak_ram_bytes
        if planned and not planned / MARGIN <= peak <= planned * MARGIN:
            log.warning("quantization run %s: peak RAM %.2f GiB measured, %.2f GiB planned (%s); the next plan of "
                        "%s is corrected from this run", run_id, peak / 2**30, planned / 2**30, plan.ram_basis,
                        plan.method)
        else:
            log.info("quantization run %s: peak RAM %.2f GiB measured, %.2f GiB planned", run_id, peak / 2**30,
                     planned / 2**30)

    @property
    def log_path(self) -> Path:
        """The file lqmf.base.log.configure_logging writes (where a failed step's traceback goes)."""
        return self.settings.logs_dir / "lqmf.log"

    def _verifier(self, steps: "_Steps", fmt: str, output: Path,
                  plan: Optional[QuantPlan] = None) -> Callable[[Path], dict]:
        """The plan's verify step, called by the core on the output while it is still a hidden temporary.

        The output of an embedding model is checked by its vectors against the source's (computed then, from
        the source as it is served); any other output decodes one token.
        """
        name = output.stem if fmt == "gguf" else output.name
        encoder = plan is not None and is_embedding_source(Path(plan.source_path))

        def verify(built: Path) -> dict:
            steps.next()
            if encoder:
                reference = embedding_reference(Path(plan.source_path), plan.source_format, plan.source, plan.bits,
                                                threads=self.settings.threads)
                return verify_embeddings(built, fmt, name, reference, threads=self.settings.threads)
            return verify_output(built, fmt, name, threads=self.settings.threads)

        return verify

    def _finish(self, run_id: int, status: str, measure, *, manifest: Optional[dict] = None,
                error: Optional[str] = None) -> None:
        self.store.finish_quantization(
            run_id, status, manifest=manifest, error=error,
            wall_time_s=round(measure.wall_time_s, 3) if measure else None,
            peak_rss_bytes=measure.peak_rss_bytes if measure else None,
        )

    # -- runners, one per method ------------------------------------------------------------------------
    def _gguf(self, plan: QuantPlan, steps: "_Steps") -> dict:
        from agents.quantization.gguf_quant import FLOAT_BITS, convert_to_gguf, quantize_gguf

        src, out = Path(plan.source_path), Path(plan.output_path)
        verify = self._verifier(steps, "gguf", out, plan)
        if plan.level in FLOAT_BITS:
            steps.next()
            convert_to_gguf(src, out, self.settings, plan.level, overwrite=plan.overwrite, verify=verify,
                            on_tensor=steps.within)
            return read_manifest(out)
        if plan.source_format == "hf":
            float_gguf = temp_sibling(out.with_name(out.stem + "-f16.gguf"))
            origin = {"path": str(src), "format": "hf", "sha256": tree_sha256(src), "via": "f16 GGUF (temporary)"}
        else:
            float_gguf, origin = src, None
        # Kept (hidden from discovery) so the manifest's imatrix hash names a file one can reuse or inspect.
        imatrix_file = out.parent / IMATRIX_DIR / f"{out.stem}.imatrix.gguf" if plan.imatrix else None
        imatrix_existed = imatrix_file is not None and imatrix_file.exists()
        try:
            if plan.steps[0].startswith(BUILD_TOOLS_STEP):
                from agents.quantization.llama_tools import ensure_llama_tools

                steps.next()
                ensure_llama_tools(self.settings)
            if plan.source_format == "hf":
                steps.next()
                convert_to_gguf(src, float_gguf, self.settings, "f16", on_tensor=steps.within)
            if imatrix_file is not None:
                steps.next()
                from agents.quantization.calibration import load_calibration
                from agents.quantization.imatrix import compute_imatrix

                samples = load_calibration(Path(plan.calibration_file) if plan.calibration_file else None)
                imatrix_file.parent.mkdir(exist_ok=True)
                compute_imatrix(float_gguf, samples, imatrix_file, self.settings, threads=self.settings.threads,
                                calibration=plan.calibration, overwrite=True)
            steps.next()
            quantize_gguf(float_gguf, out, plan.level, threads=self.settings.threads, overwrite=plan.overwrite,
                          imatrix=imatrix_file, settings=self.settings, source=origin, verify=verify,
                          on_tensor=steps.within)
        except BaseException:
            # An importance matrix made for an output that was never kept would be a stray file.
            if imatrix_file is not None and not imatrix_existed:
                imatrix_file.unlink(missing_ok=True)
                manifest_path_for(imatrix_file).unlink(missing_ok=True)
                if imatrix_file.parent.is_dir() and not any(imatrix_file.parent.iterdir()):
                    imatrix_file.parent.rmdir()
            raise
        finally:
            for temporary in (float_gguf if origin else None,):
                if temporary is not None:
                    temporary.unlink(missing_ok=True)
                    manifest_path_for(temporary).unlink(missing_ok=True)
        return read_manifest(out)

    def _gptq(self, plan: QuantPlan, steps: "_Steps") -> dict:
        from agents.quantization.hf_quant import quantize_gptq
        from agents.quantization.shape_plan import DEFAULT_GROUP_SIZE

        steps.next()
        quantize_gptq(
            Path(plan.source_path), Path(plan.output_path), bits=int(plan.bits),
            calibration_file=Path(plan.calibration_file) if plan.calibration_file else None,
            group_size=plan.group_size or DEFAULT_GROUP_SIZE, on_progress=steps.within,
            overwrite=plan.overwrite, logs_dir=self.settings.logs_dir,
            verify=self._verifier(steps, "gptq", Path(plan.output_path)),
        )
        return read_manifest(Path(plan.output_path))

    def _bnb(self, plan: QuantPlan, steps: "_Steps") -> dict:
        from agents.quantization.hf_quant import quantize_bnb

        steps.next()
        quantize_bnb(Path(plan.source_path), Path(plan.output_path), plan.level, overwrite=plan.overwrite,
                     verify=self._verifier(steps, "bnb", Path(plan.output_path), plan))
        return read_manifest(Path(plan.output_path))

    def _budget(self, plan: QuantPlan, steps: "_Steps") -> dict:
        from agents.quantization.budget.runner import run_budget

        if plan.steps[0].startswith(BUILD_TOOLS_STEP):
            from agents.quantization.llama_tools import ensure_llama_tools

            steps.next()
            ensure_llama_tools(self.settings)
        return run_budget(self, plan, steps)


RUNNERS: dict[str, Callable[[QuantizationAgent, QuantPlan, "_Steps"], dict]] = {
    "gguf": QuantizationAgent._gguf,
    "gptq": QuantizationAgent._gptq,
    "bnb": QuantizationAgent._bnb,
    "budget": QuantizationAgent._budget,
}


class _Steps:
    """Advances the caller's progress one plan step at a time (the step's text is the description)."""

    def __init__(self, steps: list[str], progress: Optional[Progress]) -> None:
        self.steps = steps
        self.progress = progress
        self.index = 0

    def next(self) -> None:
        if self.progress and self.index < len(self.steps):
            self.progress(self.steps[self.index], self.index, len(self.steps))
        self.index += 1

    def within(self, what: str, done: int, total: int) -> None:
        """Progress inside the step under way (tensors converted or quantized), so a long step is seen moving."""
        if self.progress and self.index:
            self.progress(f"{self.current} (step {self.index} of {len(self.steps)}, {what})", done, total)

    @property
    def current(self) -> str:
        """The step under way ('' before the first)."""
        return self.steps[min(self.index, len(self.steps)) - 1] if self.index else ""

    def done(self) -> None:
        if self.progress:
            self.progress("done", len(self.steps), len(self.steps))
