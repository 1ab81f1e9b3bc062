"""Published files (EditEval): found in the profile, the cache or beside the checkout, else downloaded from a
loopback server, verified by SHA-256 and written atomically; every failure leaves nothing in the cache."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from servers import FileServer, free_port

from instructcoder_utils.published import PublishedFile, PublishedFileError, obtain
from instructcoder_utils.tasks import EDITEVAL, editeval_file, load_editeval

BODY = b"".join(b'{"task_id": "T/%d", "line": "%s"}\n' % (i, b"x" * 50) for i in range(2000))


def spec(url: str, body: bytes = BODY, dev_copy: Path | None = None) -> PublishedFile:
    return PublishedFile(name="TestSet", filename="tasks.jsonl", url=url,
                         sha256=hashlib.sha256(body).hexdigest(), url_env="INSTRUCTCODER_TEST_URL",
                         config_key="evaluation.testset_path", dev_copy=dev_copy)


def files_under(folder: Path) -> list[Path]:
    return list(folder.rglob("*")) if folder.exists() else []


def test_download_is_verified_cached_and_then_served_without_the_server(tmp_path):
    with FileServer(BODY) as server:
        s = spec(server.url)
        path = obtain(s, cache=tmp_path)
        assert server.hits == 1
    assert path == s.cached(tmp_path) and path.read_bytes() == BODY
    assert [p for p in files_under(tmp_path) if p.is_file()] == [path]  # no temporary file beside it
    assert obtain(s, cache=tmp_path) == path  # the server is stopped: the cache answers


def test_wrong_checksum_is_refused_and_leaves_nothing(tmp_path):
    with FileServer(BODY.replace(b"T/7", b"T/8")) as server:
        with pytest.raises(PublishedFileError, match="SHA-256") as err:
            obtain(spec(server.url), cache=tmp_path)
    assert "three ways" in str(err.value) and "evaluation.testset_path" in str(err.value)
    assert files_under(tmp_path) == []


def test_server_closing_mid_file_leaves_nothing(tmp_path):
    with FileServer(BODY, mode="truncate") as server:
        with pytest.raises(PublishedFileError, match="stopped after") as err:
            obtain(spec(server.url), cache=tmp_path)
        assert server.hits == 1
    assert f"of {len(BODY)} bytes" in str(err.value)
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_is_named_and_leaves_nothing(tmp_path, status):
    with FileServer(BODY, mode=status) as server:
        with pytest.raises(PublishedFileError, match=f"HTTP {status}"):
            obtain(spec(server.url), cache=tmp_path)
    assert files_under(tmp_path) == []


def test_unreachable_address_names_the_three_ways(tmp_path):
    s = spec(f"http://127.0.0.1:{free_port()}/tasks.jsonl")
    with pytest.raises(PublishedFileError) as err:
        obtain(s, cache=tmp_path, timeout=5)
    msg = str(err.value)
    assert "could not be reached" in msg
    assert "(1) set evaluation.testset_path" in msg and str(s.cached(tmp_path)) in msg and s.url in msg
    assert "or name a mirror in $INSTRUCTCODER_TEST_URL" in msg
    assert "\n" not in msg  # one message, one line
    assert files_under(tmp_path) == []


def test_environment_names_a_mirror(tmp_path, monkeypatch):
    pinned = f"http://127.0.0.1:{free_port()}/gone.jsonl"
    with FileServer(BODY) as mirror:
        monkeypatch.setenv("INSTRUCTCODER_TEST_URL", mirror.url)
        path = obtain(spec(pinned), cache=tmp_path / "ok")
        assert mirror.hits == 1 and path.read_bytes() == BODY
    monkeypatch.setenv("INSTRUCTCODER_TEST_URL", pinned.replace("gone", "also-gone"))
    with pytest.raises(PublishedFileError) as err:  # the message names the pinned address and the mirror
        obtain(spec(pinned), cache=tmp_path / "down", timeout=5)
    assert f"download from {pinned} ($INSTRUCTCODER_TEST_URL names a mirror; now " in str(err.value)


def test_a_changed_cache_entry_is_fetched_again(tmp_path):
    with FileServer(BODY) as server:
        s = spec(server.url)
        obtain(s, cache=tmp_path)
        s.cached(tmp_path).write_bytes(b"edited by hand\n")
        assert obtain(s, cache=tmp_path).read_bytes() == BODY
        assert server.hits == 2


def test_order_profile_then_cache_then_development_copy(tmp_path):
    dev = tmp_path / "shared" / "tasks.jsonl"
    dev.parent.mkdir()
    dev.write_bytes(BODY)
    s = spec(f"http://127.0.0.1:{free_port()}/never.jsonl", dev_copy=dev)
    cache = tmp_path / "cache"
    assert obtain(s, cache=cache) == dev  # nothing cached: the development copy, no download
    s.cached(cache).parent.mkdir(parents=True)
    s.cached(cache).write_bytes(BODY)
    assert obtain(s, cache=cache) == s.cached(cache)  # a verified cache entry comes first
    mine = tmp_path / "mine.jsonl"
    mine.write_bytes(BODY)
    assert obtain(s, explicit=mine, cache=cache) == mine  # the profile's path comes before both


def test_a_profile_path_must_exist_and_match(tmp_path):
    s = spec(f"http://127.0.0.1:{free_port()}/never.jsonl")
    with pytest.raises(PublishedFileError, match="not found"):
        obtain(s, explicit=tmp_path / "missing.jsonl", cache=tmp_path / "cache")
    other = tmp_path / "other.jsonl"
    other.write_bytes(BODY + b"\n")
    with pytest.raises(PublishedFileError, match="is not the pinned TestSet"):
        obtain(s, explicit=other, cache=tmp_path / "cache")


def test_editeval_is_pinned_to_a_commit_and_downloads_from_a_mirror(editeval_path, tmp_path, monkeypatch):
    """EditEval itself: the address names the commit (not a branch); with no development copy and an empty
    cache it comes from INSTRUCTCODER_EDITEVAL_URL and loads as 194 tasks."""
    assert "/1e7befb4700405e74c2cf1a21b761dd36dcc8735/edit_eval/edit_eval.jsonl" in EDITEVAL.url
    assert hashlib.sha256(editeval_path.read_bytes()).hexdigest() == EDITEVAL.sha256
    monkeypatch.setenv("INSTRUCTCODER_CACHE", str(tmp_path))
    monkeypatch.setattr("instructcoder_utils.tasks.EDITEVAL", dataclasses.replace(EDITEVAL, dev_copy=None))
    with FileServer(editeval_path.read_bytes()) as server:
        monkeypatch.setenv("INSTRUCTCODER_EDITEVAL_URL", server.url)
        path = editeval_file()
        assert server.hits == 1
    assert path.is_relative_to(tmp_path)
    assert len(load_editeval(path)) == 194
