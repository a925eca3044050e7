"""Memory flatness: Cohub's peak memory does not grow with the size of the input.

Cohub streams a sync in batches, so the peak resident set size of ``cohub sync --all`` should be
the same for 100,000 records as for 5,000,000. This benchmark generates the seeded payroll
export of each ``--sizes`` with bench/sync_throughput.py's generator, syncs it with Cohub alone
(no baseline) into each target, each run in a fresh subprocess through sync_throughput.py's
runner (fresh hub home, ``cohub apply`` not timed, ``cohub sync --all`` timed), checks the
destination as sync_throughput.py does, and prints seconds, records/s and peak RSS
(``os.wait4``) per size, with the ratio of the peak at the largest size to the peak at the
smallest. During every run at the largest size the parent also reads the child's VmRSS from
``/proc/<pid>/status`` every ``--sample-interval`` seconds, and reports the minimum, median and
maximum of the samples taken after start-up and before shut-down, so a flat peak is seen to be
flat all along, not a late spike. Exits with 2 when the ratio exceeds ``--max-ratio``.

    .venv/bin/python bench/memory_flatness.py                          # 100,000 and 5,000,000
    .venv/bin/python bench/memory_flatness.py --sizes 100000,1000000 --targets sqlite,postgresql

See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sync_throughput import (
    BENCH_DIR,
    COHUB,
    RESULTS_DIR,
    BenchError,
    add_common_arguments,
    choose_targets,
    code_fingerprint,
    compile_cohub,
    environment_facts,
    finish_targets,
    make_console,
    parse_targets,
    prepare_export,
    record_code_versions,
    run_cohub,
    summarize,
)

DEFAULT_WORKDIR = BENCH_DIR / ".work" / "memory_flatness"
DEFAULT_SIZES = (100_000, 5_000_000)
#: The fields of /proc/<pid>/status a sample keeps (kB there, KiB here).
STATUS_FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")
EXIT_NOT_FLAT = 2


class RssSampler:
    """A `sync_throughput.Monitor`: reads the child's /proc/<pid>/status every `interval`
    seconds in a thread while the parent waits for the child.

    The sampler holds a descriptor of the /proc/<pid> directory opened right after the spawn,
    and reads ``status`` relative to it. Once the child is reaped, that directory is gone for
    good: a later process given the same pid has a directory of its own, so it is never sampled.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        #: (seconds since the spawn, {field: KiB}), in order.
        self.samples: list[tuple[float, dict[str, int]]] = []

    @contextlib.contextmanager
    def __call__(self, pid: int) -> Iterator[None]:
        started = time.perf_counter()
        stop = threading.Event()
        try:
            directory = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY)
        except OSError:  # no /proc (not Linux) or the child is already gone: no samples
            yield
            return

        def loop() -> None:
            while not stop.is_set():
                fields = read_status(directory)
                if fields is None:  # exited (a zombie has no VmRSS) or reaped
                    return
                self.samples.append((time.perf_counter() - started, fields))
                stop.wait(self.interval)

        thread = threading.Thread(target=loop, name=f"rss-sampler-{pid}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            os.close(directory)


def read_status(directory: int) -> dict[str, int] | None:
    """The STATUS_FIELDS of one /proc/<pid>/status, in KiB; None once the process has exited."""
    try:
        with open("status", opener=partial(os.open, dir_fd=directory)) as handle:
            text = handle.read()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in STATUS_FIELDS:
            fields[name] = int(value.split()[0])
    return fields if "VmRSS" in fields else None


def summarize_samples(
    samples: list[tuple[float, dict[str, int]]],
    startup_seconds: float,
    seconds: float,
    shutdown_seconds: float,
) -> dict[str, Any]:
    """Min, median and max of VmRSS between start-up and shut-down (the last `shutdown_seconds`
    of a run of `seconds`, where the process frees memory on its way out), and the median of the
    first and last quarter of those samples (a climb shows as the last quarter above the first)."""
    end = seconds - shutdown_seconds
    after = [(t, f) for t, f in samples if startup_seconds <= t < end]
    summary: dict[str, Any] = {
        "samples": len(samples),
        "samples_after_startup": len(after),
        "startup_seconds": startup_seconds,
        "shutdown_seconds": shutdown_seconds,
    }
    if not after:
        return summary
    rss = [f["VmRSS"] / 1024 for _, f in after]
    at_max = max(range(len(after)), key=lambda i: rss[i])
    quarter = max(1, len(rss) // 4)
    summary.update(
        {
            "min_mib": round(min(rss), 1),
            "median_mib": round(statistics.median(rss), 1),
            "max_mib": round(rss[at_max], 1),
            "max_at_seconds": round(after[at_max][0], 1),
            "first_quarter_median_mib": round(statistics.median(rss[:quarter]), 1),
            "last_quarter_median_mib": round(statistics.median(rss[-quarter:]), 1),
            "rss_anon_at_max_mib": round(after[at_max][1].get("RssAnon", 0) / 1024, 1),
            "rss_file_at_max_mib": round(after[at_max][1].get("RssFile", 0) / 1024, 1),
            "seconds": round(seconds, 1),
            "last_vmhwm_mib": round(samples[-1][1].get("VmHWM", 0) / 1024, 1),
        }
    )
    return summary


def parse_sizes(parser: argparse.ArgumentParser, value: str) -> list[int]:
    try:
        sizes = sorted({int(s.replace("_", "")) for s in value.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes: not a comma-separated list of integers: {value!r}")
    if len(sizes) < 2 or sizes[0] < 1:
        parser.error("--sizes needs at least two different sizes, each at least 1")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Sync generated payroll exports of growing size through Cohub; show that "
        "its peak memory stays flat."
    )
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in DEFAULT_SIZES),
        help="comma-separated pay line counts (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the generator")
    parser.add_argument("--runs", type=int, default=1, help="runs per size and target")
    add_common_arguments(parser, DEFAULT_WORKDIR)
    parser.set_defaults(targets="sqlite")
    parser.add_argument(
        "--max-ratio",
        type=float,
        default=1.25,
        help="fail (exit 2) if peak RSS at the largest size / at the smallest exceeds this "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--sample-interval",
        type=float,
        default=0.5,
        help="seconds between VmRSS samples during the largest runs (default: %(default)s)",
    )
    parser.add_argument(
        "--startup-seconds",
        type=float,
        default=5.0,
        help="samples taken this soon after the spawn count as start-up and are left out of "
        "min/median/max (default: %(default)s)",
    )
    parser.add_argument(
        "--shutdown-seconds",
        type=float,
        default=1.0,
        help="samples taken this close to the exit count as shut-down and are left out of "
        "min/median/max (default: %(default)s)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sizes = parse_sizes(parser, args.sizes)
    targets = parse_targets(parser, args.targets)
    if args.runs < 1 or args.batch_size < 1 or args.sample_interval <= 0:
        parser.error("--runs and --batch-size must be at least 1, --sample-interval above 0")

    from rich.table import Table

    console = make_console()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    exports = {
        n: prepare_export(workdir, n, args.seed, console, time.perf_counter()) for n in sizes
    }
    chosen, postgres_version, skipped = choose_targets(targets, args.postgres_url, workdir, console)
    largest = sizes[-1]

    results: dict[str, Any] = {
        "benchmark": "memory_flatness",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sizes": sizes,
        "seed": args.seed,
        "runs": args.runs,
        "batch_size": args.batch_size,
        "max_ratio": args.max_ratio,
        "sample_interval": args.sample_interval,
        "startup_seconds": args.startup_seconds,
        "shutdown_seconds": args.shutdown_seconds,
        "exports": {
            str(n): {k: meta[k] for k in ("bytes", "pay_runs", "employees", "total_cents")}
            for n, (_, meta) in exports.items()
        },
        "environment": environment_facts(postgres_version),
        "skipped": skipped,
        "targets": {},
    }
    compile_cohub()
    fingerprints = [code_fingerprint()]
    try:
        for target in chosen:
            per_size: dict[str, Any] = {}
            sampled: list[dict[str, Any]] = []
            for lines in sizes:
                export, meta = exports[lines]
                timings = []
                run_fingerprints: list[str] = []
                for run in range(1, args.runs + 1):
                    sampler = RssSampler(args.sample_interval) if lines == largest else None
                    fingerprints.append(code_fingerprint())
                    run_fingerprints.append(fingerprints[-1])
                    measured = run_cohub(
                        target,
                        workdir / f"lines-{lines}",
                        export,
                        args.batch_size,
                        run,
                        None,
                        sampler,
                    )
                    target.check(lines, meta["total_cents"], COHUB)
                    timings.append(measured)
                    seconds, peak = measured
                    line = (
                        f"{target.name:>10} {lines:>11,} lines  run {run}/{args.runs}: "
                        f"{seconds:7.2f}s  {lines / seconds:>10,.0f} records/s  "
                        f"{peak / 2**20:7.1f} MiB peak"
                    )
                    if sampler is not None:
                        summary = summarize_samples(
                            sampler.samples, args.startup_seconds, seconds, args.shutdown_seconds
                        )
                        sampled.append(
                            {
                                "lines": lines,
                                "run": run,
                                "peak_rss_mib": round(peak / 2**20, 1),
                                "summary": summary,
                                # (seconds since the spawn, then STATUS_FIELDS in KiB)
                                "sample_fields": ["seconds", *STATUS_FIELDS],
                                "samples": [
                                    [round(t, 2), *(f.get(k) for k in STATUS_FIELDS)]
                                    for t, f in sampler.samples
                                ],
                            }
                        )
                        line += f"  ({summary['samples']} RSS samples)"
                    console.print(line)
                per_size[str(lines)] = summarize(lines, timings)
                # Which code each run measured (hub/ and connectors/ digest, as sync_throughput).
                per_size[str(lines)]["code_fingerprints"] = run_fingerprints
            smallest_peak = per_size[str(sizes[0])]["max_peak_rss_mib"]
            for summary in per_size.values():
                summary["ratio_peak_rss_to_smallest"] = round(
                    summary["max_peak_rss_mib"] / smallest_peak, 3
                )
            ratio = per_size[str(largest)]["ratio_peak_rss_to_smallest"]
            results["targets"][target.name] = {
                "sizes": per_size,
                "ratio_peak_rss": ratio,
                "flat": ratio <= args.max_ratio,
                "rss_samples": sampled,
            }
    finally:
        finish_targets(chosen, console)

    table = Table(
        title=f"Cohub peak memory by input size (cohub sync --all, median of {args.runs}, "
        f"batch_size {args.batch_size})"
    )
    for column in ("target", "size", "seconds", "records/s", "peak RSS MiB", "peak / smallest"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for name, outcome in results["targets"].items():
        for lines in sizes:
            s = outcome["sizes"][str(lines)]
            table.add_row(
                name,
                f"{lines:,}",
                f"{s['median_seconds']:.2f}",
                f"{s['median_records_per_second']:,.0f}",
                f"{s['max_peak_rss_mib']:,.1f}",
                f"{s['ratio_peak_rss_to_smallest']:.2f}",
            )
    console.print(table)

    samples = Table(
        title=f"VmRSS every {args.sample_interval:g}s during the {largest:,}-line runs, "
        f"after the first {args.startup_seconds:g}s and before the last "
        f"{args.shutdown_seconds:g}s (MiB)"
    )
    for column in (
        "target",
        "run",
        "samples",
        "min",
        "median",
        "max",
        "max at",
        "1st quarter median",
        "last quarter median",
        "peak (wait4)",
    ):
        samples.add_column(column, justify="left" if column == "target" else "right")
    for name, outcome in results["targets"].items():
        for entry in outcome["rss_samples"]:
            s = entry["summary"]
            if not s["samples_after_startup"]:
                samples.add_row(
                    name, str(entry["run"]), "0", *["-"] * 6, f"{entry['peak_rss_mib']}"
                )
                continue
            samples.add_row(
                name,
                str(entry["run"]),
                str(s["samples_after_startup"]),
                f"{s['min_mib']:.1f}",
                f"{s['median_mib']:.1f}",
                f"{s['max_mib']:.1f}",
                f"{s['max_at_seconds']:.0f}s of {s['seconds']:.0f}s",
                f"{s['first_quarter_median_mib']:.1f}",
                f"{s['last_quarter_median_mib']:.1f}",
                f"{entry['peak_rss_mib']:.1f}",
            )
    console.print(samples)
    for name, reason in skipped.items():
        console.print(f"[yellow]{name} skipped[/]: {reason}")

    failed = [n for n, o in results["targets"].items() if not o["flat"]]
    for name, outcome in results["targets"].items():
        verdict = "[red]NOT flat[/]" if name in failed else "[green]flat[/]"
        console.print(
            f"{name}: peak RSS at {largest:,} lines / at {sizes[0]:,} lines = "
            f"{outcome['ratio_peak_rss']:.2f} (limit {args.max_ratio:g}): {verdict}"
        )
    results["flat"] = not failed if results["targets"] else None
    record_code_versions(results, fingerprints, console)
    output = args.output or RESULTS_DIR / (
        f"memory_flatness-{datetime.now().strftime('%Y-%m-%dT%H%M%S')}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"results: {output}  (total {time.perf_counter() - started:.0f}s)")
    return EXIT_NOT_FLAT if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"memory_flatness: FAILED: {error}", file=sys.stderr)
        sys.exit(1)
