"""Athena is ready after ``sam deploy``: ``template.yaml``'s Glue database, its two tables and
the named query creating the current-state view are ``docs/queries/athena.sql`` as
resources (the DDL whose view ``tests/test_current_state.py`` runs over the lake's real
files), and Glue's and Athena's APIs accept them as rendered.

The tables read the lake's files as text lines, so the JSON arrays the stack writes by
default and ``--format jsonl`` both work (Athena's JSON SerDes read one object per line).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlglot
from moto import mock_aws
from sqlglot import exp

from tests.support.cfn import resources_of_type
from tests.support.cfn_render import Rendered
from tests.support.sfn import BUCKET, REGION, load_template
from tmdb_async.lake.layout import RAW_FOLDER, date_folder
from tmdb_async.lake.ledger import SIDECAR_FOLDER

ROOT = Path(__file__).resolve().parent.parent
ATHENA_SQL = ROOT / "docs" / "queries" / "athena.sql"
TEXT_INPUT = "org.apache.hadoop.mapred.TextInputFormat"
TEXT_OUTPUT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
LAZY_SIMPLE = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return Rendered(load_template())


def _sql_tables() -> dict[str, dict[str, Any]]:
    """athena.sql's CREATE EXTERNAL TABLE statements, as sqlglot reads them (the bucket is
    athena.sql's placeholder, the tests' BUCKET)."""
    tables: dict[str, dict[str, Any]] = {}
    for statement in sqlglot.parse(ATHENA_SQL.read_text(), read="athena"):
        if statement is None or statement.key != "create" or statement.args["kind"] != "TABLE":
            continue
        schema = statement.this
        location = statement.find(exp.LocationProperty)
        partitioned = statement.find(exp.PartitionedByProperty)
        assert location is not None and partitioned is not None
        tables[schema.this.name] = {
            "columns": [(c.name, c.args["kind"].sql("hive")) for c in schema.expressions],
            "partitions": [
                (c.name, c.args["kind"].sql("hive")) for c in partitioned.this.expressions
            ],
            "location": location.this.name,
            "properties": {
                p.name: p.text("value")
                for p in statement.find_all(exp.Property)
                if type(p) is exp.Property
            },
            "delimited": statement.find(exp.RowFormatDelimitedProperty) is not None,
            "textfile": any(
                f.this.name.upper() == "TEXTFILE"
                for f in statement.find_all(exp.FileFormatProperty)
            ),
        }
    return tables


def _glue_tables(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """The template's Glue tables' TableInput, resolved, by name."""
    inputs = [
        rendered.value(r["Properties"]["TableInput"])
        for r in resources_of_type(rendered.template, "AWS::Glue::Table").values()
    ]
    return {i["Name"]: i for i in inputs}


def _athena_sql_view() -> str:
    match = re.search(
        r"(CREATE OR REPLACE VIEW tmdb_current AS\n.*?);", ATHENA_SQL.read_text(), re.S
    )
    assert match is not None
    return match[1]


def test_the_glue_tables_are_the_tables_of_athena_sql(rendered: Rendered) -> None:
    """Same names, column, partition key, location, text format and every table property:
    partition projection on the date folder and the location template."""
    sql = _sql_tables()
    glue = _glue_tables(rendered)
    assert set(glue) == set(sql) == {"tmdb_lines", "tmdb_sidecar_lines"}
    for name, table in glue.items():
        want = sql[name]
        sd = table["StorageDescriptor"]
        assert table["TableType"] == "EXTERNAL_TABLE"
        assert (
            [(c["Name"], c["Type"]) for c in sd["Columns"]]
            == [(n, t.lower()) for n, t in want["columns"]]
            == [("line", "string")]
        )
        assert (
            [(c["Name"], c["Type"]) for c in table["PartitionKeys"]]
            == [(n, t.lower()) for n, t in want["partitions"]]
            == [("dt", "string")]
        )
        assert sd["Location"] == want["location"].replace("s3://data-lake-x", f"s3://{BUCKET}")
        parameters = {k: v for k, v in table["Parameters"].items() if k != "EXTERNAL"}
        assert parameters == want["properties"], name
        # ROW FORMAT DELIMITED STORED AS TEXTFILE: text lines, fields split on \001.
        assert want["delimited"] and want["textfile"]
        assert (sd["InputFormat"], sd["OutputFormat"]) == (TEXT_INPUT, TEXT_OUTPUT)
        assert sd["SerdeInfo"]["SerializationLibrary"] == LAZY_SIMPLE
        assert sd["SerdeInfo"]["Parameters"] == {"serialization.format": "1"}


def test_the_location_templates_resolve_to_the_lake_layout(rendered: Rendered) -> None:
    """Each day's projected partition is the layout's date folder (tmdb_lines) or its
    sidecar folder (tmdb_sidecar_lines), in the deployed bucket."""
    tables = _glue_tables(rendered)
    assert set(tables) == {"tmdb_lines", "tmdb_sidecar_lines"}
    for day in (dt.date(2020, 1, 1), dt.date(2026, 11, 24), dt.date(2026, 12, 31)):
        folder = f"s3://{BUCKET}/{date_folder(day)}/"
        for name, table in tables.items():
            parameters = table["Parameters"]
            java = parameters["projection.dt.format"]
            python = java.replace("yyyy", "%Y").replace("MM", "%m").replace("dd", "%d")
            projected = parameters["storage.location.template"].replace(
                "${dt}", day.strftime(python)
            )
            want = folder if name == "tmdb_lines" else f"{folder}{SIDECAR_FOLDER}/"
            assert projected == want, name
            assert table["StorageDescriptor"]["Location"] == f"s3://{BUCKET}/{RAW_FOLDER}/"


def test_the_named_query_creates_the_view_of_athena_sql(rendered: Rendered) -> None:
    """The view's DDL is athena.sql's, statement for statement, in the tables' database; a
    second named query reads the view."""
    queries = [
        rendered.value(r["Properties"])
        for r in resources_of_type(rendered.template, "AWS::Athena::NamedQuery").values()
    ]
    database = rendered.template["Resources"]["AthenaDatabase"]["Properties"]
    assert all(q["Database"] == "<AthenaDatabase>" for q in queries)
    assert rendered.value(database["DatabaseInput"]["Name"]) == "tmdb_lake"
    creates = [q for q in queries if q["QueryString"].lstrip().startswith("CREATE")]
    assert len(creates) == 1
    deployed = sqlglot.parse_one(creates[0]["QueryString"], read="athena")
    assert deployed == sqlglot.parse_one(_athena_sql_view(), read="athena")
    selects = [q for q in queries if q not in creates]
    assert selects
    for query in selects:
        tables = sqlglot.parse_one(query["QueryString"], read="athena").find_all(exp.Table)
        assert [t.name for t in tables] == ["tmdb_current"]


def test_glue_and_athena_accept_the_rendered_resources(rendered: Rendered) -> None:
    """botocore validates each input against Glue's and Athena's API models before moto
    stores it; the table reads back as rendered."""
    resources = rendered.template["Resources"]
    database_input = rendered.value(resources["AthenaDatabase"]["Properties"]["DatabaseInput"])
    with mock_aws():
        glue = boto3.client("glue", region_name=REGION)
        glue.create_database(DatabaseInput=database_input)
        for name, table in _glue_tables(rendered).items():
            glue.create_table(DatabaseName=database_input["Name"], TableInput=table)
            stored = glue.get_table(DatabaseName=database_input["Name"], Name=name)["Table"]
            assert stored["Parameters"] == table["Parameters"]
            assert stored["StorageDescriptor"]["Location"] == table["StorageDescriptor"]["Location"]
            assert stored["PartitionKeys"] == table["PartitionKeys"]
        athena = boto3.client("athena", region_name=REGION)
        for resource in resources_of_type(rendered.template, "AWS::Athena::NamedQuery").values():
            query = rendered.value(resource["Properties"])
            query["Database"] = database_input["Name"]
            athena.create_named_query(**query)
