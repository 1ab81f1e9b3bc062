"""One SQL query for seed commits, run on BigQuery or, transpiled by sqlglot, on a local DuckDB mirror.

``sql/commits.sql`` is written in BigQuery dialect against ``bigquery-public-data.github_repos``. Locally the
mined repositories are stored in a DuckDB file whose tables mirror the public dataset's schema
(``github_repos.commits / contents / files / licenses``); the file is attached under the catalog name
``bigquery-public-data``, so the transpiled query finds the tables under the very names it was written
for and no table qualifier is rewritten. Query parameters (``@licenses``, ``@max_file_bytes``,
``@row_limit``) become DuckDB's ``$name`` parameters in the transpiled text.

BigQuery bills by bytes scanned, so :func:`query_bigquery` first makes a dry run, prints the estimate,
refuses to go over ``seeds.bigquery.maximum_bytes_billed`` and sets that cap on the real job as well.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

MIRROR_CATALOG = "bigquery-public-data"
MIRROR_SCHEMA = "github_repos"
RESULT_TABLE = "commits"  # main.commits in the DuckDB file: the query's rows, whichever engine ran it
RESULT_COLUMNS = (
    "repository", "commit", "subject", "message", "author_name", "author_email",
    "path", "code_before", "code_after", "license",
)

_PERSON = "STRUCT(name VARCHAR, email VARCHAR, time_sec BIGINT, tz_offset BIGINT, date TIMESTAMPTZ)"
MIRROR_DDL = {
    "commits": f"""(commit VARCHAR, tree VARCHAR, parent VARCHAR[], author {_PERSON}, committer {_PERSON},
        subject VARCHAR, message VARCHAR,
        difference STRUCT(old_mode BIGINT, new_mode BIGINT, old_path VARCHAR, new_path VARCHAR,
                          old_sha1 VARCHAR, new_sha1 VARCHAR, old_repo VARCHAR, new_repo VARCHAR)[],
        difference_truncated BOOLEAN, repo_name VARCHAR[], encoding VARCHAR)""",
    "contents": '(id VARCHAR, size BIGINT, content VARCHAR, "binary" BOOLEAN, copies BIGINT)',
    "files": "(repo_name VARCHAR, ref VARCHAR, path VARCHAR, mode BIGINT, id VARCHAR, symlink_target VARCHAR)",
    "licenses": "(repo_name VARCHAR, license VARCHAR)",
}


class BigQueryError(RuntimeError):
    """BigQuery cannot be used as configured; the message says what to do."""


def load_sql(name: str = "commits.sql") -> str:
    """The shipped BigQuery-dialect query (package data, so it works from an installed wheel too)."""
    return resources.files("instructcoder_utils").joinpath("sql", name).read_text(encoding="utf-8")


def to_duckdb(sql: str) -> str:
    """Transpile BigQuery SQL to DuckDB; the one place the dialect changes."""
    import sqlglot

    return sqlglot.transpile(sql, read="bigquery", write="duckdb", pretty=True)[0]


def query_params(licenses: list[str], max_file_bytes: int, row_limit: int) -> dict[str, Any]:
    """The named parameters both engines receive (BigQuery @name, DuckDB $name)."""
    return {"licenses": list(licenses), "max_file_bytes": int(max_file_bytes), "row_limit": int(row_limit)}


# --------------------------------------------------------------------------- DuckDB mirror
def connect_mirror(db_path: str | Path, create: bool = False):
    """In-memory DuckDB with the file attached as ``bigquery-public-data`` (and made the default)."""
    import duckdb

    con = duckdb.connect(":memory:")
    quoted = Path(db_path).as_posix().replace("'", "''")
    con.execute(f"ATTACH '{quoted}' AS \"{MIRROR_CATALOG}\"")
    con.execute(f'USE "{MIRROR_CATALOG}"')
    if create:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {MIRROR_SCHEMA}")
        for table, cols in MIRROR_DDL.items():
            con.execute(f"CREATE OR REPLACE TABLE {MIRROR_SCHEMA}.{table} {cols}")
    return con


class MirrorWriter:
    """Buffers mirror rows and appends them to DuckDB in Arrow batches (mining streams to disk)."""

    def __init__(self, con, batch: int = 500):
        self.con, self.batch = con, batch
        self.buf: dict[str, list[dict[str, Any]]] = {"commits": [], "contents": [], "files": [], "licenses": []}

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.buf[table].append(row)
        if len(self.buf[table]) >= self.batch:
            self.flush(table)

    def flush(self, table: str | None = None) -> None:
        import pyarrow as pa

        for t in [table] if table else list(self.buf):
            rows = self.buf[t]
            if not rows:
                continue
            cols = [d[0] for d in self.con.execute(f"SELECT * FROM github_repos.{t} LIMIT 0").description]
            tbl = pa.Table.from_pylist(rows)
            self.con.register("_batch", tbl)
            self.con.execute(f"INSERT INTO github_repos.{t} SELECT {', '.join(_q(c) for c in cols)} FROM _batch")
            self.con.unregister("_batch")
            rows.clear()


def _q(col: str) -> str:
    return f'"{col}"'


def query_duckdb(db_path: str | Path, params: dict[str, Any], sql: str | None = None) -> list[dict[str, Any]]:
    """Run the transpiled query on the mirror, store the rows as ``main.commits`` and return them."""
    con = connect_mirror(db_path)
    try:
        local_sql = to_duckdb(sql or load_sql())
        con.execute(f"CREATE OR REPLACE TABLE main.{RESULT_TABLE} AS {local_sql}", params)
        cur = con.execute(f"SELECT * FROM main.{RESULT_TABLE}")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def store_rows(db_path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write rows fetched from BigQuery as ``main.commits`` so both paths leave the same table."""
    import pyarrow as pa

    con = connect_mirror(db_path)
    try:
        table = pa.Table.from_pylist(
            [{c: r.get(c) for c in RESULT_COLUMNS} for r in rows],
            schema=pa.schema([(c, pa.string()) for c in RESULT_COLUMNS]),
        )
        con.register("fetched", table)
        con.execute(f"CREATE OR REPLACE TABLE main.{RESULT_TABLE} AS SELECT * FROM fetched")
    finally:
        con.close()


# --------------------------------------------------------------------------- BigQuery
def job_config(params: dict[str, Any], maximum_bytes_billed: int, dry_run: bool):
    """The QueryJobConfig for the dry run (no cache, so the estimate is real) or the billed run (capped)."""
    from google.cloud import bigquery

    qp = [
        bigquery.ArrayQueryParameter("licenses", "STRING", params["licenses"]),
        bigquery.ScalarQueryParameter("max_file_bytes", "INT64", params["max_file_bytes"]),
        bigquery.ScalarQueryParameter("row_limit", "INT64", params["row_limit"]),
    ]
    if dry_run:
        return bigquery.QueryJobConfig(dry_run=True, use_query_cache=False, query_parameters=qp)
    return bigquery.QueryJobConfig(query_parameters=qp, maximum_bytes_billed=int(maximum_bytes_billed))


def check_scan(bytes_processed: int, maximum_bytes_billed: int) -> str:
    """Refuse a query whose dry-run estimate exceeds the profile's cap; returns the line to print."""
    line = (f"BigQuery dry run: the query would scan {bytes_processed:,} bytes ({bytes_processed / 1e9:.2f} GB); "
            f"cap seeds.bigquery.maximum_bytes_billed = {maximum_bytes_billed:,} bytes")
    if bytes_processed > maximum_bytes_billed:
        raise BigQueryError(
            f"{line}.\nRefusing to run: the estimate is over the cap. Raise "
            "seeds.bigquery.maximum_bytes_billed in the profile (or --set) if you mean to pay for it."
        )
    return line


CREDENTIALS_HELP = (
    "BigQuery needs Google Cloud credentials and a project. Provide credentials with either\n"
    "  export GOOGLE_APPLICATION_CREDENTIALS=/path/to/service-account.json\n"
    "or\n"
    "  gcloud auth application-default login\n"
    "and the project with seeds.bigquery.project in the profile or the GOOGLE_CLOUD_PROJECT variable.\n"
    "Without them, use seeds.source: git (local repositories)."
)


def bigquery_client(project: str | None):
    """A BigQuery client, or a BigQueryError that says how to provide credentials."""
    import google.auth.exceptions
    from google.cloud import bigquery

    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    try:
        return bigquery.Client(project=project)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise BigQueryError(f"no Google Cloud credentials found ({exc}).\n{CREDENTIALS_HELP}") from None
    except OSError as exc:  # e.g. credentials found but no project could be determined
        raise BigQueryError(f"BigQuery client could not start ({exc}).\n{CREDENTIALS_HELP}") from None


def query_bigquery(bq_cfg, params: dict[str, Any], sql: str | None = None, client=None) -> list[dict[str, Any]]:
    """Dry run, check the byte estimate against the cap, then run the capped job and fetch the rows."""
    sql = sql or load_sql()
    client = client or bigquery_client(bq_cfg.project)
    dry = client.query(sql, job_config=job_config(params, bq_cfg.maximum_bytes_billed, dry_run=True))
    print(check_scan(int(dry.total_bytes_processed or 0), bq_cfg.maximum_bytes_billed), flush=True)
    job = client.query(sql, job_config=job_config(params, bq_cfg.maximum_bytes_billed, dry_run=False))
    return [{c: row.get(c) for c in RESULT_COLUMNS} for row in job.result()]
