"""Reading the models on disk: one model's details (manifest, lineage, latest figures, template) and disk usage.

Nothing here changes a file; agents.models.admin makes the changes.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from agents.models.results import DiskUsage, DiskUsageRow, ModelDetails
from agents.models.units import model_unit
from lqmf.base.errors import LQMFError, ModelBusy
from lqmf.base.manifest import weight_split
from server.runtime.discovery import ModelRecord, chat_template_of

log = logging.getLogger(__name__)

SHOW_ATTEMPTS = 3  # reads of a model that others rename or remove meanwhile, before show gives up (ModelBusy)


# -- disk usage ---------------------------------------------------------------------------------------------
def disk_usage(manager) -> DiskUsage:
    """Per local model: its files' bytes (artefact, manifest, importance matrix) and what removing it frees;
    the total (each file once), and the models folder's free space."""
    models_dir = Path(manager.settings.models_dir)
    rows, seen, total = [], set(), 0
    for record in manager.available():
        if record.format == "remote":
            continue
        try:
            unit = model_unit(record, models_dir)
        except (LQMFError, OSError) as exc:
            log.warning("disk usage of %s: %s", record.name, exc)
            continue
        for file in unit.files():
            st = file.lstat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        rows.append(DiskUsageRow(**vars(unit.facts()), format=record.format, level=record.level,
                                 usable=record.usable, loaded=manager.is_loaded(record.name)))
    rows.sort(key=lambda row: (-row.total_bytes, row.name))
    probe = models_dir if models_dir.exists() else models_dir.parent
    usage = shutil.disk_usage(probe)
    return DiskUsage(models_dir=str(models_dir), models=rows, total_bytes=total,
                     frees_bytes=sum(row.frees_bytes for row in rows),
                     disk_free_bytes=usage.free, disk_total_bytes=usage.total)


# -- show ----------------------------------------------------------------------------------------------------
MANIFEST_FACTS = ("method", "level", "bits", "bits_per_weight", "size_bytes", "parameter_count", "created_at",
                  "tool_versions", "wall_time_s", "peak_rss_bytes", "warnings", "fallbacks", "tensor_types")


def lineage_tree(manager, name: str) -> dict[str, Any]:
    """The model's ancestors (through manifests' source files, as ExperimentAgent.lineage follows them) and
    its descendants among the discovered models: {"ancestors": [...], "tree": {name, children: [...]}}."""
    records = {r.name: r for r in manager.available() if r.format != "remote"}
    by_file = {Path(r.path).name: r.name for r in records.values()}

    def parent(n: str) -> Optional[str]:
        if n not in records:  # removed or renamed since the caller found it: no lineage to follow
            return None
        source = ((records[n].manifest or {}).get("source") or {}).get("path")
        found = by_file.get(Path(source).name) if source else None
        return found if found != n else None

    kids: dict[str, list[str]] = {}
    for n in records:
        p = parent(n)
        if p is not None:
            kids.setdefault(p, []).append(n)
    chain = [name]
    while (p := parent(chain[-1])) is not None and p not in chain:
        chain.append(p)

    def below(n: str, seen: frozenset) -> dict[str, Any]:
        return {"name": n, "children": [below(k, seen | {k}) for k in sorted(kids.get(n, [])) if k not in seen]}

    tree: dict[str, Any] = below(name, frozenset(chain))
    for ancestor in chain[1:]:
        tree = {"name": ancestor, "children": [tree]}
    return {"ancestors": chain[1:], "tree": tree}


def latest_figures(store, name: str) -> dict[str, Any]:
    """The newest speed figures (benchmark, compare, experiments) and fidelity figures of a model from the history."""
    speed = fidelity = None
    if store is None:
        return {"speed": None, "fidelity": None}
    for exp in store.experiments(model=name, status="done", limit=200):
        summary = exp.get("summary") or {}
        rows = summary.get("models") if isinstance(summary.get("models"), list) else [summary]
        for row in rows:
            if not isinstance(row, dict) or row.get("model") != name:
                continue
            if speed is None and row.get("gen_tps"):
                speed = {"gen_tps": row["gen_tps"], "prompt_tps": row.get("prompt_tps"),
                         "ttft_p50_s": row.get("ttft_p50_s"), "latency_p50_s": row.get("latency_p50_s"),
                         "experiment_id": exp["id"], "kind": exp["kind"], "measured_at": exp.get("finished_at")}
            if fidelity is None and row.get("cosine_mean") is not None and summary.get("reference") != name:
                fidelity = {"reference": summary.get("reference"), "measure": "embedding",
                            "cosine_mean": row["cosine_mean"], "cosine_min": row.get("cosine_min"),
                            "neighbour_overlap": row.get("neighbour_overlap"), "text": summary.get("text"),
                            "experiment_id": exp["id"], "kind": exp["kind"], "measured_at": exp.get("finished_at")}
            if fidelity is None and row.get("kld_mean") is not None and summary.get("reference") != name:
                fidelity = {"reference": summary.get("reference"), "kld_mean": row["kld_mean"],
                            "top1_agreement": row.get("top1_agreement"), "ppl": row.get("ppl_test"),
                            "ppl_reference": row.get("ppl_reference"), "text": summary.get("text"),
                            "experiment_id": exp["id"], "kind": exp["kind"], "measured_at": exp.get("finished_at")}
        if speed is not None and fidelity is not None:
            break
    return {"speed": speed, "fidelity": fidelity}


def latest_tuning(store, record: ModelRecord) -> Optional[dict[str, Any]]:
    """What `tune NAME` chose last and the gains it measured, and why it is not applied when it no longer holds."""
    from server.runtime.engine_tuning import TUNE_KIND, EngineTuning

    rows = store.experiments(kind=TUNE_KIND, model=record.name, status="done", limit=1) if store is not None else []
    if not rows:
        return None
    summary = rows[0].get("summary") or {}
    chosen = EngineTuning.from_dict(summary["tuning"]) if summary.get("tuning") else None
    return {"chosen": summary.get("chosen", ""), "gains": chosen.gains if chosen else {},
            "args": list(chosen.server_args()) if chosen else [], "seconds": summary.get("seconds"),
            "experiment_id": rows[0]["id"], "measured_at": rows[0].get("finished_at"),
            "not_applied": chosen.applies_to(Path(record.path)) if chosen else None}


def show_model(manager, name: str, *, store=None, with_template: bool = True) -> ModelDetails:
    """Everything known about one model: the manifest's facts, lineage, latest figures, template, context.

    Nothing holds the model while it is read, so a rename or removal may happen meanwhile: the read is
    repeated until the files did not change under it, and a model that is gone is ModelNotFound.
    """
    for _ in range(SHOW_ATTEMPTS):
        record = manager.record(name)  # ModelNotFound once it is gone
        before = _identity(record)
        try:
            details = _details(manager, record, store, with_template)
        except (FileNotFoundError, NotADirectoryError) as exc:  # a file moved while it was read
            log.info("%s changed on disk while it was shown (%s): reading it again", name, exc)
            continue
        if before is not None and before == _identity(record):
            return details
        log.info("%s changed on disk while it was shown: reading it again", name)
    raise ModelBusy(f"{name} kept changing on disk while it was read", "retry in a moment")


def _identity(record: ModelRecord) -> Optional[tuple[int, int, int]]:
    """What identifies a model's file or folder on disk (device, inode, mtime); None when it is not there."""
    if record.format == "remote":
        return (0, 0, 0)
    try:
        stat = os.stat(record.path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns


def _details(manager, record: ModelRecord, store, with_template: bool) -> ModelDetails:
    """show_model's one read of a model's facts, files, lineage and figures."""
    name = record.name
    facts: dict[str, Any] = {
        "name": record.name, "format": record.format, "level": record.level, "bits": record.bits,
        "path": str(record.path), "architecture": record.architecture, "parameter_count": record.parameter_count,
        "context_length": record.context_length, "usable": record.usable, "reason": record.reason,
        "role": record.role,
        "loaded": manager.is_loaded(record.name),
        "figures": {**latest_figures(store, record.name), "tuning": latest_tuning(store, record)},
        "changes": store.model_changes(name=record.name) if store is not None else [],
    }
    if record.format == "remote":
        return ModelDetails(**facts, remote=record.remote,
                            lineage={"ancestors": [], "tree": {"name": record.name, "children": []}})
    unit = model_unit(record, manager.settings.models_dir)
    manifest = record.manifest
    summary = None
    if manifest:
        summary = {key: manifest.get(key) for key in MANIFEST_FACTS if key in manifest}
        summary["source"] = manifest.get("source")
        summary["imatrix"] = (manifest.get("details") or {}).get("imatrix")
        summary["details"] = {k: v for k, v in (manifest.get("details") or {}).items() if k != "imatrix"}
        # Where the bits go (quantized layers vs tensors kept in float): recorded by the factory, else read here.
        split = None if manifest.get("weights") else weight_split(Path(record.path))
        summary["weights"] = manifest.get("weights") or (split.to_dict() if split else None)
    template = None
    try:
        template = chat_template_of(record) if record.has_chat_template else None
    except Exception as exc:  # an unreadable template must not hide the rest
        log.warning("chat template of %s unreadable: %s", name, exc)
    first = next((line.strip() for line in (template or "").splitlines() if line.strip()), None)
    loaded_context = None
    if facts["loaded"]:
        loaded_context = next((m.get("context_length") for m in manager.loaded() if m["name"] == record.name), None)
    return ModelDetails(**facts, size_bytes=unit.total_bytes, disk=unit.facts(), has_manifest=manifest is not None,
                        manifest=summary, lineage=lineage_tree(manager, record.name),
                        has_chat_template=record.has_chat_template,
                        chat_template=template if with_template else None, chat_template_first_line=first,
                        loaded_context_length=loaded_context)
