"""The results as a markdown table of every figure against its target, and as a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from .concurrency import FAR_LATENCY, SMALL_PAGE_SIZE
from .export import TARGETS as EXPORT_TARGETS


@attrs.frozen
class Row:
    figure: str
    value: str
    target: str = ""
    met: bool | None = None


def _x(value: float) -> str:
    return f"{value:.2f}x"


def rows(results: dict[str, Any], *, targets: bool = True) -> list[Row]:
    """Every figure of a run, with its target where the issues set one (if ``targets``)."""
    table: list[Row] = []
    listing = results.get("listing")
    if listing:
        table += listing_rows(listing)
    for name, micros in results.get("structuring", {}).items():
        table.append(Row(f"µs per job: {name}", f"{micros:.2f} µs"))
    for concurrency, ratio in results.get("fan_out_over_bare", {}).items():
        bounded = concurrency in (8, 16)
        table.append(
            Row(
                f"fan-out ÷ bare aiohttp fan-out, concurrency {concurrency}",
                _x(ratio),
                "≤ 1.0" if bounded else "",
                ratio <= 1.0 if bounded else None,
            )
        )
    for concurrency, ratio in results.get("fan_out", {}).items():
        plain = results.get("plain_fan_out", {}).get(concurrency)
        table.append(
            Row(
                f"fan-out wall ÷ ideal, concurrency {concurrency} (bare aiohttp)",
                f"{_x(ratio)} ({_x(plain)})" if plain is not None else _x(ratio),
            )
        )
    ours_requests = results.get("fan_out_requests", {})
    bare_requests = results.get("plain_fan_out_requests", {})
    if ours_requests and bare_requests:
        worst = max(ours_requests[c] / bare_requests[c] for c in ours_requests)
        table.append(
            Row(
                "fan-out requests ÷ bare aiohttp's (every concurrency)",
                _x(worst),
                "≤ 1.0",
                worst <= 1.0,
            )
        )
    for concurrency, ratio in results.get("small_page_fan_out_over_bare", {}).items():
        table.append(
            Row(
                f"fan-out of {SMALL_PAGE_SIZE}-job pages ÷ bare aiohttp, concurrency {concurrency}",
                _x(ratio),
            )
        )
    for k, speedup in results.get("read_ahead", {}).items():
        if k == 0:
            continue
        if k == 4:
            table.append(Row("read-ahead 4 speedup over 0", _x(speedup), "≥ 3.5", speedup >= 3.5))
        else:
            table.append(Row(f"read-ahead {k} speedup over 0", _x(speedup)))
    far = results.get("far_listing", {})
    if far:
        ms = f"{FAR_LATENCY * 1000:.0f} ms"
        table += [
            Row(f"one listing at {ms}: ours ÷ bare aiohttp loop", _x(far[0])),
            Row(f"one listing at {ms}: bare loop ÷ ours with `read_ahead=4`", _x(far[4])),
        ]
    memory = results.get("memory", {})
    small, large = results.get("memory_sizes", (0, 0))
    for way, label in (("iterate", "`async for`"), ("export", "`sieve-async export`")):
        if f"{way}_ratio" not in memory:
            continue
        table += [
            Row(
                f"peak RSS, {small:,} jobs through {label}",
                f"{memory[f'{way}_{small}_mib']:.1f} MiB",
            ),
            Row(
                f"peak RSS, {large:,} jobs through {label}",
                f"{memory[f'{way}_{large}_mib']:.1f} MiB",
            ),
            Row(
                f"peak RSS {large:,} ÷ {small:,} through {label}",
                _x(memory[f"{way}_ratio"]),
                "≤ 1.2",
                memory[f"{way}_ratio"] <= 1.2,
            ),
        ]
    table += _export_rows(results.get("export"))
    if not targets:
        table = [Row(row.figure, row.value) for row in table]
    return table


#: Targets of the listing ratios: (read, contender) -> least ours ÷ contender.
LISTING_TARGETS = {("every field", "plain"): 0.8, ("id", "floor"): 1.0}


def listing_rows(listing: dict[str, Any]) -> list[Row]:
    """Jobs per second of each contender and read, then ours ÷ each contender, same rounds."""
    jobs = int(listing["jobs"])
    table = [Row(f"listing of {jobs:,} jobs, collector {listing['gc']}", "")]
    for name, rate in listing["jobs_per_s"].items():
        table.append(Row(f"listing, {name}", f"{rate:,.0f} jobs/s"))
    for read, ratios in listing["ours_over"].items():
        for way, ratio in ratios.items():
            target = LISTING_TARGETS.get((read, way))
            if target is None:
                table.append(Row(f"ours ÷ {way}, reading {read}", _x(ratio)))
            else:
                table.append(
                    Row(f"ours ÷ {way}, reading {read}", _x(ratio), f"≥ {target}", ratio >= target)
                )
    table.append(
        Row("ours with `read_ahead=1` ÷ floor, reading id", _x(listing["read_ahead_over_floor"]))
    )
    return table


def _export_rows(results: dict[str, Any] | None) -> list[Row]:
    """`benchmarks.export`: ours ÷ the hand-written script per format, and peak RSS."""
    if not results:
        return []
    table = []
    jobs = int(results["jobs"])
    for fmt, target in EXPORT_TARGETS.items():
        figures = results[fmt]
        ratio = figures["ratio"]
        table += [
            Row(
                f"export of {jobs:,} jobs to {fmt}: ours ÷ hand-written script (throughput)",
                _x(ratio),
                f"≥ {target}",
                ratio >= target,
            ),
            Row(
                f"export to {fmt}: peak RSS, ours / script",
                f"{figures['ours_rss_mib']:.0f} / {figures['script_rss_mib']:.0f} MiB",
                "≤ 100 MiB" if fmt == "parquet" else "",
                figures["ours_rss_mib"] <= 100 if fmt == "parquet" else None,
            ),
        ]
    return table


def markdown(table: list[Row]) -> str:
    """The rows as a markdown table."""
    lines = ["| figure | value | target | met |", "|---|---:|---|---|"]
    for row in table:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.figure} | {row.value} | {row.target} | {met} |")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Fan-out wall/ideal against concurrency and read-ahead speedup against k, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    fan_out = results["fan_out"]
    plain = results["plain_fan_out"]
    levels = sorted(fan_out)
    left.plot(levels, [fan_out[c] for c in levels], "o-", label="sieve_async")
    left.plot(levels, [plain[c] for c in levels], "s--", color="tab:green", label="bare aiohttp")
    left.axhline(1.0, color="grey", linestyle=":", label="ideal")
    left.set_xscale("log", base=2)
    left.set_xticks(levels, [str(c) for c in levels])
    left.set_xlabel("concurrency")
    left.set_ylabel("wall ÷ (requests x latency ÷ concurrency)")
    left.set_title("Fan-out: 32 functions x 5 pages of 100, 20 ms latency")
    left.legend()
    ahead = results["read_ahead"]
    ks = sorted(ahead)
    right.plot(ks, [ahead[k] for k in ks], "o-", label="measured")
    right.plot(ks, [k + 1 for k in ks], ":", color="grey", label="ideal (k + 1)")
    right.plot([4], [3.5], "v", color="tab:red", label="target at 4 (≥ 3.5x)")
    right.set_xlabel("read_ahead")
    right.set_ylabel("speedup over read_ahead=0")
    right.set_title("Read-ahead: one 50-page listing, 20 ms latency")
    right.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
