"""Run the notebooks with papermill, build the reproduction report, check it against the reference.

    python -m nbsyn.reproduce [--preset auto] [--only 00_gan_foundations ...] [--out runs/<timestamp>] [--jobs 1]
                              [--check] [--recheck RUN_DIR] [--reference notebooks/reference]

Each notebook is executed into ``<out>/<name>/<name>.ipynb`` with ``out_dir=<out>/<name>``; the
notebook saves its figures there and its results with ``record_results`` into ``metrics.json``.
``report.md`` gathers every notebook's results table (this run, the committed reference run of
``notebooks/reference/<name>.json`` and the papers' numbers, labelled with the scale they ran at),
flags every metric that drifted from the reference, run times and figures. ``--check`` (preset
``cpu`` unless given) exits non-zero on drift, an incomplete or failed run or a missing reference;
``--recheck RUN_DIR`` checks an earlier run without executing anything.
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


def resolve_out_dir(out_dir) -> Path:
    """A notebook's ``out_dir`` as an absolute path; a relative one is taken from the repository root.

    papermill (``./run.sh``, the tests) starts kernels in the repository root, JupyterLab in
    ``notebooks/``: without this, ``out_dir="runs/latest/01_oasis"`` would land in
    ``notebooks/runs/...`` in JupyterLab. ``~`` is expanded; absolute paths are kept as they are.
    """
    path = Path(out_dir).expanduser()
    return path if path.is_absolute() else ROOT / path


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


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def cell_summary(source: str, width: int = 60) -> str:
    """The first line of a cell that says something (a comment or code), shortened for a log line."""
    for line in source.splitlines():
        line = line.strip()
        if line and not line.startswith("# NBVAL"):
            return line if len(line) <= width else line[:width - 3] + "..."
    return ""


def _progress_engine():
    """A papermill engine (nbclient underneath) that reports the start of every code cell.

    papermill calls ``nb_man.cell_start(cell, index)`` before each cell; the engine wraps it for one
    run and calls ``progress(j, m, cell)`` with j the code cell's rank (1-based) among m code cells.
    """
    from papermill.engines import NBClientEngine, papermill_engines

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, progress=None, **kwargs):
            if progress is not None:
                code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
                rank = {index: j for j, index in enumerate(code, 1)}
                original = nb_man.cell_start

                def cell_start(cell, cell_index=None, **kw):
                    if cell_index in rank:
                        progress(rank[cell_index], len(code), cell)
                    return original(cell, cell_index, **kw)

                nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("nbsyn-progress", ProgressEngine)
    return "nbsyn-progress"


def run_notebook(path: Path, out_root: Path, preset: str, extra: Mapping | None = None,
                 label: str = "", log=print, run_start: float | None = None) -> dict:
    """Execute one notebook into ``out_root/<name>/``; ``log`` gets a line as each code cell starts:
    ``[<label> <name>] cell j/M  (notebook 1m05s, total 12m30s)  <first line of the cell>``."""
    import papermill

    out_dir = out_root / path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"preset": preset, "out_dir": str(out_dir), **(extra or {})}
    start = time.perf_counter()
    run_start = start if run_start is None else run_start
    tag = f"[{label + ' ' if label else ''}{path.stem}]"

    def progress(j: int, m: int, cell) -> None:
        now = time.perf_counter()
        log(f"{tag} cell {j}/{m}  (notebook {_elapsed(now - start)}, total {_elapsed(now - run_start)})  "
            f"{cell_summary(cell.source)}")

    status, error = "ok", None
    try:
        papermill.execute_notebook(str(path), str(out_dir / path.name), parameters=params, cwd=str(ROOT),
                                   kernel_name="python3", progress_bar=False, log_output=False,
                                   engine_name=_progress_engine(), progress=progress if log else None)
    except Exception as exc:  # a failing notebook must not stop the others; the report says why
        status, error = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        (out_dir / "error.txt").write_text(traceback.format_exc())
    return {"notebook": path.stem, "status": status, "error": error, "seconds": time.perf_counter() - start,
            "out_dir": out_dir}


# ----------------------------------------------------------------------------- reference results
REFERENCE_DIR = NOTEBOOK_DIR / "reference"
REL_TOL_SAME_ENVIRONMENT = 1e-6
REL_TOL_OTHER_ENVIRONMENT = 0.05


def reference_path(notebook: str, reference_dir=None) -> Path:
    """``notebooks/reference/<notebook>.json``: a copy of the ``metrics.json`` of a ``cpu`` run."""
    return Path(reference_dir or REFERENCE_DIR) / f"{notebook}.json"


def same_environment(run: Mapping, reference: Mapping) -> bool:
    """Same torch version, thread count and device (the things that change results besides the code)."""
    return all(run.get(k) == reference.get(k) for k in ("torch", "threads", "device"))


def compare_value(ours, reference, tol=None, same_env: bool = True) -> tuple[bool, str]:
    """Does ``ours`` match ``reference``? Returns (match, the tolerance applied, as text).

    - ``tol`` (a row's own absolute tolerance, set by the notebook, e.g. from its seed spread) wins.
    - Otherwise integers, booleans, text and None must be equal.
    - Otherwise floats must agree to a relative ``REL_TOL_SAME_ENVIRONMENT`` = 1e-6 when torch
      version, thread count and device are those of the reference: the run is then bit-identical
      (same seed + preset + threads -> same numbers, tested in ``tests/test_determinism.py``), and
      1e-6 only absorbs rounding in whatever printed or converted the number.
    - With another torch version, thread count or device, summation order and kernels change and
      every training step differs in the last bits; adversarial training amplifies that, so the run is
      a different sample of the same experiment, not a copy. The default then is a relative
      ``REL_TOL_OTHER_ENVIRONMENT`` = 5 %: loose enough not to flag floating-point noise on the
      aggregate metrics (means over samples and seeds), tight enough to catch a changed loss weight
      or step count, whose effects in these notebooks are tens of percent. It is a default, not a
      measured spread: a notebook that measures its seed spread should pass it as the row's ``tol``.
    """
    both_numbers = _is_number(ours) and _is_number(reference)
    if both_numbers and tol is not None:
        return abs(float(ours) - float(reference)) <= float(tol), f"±{float(tol):g}"
    if both_numbers and not (isinstance(ours, int) and isinstance(reference, int)):
        rel = REL_TOL_SAME_ENVIRONMENT if same_env else REL_TOL_OTHER_ENVIRONMENT
        a, b = float(ours), float(reference)
        return abs(a - b) <= rel * max(abs(a), abs(b)), f"{rel:g} relative"
    return (both_numbers or type(ours) is type(reference)) and ours == reference, "exact"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _row_keys(rows: Sequence[Mapping]) -> list[tuple]:
    """(experiment, metric, n-th occurrence) for each row, so repeated names pair up in order."""
    seen: dict[tuple, int] = {}
    keys = []
    for row in rows:
        key = (row["experiment"], row["metric"])
        seen[key] = seen.get(key, 0) + 1
        keys.append((*key, seen[key]))
    return keys


def compare_with_reference(data: Mapping | None, reference: Mapping | None) -> dict:
    """Compare one notebook's ``metrics.json`` with its reference.

    Returns ``status`` ("compared", "no results", "no reference", "incomplete", "reference
    incomplete", "other preset"), ``rows`` (each row of this run with ``reference``, ``match``
    (True / False / None when not compared) and ``tolerance``; reference rows this run lacks are
    appended with ``ours`` None and ``match`` False), ``matched``, ``total``, and ``problems``:
    the lines ``--check`` prints (empty when everything matches).
    """
    result = {"status": "compared", "rows": [], "matched": 0, "total": 0, "problems": []}
    if data is None:
        return {**result, "status": "no results", "problems": ["no metrics.json: the notebook recorded no results"]}
    result["rows"] = [{**row, "reference": None, "match": None, "tolerance": ""} for row in data["rows"]]
    if data.get("complete") is False:
        return {**result, "status": "incomplete",
                "problems": ["the run is INCOMPLETE (a wall-clock guard cut it): its numbers are not results"]}
    if reference is None:
        return {**result, "status": "no reference",
                "problems": ["no reference results (notebooks/reference/<notebook>.json) to compare with"]}
    if reference.get("complete") is False:
        return {**result, "status": "reference incomplete", "problems": ["the reference run itself is incomplete"]}
    if reference.get("preset") != data.get("preset"):
        return {**result, "status": "other preset",
                "problems": [f"the reference is a {reference.get('preset')!r} run, this one is {data.get('preset')!r}: "
                             "nothing to compare (run the reference's preset)"]}
    problems = result["problems"]
    ref_config, config = reference.get("config", {}), data.get("config", {})
    differing = sorted(k for k in set(ref_config) | set(config) if ref_config.get(k) != config.get(k))
    if differing:
        problems.append("config differs from the reference: "
                        + ", ".join(f"{k} {config.get(k)!r} (reference {ref_config.get(k)!r})" for k in differing))
    same_env = same_environment(data, reference)
    ref_rows = dict(zip(_row_keys(reference["rows"]), reference["rows"]))
    keys = _row_keys(data["rows"])
    for key, row in zip(keys, result["rows"]):
        ref_row = ref_rows.get(key)
        if ref_row is None:
            row.update(match=False, tolerance="not in the reference")
        else:
            tol = row.get("tol", ref_row.get("tol"))
            match, tolerance = compare_value(row["ours"], ref_row["ours"], tol, same_env)
            row.update(reference=ref_row["ours"], match=match, tolerance=tolerance)
    for key, ref_row in ref_rows.items():
        if key not in set(keys):
            result["rows"].append({**ref_row, "ours": None, "reference": ref_row["ours"], "match": False,
                                   "tolerance": "missing in this run", "note": ref_row.get("note", "")})
    for row in result["rows"]:
        if row["match"] is False:
            problems.append(f"drift: {row['experiment']} | {row['metric']}: this run {fmt(row['ours'])}, "
                            f"reference {fmt(row['reference'])} ({row['tolerance']})")
    result["matched"] = sum(1 for r in result["rows"] if r["match"])
    result["total"] = len(result["rows"])
    if not same_env:
        result["environment_note"] = (
            f"this run: torch {data.get('torch')}, {data.get('threads')} thread(s), {data.get('device')}; reference: "
            f"torch {reference.get('torch')}, {reference.get('threads')} thread(s), {reference.get('device')} "
            f"-> floats compared at {REL_TOL_OTHER_ENVIRONMENT:.0%} relative unless a row sets its tol")
    return result


def _load_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def compare_run(run: Mapping, reference_dir=None) -> dict:
    """:func:`compare_with_reference` for one entry of ``runs`` (its ``out_dir/metrics.json``)."""
    data = _load_json(Path(run["out_dir"]) / "metrics.json")
    ref_path = reference_path(run["notebook"], reference_dir)
    comparison = compare_with_reference(data, _load_json(ref_path))
    if comparison["status"] == "no reference":
        comparison["problems"] = [f"no reference results to compare with ({ref_path} does not exist)"]
    if run.get("status", "ok") != "ok":
        comparison["problems"].insert(0, f"the notebook failed: {run.get('error')}")
    comparison["data"] = data
    return comparison


def check(runs: Sequence[Mapping], reference_dir=None, out=print) -> bool:
    """``--check``: print every problem (failed or incomplete run, missing reference, drifted metric);
    True when there is none."""
    ok, matched, total = True, 0, 0
    for run in runs:
        comparison = compare_run(run, reference_dir)
        matched, total = matched + comparison["matched"], total + comparison["total"]
        for problem in comparison["problems"]:
            out(f"CHECK {run['notebook']}: {problem}")
        ok = ok and not comparison["problems"]
    out(f"{matched} of {total} metrics match the reference run" + ("" if ok else "; check FAILED"))
    return ok


# ----------------------------------------------------------------------------- the report
def fmt(value) -> str:
    if value is None:
        return "unavailable"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _verdict(row: Mapping) -> str:
    if row["match"] is None:
        return "-"
    return "ok" if row["match"] else f"**DRIFT** ({row['tolerance']})"


def build_report(out_root: Path, runs: Sequence[Mapping], preset: str, reference_dir=None) -> Path:
    """``report.md``: a status line per notebook, then each notebook's results table (this run,
    the committed reference run, the paper), every metric off the reference flagged, and figures."""
    if preset == "auto":
        from nbsyn.presets import auto_preset

        preset = f"auto ({auto_preset()})"
    lines = ["# nbsyn reproduction report", "",
             f"Run `{out_root.name}`, preset `{preset}`, written {datetime.now().isoformat(timespec='seconds')}.",
             "Our numbers come from the scale named in each section (small images, short training, procedural or",
             "offline data); the papers' numbers are at full scale on the real datasets. Compare trends, not values.",
             "The reference column is the committed `cpu` run (`notebooks/reference/`); see",
             "`nbsyn.reproduce.compare_value` for the tolerances.",
             "", "| notebook | status | minutes | scale | vs reference |", "|---|---|---|---|---|"]
    sections = []
    matched = total = 0
    for run in runs:
        comparison = compare_run(run, reference_dir)
        data = comparison["data"]
        scale = "-"
        if data:
            scale = f"{data.get('preset', '')}: " + ", ".join(f"{k}={v}" for k, v in data.get("scale", {}).items())
        status = comparison["status"]
        if status == "compared":
            matched, total = matched + comparison["matched"], total + comparison["total"]
            versus = f"{comparison['matched']} of {comparison['total']} match"
        else:
            versus = "**INCOMPLETE**" if status == "incomplete" else status
        run_status = run["status"] + (" **INCOMPLETE**" if status == "incomplete" else "")
        lines.append(f"| {run['notebook']} | {run_status} | {run['seconds'] / 60:.1f} | {scale} | {versus} |")
        sections += ["", f"## {run['notebook']}", ""]
        if run["status"] != "ok":
            sections += [f"**Failed:** `{run['error']}` (traceback in `{run['notebook']}/error.txt`).", ""]
        if data is None:
            sections.append("No results were recorded.")
            continue
        sections += [f"Scale: {scale}. Recorded with torch {data.get('torch', '?')}, {data.get('threads', '?')} "
                     f"thread(s), device {data.get('device', '?')}.", ""]
        if status == "incomplete":
            sections += ["**INCOMPLETE**: a wall-clock guard cut this run short. Its numbers below are not results",
                         "and are not compared with the reference.", ""]
        elif status == "compared":
            sections += [f"{comparison['matched']} of {comparison['total']} metrics match the reference run."
                         + ("" if not comparison["problems"] else " Problems: " + "; ".join(
                             p for p in comparison["problems"] if not p.startswith("drift")) or ""), ""]
            if comparison.get("environment_note"):
                sections += [f"Environment differs from the reference ({comparison['environment_note']}).", ""]
        else:
            sections += [f"Not compared with a reference: {comparison['problems'][-1]}.", ""]
        sections += ["| experiment | metric | this run | reference | paper | vs reference | note |",
                     "|---|---|---|---|---|---|---|"]
        for row in comparison["rows"]:
            ours = "-" if row.get("tolerance") == "missing in this run" else fmt(row["ours"])
            reference = "-" if row["match"] is None else fmt(row["reference"])
            sections.append(f"| {row['experiment']} | {row['metric']} | {ours} | {reference} | {fmt(row['paper'])} | "
                            f"{_verdict(row)} | {row.get('note', '')} |")
        figures = sorted((Path(run["out_dir"]) / "figures").glob("*.png"))
        if figures:
            sections += ["", "Figures: " + ", ".join(f"[{f.stem}]({f.relative_to(out_root)})" for f in figures)]
    lines += ["", f"**{matched} of {total} metrics match the reference run** (notebooks compared with a reference)."]
    path = out_root / "report.md"
    path.write_text("\n".join(lines + sections) + "\n")
    return path


def existing_runs(out_root: Path, only: Sequence[str] | None = None) -> list[dict]:
    """The runs of an earlier ``./run.sh`` in ``out_root`` (for ``--recheck``)."""
    runs = []
    for path in notebooks(only):
        out_dir = out_root / path.stem
        failed = (out_dir / "error.txt").exists() or not out_dir.exists()
        runs.append({"notebook": path.stem, "status": "failed" if failed else "ok",
                     "error": "not run" if not out_dir.exists() else "see error.txt" if failed else None,
                     "seconds": 0.0, "out_dir": out_dir})
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None,
                        help="auto (gpu with CUDA, else cpu), smoke, cpu, gpu or paper (default auto; cpu with --check)")
    parser.add_argument("--only", nargs="*", help="notebook names, e.g. 00_gan_foundations")
    parser.add_argument("--out", help="output folder (default runs/<timestamp>)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="notebooks run at once; the CPU threads are shared out among them (default 1)")
    parser.add_argument("--check", action="store_true",
                        help="after the run, compare every metric with notebooks/reference/ and exit non-zero on drift, "
                             "an incomplete or failed run, or a missing reference")
    parser.add_argument("--recheck", metavar="RUN_DIR",
                        help="only check an earlier run folder against the references (no notebook is executed)")
    parser.add_argument("--reference", metavar="DIR", help="reference folder (default notebooks/reference)")
    parser.add_argument("--device", help="passed to every notebook's `device` parameter: auto, cpu, cuda, cuda:1, mps "
                                         "(default: the notebooks' own, auto)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.recheck:
        out_root = Path(args.recheck).resolve()
        if not out_root.is_dir():
            parser.error(f"--recheck: no folder {out_root}")
        return 0 if check(existing_runs(out_root, args.only), args.reference) else 1
    from nbsyn.presets import PRESET_NAMES

    preset = args.preset or ("cpu" if args.check else "auto")
    if preset not in ("auto", *PRESET_NAMES):
        parser.error(f"unknown preset {preset!r}; choose one of auto, {', '.join(PRESET_NAMES)}")
    extra = {}
    if args.device:
        from nbsyn.runtime import pick_device

        try:  # an unknown or absent device stops here, not in every notebook
            pick_device(args.device)
        except ValueError as exc:
            parser.error(f"--device: {exc}")
        extra["device"] = args.device
    out_root = Path(args.out or ROOT / "runs" / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    selected = notebooks(args.only)
    if args.jobs > 1 and "NBSYN_THREADS" not in os.environ:  # kernels inherit it: share the cores out
        os.environ["NBSYN_THREADS"] = str(max(1, (os.cpu_count() or 2) // args.jobs))

    run_start = time.perf_counter()

    def one(item: tuple[int, Path]) -> dict:
        i, path = item
        label = f"notebook {i}/{len(selected)}"
        print(f"[{label} {path.stem}] started (preset {preset}"
              + (f", device {args.device}" if args.device else "") + ")", flush=True)
        run = run_notebook(path, out_root, preset, extra, label=label, run_start=run_start,
                           log=lambda line: print(line, flush=True))
        print(f"[{label} {path.stem}] finished: {run['status']} in {run['seconds'] / 60:.1f} min"
              f" (total {_elapsed(time.perf_counter() - run_start)})" + (f": {run['error']}" if run["error"] else ""),
              flush=True)
        return run

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(one, enumerate(selected, 1)))
    report = build_report(out_root, runs, preset, args.reference)
    print(f"report: {report}")
    ok = all(r["status"] == "ok" for r in runs)
    if args.check:
        ok = check(runs, args.reference) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
