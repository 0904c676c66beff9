"""``template.yaml``'s monitoring: every alarm watches the metric it means to (namespace,
dimensions, statistic, threshold, period, comparison) and notifies the alarm topic; the
TmdbIngest metrics the alarms and the dashboard name are exactly the ones the handler
publishes; a refresh publishes its lag in days; a refresh that failed after Lambda's retries
is kept in a queue; each alarm's description links its part of ``docs/operations.md``."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

import handler
from tests.conftest import TOKEN
from tests.support.cfn import (
    ROOT,
    as_list,
    one_resource,
    parameter_defaults,
    policy_statements,
    resources_of_type,
    sub_text,
)
from tests.support.sfn import load_template
from tests.test_events import KEY, Context
from tmdb_async.events import refresh_lag_days
from tmdb_devtools.csvgen import title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

OPERATIONS = ROOT / "docs" / "operations.md"
SERVICE = [{"Name": "service", "Value": "tmdb-ingest"}]
FUNCTION = [{"Name": "FunctionName", "Value": {"Ref": "IngestFunction"}}]
STATE_MACHINE = [{"Name": "StateMachineArn", "Value": {"Ref": "IngestStateMachine"}}]
QUEUE = [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["RefreshFailures", "QueueName"]}}]
AT_LEAST_ONE = ("GreaterThanOrEqualToThreshold", 1)

#: alarm -> (namespace, metric, dimensions, statistic, period, evaluation periods,
#: (comparison, threshold), treat missing data)
SINGLE_METRIC_ALARMS: dict[str, tuple[Any, ...]] = {
    "StateMachineFailedAlarm": (
        "AWS/States", "ExecutionsFailed", STATE_MACHINE, "Sum", 300, 1, AT_LEAST_ONE,
        "notBreaching",
    ),
    "StateMachineTimedOutAlarm": (
        "AWS/States", "ExecutionsTimedOut", STATE_MACHINE, "Sum", 300, 1, AT_LEAST_ONE,
        "notBreaching",
    ),
    "FunctionErrorsAlarm": (
        "AWS/Lambda", "Errors", FUNCTION, "Sum", 300, 1, AT_LEAST_ONE, "notBreaching",
    ),
    "FunctionThrottlesAlarm": (
        "AWS/Lambda", "Throttles", FUNCTION, "Sum", 300, 1, AT_LEAST_ONE, "notBreaching",
    ),
    "RefreshDroppedAlarm": (
        "AWS/Lambda", "AsyncEventsDropped", FUNCTION, "Sum", 300, 1, AT_LEAST_ONE,
        "notBreaching",
    ),
    "RefreshFailuresQueueAlarm": (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", QUEUE, "Maximum", 300, 1,
        ("GreaterThanThreshold", 0), "notBreaching",
    ),
    "FailedIdsAlarm": (
        "TmdbIngest", "failed", SERVICE, "Sum", 300, 1, AT_LEAST_ONE, "notBreaching",
    ),
    # Two daily data points above 2 days (1 is current), or missing: no refresh completed.
    "RefreshLagAlarm": (
        "TmdbIngest", "lag_days", SERVICE, "Maximum", 86400, 2, ("GreaterThanThreshold", 2),
        "breaching",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        k: r["Properties"] for k, r in resources_of_type(template, "AWS::CloudWatch::Alarm").items()
    }


def _tmdb_metrics_of_alarms(template: dict[str, Any]) -> set[tuple[str, str]]:
    """(metric, dimensions) of every TmdbIngest metric an alarm reads."""
    found: set[tuple[str, str]] = set()
    for alarm in _alarms(template).values():
        metrics = [alarm] + [
            q["MetricStat"]["Metric"] for q in alarm.get("Metrics", []) if "MetricStat" in q
        ]
        for m in metrics:
            if m.get("Namespace") == "TmdbIngest":
                found.add((m["MetricName"], json.dumps(m["Dimensions"], sort_keys=True)))
    return found


def test_every_alarm_watches_its_metric_with_its_threshold(template: dict[str, Any]) -> None:
    alarms = _alarms(template)
    assert set(alarms) == {*SINGLE_METRIC_ALARMS, "Throttled429ShareAlarm"}
    for name, spec in SINGLE_METRIC_ALARMS.items():
        evaluations = spec[5]
        alarm = alarms[name]
        got = (
            alarm["Namespace"],
            alarm["MetricName"],
            alarm["Dimensions"],
            alarm["Statistic"],
            alarm["Period"],
            alarm["EvaluationPeriods"],
            (alarm["ComparisonOperator"], alarm["Threshold"]),
            alarm["TreatMissingData"],
        )
        assert got == spec, name
        assert alarm.get("DatapointsToAlarm", evaluations) == evaluations, name


def test_the_429_share_alarm_divides_429s_by_requests_over_five_minutes(
    template: dict[str, Any],
) -> None:
    alarm = _alarms(template)["Throttled429ShareAlarm"]
    assert "MetricName" not in alarm and "Namespace" not in alarm
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    for qid, metric in (("throttled", "throttled_429"), ("requests", "requests")):
        stat = queries[qid]["MetricStat"]
        assert stat["Metric"] == {
            "Namespace": "TmdbIngest",
            "MetricName": metric,
            "Dimensions": SERVICE,
        }
        assert (stat["Stat"], stat["Period"]) == ("Sum", 300)
        assert queries[qid]["ReturnData"] is False
    share = queries["share"]
    assert share["ReturnData"] is True
    assert share["Expression"] == "IF(requests > 0, 100 * FILL(throttled, 0) / requests, 0)"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 5)
    assert alarm["EvaluationPeriods"] == 1 and alarm["TreatMissingData"] == "notBreaching"


def test_every_alarm_notifies_the_topic_both_ways(template: dict[str, Any]) -> None:
    topic = one_resource(template, "AWS::SNS::Topic")
    assert topic is not None
    for name, alarm in _alarms(template).items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}], name


def test_the_email_subscription_exists_only_when_an_address_is_given(
    template: dict[str, Any],
) -> None:
    assert parameter_defaults(template)["AlarmEmail"] == ""
    assert template["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }
    (sub,) = resources_of_type(template, "AWS::SNS::Subscription").values()
    assert sub["Condition"] == "HasAlarmEmail"
    assert sub["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }
    pattern = re.compile(template["Parameters"]["AlarmEmail"]["AllowedPattern"])
    assert pattern.match("") and pattern.match("ops@example.com")
    assert not pattern.match("ops") and not pattern.match("a b@example.com")


def test_the_lag_alarm_exists_only_when_the_schedule_is_enabled(template: dict[str, Any]) -> None:
    resource = template["Resources"]["RefreshLagAlarm"]
    assert resource["Condition"] == "RefreshScheduleEnabled"
    assert template["Conditions"]["RefreshScheduleEnabled"] == {
        "Fn::Equals": [{"Ref": "RefreshScheduleState"}, "ENABLED"]
    }
    others = [k for k, r in resources_of_type(template, "AWS::CloudWatch::Alarm").items()
              if "Condition" in r]  # fmt: skip
    assert others == ["RefreshLagAlarm"]


def test_each_alarm_description_links_a_section_of_the_runbook(template: dict[str, Any]) -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}
    assert _alarms(template)
    linked = set()
    for name, alarm in _alarms(template).items():
        found = re.findall(r"docs/operations\.md#([a-z0-9-]+)", alarm["AlarmDescription"])
        assert len(found) == 1, f"{name}: no runbook link"
        assert found[0] in anchors, f"{name}: docs/operations.md has no #{found[0]}"
        assert found[0] not in linked, f"{name}: shares its runbook section"
        linked.add(found[0])
        assert len(alarm["AlarmDescription"]) <= 1024, name  # CloudWatch's limit


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_a_refresh_dropped_after_its_retries_is_kept_in_a_queue(template: dict[str, Any]) -> None:
    queue = template["Resources"]["RefreshFailures"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 86400
    config = one_resource(template, "AWS::Lambda::EventInvokeConfig")
    assert config["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["RefreshFailures", "Arn"]}}
    }
    statements = list(
        policy_statements(one_resource(template, "AWS::Serverless::Function")["Policies"])
    )
    sqs = [st for st in statements if any(str(a).startswith("sqs:") for a in as_list(st["Action"]))]
    assert len(sqs) == 1
    assert as_list(sqs[0]["Action"]) == ["sqs:SendMessage"]
    assert [sub_text(r) for r in as_list(sqs[0]["Resource"])] == ["${RefreshFailures.Arn}"]
    outputs = template["Outputs"]
    assert outputs["RefreshFailuresQueueUrl"]["Value"] == {"Ref": "RefreshFailures"}
    assert outputs["AlarmTopicArn"]["Value"] == {"Ref": "AlarmTopic"}


# --- the dashboard --------------------------------------------------------------------------

SAMPLE = {
    "AWS::Region": "eu-west-1",
    "AWS::StackName": "tmdb-ingest",
    "IngestFunction": "tmdb-ingest-IngestFunction-AbC123",
    "IngestStateMachine": "arn:aws:states:eu-west-1:123456789012:stateMachine:tmdb-ingest-ingest",
    "RefreshFailures.QueueName": "tmdb-ingest-RefreshFailures-XyZ",
}


def _dashboard(template: dict[str, Any], **values: str) -> dict[str, Any]:
    """The DashboardBody as CloudWatch receives it: the !Sub resolved with sample values."""
    body = one_resource(template, "AWS::CloudWatch::Dashboard")["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str)
    names = {**parameter_defaults(template), **SAMPLE, **values}
    text = re.sub(r"\$\{([A-Za-z0-9_:.]+)\}", lambda m: names[m.group(1)], body)
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def _dashboard_metrics(dashboard: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for widget in dashboard["widgets"]:
        for row in widget["properties"].get("metrics", []):
            plain = [x for x in row if not isinstance(x, dict)]
            if plain:
                rows.append(plain)
    return rows


def test_the_dashboard_body_is_json_showing_what_an_operator_watches(
    template: dict[str, Any],
) -> None:
    dashboard = _dashboard(template, TmdbGlobalRate="55")
    rows = _dashboard_metrics(dashboard)
    shown = {(row[0], row[1]) for row in rows}
    for need in [
        ("TmdbIngest", "records"),
        ("TmdbIngest", "failed"),
        ("TmdbIngest", "requests"),
        ("TmdbIngest", "throttled_429"),
        ("TmdbIngest", "lag_days"),
        ("AWS/Lambda", "Duration"),
        ("AWS/Lambda", "Errors"),
        ("AWS/States", "ExecutionsStarted"),
        ("AWS/States", "ExecutionsSucceeded"),
        ("AWS/States", "ExecutionsFailed"),
    ]:
        assert need in shown, need
    for row in rows:
        if row[0] == "AWS/Lambda":
            assert row[2:] == ["FunctionName", SAMPLE["IngestFunction"]]
        if row[0] == "AWS/States":
            assert row[2:] == ["StateMachineArn", SAMPLE["IngestStateMachine"]]
    (throughput,) = [
        w["properties"]
        for w in dashboard["widgets"]
        if "TmdbGlobalRate" in w["properties"]["title"]
    ]
    assert throughput["annotations"]["horizontal"][0]["value"] == 55
    assert {"expression": "req / PERIOD(req)", "label": "requests per second", "id": "rate"} in [
        r[0] for r in throughput["metrics"] if isinstance(r[0], dict)
    ]
    assert all(w["properties"]["region"] == "eu-west-1" for w in dashboard["widgets"])


# --- the metrics the code publishes -----------------------------------------------------------


def _emf(lines: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines.splitlines() if '"CloudWatchMetrics"' in line]


def _published(emf: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(metric, dimensions) of every TmdbIngest metric in these EMF documents."""
    found: set[tuple[str, str]] = set()
    for doc in emf:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "TmdbIngest"
            for dims in directive["Dimensions"]:
                dimensions = [{"Name": d, "Value": doc[d]} for d in dims]
                for metric in directive["Metrics"]:
                    found.add((metric["Name"], json.dumps(dimensions, sort_keys=True)))
    return found


@pytest.fixture
def published_by_a_run_and_a_refresh(
    tmp_path: Path, s3: Any, lake: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The results and the EMF documents of handler.lambda_handler for an ingest, then a
    refresh two days later (each in a thread: the handler runs its own event loop)."""
    ids = title_ids(60, "movie", start=1)
    s3.upload_file(str(write_csv(tmp_path / "m.csv", ids)), lake, KEY)

    async def invoke() -> list[dict[str, Any]]:
        cfg = FakeTmdbConfig(token=TOKEN, change_period=5, change_universe=2_000)
        async with FakeTmdb(cfg) as fake:
            for name, value in {
                "TMDB_READ_ACCESS_TOKEN": TOKEN,
                "TMDB_BASE_URL": fake.url,
                "TMDB_DEST": f"s3://{lake}",
                "TMDB_ALLOWED_BUCKETS": lake,
                "TMDB_RATE": "1000",
            }.items():
                monkeypatch.setenv(name, value)
            run = {"source": f"s3://{lake}/{KEY}", "date": "2026-11-10"}
            refresh = {"action": "refresh", "dest": f"s3://{lake}", "date": "2026-11-12T04:00:00Z"}
            return [
                await asyncio.to_thread(handler.lambda_handler, event, Context())
                for event in (run, refresh)
            ]

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        results = asyncio.run(invoke())
    finally:  # the handler's exclusive log set-up, undone
        for added in list(root.handlers):
            root.removeHandler(added)
        for kept in handlers:
            root.addHandler(kept)
        root.setLevel(level)
    return results, _emf(capsys.readouterr().out)


def test_alarms_and_dashboard_name_only_metrics_the_handler_publishes(
    template: dict[str, Any],
    published_by_a_run_and_a_refresh: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    results, emf = published_by_a_run_and_a_refresh
    assert [r["status"] for r in results] == ["ok", "ok"] and len(emf) == 2
    published = _published(emf)
    used = _tmdb_metrics_of_alarms(template)
    assert used and used <= published, f"alarms read unpublished metrics: {used - published}"
    dashboard = _dashboard(template)
    shown = {
        (row[1], json.dumps([{"Name": row[2], "Value": row[3]}], sort_keys=True))
        for row in _dashboard_metrics(dashboard)
        if row[0] == "TmdbIngest"
    }
    assert shown <= published, f"the dashboard shows unpublished metrics: {shown - published}"


def test_a_refresh_publishes_its_lag_in_days(
    published_by_a_run_and_a_refresh: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    """Refreshed on 2026-11-12 through 2026-11-11: current, a lag of 1 day, in the result and
    in the refresh's EMF document; the run publishes none."""
    (run, refresh), (run_emf, refresh_emf) = published_by_a_run_and_a_refresh
    assert refresh["refreshed_through"] == "2026-11-11" and refresh["lag_days"] == 1
    assert refresh_emf["lag_days"] == [1]
    (directive,) = refresh_emf["_aws"]["CloudWatchMetrics"]
    assert {"Name": "lag_days", "Unit": "Count"} in directive["Metrics"]
    assert "lag_days" not in run and "lag_days" not in run_emf


@pytest.mark.parametrize(
    ("date", "through", "lag"),
    [
        ("2026-11-12", "2026-11-11", 1),  # current
        ("2026-11-14", "2026-11-11", 3),  # two days behind: the alarm's threshold passed
        ("2026-03-01", "2026-02-27", 2),  # across a month end
        ("2026-11-12", None, None),  # no refresh finished yet: nothing to publish
    ],
)
def test_the_lag_is_the_processing_date_minus_the_refreshed_through_day(
    date: str, through: str | None, lag: int | None
) -> None:
    assert refresh_lag_days(date, through) == lag
