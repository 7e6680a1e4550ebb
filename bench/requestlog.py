"""Per-stage timings from Bifrost's request log (``<app-dir>/logs.db``, table ``logs``).

Read after the gateway has exited: SIGTERM makes it flush the buffered records.  The stage columns
are the published breakdown's rows: queue wait, key selection, request build (message formatting),
JSON encode (marshalling), upstream (HTTP request) and response parse.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import numpy as np

STAGES = [
    ("queue_wait_us", "Queue wait"),
    ("key_select_us", "Key selection"),
    ("build_us", "Message formatting (build)"),
    ("encode_us", "JSON marshalling (encode)"),
    ("upstream_us", "HTTP request (upstream)"),
    ("parse_us", "Response parsing"),
    ("overhead_us", "Gateway overhead (total - upstream)"),
    ("latency_us", "Total latency"),
]


def read_stages(db_path: str) -> dict[str, Any]:
    """Row counts and mean/p50/p99 (µs) per stage over successful requests; {"error": ...} if unreadable."""
    if not os.path.exists(db_path):
        return {"error": f"no request log at {db_path}"}
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        return {"error": str(exc)}
    try:
        cols = {row[1] for row in con.execute("PRAGMA table_info(logs)")}
        present = [c for c, _ in STAGES if c in cols]
        if not present:
            return {"error": "table logs has none of the stage columns"}
        rows = con.execute(f"SELECT {', '.join(present)} FROM logs WHERE status = 200").fetchall()
        total = con.execute("SELECT COUNT(*) FROM logs").fetchone()[0]
    except sqlite3.Error as exc:
        return {"error": str(exc)}
    finally:
        con.close()
    out: dict[str, Any] = {"rows": total, "ok_rows": len(rows), "stages": []}
    arr = np.asarray([[(v if v is not None else np.nan) for v in r] for r in rows], dtype=np.float64)
    for i, col in enumerate(present):
        label = dict(STAGES)[col]
        v = arr[:, i] if len(rows) else np.zeros(0)
        v = v[~np.isnan(v)]
        out["stages"].append(
            {
                "column": col,
                "stage": label,
                "n": int(v.size),
                "mean_us": round(float(v.mean()), 1) if v.size else None,
                "p50_us": round(float(np.percentile(v, 50)), 1) if v.size else None,
                "p99_us": round(float(np.percentile(v, 99)), 1) if v.size else None,
            }
        )
    missing = [c for c, _ in STAGES if c not in cols]
    if missing:
        out["missing_columns"] = missing
    return out
