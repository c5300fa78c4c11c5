"""Run the notebooks with papermill and build the reproduction report.

    python -m nbsyn.reproduce [--preset auto] [--only 00_gan_foundations ...] [--out runs/<timestamp>] [--jobs 1]

Each notebook is executed into ``<out>/<name>/<name>.ipynb`` with ``out_dir=<out>/<name>``; the
notebook saves its figures there and its results with ``record_results`` into ``metrics.json``.
``report.md`` gathers every notebook's results table (ours beside the papers' numbers, labelled
with the scale they ran at), run times and figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"


def record_results(out_dir, notebook: str, cfg: Mapping, rows: Sequence[Mapping]) -> Path:
    """Save a notebook's results table as ``out_dir/metrics.json``.

    ``rows``: dicts with ``experiment``, ``metric``, ``ours`` (number, text or None), ``paper``
    (the published number or '-') and ``note``; ``cfg`` says the scale they were obtained at.
    """
    required = {"experiment", "metric", "ours", "paper"}
    for row in rows:
        missing = required - set(row)
        if missing:
            raise ValueError(f"result row {dict(row)} lacks {sorted(missing)}")
    scale = dict(cfg.as_dict() if hasattr(cfg, "as_dict") else cfg)
    payload = {
        "notebook": notebook,
        "preset": getattr(cfg, "preset", scale.get("preset", "")),
        "scale": {k: scale[k] for k in ("image_size", "iterations", "batch_size", "dataset") if k in scale},
        "config": {k: v for k, v in scale.items() if isinstance(v, (int, float, str, bool, type(None)))},
        "rows": [dict(r) for r in rows],
        "written": datetime.now().isoformat(timespec="seconds"),
    }
    path = Path(out_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable))
    return path


def _jsonable(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def notebooks(only: Sequence[str] | None = None) -> list[Path]:
    found = sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        names = {p.stem for p in found}
        unknown = sorted(set(only) - names)
        if unknown:
            raise SystemExit(f"unknown notebook(s) {unknown}; available: {', '.join(sorted(names))}")
        found = [p for p in found if p.stem in only]
    return found


def run_notebook(path: Path, out_root: Path, preset: str, extra: Mapping | None = None) -> dict:
    import papermill

    out_dir = out_root / path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"preset": preset, "out_dir": str(out_dir), **(extra or {})}
    start = time.perf_counter()
    status, error = "ok", None
    try:
        papermill.execute_notebook(str(path), str(out_dir / path.name), parameters=params, cwd=str(ROOT),
                                   kernel_name="python3", progress_bar=False, log_output=False)
    except Exception as exc:  # a failing notebook must not stop the others; the report says why
        status, error = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        (out_dir / "error.txt").write_text(traceback.format_exc())
    return {"notebook": path.stem, "status": status, "error": error, "seconds": time.perf_counter() - start,
            "out_dir": out_dir}


def fmt(value) -> str:
    if value is None:
        return "unavailable"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def build_report(out_root: Path, runs: Sequence[Mapping], preset: str) -> Path:
    """``report.md``: a status line per notebook, then each notebook's results table and figures."""
    if preset == "auto":
        from nbsyn.presets import auto_preset

        preset = f"auto ({auto_preset()})"
    lines = ["# nbsyn reproduction report", "",
             f"Run `{out_root.name}`, preset `{preset}`, written {datetime.now().isoformat(timespec='seconds')}.",
             "Our numbers come from the scale named in each section (small images, short training, procedural or",
             "offline data); the papers' numbers are at full scale on the real datasets. Compare trends, not values.",
             "", "| notebook | status | minutes | scale |", "|---|---|---|---|"]
    sections = []
    for run in runs:
        metrics_file = Path(run["out_dir"]) / "metrics.json"
        data = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
        scale = "-"
        if data:
            scale = f"{data.get('preset', '')}: " + ", ".join(f"{k}={v}" for k, v in data.get("scale", {}).items())
        lines.append(f"| {run['notebook']} | {run['status']} | {run['seconds'] / 60:.1f} | {scale} |")
        sections += ["", f"## {run['notebook']}", ""]
        if run["status"] != "ok":
            sections += [f"**Failed:** `{run['error']}` (traceback in `{run['notebook']}/error.txt`).", ""]
        if data is None:
            sections.append("No results were recorded.")
            continue
        sections += [f"Scale: {scale}.", "", "| experiment | metric | ours | paper | note |", "|---|---|---|---|---|"]
        for row in data["rows"]:
            sections.append(f"| {row['experiment']} | {row['metric']} | {fmt(row['ours'])} | {fmt(row['paper'])} | "
                            f"{row.get('note', '')} |")
        figures = sorted((Path(run["out_dir"]) / "figures").glob("*.png"))
        if figures:
            sections += ["", "Figures: " + ", ".join(f"[{f.stem}]({f.relative_to(out_root)})" for f in figures)]
    path = out_root / "report.md"
    path.write_text("\n".join(lines + sections) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="auto", help="auto (gpu with CUDA, else cpu), smoke, cpu, gpu or paper")
    parser.add_argument("--only", nargs="*", help="notebook names, e.g. 00_gan_foundations")
    parser.add_argument("--out", help="output folder (default runs/<timestamp>)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="notebooks run at once; the CPU threads are shared out among them (default 1)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    from nbsyn.presets import PRESET_NAMES

    if args.preset not in ("auto", *PRESET_NAMES):
        parser.error(f"unknown preset {args.preset!r}; choose one of auto, {', '.join(PRESET_NAMES)}")
    out_root = Path(args.out or ROOT / "runs" / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    selected = notebooks(args.only)
    if args.jobs > 1 and "NBSYN_THREADS" not in os.environ:  # kernels inherit it: share the cores out
        os.environ["NBSYN_THREADS"] = str(max(1, (os.cpu_count() or 2) // args.jobs))

    def one(path: Path) -> dict:
        print(f"started  {path.stem} (preset {args.preset})", flush=True)
        run = run_notebook(path, out_root, args.preset)
        print(f"finished {path.stem}: {run['status']} in {run['seconds'] / 60:.1f} min"
              + (f": {run['error']}" if run["error"] else ""), flush=True)
        return run

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(one, selected))
    report = build_report(out_root, runs, args.preset)
    print(f"report: {report}")
    return 0 if all(r["status"] == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
