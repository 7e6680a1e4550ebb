"""What the offline guardrail detectors cost per request: microseconds per 2 KB prompt.

    python -m bench.guardrails_detectors [--seconds 2]

Runs each detector's `scan` (built as a config would build it: pii with every entity, secrets with every
type) over two prompts of ~2 KB: ordinary English with numbers, dates and versions in it but nothing to
find (the common case), and the same prompt carrying a card number, an e-mail and an API key. Prints the
median of several timed batches per (detector, prompt), for pii, secrets, size, and pii + secrets
together: the issue's budget is <= 100 us for all built-in detectors on a typical 2 KB prompt, of which
this brief allots ~60 us to pii + secrets. The keys and numbers in the prompts are public test values.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from runtime.guardrails.detectors import pii, secrets, size
from runtime.guardrails.types import Subject

_PARAGRAPHS = (
    "Hi! I'm preparing the quarterly review for our platform team and would like help turning my notes "
    "into a short report. In Q3 2024 we shipped 14 releases (v2.3.0 through v2.9.4), closed 312 tickets "
    "and cut the p95 latency of the checkout service from 420 ms to 260 ms.",
    "The migration to Python 3.11 finished on 2024-09-17; the old cluster (nodes 1 to 12) was drained over "
    "two weekends. Costs went down by about 18% month over month, mostly thanks to the smaller instances "
    "and the cache hit ratio rising to 0.83. Note: the numbers for September are still provisional.",
    "Please keep the tone factual, avoid buzzwords, and use headings for Delivery, Reliability, Costs and "
    "Next steps. For reliability, mention the two incidents: the DNS outage on 3 August (47 minutes) and "
    "the queue backlog on 21 September (2 hours 10 minutes), with what we changed after each one.",
    "Next quarter we plan to finish the move to the new build system, retire the legacy reporting jobs, "
    "and run a load test at 5,000 requests per second against the staging environment. Budget owners are "
    "Alice, Bruno and Chen; the review meeting is at 10:30 on Thursday in room 4.12.",
    "Finally, add a one-paragraph summary at the top for the leadership team, written for readers who do "
    "not know the details of the system. Thanks a lot for your help with this, it is much appreciated!",
)
PLAIN = "\n\n".join(_PARAGRAPHS)
PLAIN = (PLAIN + "\n\n" + PLAIN)[:2048]
# Public test values: Visa's test card, an example address, AWS's documented example key id.
WITH_FINDINGS = (
    PLAIN[:700]
    + " My card is 4111 1111 1111 1111, write to jane.doe@example.com. "
    + PLAIN[700:1400]
    + " The key is AKIAIOSFODNN7EXAMPLE. "
    + PLAIN[1400:]
)[:2100]


def _time(fn: Callable[[], object], seconds: float) -> tuple[float, float]:
    """(median, best) microseconds per call over batches of 200 filling `seconds`. Both, because on a
    shared machine the median carries other processes' noise; the best batch is the code's own cost."""
    fn()  # warm (imports, regex caches)
    batch = 200
    results: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(results) < 5:
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        results.append((time.perf_counter() - t0) / batch * 1e6)
    return statistics.median(results), min(results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per measurement (default 2)")
    args = parser.parse_args(argv)
    detectors = {
        "pii": pii.build({}, "bench", [], 1.0),
        "secrets": secrets.build({}, "bench", [], 1.0),
        "size": size.build({"max_prompt_tokens": 8000, "max_messages": 50, "max_chars": 100000}, "bench", [], 1.0),
    }
    body = {"messages": [{"role": "user", "content": PLAIN}]}
    print(f"prompt sizes: plain {len(PLAIN)} chars, with findings {len(WITH_FINDINGS)} chars")
    print(f"{'detector':<14}{'plain: median / best us':>26}{'findings: median / best us':>30}  found")
    for label, text in (("plain", PLAIN), ("findings", WITH_FINDINGS)):
        subject = Subject("input", [text], body=body)
        for name, detector in detectors.items():
            found = detector.scan(subject)
            assert label == "findings" or name == "size" or not found, f"{name} found {[f.type for f in found]}"
    rows: list[tuple[str, tuple[float, float], tuple[float, float], str]] = []
    for name, detector in (*detectors.items(), ("pii+secrets", None)):
        cost: list[tuple[float, float]] = []
        found_types = ""
        for text in (PLAIN, WITH_FINDINGS):
            subject = Subject("input", [text], body={"messages": [{"role": "user", "content": text}]})
            if detector is None:
                p, s = detectors["pii"], detectors["secrets"]
                cost.append(_time(lambda p=p, s=s, subject=subject: (p.scan(subject), s.scan(subject)), args.seconds))
                found = p.scan(subject) + s.scan(subject)
            else:
                cost.append(_time(lambda d=detector, subject=subject: d.scan(subject), args.seconds))
                found = detector.scan(subject)
            found_types = ",".join(f.type for f in found)
        rows.append((name, cost[0], cost[1], found_types))
    for name, plain, with_findings, found_types in rows:
        cells = f"{plain[0]:>18.1f} / {plain[1]:>5.1f}{with_findings[0]:>22.1f} / {with_findings[1]:>5.1f}"
        print(f"{name:<14}{cells}  {found_types}")


if __name__ == "__main__":
    main()
