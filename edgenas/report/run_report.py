"""The report of a pipeline run: `report.md` and a self-contained `report.html`, with PNG plots.

Built only from the run's `results.json`, so `edgenas report RUN` can rebuild it at any
time (after editing nothing but the report code, or on another machine). The HTML embeds
the plots as data URIs: one file to mail or attach to a ticket.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from edgenas.core.atomic import atomic_write_text
from edgenas.core.errors import ResumeError
from edgenas.report.plots import accuracy_vs_flops, e2e_plot, stage_seconds_plot
from edgenas.report.units import format_budget_value, ms, si

BUDGET_NAMES = {
    "max_params": "params",
    "max_flops": "FLOPs",
    "max_peak_memory_bytes": "peak memory",
    "max_latency_ms": "latency",
    "max_model_bytes": "model size",
}


def load_run_results(run: str | Path) -> dict[str, Any]:
    """A finished pipeline run's results; a clear error for anything else."""
    path = Path(run) / "results.json"
    if not path.is_file():
        raise ResumeError(f"{run}: no results.json; is it an `edgenas run` folder that finished? (resume it first)")
    results = json.loads(path.read_text())
    if results.get("command") != "run":
        raise ResumeError(f"{run}: made by `edgenas {results.get('command')}`, not `edgenas run`; no report to build")
    return results


def write_report(run: str | Path) -> dict[str, Path]:
    """Write `pareto.png`, `stages.png`, `report.md` and `report.html` into the run folder."""
    run = Path(run)
    res = load_run_results(run)
    points = [(d["cost"]["flops"], d["test_accuracy"], d["device"]) for d in res["devices"]]
    teacher = res.get("teacher")
    if teacher and teacher.get("cost"):
        points.append((teacher["cost"]["flops"], teacher["test_accuracy"], f"teacher ({teacher['kind']})"))
    budgets = {d["device"]: _limit(d, "max_flops") for d in res["devices"]}
    pareto = accuracy_vs_flops(
        run / "pareto.png", points, {k: v for k, v in budgets.items() if v}, f"{res['name']}: accuracy vs FLOPs"
    )
    stages = stage_seconds_plot(run / "stages.png", res["stage_seconds"], f"{res['name']}: time per stage")
    plots = {"pareto.png": pareto, "stages.png": stages}
    e2e = load_e2e(run)
    if e2e is not None:
        plots["e2e.png"] = e2e_plot(run / "e2e.png", e2e["devices"], _e2e_title(res, e2e))
    md = _markdown(res, e2e)
    atomic_write_text(run / "report.md", md)
    atomic_write_text(run / "report.html", _html(res, plots, e2e))
    return {"md": run / "report.md", "html": run / "report.html", "pareto": pareto, "stages": stages}


def load_e2e(run: str | Path) -> dict[str, Any] | None:
    """The run's `bench e2e` results (`e2e.json`), if it has any."""
    path = Path(run) / "e2e.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _e2e_title(res: dict[str, Any], e2e: dict[str, Any]) -> str:
    return f"{res['name']}: test accuracy per arm, mean ± std over {e2e['seeds']} seed(s)"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.2f}"


def e2e_rows(e2e: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per device and arm: arch, FLOPs, accuracy mean ± std over the seeds, pick − arm; a stock
    arm no multiplier fits is a row saying so."""
    head = ["device", "arm", "arch", "FLOPs", "test acc (mean ± std)", "pick − arm (points, 95% interval)"]
    rows = []
    for d in e2e["devices"]:
        absent = d.get("absent", {})  # e2e.json written before the stock arms has none
        for arm, a in d["arms"].items():
            std = "" if a["std"] is None else f" ± {a['std'] * 100:.2f}"
            acc = f"{a['mean'] * 100:.2f}{std}% (n={a['n']})"
            diff = d["differences"].get(f"pick-{arm}")
            if diff is None:
                gap = "–"
            elif "pick" in a["same_as"]:
                gap = "0 (same arch as pick)"
            else:
                gap = f"{_pct(diff['estimate'])} [{_pct(diff['low'])}, {_pct(diff['high'])}]"
            arch = f"`{a['arch']}`" + (f" (= {', '.join(a['same_as'])})" if a["same_as"] else "")
            rows.append([d["device"], arm, arch, si(a["cost"]["flops"]), acc, gap])
        rows += [[d["device"], family, f"absent: {why}", "–", "–", "–"] for family, why in absent.items()]
    return head, rows


def _e2e_summary(e2e: dict[str, Any]) -> list[str]:
    p = e2e["protocol"]
    pool = e2e["pool"]
    where = (
        f"the whole space ({pool['archs']} archs)"
        if pool["kind"] == "enumerated"
        else f"a seeded sample of {pool['archs']} archs"
    )
    how = "trained alone (the run has no teacher)"
    if p["teacher"]:
        how = f"distilled from the run's teacher (KD weight {p['kd']['kd_weight']}, T={p['kd']['temperature']})"
    stock = e2e.get("stock", [])
    stock_arms = (
        f", and stock {' / '.join(stock)} at the largest width multiplier that meets every budget" if stock else ""
    )
    return [
        f"Each device's pick against the largest-FLOPs arch and a random arch inside every budget (costed over "
        f"{where}){stock_arms}, each trained {e2e['seeds']} time(s) with fresh seeds exactly as the students are: "
        + how
        + f", {p['train']['epochs']} epochs. Differences are paired by seed, with Student's t 95% intervals; "
        "an interval that excludes 0 resolves the comparison.",
    ]


def _e2e_markdown(e2e: dict[str, Any] | None) -> list[str]:
    if e2e is None:
        return []
    head, rows = e2e_rows(e2e)
    return ["## End-to-end check", "", *_e2e_summary(e2e), "", _md_table(head, rows), "", "![e2e](e2e.png)", ""]


def _limit(device: dict[str, Any], budget: str) -> float | None:
    return next((c["limit"] for c in device["checks"] if c["budget"] == budget), None)


def _check_cell(device: dict[str, Any], budget: str) -> str:
    c = next((c for c in device["checks"] if c["budget"] == budget), None)
    if c is None:
        return "–"
    mark = "✅" if c["passed"] else ("❌" if c["passed"] is False else "?")
    return f"{mark} {format_budget_value(budget, c['value'])} / {format_budget_value(budget, c['limit'])}"


def _rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["device", "method", "arch", "test acc", *BUDGET_NAMES.values(), "latency here", "all budgets"]
    rows = []
    for d in res["devices"]:
        lat = ms(d["latency_measured_ms"])
        if d["latency_source"] == "table":
            lat += f" (table: {ms(d['latency_predicted_ms'])})"
        rows.append(
            [
                d["device"],
                d["selected_by"] if d["selected_by"] == d["method"] else f"{d['selected_by']} (after {d['method']})",
                f"`{d['arch']}`",
                f"{d['test_accuracy'] * 100:.2f}%",
                *[_check_cell(d, b) for b in BUDGET_NAMES],
                lat,
                "pass" if d["all_pass"] else "FAIL",
            ]
        )
    return head, rows


def _int8_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """float32 and INT8 side by side for the devices deployed as INT8 (none: no rows)."""
    from edgenas.report.units import binary_bytes

    head = ["device", "test acc fp32 → INT8", "model file", "peak activations", "latency here", "budgets fp32 / INT8"]
    rows = []
    for d in res["devices"]:
        q = d.get("int8")
        if q is None:
            continue
        f, i = q["fp32"], q["int8"]
        rows.append(
            [
                d["device"],
                f"{f['test_accuracy'] * 100:.2f}% → {i['test_accuracy'] * 100:.2f}% "
                f"({-q['accuracy_drop_points']:+.2f} pt)",
                f"{binary_bytes(f['model_bytes'])} → {binary_bytes(i['model_bytes'])} (÷{q['size_ratio']:.2f})",
                f"{binary_bytes(f['peak_memory_bytes'])} → {binary_bytes(i['peak_memory_bytes'])}",
                f"{ms(f['latency_ms'])} → {ms(i['latency_ms'])} (×{q['latency_ratio']:.2f})"
                if q["latency_ratio"] is not None
                else "-",
                f"{'pass' if q['fp32_all_pass'] else 'FAIL'} / {'pass' if d['all_pass'] else 'FAIL'}",
            ]
        )
    return head, rows


def _int8_markdown(res: dict[str, Any]) -> list[str]:
    head, rows = _int8_rows(res)
    if not rows:
        return []
    return [
        "## INT8 devices: float32 and INT8",
        "",
        "onnxruntime static quantization (QDQ, per-channel int8 weights, uint8 activations), calibrated on "
        "seeded training images; accuracies through onnxruntime on the test set; the device's budgets are "
        "checked on the INT8 model (the Models table), the float32 column says whether float32 would have passed.",
        "",
        _md_table(head, rows),
        "",
    ]


def _stage_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    rows = [[k, f"{v:.1f} s"] for k, v in res["stage_seconds"].items()]
    rows.append(["total", f"{res['total_seconds']:.1f} s"])
    return ["stage", "seconds"], rows


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    # a `|` inside a cell (NB201 arch strings are full of them) must be escaped, code spans included
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _summary(res: dict[str, Any]) -> list[str]:
    ds, sp = res["dataset"], res["space"]
    t = res.get("teacher")
    lines = [
        f"Dataset **{ds['name']}** ({ds['subset'] or 'all'} training images), space **{sp['name']}** "
        f"(C={sp['width']}, N={sp['cells']}), seed {res['seed']}, {len(res['devices'])} device(s); "
        f"{'every model meets every budget' if res['all_pass'] else '**some budget is missed**'}.",
    ]
    if t:
        lines.append(
            f"Teacher: {t['kind']}, `{t['arch']}`, test accuracy {t['test_accuracy'] * 100:.2f}%"
            + (f", {si(t['cost']['params'])} params, {si(t['cost']['flops'])} FLOPs" if t.get("cost") else "")
            + f", trained in {t['train_seconds']:.0f} s."
        )
    else:
        lines.append("No teacher: students were trained alone.")
    return lines


def _notes(res: dict[str, Any]) -> list[str]:
    out = []
    for d in res["devices"]:
        s = d.get("search")
        if s and s["method"] == "dnad":
            out.append(
                f"{d['device']}: DNAD (one search for all devices, {s['epochs']} epochs, {s['search_seconds']:.0f} s) "
                f"harvested {s['snapshots']} snapshots, {s['pareto_count']} on the Pareto front; "
                f"the best by val accuracy that meets every budget was taken ({d['selected_by']})"
            )
        elif s:
            what = "repaired" if s["repaired"] else ("filled" if s["filled"] else "as derived")
            out.append(
                f"{d['device']}: DCA-NAS searched {s['epochs']} epochs in {s['search_seconds']:.0f} s, arch {what}"
                + ("" if d["selected_by"] == "dca" else "; it missed a measured budget, so a screened arch was used")
            )
        failed = [t for t in d["candidates_tried"] if t["failed"]]
        if failed:
            out.append(
                f"{d['device']}: candidates rejected before training: "
                + "; ".join(f"{t['source']} missed {', '.join(t['failed'])}" for t in failed)
            )
        out.append(
            f"{d['device']}: ONNX `{d['onnx']}` matches PyTorch to {d['max_abs_diff']:.1e}; latency "
            + (
                f"predicted from the profile's table, budget checked on it (measured here: "
                f"{ms(d['latency_measured_ms'])}, {d['threads']} thread(s))"
                if d["latency_source"] == "table"
                else f"measured ({d['threads']} thread(s))"
            )
            + (f"; deployed as INT8 (`{d['int8']['onnx']}`), budgets checked on it" if d.get("int8") else "")
        )
    return out


def _markdown(res: dict[str, Any], e2e: dict[str, Any] | None = None) -> str:
    head, rows = _rows(res)
    shead, srows = _stage_rows(res)
    parts = [
        f"# edgenas run: {res['name']}",
        "",
        *_summary(res),
        "",
        "## Models",
        "",
        _md_table(head, rows),
        "",
        "![accuracy vs FLOPs](pareto.png)",
        "",
        *_int8_markdown(res),
        "## Cost of each stage",
        "",
        _md_table(shead, srows),
        "",
        "![time per stage](stages.png)",
        "",
        *_e2e_markdown(e2e),
        "## Notes",
        "",
        *[f"- {n}" for n in _notes(res)],
        "",
    ]
    return "\n".join(parts)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        text = html.escape(text)
        if text.startswith("`") and text.endswith("`"):
            return f"<code>{text[1:-1]}</code>"
        return text

    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows]
    out.append("</table>")
    return "\n".join(out)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _html(res: dict[str, Any], plots: dict[str, Path], e2e: dict[str, Any] | None = None) -> str:
    head, rows = _rows(res)
    shead, srows = _stage_rows(res)
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
        "th{background:#f3f3f3}code{font-size:11px}img{max-width:100%}"
    )
    summary = "".join(f"<p>{_inline(s)}</p>" for s in _summary(res))
    notes = "".join(f"<li>{_inline(n)}</li>" for n in _notes(res))
    ihead, irows = _int8_rows(res)
    int8_part = f"<h2>INT8 devices: float32 and INT8</h2>{_html_table(ihead, irows)}" if irows else ""
    e2e_part = ""
    if e2e is not None:
        ehead, erows = e2e_rows(e2e)
        e2e_part = (
            "<h2>End-to-end check</h2>"
            + "".join(f"<p>{_inline(s)}</p>" for s in _e2e_summary(e2e))
            + _html_table(ehead, erows)
            + _img(plots["e2e.png"], "accuracy per arm")
        )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>edgenas run: {html.escape(res['name'])}</title>"
        f"<style>{style}</style></head><body><h1>edgenas run: {html.escape(res['name'])}</h1>{summary}"
        f"<h2>Models</h2>{_html_table(head, rows)}{_img(plots['pareto.png'], 'accuracy vs FLOPs')}{int8_part}"
        f"<h2>Cost of each stage</h2>{_html_table(shead, srows)}{_img(plots['stages.png'], 'time per stage')}"
        f"{e2e_part}<h2>Notes</h2><ul>{notes}</ul></body></html>\n"
    )


def _inline(text: str) -> str:
    """Markdown's **bold** and `code` in a line of HTML."""
    parts = html.escape(text).split("`")
    text = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
