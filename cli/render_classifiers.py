"""Embedding classifier results -> rich tables (merged into cli/render.py's dispatch table)."""

from __future__ import annotations

from typing import Any, Callable, Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agents import results as r


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _points(value: Optional[float]) -> str:
    """A drop in accuracy or F1, in percentage points (negative: the variant did better)."""
    return "-" if value is None else f"{100 * value + 0.0:+.1f} pt"  # + 0.0: no "-0.0"


def _chance(out: dict[str, Any], console: Console) -> None:
    """The warning of a classifier that is not clearly above chance (or not measured against it)."""
    if out.get("warning"):
        colour = "red" if out.get("above_chance") is False else "yellow"
        console.print(f"[bold {colour}]warning:[/bold {colour}] {escape(out['warning'])}")


def _versus_chance(c: dict[str, Any]) -> str:
    """A listing's cell: how the cross-validated accuracy compares with chance."""
    chance = c.get("chance") or {}
    if c.get("above_chance") is None:
        return "not measured"
    low, high = chance["interval"]
    figures = f"95% {low:.2f}–{high:.2f} vs {chance['chance']:.2f}"
    return f"above ({figures})" if c["above_chance"] else f"[red]NOT above[/red] ({figures})"


def _confusion(console: Console, title: str, labels: list[str], matrix: list[list[int]]) -> None:
    table = Table(title=title)
    table.add_column("true \\ predicted")
    for label in labels:
        table.add_column(escape(label), justify="right")
    for label, row in zip(labels, matrix, strict=True):
        table.add_row(escape(label), *(str(n) for n in row))
    console.print(table)


def trained(res: r.ClassifierTrained, console: Console) -> None:
    rep = res.report
    m = rep["manifest"]
    cv, holdout, emb, run = m["cv"], m["holdout"], m["embedding"], m["embedding_run"]
    pca = m["pipeline"].get("pca_components")
    console.print(
        f"[green]trained[/green] classifier [bold]{escape(rep['name'])}[/bold] "
        f"({'replaced the old one, ' if rep['replaced'] else ''}{m['pipeline']['algorithm']}"
        f"{f', PCA to {pca} components' if pca else ''}) on {m['data']['rows']} rows of {escape(m['data']['path'])} "
        f"with {escape(emb['model'])} ({emb['dim']}-dimensional {emb['pooling']}-pooled embeddings; "
        f"{run['computed']} embedded, {run['cached']} from the cache) in {rep['seconds']:.1f} s")
    table = Table(title=f"{cv['folds']}-fold stratified cross-validation on {m['split']['train_rows']} rows, "
                        f"and the held-out split of {m['split']['eval_rows']}")
    for column in ("measure", "cross-validation (mean ± sd)", "held-out"):
        table.add_column(column, justify="right")
    for label, key in (("accuracy", "accuracy"), ("macro F1", "f1_macro"), ("ROC-AUC", "roc_auc")):
        if cv.get(key) is None and holdout.get(key) is None:
            continue
        table.add_row(label, f"{_num(cv.get(key), '.3f')} ± {_num(cv.get(f'{key}_std'), '.3f')}",
                      _num(holdout.get(key), ".3f"))
    console.print(table)
    _confusion(console, "Confusion matrix (cross-validation)", m["labels"], cv["confusion_matrix"])
    _chance(rep, console)
    console.print(f"saved in {escape(rep['path'])} — experiment #{rep['experiment_id']} in the history\n"
                  f"next: classify \"some text\" with {escape(rep['name'])} · check classifier {escape(rep['name'])} "
                  f"on VARIANT \\[and VARIANT]")


def classifier_list(res: r.ClassifierList, console: Console) -> None:
    if not res.classifiers:
        console.print(f"No classifiers in {escape(res.folder)}. "
                      "Train one: train classifier NAME on data.csv with MODEL")
        return
    table = Table(title=f"Classifiers in {escape(res.folder)}")
    for column in ("name", "model", "dims", "labels", "algorithm", "rows", "cv accuracy", "vs chance", "held-out",
                   "usable"):
        table.add_column(column)
    for c in res.classifiers:
        if not c["usable"]:
            table.add_row(escape(c["name"]), *["-"] * 8, f"no: {escape(c['reason'])}")
            continue
        table.add_row(escape(c["name"]), escape(c["model"]), str(c["dim"]), escape(", ".join(c["labels"])),
                      c["algorithm"] + (f" + pca {c['pca']:g}" if c.get("pca") else ""), str(c["rows"]),
                      _pct(c["cv_accuracy"]), _versus_chance(c), _pct(c["holdout_accuracy"]), "yes")
    console.print(table)
    for c in res.classifiers:
        if c["usable"] and c.get("warning"):
            console.print(f"{escape(c['name'])}: ", end="")
            _chance(c, console)


def classification(res: r.Classification, console: Console) -> None:
    out = res.result
    table = Table(title=f"{out['classifier']} (embeddings of {out['model']}, {out['dimensions']} dimensions) — "
                        f"{1000 * out['latency_s']:.0f} ms")
    table.add_column("text")
    table.add_column("label")
    for label in out["labels"]:
        table.add_column(f"p({escape(label)})", justify="right")
    for text, prediction in zip(out["texts"], out["predictions"], strict=True):
        shown = text if len(text) <= 60 else text[:59] + "…"
        table.add_row(escape(shown), f"[bold]{escape(prediction['label'])}[/bold]",
                      *(f"{prediction['probabilities'][label]:.3f}" for label in out["labels"]))
    console.print(table)
    if out.get("above_chance") is False:
        console.print(f"[bold red]warning:[/bold red] classifier {escape(out['classifier'])} is "
                      f"{escape(out['warning'])}; its labels and probabilities mean little")
    else:
        _chance(out, console)


CHECK_COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("level", "level", lambda v: v or "-"),
    ("accuracy", "accuracy", _pct),
    ("Δ accuracy", "accuracy_drop", lambda v: _points(None if v is None else -v)),
    ("macro F1", "f1_macro", _pct),
    ("Δ F1", "f1_drop", lambda v: _points(None if v is None else -v)),
    ("agreement", "agreement", _pct),
    ("cosine mean", "cosine_mean", lambda v: _num(v, ".5f")),
    ("cosine p5", "cosine_p5", lambda v: _num(v, ".5f")),
    ("texts/s", "texts_per_s", lambda v: _num(v, ".1f")),
]


def check(res: r.ClassifierCheckResult, console: Console) -> None:
    rep = res.report
    console.print(f"[green]classifier-check[/green] #{rep['experiment_id']}: classifier "
                  f"[bold]{escape(rep['classifier'])}[/bold] (trained on {escape(rep['model'])}) on "
                  f"{escape(rep.get('evaluated_on') or str(rep['eval_rows']) + ' held-out rows')} — recorded in the "
                  "history")
    _chance(rep, console)
    table = Table(title="Per model (Δ: change from the classifier's own model)")
    table.add_column("model")
    for header, _, _ in CHECK_COLUMNS:
        table.add_column(header, justify="right")
    for row in rep["rows"]:
        if row["status"] != "ok":
            table.add_row(escape(row["model"]), row.get("level") or "-",
                          f"[red]{row['status']}[/red]: {escape(row['reason'])}", *[""] * (len(CHECK_COLUMNS) - 2))
            continue
        name = f"{row['model']} (source)" if row["role"] == "source" else row["model"]
        table.add_row(escape(name), *(fmt(row.get(key)) for _, key, fmt in CHECK_COLUMNS))
    console.print(table)
    for note in rep.get("notes") or []:
        console.print(f"  {escape(note)}")
    if rep.get("recommendation"):
        console.print(f"[bold]→ {escape(rep['recommendation'])}[/bold]")
    if rep.get("report_path"):
        console.print(f"report: {escape(rep['report_path'])}")


RENDERERS: dict[type, Callable[[Any, Console], None]] = {
    r.ClassifierTrained: trained,
    r.ClassifierList: classifier_list,
    r.Classification: classification,
    r.ClassifierCheckResult: check,
}
