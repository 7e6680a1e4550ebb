"""REPORT.md: the targets table, then one section per scenario, side by side where targets differ."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from bench.report import charts
from bench.report.goals import evaluate
from bench.report.peers import PEER_TITLES, PEERS, peers_section

Doc = dict[str, Any]
ORDER = [
    "calibrate",
    "medium",
    "overhead",
    "frontier",
    "breakdown",
    "streams",
    "logging",
    "xlarge",
    "soak",
    "cache",
    "cluster",
]
COMMANDS = {
    "calibrate": "python -m bench calibrate",
    "medium": "python -m bench medium",
    "overhead": "python -m bench overhead",
    "frontier": "python -m bench frontier",
    "breakdown": "python -m bench breakdown",
    "streams": "python -m bench streams",
    "logging": "python -m bench logging",
    "xlarge": "python -m bench xlarge",
    "soak": "python -m bench soak",
    "cache": "python -m bench cache",
    "cluster": "python -m bench cluster",
}


def load_docs(out_dir: str) -> dict[str, Doc]:
    docs: dict[str, Doc] = {}
    for path in sorted(glob.glob(os.path.join(out_dir, "*.json"))):
        try:
            with open(path) as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "scenario" in doc:
            docs[doc["scenario"]] = doc
    return docs


def _f(v: Any, nd: int = 2, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def _table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def _errors(c: Doc) -> str:
    return ", ".join(f"{k} {v}" for k, v in c["errors"].items()) or "none"


def _load_rows(cells: list[Doc], extra: list[str]) -> tuple[list[str], list[list[Any]]]:
    head = [
        "target",
        *extra,
        "sent",
        "ok %",
        "errors",
        "thr/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "peak RSS MB",
        "CPU ms/req",
        "generator lag p99 ms",
        "neighbour CPU pressure %",
    ]
    rows = []
    for c in cells:
        lat, res = c["latency_ms"], c["resources"]
        rows.append(
            [
                c["target"],
                *[_f(c.get(k), 0) for k in extra],
                _f(c["sent"]),
                _f((c["success_rate"] or 0) * 100, 2),
                _errors(c),
                _f(c["throughput_rps"], 1),
                _f(lat["p50"]),
                _f(lat["p90"]),
                _f(lat["p99"]),
                _f(lat["p99_9"]),
                _f(lat["max"]),
                _f(res["peak_rss_mb"], 1),
                _f(res["cpu_ms_per_request"], 3),
                _f((c.get("send_lag_ms") or {}).get("p99")),
                _f(c.get("cpu_pressure_pct"), 1),
            ]
        )
    return head, rows


def _section(name: str, doc: Doc, pngs: list[str], out_dir: str) -> str:
    parts = [f"## {name}", ""]
    parts.append(
        f"`{COMMANDS.get(name, 'python -m bench ' + name)}` — {doc['created']}"
        f"{' — **smoke run**' if doc.get('smoke') else ''}; params `{json.dumps(doc['params'])}`"
    )
    if doc.get("skipped"):
        parts.append("")
        parts.append("Skipped: " + "; ".join(f"{k}: {v}" for k, v in doc["skipped"].items()))
    parts.append("")
    cells = doc.get("cells", [])
    if name == "calibrate":
        parts.append(_table(*_load_rows(cells, ["concurrency", "rate"])))
        d = doc["derived"]
        parts += [
            "",
            f"Mock alone: {_f(d.get('mock_max_rps'), 0)} RPS max, "
            f"{_f(d.get('mock_cpu_us_per_request'), 1)} µs CPU per request. Load generator + mock "
            f"on one shared core: p99 <= 10 ms up to {_f(d.get('loadgen_ceiling_rps'), 0)} RPS.",
        ]
    elif name in ("medium", "xlarge"):
        parts.append(_table(*_load_rows(cells, ["mock_latency_ms", "rate"])))
        for peer in PEERS:
            rows = doc["derived"].get(f"bifrost_vs_{peer}") or []
            title = PEER_TITLES[peer]
            if rows:
                parts += [
                    "",
                    f"Bifrost vs {title} (same run):",
                    "",
                    _table(
                        [
                            "mock ms",
                            "rate",
                            "throughput x",
                            f"{title} p50 / Bifrost",
                            f"{title} p99 / Bifrost",
                            f"{title} RSS / Bifrost",
                        ],
                        [
                            [
                                _f(r["mock_latency_ms"], 0),
                                _f(r["rate"], 0),
                                _f(r["throughput_x"]),
                                _f(r[f"{peer}_p50_over_bifrost"]),
                                _f(r[f"{peer}_p99_over_bifrost"]),
                                _f(r[f"{peer}_rss_over_bifrost"]),
                            ]
                            for r in rows
                        ],
                    ),
                ]
    elif name == "overhead":
        parts.append(_table(*_load_rows(cells, [])))
        rows = [
            [
                k,
                _f(v["added_p50_us"], 0),
                _f(v["added_p90_us"], 0),
                _f(v["added_p99_us"], 0),
                _f(v["x_bf_overhead_us"]["p50"], 0),
                _f(v["x_bf_overhead_us"]["p99"], 0),
            ]
            for k, v in doc["derived"].items()
            if k != "rounds"
        ]
        parts += [
            "",
            _table(
                [
                    "target",
                    "added p50 µs",
                    "added p90 µs",
                    "added p99 µs",
                    "x-bf-overhead-us p50",
                    "x-bf-overhead-us p99",
                ],
                rows,
            ),
        ]
        rounds = doc["derived"].get("rounds")
        if rounds:
            each = [
                [str(i), _f(r["added_p50_us"], 0), _f(r["added_p90_us"], 0), _f(r["added_p99_us"], 0)]
                for i, r in enumerate(rounds["each"], 1)
            ]
            verdict = "every round within" if rounds["all_within_targets"] else "NOT every round within"
            limits = rounds["targets_us"]
            parts += [
                "",
                f"Bifrost, {len(each)} rounds in a row (direct re-measured each round); {verdict} the c=1 "
                f"targets (added p50 <= {limits['p50']:.0f} µs, p99 <= {limits['p99']:.0f} µs):",
                "",
                _table(["round", "added p50 µs", "added p90 µs", "added p99 µs"], each),
            ]
    elif name == "frontier":
        parts.append(_table(*_load_rows(cells, ["rate"])))
        d = doc["derived"]
        rows = [
            [
                k,
                _f(v["max_sustained_rps"], 0),
                _f(v["throughput_at_max"], 1),
                _f(v["p99_at_max_ms"]),
                _f(v["first_failed_rate"], 0),
                _f(v["peak_rss_mb"], 1),
            ]
            for k, v in d.items()
            if isinstance(v, dict) and "max_sustained_rps" in v
        ]
        parts += [
            "",
            _table(
                [
                    "target",
                    "max sustained RPS",
                    "throughput at max",
                    "p99 at max ms",
                    "first failed rate",
                    "peak RSS MB",
                ],
                rows,
            ),
        ]
        for peer in PEERS:
            if d.get(f"bifrost_over_{peer}") is not None:
                x = d[f"bifrost_over_{peer}"]
                parts += ["", f"Bifrost / {PEER_TITLES[peer]} sustained rate: **{x}x**."]
        if d.get("direct_at_bifrost_limit"):
            x = d["direct_at_bifrost_limit"]
            parts += [
                "",
                f"Direct-to-mock at Bifrost's first failing rate ({_f(x['rate'], 0)} RPS): "
                f"{'passed' if x['passed'] else 'FAILED'} (p99 {_f(x['p99_ms'])} ms) — "
                f"{'so the limit is the gateway' if x['passed'] else 'the harness is the limit'}.",
            ]
    elif name == "breakdown":
        for c in cells:
            st = c.get("stages", {})
            parts += [
                f"**{_f(c['rate'], 0)} RPS** — ok {_f(c['ok'])}/{_f(c['scheduled'])}, p50 "
                f"{_f(c['latency_ms']['p50'])} ms, p99 {_f(c['latency_ms']['p99'])} ms, x-bf-overhead-us p50 "
                f"{_f(c['x_bf_overhead_us']['p50'], 0)} / p99 {_f(c['x_bf_overhead_us']['p99'], 0)}",
                "",
            ]
            if "error" in st:
                parts += [f"request log unreadable: {st['error']}", ""]
                continue
            parts += [
                _table(
                    ["stage", "mean µs", "p50 µs", "p99 µs", "n"],
                    [
                        [s["stage"], _f(s["mean_us"], 1), _f(s["p50_us"], 1), _f(s["p99_us"], 1), _f(s["n"])]
                        for s in st["stages"]
                    ],
                ),
                "",
            ]
    elif name == "streams":
        head, rows = _load_rows(cells, ["concurrency", "open_rate"])
        parts.append(_table(head, rows))
        for k, rws in doc["derived"].items():
            parts += [
                "",
                f"{k}:",
                "",
                _table(
                    [
                        "streams",
                        "ok",
                        "errors",
                        "stalled",
                        "cut",
                        "added TTFT p50 ms",
                        "added TTFT p99 ms",
                        "added gap p99 ms",
                        "peak RSS MB",
                    ],
                    [
                        [
                            r.get("concurrency") or f"open {r.get('open_rate', 0):g}/s",
                            r["ok"],
                            r["errors"],
                            r["stalled"],
                            r["cut"],
                            _f(r["added_ttft_p50_ms"]),
                            _f(r["added_ttft_p99_ms"]),
                            _f(r["added_gap_p99_ms"]),
                            _f(r["peak_rss_mb"], 1),
                        ]
                        for r in rws
                    ],
                ),
            ]
    elif name == "logging":
        parts.append(_table(*_load_rows(cells, ["round"])))
        d = doc["derived"]
        if d:
            parts += [
                "",
                f"Request log on: {_f(d['throughput_on_rps'], 1)} RPS; off: "
                f"{_f(d['throughput_off_rps'], 1)} RPS; cost **{_f(d['cost_pct'], 1)}%**.",
            ]
    elif name == "soak":
        parts.append(_table(*_load_rows(cells, ["rate"])))
        for k, v in doc["derived"].items():
            parts += [
                "",
                f"{k}: RSS {_f(v['rss_after_warmup_mb'], 1)} MB after warm-up -> "
                f"{_f(v['rss_end_mb'], 1)} MB at the end ({_f(v['growth_pct'], 2)}%).",
            ]
        parts.append(_soak_section(doc))
    elif name == "cache":
        parts.append(_cache_section(doc))
    elif name == "cluster":
        parts.append(_cluster_section(doc))
    for p in pngs:
        parts += ["", f"![{os.path.basename(p)}]({os.path.relpath(p, out_dir)})"]
    return "\n".join(parts) + "\n"


def _soak_section(doc: Doc) -> str:
    """Per cell with the leak samples: faults, the per-minute table, growth per series and the verdict."""
    p = doc.get("params", {})
    th = p.get("thresholds") or {}
    out: list[str] = []
    for c in doc.get("cells", []):
        if "minutes" not in c:
            continue  # a soak result from before the leak check
        out += [
            "",
            f"**{c['target']}**: {c.get('rate', 0):g} RPS for {c['duration_s']:g} s, "
            f"{_f(100 * (c.get('faults') or 0), 0)}% faulted requests"
            + (" (half streamed)" if c.get("mixed") else "")
            + f"; provider timeout {p.get('gateway_timeout_s')} s. Injected faults by kind: "
            + ", ".join(f"{k} {n:,}" for k, n in c["faults_by_kind"].items())
            + f" ({c['faulted']:,} in all; outcomes: "
            + (", ".join(f"`{k}` {n:,}" for k, n in sorted(c["fault_outcomes"].items())) or "none")
            + f"). Unexpected errors (requests without a fault): **{c['unexpected_errors']:,}**"
            + (f" {c['unexpected_by_kind']}" if c["unexpected_by_kind"] else "")
            + ".",
            "",
        ]
        rows = [
            [
                _f(r["minute"], 2),
                _f(r["rss_mb"], 1),
                r["fds"],
                _f(r["tasks"], 0),
                f"{r['ok']:,}",
                " / ".join(str(r["faults"].get(k, 0)) for k in ("timeout", "reset", "cut", "disconnect")),
                r["unexpected"],
            ]
            for r in c["minutes"]
        ]
        out.append(
            _table(
                ["minute", "RSS MB", "fds", "tasks", "ok", "faults: timeout / reset / cut / disconnect", "unexpected"],
                rows,
            )
        )
        g = c["growth"]
        before, after = c["idle_before"], c["idle_after"]
        out += [
            "",
            "After warm-up -> last 10 % of the run: "
            + "; ".join(
                f"{label} {_f(g[key]['after_warmup'], 1)} -> {_f(g[key]['end'], 1)} ({_f(g[key]['change_pct'], 1)}%)"
                for key, label in (("rss_mb", "RSS MB"), ("fds", "fds"), ("tasks", "tasks"))
            )
            + f". Idle before the load -> {p.get('idle_s', 0):g} s after it: fds {before['fds']} -> {after['fds']}, "
            f"tasks {_f(before.get('tasks'), 0)} -> {_f(after.get('tasks'), 0)}.",
            "",
            f"Verdict: **{'flat' if c['verdict']['flat'] else 'NOT flat'}** (thresholds: RSS growth after warm-up "
            f"<= {th.get('rss_growth_max_pct')} %, fds <= idle baseline + {th.get('fds_slack')} and tasks <= "
            f"baseline + {th.get('tasks_slack')} after the load, unexpected errors <= "
            f"{_f(100 * (th.get('unexpected_max_share') or 0), 2)} % of unfaulted requests; RSS "
            f"{'ok' if c['verdict']['rss_ok'] else 'FAIL'}, fds {'ok' if c['verdict']['fds_ok'] else 'FAIL'}, "
            f"tasks {({True: 'ok', False: 'FAIL', None: 'not exposed'})[c['verdict']['tasks_ok']]}, errors "
            f"{'ok' if c['verdict']['errors_ok'] else 'FAIL'}).",
        ]
    return "\n".join(out)


def _cluster_section(doc: Doc) -> str:
    """1 vs 2 instances behind nginx, embedded stores vs PostgreSQL + Redis: each cell's best round, and
    how throughput scales."""
    d = doc.get("derived", {})
    rows = []
    for stores, label in (("embedded", "embedded (SQLite)"), ("cluster", "PostgreSQL + Redis")):
        for n in (1, 2):
            r = d.get(f"{stores}_x{n}")
            if not r:
                continue
            rounds = ", ".join(_f(x, 0) for x in r.get("throughput_rps_rounds", []))
            rows.append(
                [
                    label,
                    str(n),
                    _f(r["throughput_rps_best"], 0),
                    rounds,
                    _f(r["p50_ms"], 2),
                    _f(r["p99_ms"], 2),
                    _f(r.get("pg_log_rows_per_s"), 0),
                ]
            )
    head = ["stores", "instances", "RPS (best round)", "RPS per round", "p50 ms", "p99 ms", "PG log rows/s"]
    parts = [_table(head, rows), ""]
    for key, text in (
        ("scaling_1_to_2_embedded", "1 -> 2 instances, embedded stores"),
        ("scaling_1_to_2_cluster", "1 -> 2 instances, PostgreSQL + Redis"),
        ("cluster_over_embedded_x1", "PostgreSQL + Redis / embedded, 1 instance"),
        ("cluster_over_embedded_x2", "PostgreSQL + Redis / embedded, 2 instances"),
    ):
        if d.get(key) is not None:
            parts.append(f"- {text}: **{_f(d[key], 2)}x**")
    return "\n".join(parts)


def _cache_section(doc: Doc) -> str:
    from bench.scenarios.cache import checks

    d = doc.get("derived", {})
    rows = [
        [
            label,
            _f(r["ok"]),
            _f(r["errors"]),
            _f(r.get("upstream_calls")),
            _f(r["p50_ms"], 3),
            _f(r["p99_ms"], 3),
            _f(r.get("ttft_p50_ms"), 3),
            _f(r.get("ttft_p99_ms"), 3),
            _f(r.get("x_bf_overhead_us_p50"), 0),
        ]
        for label, r in d.get("c1", {}).items()
    ]
    head = ["c=1 cell", "ok", "errors", "upstream calls", "p50 ms", "p99 ms", "TTFT p50 ms", "TTFT p99 ms"]
    parts = [_table([*head, "x-bf-overhead-us p50"], rows), ""]
    f_rows = [
        [
            k,
            _f(v["max_sustained_rps"], 0),
            _f(v["throughput_at_max"], 1),
            _f(v["p99_at_max_ms"]),
            _f(v["first_failed_rate"], 0),
            _f(v.get("upstream_calls")),
        ]
        for k, v in d.get("frontier", {}).items()
    ]
    if f_rows:
        head = ["frontier", "max sustained RPS", "throughput at max", "p99 at max ms", "first failed rate"]
        parts += [_table([*head, "upstream calls"], f_rows), ""]
    parts += [f"- {line}" for line in checks(d)]
    return "\n".join(parts)


def write_report(out_dir: str) -> str:
    """Render ``out_dir/REPORT.md`` (and ``out_dir/charts/*.png``) from the results there."""
    docs = load_docs(out_dir)
    pngs = charts.draw(docs, os.path.join(out_dir, "charts"))
    goals = evaluate(docs)
    any_doc = next(iter(docs.values()), None)
    lines = [
        "# Bifrost benchmark report",
        "",
        "Generated by `python -m bench report` from the JSON beside this file. Method: bench/README.md.",
        "",
    ]
    if any_doc:
        m = any_doc["machine"]
        lines += [
            f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gb']} GB, kernel {m['kernel']}, "
            f"Python {m['python']}; commit {m['commit']}{' (dirty)' if m.get('dirty') else ''}. "
            f"Pinning: {any_doc['layout']}. Gateway workers: {any_doc.get('gateway_workers', 1)}.",
            "",
        ]
    lines += [
        "## Targets",
        "",
        _table(
            ["goal", "target", "status", "measured", "detail"],
            [[g["goal"], g["target"], g["status"], g["measured"], g["detail"]] for g in goals],
        ),
        "",
    ]
    lines += peers_section(docs)
    for name in ORDER:
        if name in docs:
            lines.append(_section(name, docs[name], pngs.get(name, []), out_dir))
    path = os.path.join(out_dir, "REPORT.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path
