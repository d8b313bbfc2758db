"""``python -m bench [--quick] [--only P1,P3] [--no-write]``: runs the figures of issue 6
and writes the table into docs/benchmarks.md (between the generated-table markers; the
hand-written analysis around them is kept)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import machine

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _f(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def row(r: dict[str, Any]) -> tuple[str, str, str, str, str, str]:
    fig = r["figure"]
    if r.get("skipped"):
        return fig, "skipped", "", "", "", r["skipped"]
    if fig == "P1":
        measured = f"{_f(r['e2e_per_s'])} events/s end to end ({_f(r['events'])} events)"
        base = (f"engine alone {_f(r['engine_per_s'])}/s, SQL alone {_f(r['sql_per_s'])}/s, "
                f"combined serially {_f(r['combined_per_s'])}/s")
    elif fig == "P2":
        measured = f"{_f(r['many_per_s'])} events/s with {_f(r['journeys'])} journeys"
        base = f"{_f(r['one_per_s'])} events/s with 1 journey"
    elif fig == "P3":
        measured = (f"{_f(r['drain_per_s'])} wake-ups/s draining {_f(r['wakeups'])} due at once; "
                    f"steady {r['steady_rate']}/s: p50 {_f(r['p50_lateness_ms'])} ms, "
                    f"p99 {_f(r['p99_lateness_ms'])} ms late")
        base = "goal 10,000/s"
    elif fig == "P4":
        measured = (f"RSS {_f(r['rss_big_kb'] / 1024)} MiB with {_f(r['waiting_big'])} waiting; "
                    f"{_f(r['db_bytes_per_waiting'])} B/instance (instance + wake-up rows), "
                    f"{_f(r['db_bytes_per_waiting_all'])} B with its inbox event, outbox row, log and contact")
        base = f"RSS {_f(r['rss_small_kb'] / 1024)} MiB with 1,000 waiting"
    elif fig == "P5":
        measured = f"{_f(r['two_workers_per_s'])} events/s with 2 workers ({_f(r['events'])} events)"
        base = f"{_f(r['one_worker_per_s'])} events/s with 1 worker"
        if "machine_busy_one" in r:
            measured += f", machine {r['machine_busy_two']:.0%} busy"
            base += f", machine {r['machine_busy_one']:.0%} busy"
    elif fig == "P7":
        measured = "; ".join(f"A {m}: B p99 {_f(r[f'{m}_p99_ms'])} ms" for m in ("hang", "503", "429"))
        base = f"B alone: p99 {_f(r['alone_p99_ms'])} ms (p50 {_f(r['alone_p50_ms'])} ms) at {r['rate']}/s"
    elif fig == "P8":
        measured = (f"at {r['rate']}/s: p50 {_f(r['p50_ms'])} ms, p99 {_f(r['p99_ms'])} ms POST -> CRM request; "
                    f"burst of {_f(r['burst'])} finished at {_f(r['finished_per_s'])}/s")
        base = f"burst accepted at {_f(r['accepted_per_s'])}/s"
    else:
        measured = (f"SQLite, 1 worker: p50 {_f(r['p50_ms'])} ms, p99 {_f(r['p99_ms'])} ms webhook -> outbox row "
                    f"committed ({_f(r['outbox_rows'])} rows, sent at {_f(r['sent_rate'])}/s, "
                    f"HTTP p50 {_f(r['http_p50_ms'])} ms)")
        if "pg_p50_ms" in r:
            measured += (f"; PostgreSQL, {r['pg_workers']} workers: p50 {_f(r['pg_p50_ms'])} ms, "
                         f"p99 {_f(r['pg_p99_ms'])} ms (sent at {_f(r['pg_sent_rate'])}/s)")
        base = f"target load {r['target_rate']}/s"
    holds = {True: "yes", False: "**no**", None: "n/a"}[r["holds"]]
    return fig, measured, base, f"{r['ratio']:.2f}", r["goal"], holds


def render(results: list[dict[str, Any]], command: str, started: datetime) -> str:
    m = machine()
    lines = [BEGIN, "",
             f"- Date: {started:%Y-%m-%d %H:%M} UTC",
             f"- Command: `{command}`",
             f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM; Python {m['python']}, "
             f"SQLite {m['sqlite']}",
             "",
             "| Figure | Measured | Baseline (same run) | Ratio | Goal | Holds |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append("| " + " | ".join(row(r)) + " |")
    lines += ["", "<details><summary>raw results</summary>", "", "```json",
              json.dumps(results, indent=1, default=str), "```", "</details>", "", END]
    return "\n".join(lines)


def previous_results() -> list[dict[str, Any]]:
    """The raw results stored in docs/benchmarks.md by the last run, if any."""
    try:
        text = DOC.read_text()
        raw = text.split(BEGIN, 1)[1].split("```json", 1)[1].split("```", 1)[0]
        return list(json.loads(raw))
    except (OSError, IndexError, ValueError):
        return []


def write_doc(block: str) -> None:
    if DOC.exists() and BEGIN in DOC.read_text():
        text = DOC.read_text()
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1] if END in rest else ""
        DOC.write_text(head + block + tail)
    else:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text("# Benchmarks\n\n" + block + "\n")


def _in_own_process(name: str, quick: bool) -> dict[str, Any]:
    """Run one figure in a fresh Python process, as each is a deployment of its own: what
    one figure leaves behind (P2's 1,001 registered rulesets, caches, the collector's
    generations) once cost the next one up to 30 % of its rate."""
    cmd = [sys.executable, "-m", "bench", "--figure", name, *(["--quick"] if quick else [])]
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    from bench.figures import FIGURES

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a measurement")
    parser.add_argument("--only", default="", help="comma-separated figures, e.g. P1,P3")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--figure", choices=sorted(FIGURES), help=argparse.SUPPRESS)  # internal: one figure
    args = parser.parse_args(argv)
    chosen = [f.strip().upper() for f in args.only.split(",") if f.strip()] or list(FIGURES)
    from crm_journeys.runtime.collector import tune_collector

    if args.figure:
        # one figure in this process, with the settings of `crm-journeys serve` and
        # `worker` (the processes measured), its result as JSON on stdout
        tune_collector()
        t0 = time.monotonic()
        result = FIGURES[args.figure](args.quick)
        result["wall_s"] = round(time.monotonic() - t0, 1)
        print(json.dumps(result, default=str))
        return 0
    started = datetime.now(UTC)
    results = []
    for name in chosen:
        print(f"{name} ...", file=sys.stderr, flush=True)
        result = _in_own_process(name, args.quick)
        results.append(result)
        fig, measured, base, ratio, goal, holds = row(result)
        print(f"{fig}: {measured} | baseline: {base} | ratio {ratio} | goal: {goal} | holds: {holds}", flush=True)
    if not args.no_write:
        command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
        if args.only:  # keep the other figures of the last full run, in order
            rerun = {r["figure"] for r in results}
            kept = [r for r in previous_results() if r["figure"] not in rerun]
            results = sorted(kept + results, key=lambda r: r["figure"])
            if kept:
                command += f"  (figures {', '.join(sorted(r['figure'] for r in kept))} from the previous run)"
        write_doc(render(results, command.strip(), started))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
