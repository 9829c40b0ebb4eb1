"""What a PromQL query in our dashboards and rules may name: the series the system exports
(internal/observability/metrics.py), `up` and the process_* metrics, each with its labels."""

from __future__ import annotations

import re
from functools import cache

import promql_parser
from prometheus_client import Counter, Gauge, Histogram

from internal.observability import metrics

# Labels every scraped series has: Prometheus's job and instance, and the target's service
# (observability/prometheus/targets/*.json and the worker relabelling).
TARGET_LABELS = frozenset({"job", "instance", "service"})
# prometheus_client's process collector (Linux).
PROCESS_METRICS = (
    "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
    "process_virtual_memory_bytes", "process_resident_memory_bytes",
    "process_start_time_seconds",
)  # fmt: skip


@cache
def exported_series() -> dict[str, frozenset[str]]:
    """Each series name the system exports, with its label names (target labels included):
    counters as <name>_total, histograms as <name>_bucket (with le), _sum and _count."""
    series: dict[str, frozenset[str]] = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, Counter | Gauge | Histogram):
            continue
        # prometheus_client keeps a metric's name and label names only in these attributes.
        name: str = metric._name
        labels = TARGET_LABELS | set(metric._labelnames)
        if isinstance(metric, Counter):
            series[f"{name}_total"] = labels
        elif isinstance(metric, Histogram):
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = labels
            series[f"{name}_count"] = labels
        else:
            series[name] = labels
    return series


@cache
def known_series() -> dict[str, frozenset[str]]:
    """Every series a query may select, with its labels."""
    known = dict(exported_series())
    for name in ("up", *PROCESS_METRICS):
        known[name] = TARGET_LABELS
    return known


def exported_base_names() -> set[str]:
    """The names EXPORTED_NAMES should list: series names without the histogram suffixes."""
    names = set()
    for name in exported_series():
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and f"{name.removesuffix(suffix)}_bucket" in exported_series():
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def problems(query: str) -> list[str]:
    """What is wrong with a PromQL query: a syntax error, a series we do not export, a label
    the selected series do not have. Empty when it is fine."""
    try:
        expr = promql_parser.parse(query)
    except ValueError as error:
        return [f"does not parse: {error}"]
    found: list[str] = []
    known = known_series()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.extend(_selector_problems(node, known))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels = _labels_under(node.expr, known)
            if node.modifier.type == promql_parser.AggModifierType.By:
                for label in node.modifier.labels:
                    if labels and label not in labels:
                        found.append(f"aggregates by {label!r}, a label none of its series has")

    promql_parser.walk(expr, visit)
    return found


def _selector_problems(
    node: promql_parser.VectorSelector, known: dict[str, frozenset[str]]
) -> list[str]:
    if node.name is None:
        return [f"selector {node} names no metric"]
    if node.name not in known:
        return [f"{node.name} is not a metric the system exports"]
    return [
        f"{node.name} has no label {matcher.name!r}"
        for matcher in node.matchers.matchers
        if matcher.name not in known[node.name]
    ]


def _labels_under(expr: promql_parser.Expr, known: dict[str, frozenset[str]]) -> set[str]:
    labels: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name in known:
            labels.update(known[node.name])

    promql_parser.walk(expr, visit)
    return labels


_GRAFANA_INTERVALS = re.compile(r"\$\{?__(?:rate_interval|interval|range)(?:_ms|_s)?\}?")
_GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")


def without_grafana_variables(query: str) -> str:
    """A dashboard query as Prometheus receives it: Grafana's intervals as 5m, and template
    variables (used in regex matchers) as their "All" value .+"""
    return _GRAFANA_VARIABLE.sub(".+", _GRAFANA_INTERVALS.sub("5m", query))


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def variable_problems(query: str) -> list[str]:
    """What is wrong with a Grafana `label_values(series{...}, label)` variable query."""
    match = _LABEL_VALUES.match(query.strip())
    if match is None:
        return [f"{query!r} is not label_values(<series>, <label>)"]
    selector = without_grafana_variables(match["selector"])
    found = problems(selector)
    if found:
        return found
    expr = promql_parser.parse(selector)
    if not isinstance(expr, promql_parser.VectorSelector) or expr.name is None:
        return [f"{selector!r} is not one series"]
    if match["label"] not in known_series()[expr.name]:
        return [f"{expr.name} has no label {match['label']!r}"]
    return []
