"""``python -m benchmarks [--quick | --full] [--plot PATH]``: run the benchmarks side by side.

``--quick`` (the default) runs small sizes and checks nothing, for CI. ``--full`` runs the sizes
the issues name, prints a markdown table of every figure against its target, writes it to
``benchmarks/RESULTS.md`` and plots the fan-out and read-ahead curves to
``benchmarks/results.png`` (or ``--plot PATH``). Neither mode fails on a missed target: the
numbers of a shared machine are too noisy to gate on.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from . import concurrency, export, listing, memory, report, structuring

HERE = Path(__file__).parent


@attrs.frozen
class Sizes:
    listing_jobs: int
    listing_rounds: int
    structuring_number: int
    structuring_repeat: int
    functions: int
    pages: int
    concurrencies: list[int]
    long_pages: int
    read_aheads: list[int]
    concurrency_rounds: int
    rss_small: int
    rss_large: int
    export_jobs: int = 5_000
    export_rounds: int = 1


QUICK = Sizes(
    listing_jobs=5_000,
    listing_rounds=3,
    structuring_number=3,
    structuring_repeat=3,
    functions=8,
    pages=3,
    concurrencies=[1, 4, 8],
    long_pages=10,
    read_aheads=[0, 1, 4],
    concurrency_rounds=1,
    rss_small=5_000,
    rss_large=50_000,
)
FULL = Sizes(
    # Few enough jobs (about 19 MiB encoded) for FakeSieve to keep them after the warm-up
    # round: a listing the server has to make anew is bound by the server, which hides the
    # clients' differences (100,000 jobs ran every contender at 28,000-31,000 jobs/s).
    listing_jobs=20_000,
    # 19 contenders a round (six ways, three reads, and read-ahead).
    listing_rounds=9,
    structuring_number=20,
    structuring_repeat=7,
    functions=32,
    pages=5,
    concurrencies=[1, 4, 8, 16],
    long_pages=50,
    read_aheads=[0, 1, 2, 4, 8],
    concurrency_rounds=5,
    rss_small=100_000,
    rss_large=1_000_000,
    # One round of a million jobs per format and contender: about ten minutes.
    export_jobs=1_000_000,
    export_rounds=1,
)


def _load() -> str:
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:  # pragma: no cover - not every platform has it
        return "n/a"


def _section(title: str, started: float) -> None:
    print(f"\n== {title} ({time.perf_counter() - started:.0f} s in)", flush=True)


def run(sizes: Sizes) -> dict[str, Any]:
    """Every benchmark at ``sizes``; prints each section's figures as it goes."""
    started = time.perf_counter()
    results: dict[str, Any] = {"load_before": _load()}

    _section(
        f"one listing, {sizes.listing_jobs:,} jobs, page size 500, three reads, interleaved",
        started,
    )
    results["listing"] = asyncio.run(listing.run(sizes.listing_jobs, sizes.listing_rounds))
    print(report.markdown(report.rows({"listing": results["listing"]}, targets=False)))

    _section("structuring, µs per job (one page of 500, best of repeats)", started)
    results["structuring"] = structuring.run(
        number=sizes.structuring_number, repeat=sizes.structuring_repeat
    )
    for name, micros in results["structuring"].items():
        print(f"{micros:8.2f} µs  {name}")

    _section("fan-out and read-ahead at 20 ms latency, one listing at 50 ms, interleaved", started)
    outcome = asyncio.run(
        concurrency.run(
            functions=sizes.functions,
            pages=sizes.pages,
            concurrencies=sizes.concurrencies,
            long_pages=sizes.long_pages,
            read_aheads=sizes.read_aheads,
            rounds=sizes.concurrency_rounds,
        )
    )
    results["fan_out"] = outcome["fan_out_wall_over_ideal"]
    results["plain_fan_out"] = outcome["plain_fan_out_wall_over_ideal"]
    results["fan_out_over_bare"] = outcome["fan_out_over_bare"]
    results["fan_out_requests"] = outcome["fan_out_requests"]
    results["plain_fan_out_requests"] = outcome["plain_fan_out_requests"]
    results["small_page_fan_out_over_bare"] = outcome["small_page_fan_out_over_bare"]
    results["read_ahead"] = outcome["read_ahead_speedup"]
    results["far_listing"] = outcome["far_listing"]
    for c, ratio in results["fan_out_over_bare"].items():
        print(
            f"fan-out concurrency {c:2d}: ours ÷ bare aiohttp {ratio:.2f}; requests "
            f"{results['fan_out_requests'][c]:.0f} vs {results['plain_fan_out_requests'][c]:.0f}; "
            f"wall ÷ ideal {results['fan_out'][c]:.2f} vs {results['plain_fan_out'][c]:.2f}"
        )
    for c, ratio in results["small_page_fan_out_over_bare"].items():
        print(
            f"fan-out of {concurrency.SMALL_PAGE_SIZE}-job pages, concurrency {c:2d}: "
            f"ours ÷ bare aiohttp {ratio:.2f}"
        )
    for k, speedup in results["read_ahead"].items():
        print(f"read-ahead {k}: {speedup:.2f}x read-ahead 0")
    far = results["far_listing"]
    print(
        f"at {concurrency.FAR_LATENCY * 1000:.0f} ms: ours ÷ bare aiohttp loop {far[0]:.2f}; "
        f"read_ahead=4 {far[4]:.2f}x faster than the bare loop"
    )

    _section(f"peak RSS, {sizes.rss_small:,} vs {sizes.rss_large:,} jobs", started)
    results["memory"] = memory.run(sizes.rss_small, sizes.rss_large)
    results["memory_sizes"] = (sizes.rss_small, sizes.rss_large)
    if not memory.export_available():
        print("(export: this checkout has no `sieve-async export`; skipped)")
    for name, value in results["memory"].items():
        print(f"{name}: {value:.2f}")

    _section(
        f"exports of {sizes.export_jobs:,} jobs against hand-written scripts, interleaved",
        started,
    )
    results["export"] = export.run(sizes.export_jobs, sizes.export_rounds)
    print("\n".join(export.lines(results["export"])))

    results["load_after"] = _load()
    results["seconds"] = time.perf_counter() - started
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, no targets (default)")
    mode.add_argument("--full", action="store_true", help="the real sizes, table and plot")
    parser.add_argument("--plot", type=Path, help="where to write the PNG plot")
    args = parser.parse_args(argv)

    sizes = FULL if args.full else QUICK
    print(
        f"sieve_async benchmarks, {'full' if args.full else 'quick'} mode; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {_load()}"
    )
    results = run(sizes)
    table = report.markdown(report.rows(results, targets=args.full))
    print("\n== all figures\n" + table)
    print(
        f"\n{results['seconds']:.0f} s; load average before {results['load_before']}, "
        f"after {results['load_after']}"
    )
    if args.full or args.plot:
        plot_path = args.plot or HERE / "results.png"
        report.plot(results, plot_path)
        print(f"plot: {plot_path}")
    if args.full:
        results_path = HERE / "RESULTS.md"
        results_path.write_text(
            "# Benchmark results\n\n"
            f"`python -m benchmarks --full` on Python {platform.python_version()}, "
            f"{os.cpu_count()} CPUs, load average {results['load_before']} before and "
            f"{results['load_after']} after; medians of interleaved rounds.\n\n"
            f"{table}\n"
        )
        print(f"table: {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
