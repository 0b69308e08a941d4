"""The Grafana dashboard is well formed and charts only metrics the services declare (and
the alert rules name only those).

Metric names and label sets are read from every service's ``metrics.py`` (the one place a
metric is declared) and cross-checked against prometheus-client's registry; the catalogue in
docs/observability.md must list the same metrics with the same types and labels.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from tests.helpers import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "triage-dashboard.json"
OBSERVABILITY = REPO_ROOT / "docs" / "observability.md"
METRICS_FILES = (
    REPO_ROOT / "libs" / "runtime" / "triage_runtime" / "metrics.py",
    *sorted(REPO_ROOT.glob("services/*/triage_*/metrics.py")),
)

ROWS = ("Is it flowing?", "How fast?", "Is the model healthy?", "Humans")
HIGH_CARDINALITY = ("document_id", "trace_id", "event_id")
# Every scraped series carries the target's labels as well as its own.
TARGET_LABELS = frozenset({"job", "instance"})
GRAFANA_DURATIONS = ("__rate_interval", "__interval", "__range")


@dataclass(frozen=True)
class Metric:
    """A metric as declared: its name, prometheus-client type and label names."""

    name: str
    kind: str
    labels: frozenset[str]

    @property
    def series(self) -> frozenset[str]:
        """The series names Prometheus stores for this metric."""
        if self.kind == "counter":
            return frozenset({self.name if self.name.endswith("_total") else f"{self.name}_total"})
        if self.kind == "histogram":
            return frozenset(f"{self.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        return frozenset({self.name})


def _metric(name: str, kind: str, *labels: str) -> Metric:
    return Metric(name, kind, frozenset(labels))


# Being added by other changes right now; once declared in code, the code's version is used
# (and must agree with what is written here).
BEING_ADDED = {
    m.name: m
    for m in (
        _metric("triage_consumer_lag", "gauge", "service", "topic", "partition"),
        _metric("triage_drift_psi", "gauge", "model_version", "model_role", "signal"),
        _metric("triage_drift_centroid_distance", "gauge", "model_version", "model_role"),
        _metric("triage_drift_window_documents", "gauge", "model_version", "model_role"),
        _metric(
            "triage_review_decisions_total", "counter", "model_version", "model_role", "outcome"
        ),
    )
}
# Prometheus's own per-target series: whether the scrape worked ("is the service there at all").
PROMETHEUS_OWN = {"up": _metric("up", "gauge")}

_KINDS = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary"}


def _declared_in(path: Path) -> list[Metric]:
    """The metrics a ``metrics.py`` declares, read from its source."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in _KINDS:
            assert node.func.id not in {"Info", "Enum"}, f"{path}: teach this test {node.func.id}"
            continue
        name = node.args[0]
        assert isinstance(name, ast.Constant) and isinstance(name.value, str), path
        labels: ast.expr | None = node.args[2] if len(node.args) > 2 else None
        for keyword in node.keywords:
            if keyword.arg == "labelnames":
                labels = keyword.value
        label_names: list[str] = []
        if labels is not None:
            assert isinstance(labels, ast.List | ast.Tuple), f"{path}: labels must be literal"
            for item in labels.elts:
                assert isinstance(item, ast.Constant) and isinstance(item.value, str), path
                label_names.append(item.value)
        found.append(Metric(name.value, _KINDS[node.func.id], frozenset(label_names)))
    return found


@cache
def declared() -> dict[str, Metric]:
    """Every metric declared in a ``metrics.py``, by name."""
    metrics = [m for path in METRICS_FILES for m in _declared_in(path)]
    by_name = {m.name: m for m in metrics}
    assert len(by_name) == len(metrics), "a metric name is declared twice"
    return by_name


@cache
def catalogue() -> dict[str, Metric]:
    """What a dashboard may chart: declared metrics, those being added, and ``up``."""
    return {**BEING_ADDED, **PROMETHEUS_OWN, **declared()}


@cache
def by_series() -> dict[str, Metric]:
    """Each stored series name (``_total``, ``_bucket``…) mapped to its metric."""
    return {series: m for m in catalogue().values() for series in m.series}


@cache
def dashboard() -> dict[str, Any]:
    """The dashboard JSON model."""
    model: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return model


def panels() -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and panels folded into collapsed rows."""
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def charts() -> list[dict[str, Any]]:
    """The panels that query Prometheus."""
    return [p for p in panels() if p.get("targets")]


def exprs() -> list[tuple[str, str, str]]:
    """(panel title, legend format, PromQL) for every target."""
    return [
        (p["title"], t.get("legendFormat", ""), t["expr"]) for p in charts() for t in p["targets"]
    ]


def variables() -> list[dict[str, Any]]:
    """The dashboard's template variables."""
    found: list[dict[str, Any]] = dashboard()["templating"]["list"]
    return found


def _variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return str(query["query"] if isinstance(query, dict) else query)


# ---------------------------------------------------------------- a small PromQL reader

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_RANGE = re.compile(r"\[[^\]]*\]")
_MODIFIER = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_IDENT = re.compile(r"(?<![\w.:$])[A-Za-z_:][\w:]*")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "atan2", "inf", "nan"}
)


@dataclass
class Query:
    """What a PromQL expression names: series, label matchers per series, grouping labels."""

    series: set[str] = field(default_factory=set)
    matchers: dict[str, set[str]] = field(default_factory=dict)
    grouping: set[str] = field(default_factory=set)


def parse(expr: str) -> Query:
    """Pick the series names and the labels an expression groups or filters by."""
    query = Query()
    text = _RANGE.sub("", _STRING.sub('""', expr))
    for match in _MODIFIER.finditer(text):
        query.grouping |= {label.strip() for label in match[2].split(",") if label.strip()}
    text = _MODIFIER.sub(" ", text)
    for match in _SELECTOR.finditer(text):
        name = match[1]
        assert name and name not in _KEYWORDS, f"selector without a metric name in {expr!r}"
        query.matchers.setdefault(name, set()).update(_MATCHER.findall(match[2]))
    text = _SELECTOR.sub(lambda m: f" {m[1]} ", text)
    for match in _IDENT.finditer(text):
        if match[0] in _KEYWORDS or re.match(r"\s*\(", text[match.end() :]):
            continue  # a keyword, or a function or aggregation applied to what follows
        query.series.add(match[0])
    query.series |= set(query.matchers)
    return query


def test_the_promql_reader_finds_names_and_labels() -> None:
    query = parse(
        "histogram_quantile(0.95, sum by (le, model_version) (rate("
        'triage_classifier_score_seconds_bucket{model_version=~"$model_version"}'
        "[$__rate_interval]))) / ignoring (x) group_left 1e3 * up offset 5m"
    )
    assert query.series == {"triage_classifier_score_seconds_bucket", "up"}
    assert query.grouping == {"le", "model_version", "x"}
    assert query.matchers == {"triage_classifier_score_seconds_bucket": {"model_version"}}


# ---------------------------------------------------------------- the dashboard's shape


def test_the_dashboard_is_a_grafana_dashboard_model() -> None:
    model = dashboard()
    assert model["schemaVersion"] == 39
    assert model["title"] and model["uid"]
    assert model.get("id") is None, "an exported id would clash on import"
    ids = [p["id"] for p in panels()]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels():
        grid = panel.get("gridPos")
        assert grid, f"{panel['title']}: no gridPos"
        assert all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel.get("type"), panel["title"]


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = cells.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{panel['title']!r} overlaps {other!r}"


def test_every_query_goes_to_the_datasource_variable() -> None:
    (datasource,) = [v for v in variables() if v["name"] == "datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    expected = {"type": "prometheus", "uid": "${datasource}"}
    for panel in charts():
        assert panel.get("datasource") == expected, panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{panel['title']}: refIds repeat"
        for target in panel["targets"]:
            assert target.get("datasource") == expected, panel["title"]
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), panel["title"]
    for variable in variables():
        if variable["type"] == "query":
            assert variable["datasource"] == expected, variable["name"]


def test_the_model_version_and_service_variables_are_used() -> None:
    names = {v["name"] for v in variables()}
    assert {"datasource", "service", "model_version"} <= names
    text = " ".join(expr for _, _, expr in exprs())
    for name in ("service", "model_version"):
        assert f"${name}" in text, f"${name} is defined but no panel uses it"
    for _, _, expr in exprs():
        for used in re.findall(r"\$\{?(\w+)", expr):
            assert used in names or used in GRAFANA_DURATIONS, f"${used} undefined in {expr!r}"


def test_rows_come_in_order_and_hold_what_the_issue_asks() -> None:
    top = dashboard()["panels"]
    rows = [p for p in top if p["type"] == "row"]
    assert [r["title"] for r in rows] == list(ROWS)
    wanted = {
        "Is it flowing?": {
            "triage_events_consumed_total",
            "triage_events_produced_total",
            "triage_consumer_lag",
            "triage_dead_letters_total",
        },
        "How fast?": {
            "triage_end_to_end_seconds",
            "triage_classifier_extract_seconds",
            "triage_classifier_score_seconds",
            "triage_ingest_uploads_total",
        },
        "Is the model healthy?": {
            "triage_classifier_confidence",
            "triage_classifier_predictions_total",
            "triage_classifier_model_info",
            "triage_classifier_model_load_seconds",
            "triage_classifier_extraction_failures_total",
            "triage_drift_psi",
            "triage_drift_centroid_distance",
        },
        "Humans": {
            "triage_review_queue_open_items",
            "triage_review_queue_oldest_age_seconds",
            "triage_review_queue_overdue_items",
            "triage_review_decisions_total",
            "triage_live_precision_ratio",
            "triage_live_precision_lower_bound_ratio",
            "triage_live_precision_target_ratio",
            "triage_quality_samples_decided",
        },
    }
    charted: dict[str, set[str]] = {title: set() for title in ROWS}
    for panel in top:
        if panel["type"] == "row" or not panel.get("targets"):
            continue
        above = [r for r in rows if r["gridPos"]["y"] < panel["gridPos"]["y"]]
        assert above, f"{panel['title']!r} is above the first row"
        for target in panel["targets"]:
            charted[above[-1]["title"]] |= {
                by_series()[s].name for s in parse(target["expr"]).series if s in by_series()
            }
    for title, metrics in wanted.items():
        assert metrics <= charted[title], f"{title}: missing {sorted(metrics - charted[title])}"


def test_every_chart_says_what_healthy_and_unhealthy_look_like() -> None:
    for panel in charts():
        description = panel.get("description", "")
        assert "Healthy:" in description and "Unhealthy:" in description, panel["title"]


# ---------------------------------------------------------------- the metrics it names


def test_every_metric_charted_is_declared_or_being_added() -> None:
    unknown = [
        (title, series)
        for title, _, expr in exprs()
        for series in parse(expr).series
        if series not in by_series()
    ]
    assert not unknown, f"panels name metrics no service declares: {unknown}"


def test_variables_query_declared_metrics_and_labels() -> None:
    for variable in variables():
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", _variable_query(variable))
        assert match, f"{variable['name']}: expected label_values(metric, label)"
        assert match[1] in by_series(), f"{variable['name']}: unknown metric {match[1]}"
        assert match[2] in by_series()[match[1]].labels, f"{variable['name']}: no {match[2]}"


def test_labels_grouped_filtered_and_shown_exist_on_the_metrics() -> None:
    for title, legend, expr in exprs():
        query = parse(expr)
        available = set(TARGET_LABELS)
        for series in query.series & by_series().keys():
            available |= by_series()[series].labels | (
                {"le"} if series.endswith("_bucket") else set()
            )
        for series, labels in query.matchers.items():
            own = by_series()[series].labels | TARGET_LABELS
            if series.endswith("_bucket"):
                own |= {"le"}
            assert labels <= own, f"{title}: {series} has no label {sorted(labels - own)}"
        assert query.grouping <= available, f"{title}: no label {query.grouping - available}"
        shown = set(_LEGEND.findall(legend))
        assert shown <= available, f"{title}: legend shows {shown - available}"


def test_no_query_groups_or_filters_by_a_per_document_label() -> None:
    for title, legend, expr in exprs():
        query = parse(expr)
        filtered = {label for labels in query.matchers.values() for label in labels}
        used = query.grouping | filtered | set(_LEGEND.findall(legend))
        assert not used & set(HIGH_CARDINALITY), f"{title}: {used & set(HIGH_CARDINALITY)}"
        for label in HIGH_CARDINALITY:
            assert label not in expr and label not in legend, f"{title} mentions {label}"
    for metric in catalogue().values():
        assert not metric.labels & set(HIGH_CARDINALITY), f"{metric.name} is labelled by an id"


# The signals the issue asks for, each with the labels a panel must break it down by.
SIGNALS: dict[str, tuple[str, frozenset[str]]] = {
    "events consumed by topic and outcome": (
        "triage_events_consumed_total",
        frozenset({"topic", "outcome"}),
    ),
    "events produced by topic": ("triage_events_produced_total", frozenset({"topic"})),
    "processing time: extraction": ("triage_classifier_extract_seconds", frozenset({"le"})),
    "processing time: scoring": ("triage_classifier_score_seconds", frozenset({"le"})),
    "end-to-end latency from receipt to routing": (
        "triage_end_to_end_seconds",
        frozenset({"le"}),
    ),
    "confidence histogram by model version and role": (
        "triage_classifier_confidence",
        frozenset({"le", "model_version", "model_role"}),
    ),
    "predicted-label counts by model version and role": (
        "triage_classifier_predictions_total",
        frozenset({"model_version", "model_role", "label"}),
    ),
    "review queue depth": ("triage_review_queue_open_items", frozenset({"reason"})),
    "review queue oldest age": ("triage_review_queue_oldest_age_seconds", frozenset()),
    "reviewer override rate": (
        "triage_review_decisions_total",
        frozenset({"model_version"}),
    ),
    "live precision's lower bound by label": (
        "triage_live_precision_lower_bound_ratio",
        frozenset({"label"}),
    ),
    "dead letters by error class": ("triage_dead_letters_total", frozenset({"error_class"})),
    "consumer lag per partition": ("triage_consumer_lag", frozenset({"partition"})),
    "model load time": ("triage_classifier_model_load_seconds", frozenset()),
    "extraction failures by reason": (
        "triage_classifier_extraction_failures_total",
        frozenset({"reason"}),
    ),
}


@pytest.mark.parametrize("signal", SIGNALS)
def test_every_signal_in_the_issue_has_a_panel(signal: str) -> None:
    metric, labels = SIGNALS[signal]
    for _, _, expr in exprs():
        query = parse(expr)
        names = {by_series()[s].name for s in query.series if s in by_series()}
        if metric in names and labels <= query.grouping:
            return
    pytest.fail(f"no panel shows {signal} ({metric} by {sorted(labels)})")


def test_the_override_rate_is_overridden_over_all_decisions() -> None:
    for _, _, expr in exprs():
        if 'outcome="overridden"' in expr.replace(" ", ""):
            numerator, _, denominator = expr.partition(" / ")
            assert "triage_review_decisions_total" in numerator
            assert "triage_review_decisions_total" in denominator
            assert "outcome" not in denominator, "the denominator must be every decision"
            return
    pytest.fail("no panel shows the override rate")


def test_every_expression_parses_as_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (apt-get install prometheus)"
    names = {v["name"] for v in variables()}

    def concrete(expr: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match[1]
            if name in GRAFANA_DURATIONS:
                return "5m"
            assert name in names, f"${name} is not a dashboard variable"
            return ".*"

        return re.sub(r"\$\{?(\w+)\}?", value, expr)

    rules = [
        {"record": f"dashboard:query_{i}", "expr": concrete(expr)}
        for i, (_, _, expr) in enumerate(exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- the code and the docs


def test_the_source_reader_finds_names_types_and_labels(tmp_path: Path) -> None:
    source = tmp_path / "metrics.py"
    source.write_text(
        "A = Counter('a_total', 'A.', ['x', 'y'])\n"
        "B = Histogram('b_seconds', 'B.', labelnames=('z',), buckets=(1, 2))\n"
        "C = Gauge('c', 'C.')\n"
    )
    assert _declared_in(source) == [
        _metric("a_total", "counter", "x", "y"),
        _metric("b_seconds", "histogram", "z"),
        _metric("c", "gauge"),
    ]
    assert _metric("b_seconds", "histogram").series == {
        "b_seconds_bucket",
        "b_seconds_sum",
        "b_seconds_count",
    }
    assert _metric("a", "counter").series == {"a_total"}


def test_the_source_reading_agrees_with_the_registry() -> None:
    def family(metric: Metric) -> tuple[str, str]:
        # prometheus-client names a counter's family without its _total suffix.
        name = metric.name.removesuffix("_total") if metric.kind == "counter" else metric.name
        return name, metric.kind

    registered = set()
    for path in METRICS_FILES:
        module = importlib.import_module(f"{path.parent.name}.metrics")
        objects = [v for v in vars(module).values() if isinstance(v, MetricWrapperBase)]
        in_module = {(f.name, f.type) for metric in objects for f in metric.describe()}
        assert in_module == {family(m) for m in _declared_in(path)}, path
        registered |= in_module
    assert registered <= {(f.name, f.type) for f in REGISTRY.collect()}


def test_metrics_being_added_match_what_the_dashboard_assumes() -> None:
    for name, expected in BEING_ADDED.items():
        landed = declared().get(name)
        if landed is not None:
            assert landed.kind == expected.kind, name
            assert expected.labels <= landed.labels, f"{name}: labels {sorted(landed.labels)}"


def _documented() -> dict[str, tuple[str, frozenset[str]]]:
    rows = re.findall(
        r"^\| `(triage_\w+)` \| (\w+) \| ([^|]*) \|", OBSERVABILITY.read_text(), re.MULTILINE
    )
    found = {name: (kind, frozenset(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}
    assert len(found) == len(rows), "a metric is listed twice in docs/observability.md"
    return found


def test_the_docs_catalogue_matches_the_code() -> None:
    documented = _documented()
    known = {n: (m.kind, m.labels) for n, m in catalogue().items() if n not in PROMETHEUS_OWN}
    assert sorted(documented) == sorted(known), "docs/observability.md and the code differ"
    for name, (kind, labels) in known.items():
        assert documented[name] == (kind, labels), f"{name}: docs say {documented[name]}"


# ---------------------------------------------------------------- the alert rules

ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"


def alert_exprs() -> dict[str, str]:
    """Each alert's PromQL from alerts.yml: one line after ``expr:``, or its ``|`` block."""
    found: dict[str, str] = {}
    name = ""
    lines = ALERTS.read_text().splitlines()
    for number, line in enumerate(lines):
        if match := re.match(r"\s*- alert: (\w+)", line):
            name = match[1]
        elif match := re.match(r"(\s*)expr: (.*)", line):
            if match[2].strip() != "|":
                found[name] = match[2]
                continue
            indent, block = len(match[1]), []
            for following in lines[number + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following.strip())
            found[name] = " ".join(block)
    return found


def test_every_metric_an_alert_names_is_declared_with_the_labels_it_uses() -> None:
    exprs_ = alert_exprs()
    assert "TriageLivePrecisionBelowTarget" in exprs_ and len(exprs_) >= 14
    for alert, expr in exprs_.items():
        query = parse(expr)
        for series in query.series - set(PROMETHEUS_OWN):
            assert series in by_series(), f"{alert} names {series}, which no service declares"
        known = set().union(
            *(by_series()[s].labels for s in query.series if s in by_series()),
            TARGET_LABELS,
            {"le"},  # a histogram's buckets
        )
        assert query.grouping <= known, f"{alert} groups by {sorted(query.grouping - known)}"
