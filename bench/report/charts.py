"""PNG charts for the report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.stats import CURVE_LEVELS

COLORS = {"direct": "#7f7f7f", "bifrost": "#1f77b4", "litellm": "#d62728", "portkey": "#2ca02c"}
GATEWAYS = ("bifrost", "litellm", "portkey")  # ours and the peers, in legend order
Doc = dict[str, Any]


def _save(fig: Any, out_dir: str, name: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_distribution(doc: Doc, out_dir: str) -> list[str]:
    """Latency by percentile, one panel per (mock latency, rate) cell group of ``medium``."""
    cells = doc.get("cells", [])
    groups = sorted({(c.get("mock_latency_ms"), c.get("rate")) for c in cells}, key=lambda g: (g[0], -g[1]))
    if not groups:
        return []
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False)
    # x position: "number of nines" so the tail gets room (p50 -> 0.3, p99 -> 2, p99.9 -> 3).
    levels = [min(q, 99.99) for q in CURVE_LEVELS]
    xs = [-math.log10(1 - q / 100.0) for q in levels]
    for ax, (lat, rate) in zip(axes[0], groups, strict=True):
        for c in cells:
            if (c.get("mock_latency_ms"), c.get("rate")) == (lat, rate) and c.get("latency_curve_ms"):
                ax.plot(xs, c["latency_curve_ms"], marker=".", label=c["target"], color=COLORS.get(c["target"]))
        ax.set_yscale("log")
        ax.set_xticks([0, 1, 2, 3, 4], ["p0", "p90", "p99", "p99.9", "p99.99"])
        ax.set_title(f"mock {lat:.0f} ms, {rate:.0f} RPS")
        ax.set_ylabel("latency (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return [_save(fig, out_dir, f"{doc['scenario']}_latency_distribution.png")]


def frontier(doc: Doc, out_dir: str) -> list[str]:
    """p99 latency and success rate against offered rate, per target."""
    cells = [c for c in doc.get("cells", []) if c.get("target") in GATEWAYS]
    if not cells:
        return []
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name in GATEWAYS:
        pts = sorted(
            (c["rate"], c["latency_ms"]["p99"], c["success_rate"] or 0.0) for c in cells if c["target"] == name
        )
        if not pts:
            continue
        a1.plot([p[0] for p in pts], [p[1] or float("nan") for p in pts], marker="o", label=name, color=COLORS[name])
        a2.plot([p[0] for p in pts], [p[2] * 100 for p in pts], marker="o", label=name, color=COLORS[name])
    a1.axhline(doc["params"]["p99_limit_ms"], ls="--", color="k", lw=0.8, label="p99 limit")
    for ax in (a1, a2):
        ax.set_xscale("log")
        ax.set_xlabel("offered rate (RPS)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    a1.set_yscale("log")
    a1.set_ylabel("p99 latency (ms)")
    a2.set_ylabel("success (%)")
    a1.set_title("latency against rate (20 ms mock)")
    a2.set_title("success against rate")
    return [_save(fig, out_dir, "frontier_rate.png")]


def rss_over_time(doc: Doc, out_dir: str) -> list[str]:
    """RSS of each gateway's process tree over the run (soak, or medium's top-rate cells)."""
    series = [c for c in doc.get("cells", []) if c.get("rss_series", {}).get("t") and c.get("target") != "direct"]
    if doc["scenario"] == "medium":
        top = doc["params"]["rates"][0]
        series = [c for c in series if c.get("rate") == top]
    if not series:
        return []
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for c in series:
        label = c["target"] + (f", mock {c['mock_latency_ms']:.0f} ms" if "mock_latency_ms" in c else "")
        ax.plot(
            c["rss_series"]["t"],
            c["rss_series"]["rss_mb"],
            label=label,
            color=COLORS.get(c["target"]),
            ls="-" if not c.get("mock_latency_ms") else "--",
        )
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS, process tree (MB)")
    ax.set_title(f"{doc['scenario']}: RSS over time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [_save(fig, out_dir, f"{doc['scenario']}_rss.png")]


def soak_latency(doc: Doc, out_dir: str) -> list[str]:
    cells = [c for c in doc.get("cells", []) if c.get("timeline", {}).get("t")]
    if not cells:
        return []
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for c in cells:
        tl = c["timeline"]
        ax.plot(
            tl["t"],
            [v if v is not None else float("nan") for v in tl["p99_ms"]],
            label=f"{c['target']} p99",
            color=COLORS.get(c["target"]),
        )
        ax.plot(
            tl["t"],
            [v if v is not None else float("nan") for v in tl["p50_ms"]],
            label=f"{c['target']} p50",
            color=COLORS.get(c["target"]),
            ls=":",
        )
    ax.set_xlabel("seconds")
    ax.set_ylabel("latency (ms)")
    ax.set_title("soak: latency over time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [_save(fig, out_dir, "soak_latency.png")]


def streams(doc: Doc, out_dir: str) -> list[str]:
    cells = doc.get("cells", [])
    if not cells:
        return []
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for name in ("direct", *GATEWAYS):
        pts = sorted(
            (c["concurrency"], c["ttft_ms"]["p99"])
            for c in cells
            if c["target"] == name and c.get("concurrency") and c.get("ttft_ms", {}).get("p99") is not None
        )
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, color=COLORS[name])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("time to first token p99 (ms)")
    ax.set_title(f"streams: TTFT p99 (mock TTFT {doc['params']['ttft_ms']:.0f} ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [_save(fig, out_dir, "streams_ttft.png")]


CHARTS = {
    "medium": [latency_distribution, rss_over_time],
    "xlarge": [rss_over_time],
    "frontier": [frontier],
    "soak": [rss_over_time, soak_latency],
    "streams": [streams],
}


def draw(docs: dict[str, Doc], out_dir: str) -> dict[str, list[str]]:
    """Every chart for every scenario present; returns paths by scenario."""
    out: dict[str, list[str]] = {}
    for name, fns in CHARTS.items():
        if name in docs:
            out[name] = [p for fn in fns for p in fn(docs[name], out_dir)]
    return out
