"""Stage 01 (seeds): a git repository of known commits built here, mined, queried with the shipped SQL on
DuckDB, filtered and clarified; the BigQuery job configuration and its refusals checked offline."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from instructcoder_utils import bigquery as bq
from instructcoder_utils import seeds
from instructcoder_utils.config import SeedFilters, load_profile
from instructcoder_utils.files import read_json, read_jsonl

MIT = ("MIT License\n\nCopyright (c) 2024 Test\n\nPermission is hereby granted, free of charge, to any person "
       "obtaining a copy of this software...\n")
MAX_FILE_BYTES = 4000


def _app(n: int = 24, changes: dict[int, str] | None = None) -> str:
    """A Python file of n small functions; ``changes`` replaces the body of some of them."""
    changes = changes or {}
    return "".join(f"def f{i}(x):\n    return {changes.get(i, f'x + {i}')}\n\n" for i in range(n))


class RepoBuilder:
    """Commits of known kinds; ``expected`` maps each subject to the reason it is dropped (or 'kept')."""

    def __init__(self, path: Path):
        self.path, self.t, self.expected = path, 1_700_000_000, {}
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, author: str = "Ada Lovelace <ada@example.com>") -> str:
        self.t += 60
        name, email = author[:-1].split(" <")
        env = {**os.environ, "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
               "GIT_COMMITTER_EMAIL": email, "GIT_AUTHOR_DATE": f"{self.t} +0100",
               "GIT_COMMITTER_DATE": f"{self.t} +0100", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(self.path)}
        return subprocess.run(["git", "-C", str(self.path), *args], check=True, capture_output=True,
                              env=env).stdout.decode()

    def write(self, name: str | bytes, data: str | bytes) -> None:
        p = os.path.join(bytes(self.path), name) if isinstance(name, bytes) else self.path / name
        with open(p, "wb") as fh:
            fh.write(data if isinstance(data, bytes) else data.encode())

    def commit(self, message: str, expect: str, files: dict[str | bytes, str | bytes] | None = None, **kw) -> None:
        for name, data in (files or {}).items():
            self.write(name, data)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message, **kw)
        self.expected[message.splitlines()[0]] = expect


def build_repo(path: Path) -> RepoBuilder:
    r = RepoBuilder(path)
    r.commit("Initial import", "root_commit", {
        "LICENSE": MIT, "app.py": _app(), "util.py": _app(8), "README.md": "# demo\n",
        "data.py": b"BLOB = b'''\x00\x01\x02'''\n", "latin.py": "# caf\xe9\nX = 1\n".encode("latin-1"),
        "big.py": "# padding\n" * 600, "perm.py": _app(4), b"caf\xe9.py": _app(3),
    })
    r.commit("Add a bounds check to f3", "kept", {"app.py": _app(changes={3: "max(0, x + 3)"})})
    r.commit("Update app and util together", "multi_file",
             {"app.py": _app(changes={3: "max(0, x + 3)", 4: "x * 4"}), "util.py": _app(8, {1: "x - 1"})})
    r.commit("Restore f4", "kept", {"app.py": _app(changes={3: "max(0, x + 3)"})})
    r.git("checkout", "-q", "-b", "side")
    r.commit("Write notes", "not_python", {"README.md": "# demo\n\nnotes\n"})
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--no-ff", "-m", "Merge branch side", "side")
    r.expected["Merge branch side"] = "merge"
    r.commit("Change the embedded blob", "binary", {"data.py": b"BLOB = b'''\x00\x01\x03'''\n"})
    r.git("mv", "util.py", "helpers.py")
    r.commit("Rename util to helpers", "rename")
    r.commit("Change the latin comment", "non_utf8", {"latin.py": "# caf\xe9s\nX = 2\n".encode("latin-1")})
    r.commit("Change the padding file", "too_large", {"big.py": "# padding\n" * 601})
    r.commit("Reformat f5 spacing", "whitespace_only",
             {"app.py": _app(changes={3: "max(0, x + 3)"}).replace("return x + 5", "return x  +  5")})
    r.commit("Bump the default offset in f6", "bot_author",
             {"app.py": _app(changes={3: "max(0, x + 3)", 6: "x + 60"})},
             author="dependabot[bot] <49699333+dependabot[bot]@users.noreply.github.com>")
    r.commit("Fix the sign in f7 (#42)", "issue_reference",
             {"app.py": _app(changes={3: "max(0, x + 3)", 6: "x + 60", 7: "x - 7"})})
    r.commit("Use a faster formula, see https://example.com/notes", "url",
             {"app.py": _app(changes={3: "max(0, x + 3)", 6: "x + 60", 7: "x - 7", 8: "x << 3"})})
    r.commit("Added a doubling step to f9.", "kept",
             {"app.py": _app(changes={3: "max(0, x + 3)", 6: "x + 60", 7: "x - 7", 8: "x << 3", 9: "2 * x + 9"})})
    r.commit("Some tidying of the code", "not_imperative",
             {"app.py": _app(changes={3: "max(0, x + 3)", 6: "x + 60", 7: "x - 7", 8: "x << 3", 9: "2 * x + 9",
                                      10: "x + 10.0"})})
    r.commit("fix(app): handle negative input in f11\n\nThe old code returned garbage.", "kept",
             {"app.py": _app(changes={3: "max(0, x + 3)", 6: "x + 60", 7: "x - 7", 8: "x << 3", 9: "2 * x + 9",
                                      10: "x + 10.0", 11: "abs(x) + 11"})})
    r.commit("Rewrite perm completely", "diff_too_large", {"perm.py": "VALUE = 1\nOTHER = 2\n\n\ndef g():\n    return 3\n"})
    r.commit('Revert "Rewrite perm completely"', "merge_or_revert", {"perm.py": _app(4)})
    (r.path / "app.py").chmod(0o755)
    r.commit("Make app executable", "mode_only")
    r.commit("Add a new module", "added_or_deleted", {"extra.py": _app(3)})
    r.commit("odd file name gets a change", "not_imperative", {b"caf\xe9.py": _app(3, {1: "x - 100"})})
    r.commit("Update the readme", "not_python", {"README.md": "# demo v2\n"})
    return r


STRUCTURAL = {"root_commit", "multi_file", "merge", "not_python", "binary", "rename", "non_utf8", "too_large",
              "mode_only", "added_or_deleted", "license"}


@pytest.fixture(scope="module")
def known_repo(tmp_path_factory) -> RepoBuilder:
    return build_repo(tmp_path_factory.mktemp("seedrepo") / "demo")


@pytest.fixture(scope="module")
def mined(known_repo, tmp_path_factory):
    db = tmp_path_factory.mktemp("mirror") / "commits.duckdb"
    res = seeds.mine_repos([known_repo.path], db, max_file_bytes=MAX_FILE_BYTES, licenses=["mit"],
                           allow_unknown_license=False, progress=False)
    return res, db


def _subjects(known_repo: RepoBuilder) -> dict[str, str]:
    """commit sha -> subject, from git itself."""
    out = known_repo.git("log", "--format=%H%x1f%s")
    return {sha: subj for sha, subj in (line.split("\x1f", 1) for line in out.splitlines())}


def test_mining_reasons_match_the_known_commits(known_repo, mined):
    res, _ = mined
    by_subject = {_subjects(known_repo)[sha]: why for sha, why in res.decisions.items()}
    expected = {s: (e if e in STRUCTURAL else "candidate") for s, e in known_repo.expected.items()}
    assert by_subject == expected
    assert res.commits_seen == len(known_repo.expected)
    assert res.repos[0]["license"] == "mit"
    assert sum(res.reasons.values()) + len(res.expected_rows) == res.commits_seen


def test_transpiled_sql_on_duckdb_returns_the_python_expected_rows(known_repo, mined):
    res, db = mined
    rows = bq.query_duckdb(db, bq.query_params(["mit"], MAX_FILE_BYTES, 1000))
    key = lambda r: r["commit"]  # noqa: E731
    assert sorted(rows, key=key) == sorted(res.expected_rows, key=key)
    candidates = {s for s, e in known_repo.expected.items() if e not in STRUCTURAL}
    assert {r["subject"] for r in rows} == candidates
    good = next(r for r in rows if r["subject"] == "Add a bounds check to f3")
    assert good["path"] == "app.py" and good["license"] == "mit" and good["author_name"] == "Ada Lovelace"
    assert "max(0, x + 3)" in good["code_after"] and "max(0" not in good["code_before"]
    # the SQL's own parameters act: another licence list or a smaller size cap changes the rows
    assert bq.query_duckdb(db, bq.query_params(["apache-2.0"], MAX_FILE_BYTES, 1000)) == []
    assert bq.query_duckdb(db, bq.query_params(["mit"], 20, 1000)) == []
    assert len(bq.query_duckdb(db, bq.query_params(["mit"], MAX_FILE_BYTES, 2))) == 2


def test_unknown_licence_is_a_counted_reason(known_repo, tmp_path):
    (tmp_path / "r").mkdir()
    r = RepoBuilder(tmp_path / "r2")
    r.commit("Initial import", "root_commit", {"app.py": _app()})
    r.commit("Add a bounds check to f3", "license", {"app.py": _app(changes={3: "max(0, x + 3)"})})
    strict = seeds.mine_repos([r.path], tmp_path / "a.duckdb", licenses=["mit"], allow_unknown_license=False,
                              progress=False)
    assert strict.reasons == {"root_commit": 1, "license": 1} and not strict.expected_rows
    loose = seeds.mine_repos([r.path], tmp_path / "b.duckdb", licenses=["mit"], progress=False)
    assert [row["license"] for row in loose.expected_rows] == ["unknown"]


def test_build_seeds_writes_exactly_the_expected_seeds(known_repo, tmp_path):
    cfg = load_profile("smoke", {"seeds": {"repos": [str(known_repo.path)], "max_file_bytes": MAX_FILE_BYTES,
                                           "allow_unknown_license": False}})
    stats = seeds.build_seeds(cfg, tmp_path, progress=False)
    recs = read_jsonl(tmp_path / "seeds.jsonl")
    kept = {s for s, e in known_repo.expected.items() if e == "kept"}
    assert {r["meta"]["message"].splitlines()[0] for r in recs} == kept
    instr = {r["instruction"] for r in recs}
    assert instr == {"Add a bounds check to f3", "Restore f4", "Add a doubling step to f9", "Handle negative input in f11"}
    assert all(r["source"] == "seed:rules" for r in recs)
    good = next(r for r in recs if r["instruction"] == "Add a bounds check to f3")
    assert good["meta"]["lines_added"] == 1 and good["meta"]["lines_removed"] == 1
    assert good["meta"]["repo"] == "demo" and good["meta"]["path"] == "app.py" and good["scenario"] == "app"
    assert good["meta"]["license"] == "mit" and len(good["meta"]["commit"]) == 40
    assert good["input"] != good["output"] and "max(0, x + 3)" in good["output"]
    expected_reasons: dict[str, int] = {}
    for e in known_repo.expected.values():
        if e != "kept":
            expected_reasons[e] = expected_reasons.get(e, 0) + 1
    assert stats["rejected"] == expected_reasons
    assert stats["kept"] == 4 and stats["commits_seen"] == len(known_repo.expected)
    assert read_json(tmp_path / "stats.json")["rejected"] == expected_reasons
    # the DuckDB file holds the mirror and the query's rows
    con = bq.connect_mirror(tmp_path / "commits.duckdb")
    n = con.execute("SELECT count(*) FROM main.commits").fetchone()[0]
    cols = [d[0] for d in con.execute("SELECT * FROM main.commits LIMIT 0").description]
    con.close()
    assert n == stats["query_rows"] == 4 + sum(v for k, v in expected_reasons.items() if k not in STRUCTURAL)
    assert tuple(cols) == bq.RESULT_COLUMNS
    table = seeds.stats_table(stats)
    assert table["commits"].iloc[-1] == 4
    assert seeds.plot_stats(stats, tmp_path / "stats.png").stat().st_size > 1000


def test_project_clone_mines_without_error(repo_root, tmp_path):
    cfg = load_profile("smoke")
    stats = seeds.build_seeds(cfg, tmp_path, progress=False)
    assert stats["commits_seen"] >= 1 and stats["kept"] == len(read_jsonl(tmp_path / "seeds.jsonl"))


def test_bad_repo_paths_are_named(tmp_path):
    with pytest.raises(seeds.SeedsError, match="nope.*does not exist"):
        seeds.mine_repos([tmp_path / "nope"], tmp_path / "x.duckdb", progress=False)
    (tmp_path / "plain").mkdir()
    with pytest.raises(seeds.SeedsError, match="plain.*not a git repository"):
        seeds.check_repo(tmp_path / "plain")


def test_empty_repository_gives_zero_commits(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path / "empty")], check=True)
    res = seeds.mine_repos([tmp_path / "empty"], tmp_path / "e.duckdb", progress=False)
    assert res.commits_seen == 0 and not res.expected_rows


@pytest.mark.parametrize("subject, instruction", [
    ("fix(app): handle missing name", "Handle missing name"),
    ("Added a farewell function.", "Add a farewell function"),
    ("Fixes crash on empty input (#12)", "Fix crash on empty input"),
    ("fix: typo in docs", "Fix typo in docs"),
    ("[core] Updated README", "Update README"),
    ("Using pathlib for paths", "Use pathlib for paths"),
    ("feat!: support JSON output JIRA-123", "Support JSON output"),
    ("Removes unused imports", "Remove unused imports"),
    ("py3 compat: fix str handling", "Fix str handling"),
    ("Note: this is odd", "Note: this is odd"),
])
def test_normalizer(subject, instruction):
    assert seeds.normalize_instruction(subject) == instruction


def _row(subject, before="x = 1\ny = 2\nz = 3\nw = 4\n", after="x = 1\ny = 5\nz = 3\nw = 4\n", **kw):
    return {"subject": subject, "message": kw.pop("message", subject), "author_name": "A", "author_email": "a@b",
            "code_before": before, "code_after": after, **kw}


def test_filter_rules_each_reason():
    f = SeedFilters(min_code_tokens=3)
    assert seeds.filter_reason(_row("Change y to five"), f) is None
    assert seeds.filter_reason(_row("Fix"), f) == "message_too_short"
    assert seeds.filter_reason(_row("Fixup" + "s" * 400), f) == "message_too_long"
    assert seeds.filter_reason(_row("Refactoring"), SeedFilters(min_message_chars=1)) == "too_few_words"
    assert seeds.filter_reason(_row("Change " + "y " * 50), f) == "too_many_words"
    assert seeds.filter_reason(_row("Change y to five", message="Change y to five\n\nCloses ABC-12"), f) == "issue_reference"
    assert seeds.filter_reason(_row("Change y in www.example.org docs"), f) == "url"
    assert seeds.filter_reason(_row("Merge pull request from x"), f) == "merge_or_revert"
    assert seeds.filter_reason(_row("Undo y", message="Undo y\n\nThis reverts commit abc."), f) == "merge_or_revert"
    assert seeds.filter_reason(_row("Change y to five", message="Change y to five\nMerge sort is kept"), f) is None
    assert seeds.filter_reason(_row("Change y to five", author_name="renovate-bot"), f) == "bot_author"
    assert seeds.filter_reason(_row("Change y to five", before="x=1", after="x = 1"), f) == "whitespace_only"
    assert seeds.filter_reason(_row("Change y to five", before="a", after="b"), f) == "code_too_short"
    assert seeds.filter_reason(_row("Change y to five"), SeedFilters(max_code_tokens=4)) == "code_too_long"
    assert seeds.filter_reason(_row("Change y to five"), SeedFilters(max_diff_ratio=0.2)) == "diff_too_large"
    assert seeds.filter_reason(_row("The y value"), f) == "not_imperative"
    assert seeds.filter_reason(_row("Bump version to 1.2"), f) == "not_imperative"
    assert seeds.filter_reason(_row("Don't use assertIn here"), f) is None
    assert seeds.filter_reason(_row("Do not use the cache"), f) is None
    assert seeds.filter_reason(_row("The y value"), SeedFilters(require_imperative=False)) is None
    # UTF-8 is not an issue reference
    assert seeds.filter_reason(_row("Decode the file as UTF-8"), f) is None


def test_clarify_mode_and_prompt():
    assert seeds.clarify_mode(load_profile("smoke")) == "rules"
    with pytest.raises(seeds.SeedsError, match="seeds.clarify"):
        seeds.clarify_mode(load_profile("smoke", {"seeds": {"clarify": "llm"}}))
    assert seeds.clarify_mode(load_profile("smoke", {"llm": {"provider": "openai"}})) == "llm"
    row = {"message": "Fix f\n", "path": "app.py", "code_before": "a = 1\n", "code_after": "a = 2\n"}
    prompt = seeds.clarify_prompt(row)
    assert "Fix f" in prompt and "-a = 1" in prompt and "+a = 2" in prompt and "{" not in prompt.split("```")[0]
    assert seeds.clean_instruction('\nInstruction: "Make f return 2."\nmore') == "Make f return 2."


def test_llm_clarification_with_fallback_and_cache(known_repo, scripted_server, tmp_path):
    from servers import error

    scripted_server.on("bounds check", 'Instruction: "Clamp the result of f3 at zero."')
    scripted_server.on("doubling step", error(400))
    scripted_server.on(None, "Make the change the message describes.")
    over = {"seeds": {"repos": [str(known_repo.path)], "max_file_bytes": MAX_FILE_BYTES},
            "llm": scripted_server.llm_config().model_dump()}
    cfg = load_profile("smoke", over)
    stats = seeds.build_seeds(cfg, tmp_path, progress=False)
    recs = {r["meta"]["message"].splitlines()[0]: r for r in read_jsonl(tmp_path / "seeds.jsonl")}
    assert recs["Add a bounds check to f3"]["instruction"] == "Clamp the result of f3 at zero."
    assert recs["Add a bounds check to f3"]["source"] == "seed:llm"
    assert recs["Added a doubling step to f9."]["source"] == "seed:rules"  # the LLM call failed
    assert recs["Added a doubling step to f9."]["instruction"] == "Add a doubling step to f9"
    assert stats["clarified"] == {"seed:llm": 3, "seed:rules": 1} and stats["clarify_mode"] == "llm"
    sent = scripted_server.requests("bounds check")
    assert len(sent) == 1 and "+    return max(0, x + 3)" in sent[0]["last_user"]
    assert read_json(tmp_path / "usage.json")
    n_before, failed_before = len(scripted_server.requests()), len(scripted_server.requests("doubling step"))
    seeds.build_seeds(cfg, tmp_path, progress=False)  # re-run: cached replies; only the failure is asked again
    assert len(scripted_server.requests()) - n_before == len(scripted_server.requests("doubling step")) - failed_before
    assert len(scripted_server.requests("bounds check")) == 1


# --------------------------------------------------------------------------- BigQuery (offline)
PARAMS = bq.query_params(["mit", "isc"], 1000, 50)


def test_sql_is_bigquery_dialect_and_transpiles():
    sql = bq.load_sql()
    assert "`bigquery-public-data.github_repos.commits`" in sql and "@licenses" in sql
    local = bq.to_duckdb(sql)
    assert '"bigquery-public-data"."github_repos"."contents"' in local and "$licenses" in local


def test_job_configs():
    dry = bq.job_config(PARAMS, 10**9, dry_run=True)
    assert dry.dry_run is True and dry.use_query_cache is False
    real = bq.job_config(PARAMS, 10**9, dry_run=False)
    assert real.maximum_bytes_billed == 10**9 and not real.dry_run
    got = {p.name: p.to_api_repr() for p in real.query_parameters}
    assert got["licenses"]["parameterValue"]["arrayValues"] == [{"value": "mit"}, {"value": "isc"}]
    assert got["row_limit"]["parameterValue"]["value"] == "50"
    assert got["max_file_bytes"]["parameterType"]["type"] == "INT64"


def test_dry_run_refusal():
    assert "5,000 bytes" in bq.check_scan(5000, 10_000)
    with pytest.raises(bq.BigQueryError, match="maximum_bytes_billed"):
        bq.check_scan(10_001, 10_000)


class _FakeJob:
    def __init__(self, nbytes):
        self.total_bytes_processed = nbytes

    def result(self):
        return [{"repository": "r", "commit": "c"}]


class _RecordingClient:
    """Stands in for google.cloud.bigquery.Client at the network boundary: records the job configs."""

    def __init__(self, nbytes):
        self.nbytes, self.configs = nbytes, []

    def query(self, sql, job_config):
        self.configs.append(job_config)
        return _FakeJob(self.nbytes)


def test_query_bigquery_dry_runs_first_and_refuses_over_cap():
    cfg = load_profile("paper").seeds.bigquery
    over = _RecordingClient(cfg.maximum_bytes_billed + 1)
    with pytest.raises(bq.BigQueryError):
        bq.query_bigquery(cfg, PARAMS, client=over)
    assert len(over.configs) == 1 and over.configs[0].dry_run
    ok = _RecordingClient(10)
    rows = bq.query_bigquery(cfg, PARAMS, client=ok)
    assert [bool(c.dry_run) for c in ok.configs] == [True, False]
    assert ok.configs[1].maximum_bytes_billed == cfg.maximum_bytes_billed
    assert rows[0]["commit"] == "c" and set(rows[0]) == set(bq.RESULT_COLUMNS)


def test_missing_credentials_message(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "some-project")
    with pytest.raises(bq.BigQueryError) as exc:
        bq.bigquery_client(None)
    msg = str(exc.value)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in msg and "gcloud auth application-default login" in msg
    assert "GOOGLE_CLOUD_PROJECT" in msg


def test_stats_json_roundtrip(tmp_path):
    stats = {"commits_seen": 3, "mining": {"merge": 1}, "query_rows": 2, "filters": {"url": 1}, "kept": 1,
             "rejected": {"merge": 1, "url": 1}}
    table = seeds.stats_table(stats)
    assert list(table["commits"]) == [3, 1, 2, 1, 1]
    assert json.loads(json.dumps(stats)) == stats
