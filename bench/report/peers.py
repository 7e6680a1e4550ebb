""" "Bifrost vs peers": one table of ours / LiteLLM and ours / Portkey, per scenario, from one run each.

Throughput ratios (frontier's highest sustained rate, medium's delivered rate) read "higher is
better for Bifrost"; added-latency ratios (overhead's added p50/p99 at concurrency 1, streams' added
time to first token) read "lower is better".  A ratio is given only when both cells were measured,
and an added-latency ratio only when the peer added a positive amount (else it means nothing).
"""

from __future__ import annotations

from typing import Any

PEERS = ("litellm", "portkey")
PEER_TITLES = {"litellm": "LiteLLM", "portkey": "Portkey"}
Doc = dict[str, Any]


def _ratio(ours: float | None, peer: float | None, *, latency: bool) -> float | None:
    if ours is None or peer is None:
        return None
    if latency and peer <= 0:
        return None
    if not latency and not peer:
        return None
    return round(ours / peer, 3 if latency else 2)


def _row(scenario: str, metric: str, better: str, values: dict[str, float | None], latency: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"scenario": scenario, "metric": metric, "better": better, "bifrost": values.get("bifrost")}
    for peer in PEERS:
        row[peer] = values.get(peer)
        row[f"over_{peer}"] = _ratio(values.get("bifrost"), values.get(peer), latency=latency)
    return row


def _cell(doc: Doc, **match: Any) -> Doc | None:
    for c in doc.get("cells", []):
        if all(c.get(k) == v for k, v in match.items()):
            return c
    return None


def peer_rows(docs: dict[str, Doc]) -> list[dict[str, Any]]:
    """Every comparable (scenario, metric) with Bifrost's value, each peer's, and the ratios."""
    rows: list[dict[str, Any]] = []
    names = ("bifrost", *PEERS)
    if doc := docs.get("overhead"):
        d = doc.get("derived", {})
        for q in ("p50", "p99"):
            values = {n: d[n].get(f"added_{q}_us") for n in names if isinstance(d.get(n), dict)}
            rows.append(_row("overhead", f"added {q} µs, c=1", "lower", values, latency=True))
    if doc := docs.get("frontier"):
        d = doc.get("derived", {})
        values = {n: d[n].get("max_sustained_rps") for n in names if isinstance(d.get(n), dict)}
        rows.append(_row("frontier", "max sustained RPS", "higher", values, latency=False))
    if doc := docs.get("medium"):
        params = doc.get("params", {})
        for lat in params.get("latencies_ms", []):
            for rate in params.get("rates", []):
                values = {}
                for n in names:
                    c = _cell(doc, target=n, mock_latency_ms=lat, rate=rate)
                    values[n] = c["throughput_rps"] if c else None
                rows.append(_row("medium", f"throughput/s at {rate:g} RPS, mock {lat:g} ms", "higher", values, False))
    if doc := docs.get("streams"):
        d = doc.get("derived", {})
        for level in doc.get("params", {}).get("levels", []):
            values = {}
            for n in names:
                match = [r for r in d.get(n) or [] if r.get("concurrency") == level]
                values[n] = match[0].get("added_ttft_p50_ms") if match else None
            rows.append(_row("streams", f"added TTFT p50 ms, {level} streams", "lower", values, latency=True))
    # Only rows where Bifrost and at least one peer were measured.
    return [r for r in rows if r["bifrost"] is not None and any(r[p] is not None for p in PEERS)]


def _fmt(v: Any, nd: int) -> str:
    if v is None:
        return "-"
    if isinstance(v, int | float):
        return f"{v:,.{nd}f}"
    return str(v)


def peers_section(docs: dict[str, Doc]) -> list[str]:
    """Markdown lines for the report's "Bifrost vs peers" table (empty when nothing compares)."""
    rows = peer_rows(docs)
    if not rows:
        return []
    head = ["scenario", "metric", "better", "Bifrost"]
    head += [PEER_TITLES[p] for p in PEERS] + [f"Bifrost / {PEER_TITLES[p]}" for p in PEERS]
    lines = [
        "## Bifrost vs peers",
        "",
        "Ours / peer from the same run of each scenario (a ratio only where both were measured). "
        "Throughput: higher is better for Bifrost (a ratio above 1 is a lead); added latency: lower is "
        "better (a ratio below 1 is a lead).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for r in rows:
        nd = 0 if r["better"] == "higher" or r["scenario"] == "overhead" else 2
        cols = [r["scenario"], r["metric"], r["better"], _fmt(r["bifrost"], nd)]
        cols += [_fmt(r[p], nd) for p in PEERS]
        cols += [_fmt(r[f"over_{p}"], 3 if r["better"] == "lower" else 2) for p in PEERS]
        lines.append("| " + " | ".join(cols) + " |")
    lines.append("")
    return lines


__all__ = ["PEERS", "peer_rows", "peers_section"]
