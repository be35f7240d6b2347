"""Access control against a real server: the leak matrix, failing closed, revocation, and
401 on every non-public operation of the OpenAPI schema.

Real uvicorn on loopback, the real ingestion pipeline and bundled embedder, real LanceDB.
Chat uses :class:`EchoGenerator` (a fake model that repeats every source it is shown): what is
under test is which sources reach the prompt and the citations, not the prose.
"""

from __future__ import annotations

import random
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from enclave.errors import UsageError
from enclave.security.keys import KeyStore
from enclave.settings import GeneratorSettings, RetrievalSettings, SecuritySettings, Settings
from tests.security.server_support import (
    EchoGenerator,
    auth,
    canaries,
    ingest,
    make_key,
    sdk,
    serve,
)
from tests.server.conftest import Live

TOPICS = ["payroll", "audit", "roadmap", "contract", "pipeline", "pension", "patent",
          "handbook", "unassigned", "minutes"]  # fmt: skip
#: the groups each folder is ingested with (``enclave ingest DIR --groups ...``);
#: None = no ACL at all (admins only), "board" = a group no key holds
FOLDER_GROUPS: list[list[str] | None] = [
    ["hr"], ["finance"], ["eng"], ["legal"], ["sales"],
    ["hr", "finance"], ["eng", "legal"], ["public"], None, ["board"],
]  # fmt: skip
DOCS_PER_FOLDER = 6
WORDS = (  # noqa: SIM905
    "river lantern copper orchard violet harbor meadow granite falcon ember willow quartz "
    "saffron glacier tundra canyon prairie beacon cobalt velvet thimble marble pebble "
    "cedar juniper walnut tulip orchid lagoon summit valley ferry tunnel bridge tower "
    "market bakery museum garden castle island forest desert planet comet nebula rocket"
).split()
#: the leak matrix's keys: five with overlapping groups, and an admin
MATRIX_KEYS = ["hr-bot", "finance-bot", "hr-finance", "eng-legal", "sales-legal", "root"]
KEYS: dict[str, dict[str, Any]] = {
    "hr-bot": {"groups": ["hr"]},
    "finance-bot": {"groups": ["finance"]},
    "hr-finance": {"groups": ["hr", "finance"]},
    "eng-legal": {"groups": ["eng", "legal"]},
    "sales-legal": {"groups": ["sales", "legal"]},
    "no-groups": {"groups": []},
    "unknown-group": {"groups": ["nosuchgroup"]},
    "root": {"admin": True},
}


class Matrix:
    def __init__(self, live: Live, keys: dict[str, str], docs: dict[str, dict[str, Any]]):
        self.live = live
        self.keys = keys
        #: canary -> {"groups", "path"}
        self.docs = docs

    def permitted(self, key_name: str) -> set[str]:
        spec = KEYS[key_name]
        if spec.get("admin"):
            return set(self.docs)
        mine = set(spec.get("groups", [])) | {"public"}
        return {c for c, d in self.docs.items() if mine & set(d["groups"])}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory, bundled_embedder: Any) -> Iterator[Matrix]:
    root = tmp_path_factory.mktemp("leak")
    settings = Settings(
        data_dir=root / "data",
        retrieval=RetrievalSettings(top_k=3),
        generator=GeneratorSettings(max_tokens=400),
        security=SecuritySettings(audit_questions="omit"),
    )
    docs: dict[str, dict[str, Any]] = {}
    rng = random.Random(7)
    for f, groups in enumerate(FOLDER_GROUPS):
        folder = root / f"folder{f}"
        folder.mkdir()
        for i in range(DOCS_PER_FOLDER):
            canary = f"canary-{rng.getrandbits(48):012x}"  # the same every run
            n = f * DOCS_PER_FOLDER + i
            words = " ".join(rng.sample(WORDS, 14))
            (folder / f"record-{n:03d}.txt").write_text(
                f"Access code {canary}. Record {n} of the {TOPICS[f]} register: {words}.\n",
                encoding="utf-8",
            )
            docs[canary] = {
                "groups": groups or [],
                "path": str(folder / f"record-{n:03d}.txt"),
                "words": words,
            }
        ingest(settings, folder, bundled_embedder, groups)
    keys = {name: make_key(settings, name, **spec) for name, spec in KEYS.items()}
    with serve(settings, EchoGenerator(context_size=8192), bundled_embedder) as live:
        yield Matrix(live, keys, docs)


def test_leak_matrix(matrix: Matrix) -> None:
    """Every key asks for every canary through search, chat (answer, citations, sources) and
    the documents endpoints: nothing outside its groups, (nearly) all of what is inside."""
    assert len(matrix.docs) >= 50 and len(MATRIX_KEYS) >= 6
    all_canaries = sorted(matrix.docs)
    leaks: list[str] = []
    found = {"search": 0, "chat": 0, "documents": 0}
    wanted = 0
    with httpx.Client(base_url=matrix.live.base_url, timeout=60) as client:
        admin_list = client.get(
            "/v1/documents", params={"limit": 1000}, headers=auth(matrix.keys["root"])
        ).json()
        assert admin_list["total"] == len(matrix.docs)
        id_of = {d["path"]: d["id"] for d in admin_list["data"]}
        for name in MATRIX_KEYS:
            key = matrix.keys[name]
            allowed = matrix.permitted(name)
            wanted += len(allowed)
            h = auth(key)
            # search: each canary on its own (with its document's words), top_k small
            seen: set[str] = set()
            for c in all_canaries:
                query = f"{matrix.docs[c]['words']} {c}"
                r = client.post("/v1/search", json={"query": query, "top_k": 2}, headers=h)
                assert r.status_code == 200, r.text
                got = canaries(r.text)
                leaks += [f"{name} search {x}" for x in got - allowed]
                seen |= got & {c}
            found["search"] += len(seen & allowed)
            # chat: answer text, citations and sources
            seen = set()
            for c in all_canaries:
                batch = [c]
                question = f"What is the access code of the record about {matrix.docs[c]['words']}?"
                body = {
                    "model": "enclave",
                    "messages": [{"role": "user", "content": question}],
                    "top_k": 2,
                    "max_tokens": 200,
                }
                r = client.post("/v1/chat/completions", json=body, headers=h)
                assert r.status_code == 200, r.text
                data = r.json()
                got = canaries(data["choices"][0]["message"]["content"])
                for part in ("citations", "sources"):
                    got |= canaries(str(data[part]))
                leaks += [f"{name} chat {x}" for x in got - allowed]
                seen |= got & set(batch)
            found["chat"] += len(seen & allowed)
            # documents: the list shows exactly the readable ones; get is 404 for the rest
            listed = client.get("/v1/documents", params={"limit": 1000}, headers=h).json()
            visible_paths = {d["path"] for d in listed["data"]}
            assert listed["total"] == len(visible_paths)
            expected_paths = {matrix.docs[c]["path"] for c in allowed}
            leaks += [f"{name} list {p}" for p in visible_paths - expected_paths]
            seen = set()
            for c in all_canaries:
                doc_id = id_of[matrix.docs[c]["path"]]
                r = client.get(f"/v1/documents/{doc_id}", headers=h)
                if c in allowed:
                    assert r.status_code == 200, (name, r.text)
                    assert "groups" not in r.json() or KEYS[name].get("admin")
                    seen |= canaries(r.text)
                else:
                    assert r.status_code == 404, (name, c, r.text)
                    assert r.json()["error"]["message"] == "document not found"
                    leaks += [f"{name} get {x}" for x in canaries(r.text)]
            found["documents"] += len(seen & allowed)
    assert leaks == []
    for channel, n in found.items():
        assert n >= 0.99 * wanted, (channel, n, wanted)


def test_fail_closed(matrix: Matrix) -> None:
    """No ACL: admins only. A key without groups or with an unknown group reads only public
    documents. Bad group names are refused; the request cannot carry groups."""
    no_acl = {c for c, d in matrix.docs.items() if not d["groups"]}
    public = {c for c, d in matrix.docs.items() if d["groups"] == ["public"]}
    assert no_acl and public
    for name in ("no-groups", "unknown-group", "hr-bot"):
        assert matrix.permitted(name).isdisjoint(no_acl)
    assert matrix.permitted("no-groups") == public == matrix.permitted("unknown-group")
    key = matrix.keys["unknown-group"]
    with httpx.Client(base_url=matrix.live.base_url, timeout=60) as client:
        listed = client.get("/v1/documents", params={"limit": 1000}, headers=auth(key)).json()
        assert {d["path"] for d in listed["data"]} == {matrix.docs[c]["path"] for c in public}
        # a client cannot widen its access with filters: groups are not a request field
        r = client.post(
            "/v1/search",
            json={"query": "access code", "filters": {"groups": ["hr"]}},
            headers=auth(key),
        )
        assert r.status_code == 400
        r = client.post(
            "/v1/search",
            json={"query": "access code", "filters": {"path_prefix": "') OR true --"}},
            headers=auth(key),
        )
        assert r.status_code == 200 and canaries(r.text) <= public
        # admin: sees the documents without an ACL
        c = sorted(no_acl)[0]
        r = client.post(
            "/v1/search",
            json={"query": f"{matrix.docs[c]['words']} {c}", "top_k": 2},
            headers=auth(matrix.keys["root"]),
        )
        assert c in canaries(r.text)
    store = KeyStore(matrix.live.settings.data_dir)
    for bad in ["hr') OR true --", "a b", "x,y;", "*", "../etc", "é" * 3, "-lead"]:
        with pytest.raises(UsageError, match="invalid group name"):
            store.create(f"bad-{secrets.token_hex(3)}", groups=[bad])
    from ingest.pipeline import ingest_paths

    with pytest.raises(UsageError):
        ingest_paths(matrix.live.settings, [Path(matrix.docs[c]["path"])], groups=["hr') OR 1=1"])


def test_revocation_and_group_changes_apply_on_the_next_request(
    matrix: Matrix, tmp_path: Path
) -> None:
    settings = matrix.live.settings
    store = KeyStore(settings.data_dir)
    _, key = store.create("temp-hr", groups=["hr", "finance"])
    hr = {c for c, d in matrix.docs.items() if d["groups"] == ["hr"]}
    c = sorted(hr)[0]
    client = sdk(matrix.live, key)
    with httpx.Client(base_url=matrix.live.base_url, timeout=60) as http:

        def search() -> set[str]:
            query = f"{matrix.docs[c]['words']} {c}"
            r = http.post("/v1/search", json={"query": query, "top_k": 2}, headers=auth(key))
            assert r.status_code == 200, r.text
            return canaries(r.text)

        assert c in search()
        store.set_groups("temp-hr", ["finance"])  # no restart
        assert c not in search()
        store.set_groups("temp-hr", ["hr"])
        assert c in search()
        assert client.models.list().data
        store.revoke("temp-hr")
        with pytest.raises(openai.AuthenticationError, match="invalid or revoked"):
            client.models.list()
        r = http.post("/v1/search", json={"query": c}, headers=auth(key))
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"


PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/openapi.json")}


def _operations(live: Live) -> list[tuple[str, str]]:
    schema = live.app.openapi()
    ops = []
    for path, item in schema["paths"].items():
        for method in item:
            if method in {"get", "post", "put", "patch", "delete"}:
                ops.append((method.upper(), re.sub(r"\{[^}]+\}", "0" * 24, path)))
    return ops


@pytest.mark.parametrize(
    "header",
    [None, "Bearer enc_" + "x" * 43, "Bearer", "Basic dXNlcjpwYXNz", "enc_nobearer"],
)
def test_every_non_public_operation_needs_a_key(matrix: Matrix, header: str | None) -> None:
    """Walks every operation in the OpenAPI schema: without a valid key, 401 in the OpenAI
    error shape (and never a leak of data)."""
    ops = _operations(matrix.live)
    assert len(ops) >= 8
    headers = {} if header is None else {"Authorization": header}
    with httpx.Client(base_url=matrix.live.base_url, timeout=30) as client:
        for method, path in ops:
            r = client.request(method, path, headers=headers, json={"query": "x"})
            if (method, path) in PUBLIC:
                assert r.status_code in (200, 503), (method, path)
                continue
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            err = r.json()["error"]
            assert err["type"] == "authentication_error" and err["code"] == "invalid_api_key"
            assert canaries(r.text) == set()
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401


def test_admin_only_endpoints(matrix: Matrix) -> None:
    hr, root = matrix.keys["hr-bot"], matrix.keys["root"]
    with httpx.Client(base_url=matrix.live.base_url, timeout=30) as client:
        for path in ("/v1/usage", "/metrics"):
            r = client.get(path, headers=auth(hr))
            assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
            assert client.get(path, headers=auth(root)).status_code == 200
        listed = client.get("/v1/documents", headers=auth(hr)).json()
        doc_id = listed["data"][0]["id"]
        r = client.delete(f"/v1/documents/{doc_id}", headers=auth(hr))
        assert r.status_code == 403
        assert client.get(f"/v1/documents/{doc_id}", headers=auth(hr)).status_code == 200
        usage = client.get("/v1/usage", headers=auth(root)).json()
        names = {k["name"] for k in usage["keys"]}
        assert "hr-bot" in names and usage["resets_at"]
