"""A server's refusal is shown in the client's language: the server sends its i18n key and
params beside its own text; the client renders the key itself, and falls back to the
server's text (terminal-safe) when the key is unknown here or the params do not fit.

Real `zhibao sync` subprocesses against a real city served in-process (in English), and
against a hostile server that answers whatever it likes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any, ClassVar

import httpx

from sync.protocol import i18n
from sync.protocol.entry import encode_entry
from tests.conftest import MakeTopology
from tests.hostile.harness import Actor, garbage_signature, sign_raw, stamp_now
from tests.support.servers import serve_in_thread, zhibao
from tests.support.topology import CITY, TOWN, VILLAGE
from tiers.node import create_home

STRANGER = "330782009"  # a town the city never enrolled


def stranger(base: Path, root_key: str) -> Path:
    home = base / STRANGER
    node = create_home(home, tier="town", node_id=STRANGER, name="陌生镇",
                       parent_id=CITY, root_key=root_key)  # fmt: skip
    node.close()
    return home


def test_refusal_from_english_server_shown_in_chinese(make_topology: MakeTopology) -> None:
    net = make_topology((CITY,))
    town = stranger(net.base, net.keys[CITY])
    i18n.use_locale("en")  # the server speaks English
    try:
        with serve_in_thread(net.homes[CITY]) as url:
            answer = httpx.post(url + "/v1/hello", content=b"{}")  # what a refusal carries
            refused = zhibao(town, "sync", "--peer", url, lang="zh")
            english = zhibao(town, "sync", "--peer", url, lang="en")
    finally:
        i18n.use_locale(None)
    data = answer.json()
    assert data["error"] and data["message"] and isinstance(data["params"], dict)
    assert refused.returncode == 1, refused.stderr
    assert f"节点 {STRANGER} 未在此登记" in refused.stderr, refused.stderr
    assert "not enrolled" not in refused.stderr
    assert english.returncode == 1
    assert f"node {STRANGER} is not enrolled here" in english.stderr, english.stderr


class _Hostile(BaseHTTPRequestHandler):
    """Refuses everything with the JSON it was given."""

    answer: ClassVar[dict[str, Any]] = {}

    def _refuse(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        data = json.dumps(self.answer).encode()
        self.send_response(403)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _refuse

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def hostile_server(answer: dict[str, Any]) -> Iterator[str]:
    handler = type("Handler", (_Hostile,), {"answer": answer})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


EVIL = "\x1b]0;owned\x07\x1b[2J\u202e<script>=cmd|' /C calc'!A0"


def test_hostile_refusal_params_rendered_here_and_terminal_safe(
    make_topology: MakeTopology,
) -> None:
    net = make_topology((CITY,))
    town = stranger(net.base, net.keys[CITY])
    answer = {"error": "request.unknown_node", "message": "whatever " + EVIL,
              "params": {"node_id": EVIL}}  # fmt: skip
    with hostile_server(answer) as url:
        done = zhibao(town, "sync", "--peer", url, lang="zh")
    assert done.returncode == 1
    assert "未在此登记" in done.stderr and "whatever" not in done.stderr, done.stderr
    assert "\x1b" not in done.stderr and "\u202e" not in done.stderr and "\x07" not in done.stderr
    assert "\\x1b]0;owned" in done.stderr and "\\u202e" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_hostile_refusal_unknown_key_falls_back_to_its_text(make_topology: MakeTopology) -> None:
    net = make_topology((CITY,))
    town = stranger(net.base, net.keys[CITY])
    cases = [
        {"error": "evil.key", "message": "no " + EVIL},  # a key not known here
        {"error": "request.unknown_node", "message": "no " + EVIL, "params": {}},  # too few
        {"error": "server.projection_failed", "message": "no " + EVIL,  # wrong kind: {:.0f}
         "params": {"error": "x", "seconds": "soon"}},
        {"error": "request.unknown_node", "message": "no " + EVIL, "params": ["x"]},
    ]  # fmt: skip
    for answer in cases:
        with hostile_server(answer) as url:
            done = zhibao(town, "sync", "--peer", url, lang="zh")
        assert done.returncode == 1, answer
        assert "拒绝：no \\x1b]0;owned" in done.stderr, (answer, done.stderr)
        assert "\x1b" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_render_fills_a_known_key_in_the_readers_language() -> None:
    i18n.use_locale("zh")
    try:
        shown = i18n.render("request.unknown_node", {"node_id": "330782009"}, "fallback")
        unknown = i18n.render("no.such.key", {"node_id": "1"}, "fallback")
    finally:
        i18n.use_locale(None)
    assert shown == "节点 330782009 未在此登记"
    assert unknown == "fallback"


def test_push_rejections_shown_in_the_clients_language(make_topology: MakeTopology) -> None:
    """A hostile village's own key signs nothing valid: the English town refuses the entry
    and the village's clerk reads why in Chinese (reason_key + reason_params rendered here)."""
    net = make_topology((CITY, TOWN, VILLAGE))
    actor = Actor.of(net.homes[VILLAGE])
    with actor.store() as store, store.transaction():
        seq, prev = store.head(VILLAGE)
        day = stamp_now()[:10].replace("-", "")
        body = {"case_id": f"{VILLAGE}-{day}-0001", "after": None, "item_code": "330782-MZ-002",
                "applicant": {"name": "村民"}, "materials": []}  # fmt: skip
        raw = encode_entry(VILLAGE, seq + 1, prev, stamp_now(), "case.received", body)
        entry = sign_raw(actor.signer, raw, VILLAGE, seq + 1, "case.received")
        store.insert([garbage_signature(entry)], stamp_now())
    i18n.use_locale("en")
    try:
        with serve_in_thread(net.homes[TOWN]) as url:
            zh = zhibao(net.homes[VILLAGE], "sync", "--peer", url, lang="zh")
            en = zhibao(net.homes[VILLAGE], "sync", "--peer", url, lang="en")
    finally:
        i18n.use_locale(None)
    zh_line = [line for line in zh.stderr.splitlines() if f"{VILLAGE}#{seq + 1}" in line]
    en_line = [line for line in en.stderr.splitlines() if f"{VILLAGE}#{seq + 1}" in line]
    assert zh_line and en_line, (zh.stderr, en.stderr)
    assert not re.search(r"[a-z]{4,}", zh_line[0].split("：", 1)[1]), zh_line
    assert re.search(r"[\u4e00-\u9fff]", zh_line[0].split("：", 1)[1]), zh_line
    assert not re.search(r"[\u4e00-\u9fff]", en_line[0]), en_line
