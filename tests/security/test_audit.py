from __future__ import annotations

import hashlib
import json
import stat
import threading
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from enclave.security.audit import (
    AuditLog,
    AuditLogError,
    chunk_refs,
    follow,
    format_record,
    read_tail,
    record_hash,
    verify_log,
)
from enclave.security.keys import Principal

ALICE = Principal(name="alice", key_id="k1", groups=("hr",))
REFS = [{"chunk_id": "c1", "doc_id": "d1", "doc_sha256": "ab" * 32}]


def write_log(data_dir: Path, n: int = 6, **kw) -> AuditLog:
    log = AuditLog(data_dir, **kw)
    for i in range(n):
        log.append(
            endpoint="/v1/chat/completions",
            principal=ALICE,
            question=f"question {i}?",
            retrieved=REFS,
            cited=REFS[:1],
            prompt_tokens=100 + i,
            completion_tokens=20,
            latency_s=0.25,
            outcome="ok",
        )
    return log


def log_path(data_dir: Path) -> Path:
    return data_dir / "audit" / "audit.jsonl"


def lines(data_dir: Path) -> list[str]:
    return log_path(data_dir).read_text().splitlines(keepends=True)


def put(data_dir: Path, new: list[str]) -> None:
    log_path(data_dir).write_text("".join(new))


def test_concurrent_threads_write_one_valid_chain(data_dir: Path) -> None:
    log = AuditLog(data_dir)

    def work(t: int) -> None:
        for i in range(15):
            log.append(
                endpoint="/v1/search",
                principal=ALICE,
                question=f"{t}-{i}",
                prompt_tokens=t,
                completion_tokens=i,
            )

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = verify_log(data_dir)
    assert result.ok, result.reason
    assert result.records == 90 and result.head == log.head
    recs = [json.loads(x) for x in lines(data_dir)]
    assert [r["seq"] for r in recs] == list(range(1, 91))
    assert all(r["hash"] == record_hash(r, log.key) for r in recs)
    assert all(r["audit_key_id"] == log.key.key_id for r in recs)
    assert all(r["hash"] != record_hash(r) for r in recs)  # not a plain sha256 chain
    assert stat.S_IMODE(log_path(data_dir).stat().st_mode) == 0o600

    # a new instance (a restart) continues the chain from the last line
    again = AuditLog(data_dir)
    rec = again.append(
        endpoint="/v1/embeddings", principal=None, outcome="invalid_api_key", status=401
    )
    assert rec["seq"] == 91 and rec["prev_hash"] == log.head
    # and the first instance notices the other writer before its next append
    rec = log.append(endpoint="/v1/search", principal=ALICE)
    assert rec["seq"] == 92 and rec["prev_hash"] == again.head
    assert verify_log(data_dir).ok


def test_record_contents_and_question_modes(data_dir: Path, tmp_path: Path) -> None:
    rec = write_log(data_dir, 1, questions="full").head
    first = json.loads(lines(data_dir)[0])
    assert first["hash"] == rec and first["prev_hash"] == "0" * 64
    assert first["question"] == "question 0?"
    assert first["principal"] == {"name": "alice", "key_id": "k1"}
    assert first["retrieved"] == REFS and first["cited"] == REFS
    assert first["tokens"] == {"prompt": 100, "completion": 20}
    assert first["latency_ms"] == 250.0 and first["outcome"] == "ok" and first["status"] == 200
    assert first["time"].endswith("Z")

    d2 = tmp_path / "d2"
    write_log(d2, 1, questions="hash")
    rec2 = json.loads(lines(d2)[0])
    assert "question" not in rec2
    assert rec2["question_sha256"] == hashlib.sha256(b"question 0?").hexdigest()

    d3 = tmp_path / "d3"
    write_log(d3, 1, questions="omit")
    rec3 = json.loads(lines(d3)[0])
    assert "question" not in rec3 and "question_sha256" not in rec3
    assert "question 0" not in log_path(d3).read_text()


# each tampering -> (expected first bad line or None, words in the reason)
def _edit_field(ls: list[str]) -> list[str]:
    rec = json.loads(ls[2])
    rec["tokens"]["prompt"] = 1
    ls[2] = json.dumps(rec) + "\n"
    return ls


def _forge_middle(ls: list[str]) -> list[str]:
    # a record inserted with a recomputed plain-sha256 hash: its MAC fails at once
    prev = json.loads(ls[2])
    forged = {**prev, "seq": 4, "prev_hash": prev["hash"], "outcome": "ok", "endpoint": "/x"}
    forged["hash"] = record_hash(forged)
    return [*ls[:3], json.dumps(forged) + "\n", *ls[3:]]


TAMPERING = {
    "edit a field": (_edit_field, 3, "edited"),
    "drop a middle record": (lambda ls: ls[:2] + ls[3:], 3, "sequence"),
    "drop the last record": (lambda ls: ls[:-1], 6, "dropped from the end"),
    "drop the last two": (lambda ls: ls[:-2], 5, "dropped from the end"),
    "reorder two": (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 2, "sequence"),
    "insert a forged record": (_forge_middle, 4, "MAC fails"),
    "garble a line": (lambda ls: [*ls[:3], '{"seq": 4, "hash": tru\n', *ls[4:]], 4, "garbled"),
    "truncate the last line": (lambda ls: [*ls[:-1], ls[-1][:40]], 6, "truncated"),
    "empty the log": (lambda ls: [], 1, "dropped from the end"),
}


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_verify_detects_tampering(cli_app: typer.Typer, data_dir: Path, kind: str) -> None:
    change, bad_line, words = TAMPERING[kind]
    write_log(data_dir)
    ok = CliRunner().invoke(cli_app, ["audit", "verify", "-d", str(data_dir)])
    assert ok.exit_code == 0 and "ok: 6 records" in ok.stdout
    put(data_dir, change(lines(data_dir)))
    result = verify_log(data_dir)
    assert not result.ok
    assert result.bad_line == bad_line, result
    assert words in result.reason
    res = CliRunner().invoke(cli_app, ["audit", "verify", "-d", str(data_dir)])
    assert res.exit_code == 1
    assert f"TAMPERED: line {bad_line}:" in res.stderr
    res = CliRunner().invoke(cli_app, ["audit", "verify", "--json", "-d", str(data_dir)])
    assert res.exit_code == 1 and json.loads(res.stdout)["bad_line"] == bad_line


def test_anchor_and_expected_head(data_dir: Path) -> None:
    log = write_log(data_dir, 3)
    assert verify_log(data_dir, expect_head=log.head).ok
    assert not verify_log(data_dir, expect_head="f" * 64).ok
    anchor = data_dir / "audit" / "audit.anchor.json"
    saved = anchor.read_text()
    anchor.unlink()
    assert "anchor" in verify_log(data_dir).reason
    anchor.write_text(saved)
    assert verify_log(data_dir).ok
    anchor.write_text("{}")
    assert "damaged" in verify_log(data_dir).reason


def test_a_rewritten_chain_is_caught_by_the_saved_head(data_dir: Path, tmp_path: Path) -> None:
    head = write_log(data_dir, 3).head
    # someone holding the audit key rewrites everything consistently (log and anchor) ...
    other = tmp_path / "other"
    write_log(other, 2)
    for name in ("audit.jsonl", "audit.anchor.json"):
        (data_dir / "audit" / name).write_bytes((other / "audit" / name).read_bytes())
    assert verify_log(data_dir).ok
    # ... which only the head saved elsewhere reveals
    assert not verify_log(data_dir, expect_head=head).ok


def test_log_refuses_to_extend_a_damaged_chain(data_dir: Path) -> None:
    write_log(data_dir, 3)
    ls = lines(data_dir)
    put(data_dir, ls[:-1])  # the last record dropped
    with pytest.raises(AuditLogError, match="records were removed"):
        AuditLog(data_dir)
    put(data_dir, [*ls, '{"torn'])  # a torn tail
    with pytest.raises(AuditLogError, match="incomplete line"):
        AuditLog(data_dir)


def test_tail_and_follow(cli_app: typer.Typer, data_dir: Path) -> None:
    write_log(data_dir, 5, questions="full")
    assert [r["seq"] for r in read_tail(data_dir, 2)] == [4, 5]
    assert [r["seq"] for r in read_tail(data_dir, 50)] == [1, 2, 3, 4, 5]
    res = CliRunner().invoke(cli_app, ["audit", "tail", "-n", "2", "--json", "-d", str(data_dir)])
    assert [json.loads(x)["seq"] for x in res.stdout.splitlines()] == [4, 5]
    res = CliRunner().invoke(cli_app, ["audit", "tail", "-n", "1", "-d", str(data_dir)])
    assert "#5 alice /v1/chat/completions ok tokens=104+20" in res.stdout
    assert "question 4?" in res.stdout

    log = AuditLog(data_dir)
    got: list[int] = []
    done = threading.Event()

    def writer() -> None:
        for _ in range(3):
            log.append(endpoint="/v1/search", principal=ALICE)

    stream = follow(data_dir, poll_s=0.02, stop=done.is_set)
    t = threading.Thread(target=writer)
    first = None
    t.start()
    for rec in stream:
        first = first or rec
        got.append(rec["seq"])
        if len(got) == 3:
            done.set()
            break
    t.join()
    assert got == [6, 7, 8]


def test_chunk_refs_resolves_document_hashes() -> None:
    class Hit:
        def __init__(self, chunk_id: str, doc_id: str) -> None:
            self.chunk_id, self.doc_id = chunk_id, doc_id

    class Doc:
        sha256 = "cd" * 32

    class Lookup:
        calls = 0

        def get_document(self, doc_id: str):
            Lookup.calls += 1
            return Doc() if doc_id == "d1" else None

    hits = [Hit("c1", "d1"), Hit("c2", "d1"), {"chunk_id": "c3", "doc_id": "d2"}]
    refs = chunk_refs(hits, Lookup())
    assert refs == [
        {"chunk_id": "c1", "doc_id": "d1", "doc_sha256": "cd" * 32},
        {"chunk_id": "c2", "doc_id": "d1", "doc_sha256": "cd" * 32},
        {"chunk_id": "c3", "doc_id": "d2", "doc_sha256": ""},
    ]
    assert Lookup.calls == 2  # once per document
    assert chunk_refs(hits[:1], {"d1": "ef"})[0]["doc_sha256"] == "ef"


def test_format_record_without_principal() -> None:
    line = format_record(
        {"seq": 3, "endpoint": "/v1/models", "outcome": "invalid_api_key", "principal": None}
    )
    assert "#3 - /v1/models invalid_api_key" in line


def test_anchor_may_lag_by_one_record_only(data_dir: Path) -> None:
    """A crash between the log write and the anchor write leaves the log one record ahead."""
    write_log(data_dir, 3)
    ls = lines(data_dir)

    key = AuditLog(data_dir).key

    def chained(prev_line: str) -> str:
        prev = json.loads(prev_line)
        rec = {**prev, "seq": prev["seq"] + 1, "prev_hash": prev["hash"]}
        rec["hash"] = record_hash(rec, key)
        return json.dumps(rec) + "\n"

    one = chained(ls[-1])
    put(data_dir, [*ls, one])
    assert verify_log(data_dir).ok
    assert AuditLog(data_dir).count == 4  # and the server carries on from there
    two = chained(one)
    put(data_dir, [*ls, one, two])
    result = verify_log(data_dir)
    assert not result.ok and result.bad_line == 5
