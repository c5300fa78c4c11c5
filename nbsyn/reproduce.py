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
import math
import os
import platform
import re
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"


SCALE_KEYS = ("image_size", "iterations", "batch_size", "dataset")
_NONFINITE_WORD = re.compile(r"(?<![A-Za-z])[-+]?(nan|inf|infinity)(?![A-Za-z])", re.IGNORECASE)


def _check_value(value, what: str, row: Mapping, numeric_only: bool = False) -> None:
    """A result value must be a finite number, text, or None; NaN and +-inf are rejected.

    Text that spells a non-finite number ("nan", "inf +- 0.1", as ``f"{x:.3f}"`` prints a NaN) is a
    NaN in disguise and is rejected too, unless ``numeric_only`` (the ``paper`` column, free text).
    """
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if not numeric_only and _NONFINITE_WORD.search(value):
            raise ValueError(f"result row {row.get('experiment')!r} / {row.get('metric')!r}: {what} is {value!r}, "
                             "a non-finite number as text; a result must be finite (or None when unavailable)")
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"result row {row.get('experiment')!r} / {row.get('metric')!r}: {what} is "
                         f"{type(value).__name__} {value!r}; expected a number, text or None") from None
    if not math.isfinite(number):
        raise ValueError(f"result row {row.get('experiment')!r} / {row.get('metric')!r}: {what} is {number}; "
                         "a result must be finite (None when it is unavailable)")


def environment(device=None) -> dict:
    """What a result depends on besides the code and config: torch version, threads, device, machine.

    ``device``: the notebook's ``torch.device`` (or its name); ``None`` guesses ``cuda`` when this
    process has initialised CUDA, else ``cpu``.
    """
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() and torch.cuda.is_initialized() else "cpu"
    device = str(device)
    if device.startswith("cuda") and torch.cuda.is_available():
        device += f" ({torch.cuda.get_device_name(torch.device(device))})"
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": device,
            "machine": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()}


def record_results(out_dir, notebook: str, cfg: Mapping, rows: Sequence[Mapping], complete: bool = True,
                   device=None) -> Path:
    """Save a notebook's results table as ``out_dir/metrics.json``.

    ``rows``: dicts with ``experiment``, ``metric``, ``ours`` (a finite number, text or None when
    unavailable), ``paper`` (the published number or text such as '-') and ``note``; optionally
    ``tol``, the absolute tolerance for comparing ``ours`` with the reference run (e.g. the seed
    spread). ``cfg`` says the scale they were obtained at: the
    ``Config`` from ``nbsyn.presets.resolve`` (preset, image_size, iterations, ...). A row may carry its
    own ``scale`` text instead when the config lacks it.

    ``complete=False``: a wall-clock guard cut the run short; the report marks it INCOMPLETE and
    does not present its comparisons as results. ``device``: the notebook's device (recorded with
    the torch version, thread count and machine, which results depend on).

    Raises ``ValueError`` before writing anything for NaN / infinite values (``ours``, and ``paper``
    when it is a number), a missing column, or a row without a scale.
    """
    if not isinstance(complete, bool):
        raise ValueError(f"complete must be True or False, not {complete!r}")
    required = {"experiment", "metric", "ours", "paper"}
    scale = dict(cfg.as_dict() if hasattr(cfg, "as_dict") else cfg)
    preset = getattr(cfg, "preset", None) or scale.get("preset", "")
    missing_scale = [k for k in ("image_size", "iterations") if k not in scale] + ([] if preset else ["preset"])
    for row in rows:
        missing = required - set(row)
        if missing:
            raise ValueError(f"result row {dict(row)} lacks {sorted(missing)}")
        if missing_scale and not row.get("scale"):
            raise ValueError(f"result row {row['experiment']!r} / {row['metric']!r} has no scale: the config lacks "
                             f"{missing_scale}; pass the Config from nbsyn.presets.resolve or give the row a 'scale'")
        _check_value(row["ours"], "ours", row)
        _check_value(row["paper"], "paper", row, numeric_only=True)
        if row.get("tol") is not None:
            _check_value(row["tol"], "tol", row)
            if isinstance(row["tol"], str) or row["tol"] < 0:
                raise ValueError(f"result row {row['experiment']!r} / {row['metric']!r}: tol must be a number >= 0, "
                                 f"not {row['tol']!r}")
    payload = {
        "notebook": notebook,
        "preset": preset,
        "complete": complete,
        "scale": {k: scale[k] for k in SCALE_KEYS if k in scale},
        "config": {k: v for k, v in scale.items() if isinstance(v, (int, float, str, bool, type(None)))},
        **environment(device),
        "rows": [dict(r) for r in rows],
        "written": datetime.now().isoformat(timespec="seconds"),
    }
    text = json.dumps(payload, indent=2, default=_jsonable, allow_nan=False)
    path = Path(out_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
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
