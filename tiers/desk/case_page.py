"""The desk's page of one case (/desk/case/ID) and its materials' downloads (issue #14).

The page says what `zhibao case show` says (tiers.cases.reading: the same details, the
一次性告知 lists, each event with what it said) and lists the case's materials (name, file,
size, type, SHA-256, where the bytes are, who attached them when). Every opening is recorded
in tiers.desk.access under the reader's name.

Viewers and admins (the rule, said on the page too): a viewer sees the applicant's ID number
and phone masked (3301**********1234, 138****5678; here and in the warnings and their files)
and may not download a material; an admin sees everything and downloads the materials held
on this node, each download recorded like an opening. A material is served as an attachment,
never shown inline: `application/octet-stream` unless it is a JPEG, PNG or PDF, its file name
made safe, the bytes checked against their SHA-256 as they go.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from html import escape
from typing import Any, BinaryIO
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import BlobError, CaseNotFoundError
from tiers import materials
from tiers.cases import reading, views
from tiers.cases.labels import event_label
from tiers.desk import access, layout
from tiers.desk.layout import Page, path_part
from tiers.desk.users import Session
from tiers.export import Table

MATERIAL = re.compile(r"^([^/]+)/material/([0-9a-f]{64})$")
# Types a browser may be told a material is; anything else is a byte stream.
SAFE_TYPES = frozenset({"image/jpeg", "image/png", "application/pdf"})
CHUNK = 1 << 20

i18n.register(
    {
        "desk.case.title": ("Case {case_id}", "办件 {case_id}"),
        "desk.case.not_found": ("No case {case_id} here.", "本节点没有办件 {case_id}。"),
        "desk.case.details": ("Details", "办件信息"),
        "desk.case.events": ("History", "办理过程"),
        "desk.case.notices": ("One-time notices (一次性告知)", "一次性告知"),
        "desk.case.materials": ("Materials", "材料"),
        "desk.case.no_materials": ("No materials attached.", "没有添加材料。"),
        "desk.case.material.sha256": ("SHA-256", "SHA-256"),
        "desk.case.rule.viewer": (
            "You are a viewer: ID numbers and phone numbers are masked and materials cannot "
            "be downloaded. Your opening of this case is recorded.",
            "您是查看者：证件号码和联系电话已部分隐藏，不能下载材料。本次查阅已记录。",
        ),
        "desk.case.rule.admin": (
            "You are an admin: you see everything. Every opening of a case and every material "
            "downloaded is recorded under your name (see Case access).",
            "您是管理员：可查看全部信息。每次查阅办件和下载材料都以您的名义记录（见查阅记录）。",
        ),
        "desk.case.material.admins_only": (
            "Only an admin may download a case's materials.",
            "只有管理员可以下载办件材料。",
        ),
        "desk.case.material.not_found": (
            "Case {case_id} has no such material.",
            "办件 {case_id} 没有这份材料。",
        ),
        "desk.case.material.not_here": (
            "The file of {name} is not held on this node ({state}).",
            "{name} 的文件不在本节点（{state}）。",
        ),
        "desk.ev.at": ("Time", "时间"),
        "desk.ev.type": ("Event", "事件"),
        "desk.ev.node": ("Node", "节点"),
        "desk.ev.standing": ("Standing", "效力"),
        "desk.ev.body": ("Contents", "内容"),
        "desk.standing.applied": ("applied", "有效"),
        "desk.standing.refused": ("refused", "已拒绝"),
        "desk.standing.waiting": ("waiting", "待前序"),
    }
)


# --- viewers see less ------------------------------------------------------------------------


def mask(value: str | None, head: int, tail: int) -> str | None:
    """`value` with all but its first `head` and last `tail` characters as `*` (all of
    them when it is too short to keep any: fewer than head + tail + 4 characters)."""
    if not value:
        return value
    if len(value) < head + tail + 4:
        return "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[len(value) - tail :]


def mask_id_no(value: str | None) -> str | None:
    return mask(value, 4, 4)  # 3301**********1234: the area, the last four


def mask_phone(value: str | None) -> str | None:
    return mask(value, 3, 4)  # 138****5678


def seen_by(session: Session, applicant: Mapping[str, Any] | None) -> dict[str, Any]:
    """The applicant as `session` may see them: ID number and phone masked for a viewer."""
    shown = dict(applicant or {})
    if session.role != "admin":
        shown["id_no"] = mask_id_no(shown.get("id_no"))
        shown["phone"] = mask_phone(shown.get("phone"))
    return shown


def rule_note(session: Session) -> str:
    """The page's note on what this reader sees and what is recorded."""
    key = "desk.case.rule.admin" if session.role == "admin" else "desk.case.rule.viewer"
    return f'<p class="note">{escape(i18n.t(key))}</p>'


# --- the page --------------------------------------------------------------------------------


def case(node: Node, request: Request, case_id: str, found: Session) -> Page | Response:
    """/desk/case/ID: the case's page; /desk/case/ID/material/SHA256: one of its files."""
    if MATERIAL.match(case_id):
        return material_download(node, request, "/case/" + case_id, found) or Page(
            i18n.t("desk.not_found"), "", 404
        )
    try:
        view = views.show(node, case_id)
    except CaseNotFoundError:
        said = escape(i18n.t("desk.case.not_found", case_id=case_id))
        return Page(i18n.t("desk.not_found"), f"<p>{said}</p>", 404)
    if layout.wants_file(request):  # the page has no table to download: nothing opened
        return Page(i18n.t("desk.not_found"), "", 404)
    access.record(node.store, found.name, view["case_id"], node.clock.now().isoformat())
    view["applicant"] = seen_by(found, view["applicant"])
    details = "".join(
        f"<tr><th>{escape(label)}</th><td>{escape(str(value))}</td></tr>"
        for name, label, value in reading.fields(view)
        if value not in (None, "") and name != "allowed"  # what may be recorded: the CLI's
    )
    body = (
        f"<h2>{escape(i18n.t('desk.case.details'))}</h2>{rule_note(found)}"
        f'<table id="case" class="details"><tbody>{details}</tbody></table>'
        f"<h2>{escape(i18n.t('desk.case.materials'))}</h2>{_materials(view, found)}"
        f"{_notices(view)}"
        f"<h2>{escape(i18n.t('desk.case.events'))}</h2>"
        + layout.html_table(_events(view), table_id="events")
    )
    return Page(i18n.t("desk.case.title", case_id=view["case_id"]), body)


def _notices(view: Mapping[str, Any]) -> str:
    if not view["notices"]:
        return ""
    parts = [f"<h2>{escape(i18n.t('desk.case.notices'))}</h2>"]
    for notice in view["notices"]:
        items = "".join(f"<li>{escape(str(item))}</li>" for item in notice["missing"])
        parts.append(
            f'<div class="notice"><p>{escape(reading.notice_heading(notice))}</p>'
            f"<ol>{items}</ol><p>{escape(reading.notice_state(notice))}</p></div>"
        )
    return "".join(parts)


def _events(view: Mapping[str, Any]) -> Table:
    """The history as `case show` prints it: when, what, by whom, whether it stood, and
    what it said (tiers.cases.reading.event_note), never the entry's raw JSON."""
    keys = ("at", "type", "node", "standing", "body")
    rows = [
        {"at": reading.when(ev["at"]), "type": event_label(ev["type"]),
         "node": reading.named(view, ev["node_id"]),
         "standing": i18n.t(f"desk.standing.{ev['standing']}"), "body": reading.event_note(ev)}
        for ev in view["events"]
    ]  # fmt: skip
    return Table("history", keys, [i18n.t(f"desk.ev.{k}") for k in keys], rows)


def _materials(view: Mapping[str, Any], found: Session) -> str:
    listed = view["attachments"]
    if not listed:
        return f'<p class="empty">{escape(i18n.t("desk.case.no_materials"))}</p>'
    keys = ("name", "file", "size", "media_type", "sha256", "state", "attached_by",
            "attached_at")  # fmt: skip
    heads = i18n.t("material.headers").split("|")  # material|file|size|type|where|by|at
    headers = [*heads[:4], i18n.t("desk.case.material.sha256"), *heads[4:]]
    rows = [
        m | {"size": reading.human_size(m["size"]), "sha256": m["sha256"][:12],
             "full": m["sha256"], "state": reading.material_state(m["state"]),
             "held": m["state"] == "here", "attached_by": reading.named(view, m["attached_by"]),
             "attached_at": reading.when(m["attached_at"])}
        for m in listed
    ]  # fmt: skip
    target = path_part(view["case_id"])

    def download(row: Mapping[str, Any]) -> str | None:
        if found.role != "admin" or not row["held"]:
            return None
        return f"/case/{target}/material/{row['full']}"

    table = Table("materials", keys, headers, rows)
    return layout.html_table(table, table_id="materials", links={"file": download})


# --- a material's bytes ----------------------------------------------------------------------


def material_download(node: Node, request: Request, path: str, found: Session) -> Response | None:
    """GET /desk/case/ID/material/SHA256: the material's bytes for an admin (recorded in
    tiers.desk.access), a refusal page otherwise; None when `path` is no material's."""
    matched = MATERIAL.match(path.removeprefix("/case/")) if path.startswith("/case/") else None
    if matched is None:
        return None
    case_id, sha256 = matched[1], matched[2]
    try:
        listed = materials.materials_of(node, case_id)
    except CaseNotFoundError:
        said = i18n.t("desk.case.not_found", case_id=case_id)
        return _refusal(found, i18n.t("desk.not_found"), said, 404)
    if found.role != "admin":
        said = i18n.t("desk.case.material.admins_only")
        return _refusal(found, i18n.t("desk.forbidden"), said, 403)
    material = next((m for m in listed if m.sha256 == sha256), None)
    if material is None:
        said = i18n.t("desk.case.material.not_found", case_id=case_id)
        return _refusal(found, i18n.t("desk.not_found"), said, 404)
    if material.state != "here":
        said = i18n.t("desk.case.material.not_here", name=material.name,
                      state=reading.material_state(material.state))  # fmt: skip
        return _refusal(found, i18n.t("desk.not_found"), said, 404)
    try:
        source = open(node.blobs.path(sha256), "rb")  # noqa: SIM115 - closed by _checked
    except OSError:
        raise BlobError("blob.corrupt", sha256=sha256) from None
    access.record(node.store, found.name, case_id, node.clock.now().isoformat(),
                  what=material.file)  # fmt: skip
    media = material.media_type if material.media_type in SAFE_TYPES else "application/octet-stream"
    return StreamingResponse(
        _checked(source, sha256), media_type=media,
        headers={"Content-Disposition": disposition(material.file),
                 "Content-Length": str(material.size),
                 "Content-Security-Policy": "default-src 'none'; sandbox"},
    )  # fmt: skip


def _checked(source: BinaryIO, sha256: str) -> Iterator[bytes]:
    """The file's bytes; raises at the end (the download is cut) when they are not the
    bytes the SHA-256 names: a disk that changed them never hands them on as good."""
    digest = hashlib.sha256()
    with source:
        while piece := source.read(CHUNK):
            digest.update(piece)
            yield piece
    if digest.hexdigest() != sha256:
        raise BlobError("blob.corrupt", sha256=sha256)


def disposition(file: str) -> str:
    """`attachment` with the file's name: ASCII letters, digits and `._-` as they are
    (others `_`) in `filename`, the whole name percent-encoded in `filename*` (RFC 6266)."""
    name = file.replace("\\", "/").rsplit("/", 1)[-1] or "material"
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "material"
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def _refusal(found: Session, title: str, said: str, status: int) -> Response:
    html = layout.document(Page(title, f"<p>{escape(said)}</p>", status), found)
    return Response(html, status_code=status, media_type="text/html; charset=utf-8")
