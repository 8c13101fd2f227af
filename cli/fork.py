"""`zhibao fork list|resolve` (DESIGN §8): the forks held here, and an admin's decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.common import echo, home_option, json_option, node_at, print_json, print_table
from cli.help import h
from sync import fork_evidence, fork_switch, forks
from sync.protocol import i18n

i18n.register(
    {
        "fork.col.origin": ("origin", "来源"),
        "fork.col.seq": ("seq", "序号"),
        "fork.col.held": ("held here", "本处持有"),
        "fork.col.other": ("other", "另一条目"),
        "fork.col.detected": ("detected", "发现时间"),
        "fork.col.state": ("state", "状态"),
        "fork.col.decision": ("decision", "裁定"),
        "fork.state.unresolved": ("unresolved (frozen)", "未处理（已冻结）"),
        "fork.state.resolved": ("resolved", "已处理"),
        "fork.state.switch_needed": (
            "decided for the other entry (still frozen here)",
            "裁定保留另一条目（本处仍冻结）",
        ),
        "fork.decision_text": (
            "{by} #{entry_seq} at {at}: keep {kept}; {reason}",
            "{by} #{entry_seq}（{at}）：保留 {kept}；{reason}",
        ),
        "fork.none_held": ("No forks are held here.", "本处没有分叉记录。"),
        "fork.abandoned_held": (
            "Entries given up for a decision, kept as evidence: {count}",
            "因裁定放弃、作为证据保留的条目：{count} 条",
        ),
        "fork.pending_decisions": (
            "Decisions held for forks not seen here: {count}",
            "针对本处未见分叉的裁定：{count} 条",
        ),
        "fork.resolved_done": (
            "Resolved the fork of {origin} at #{seq}: kept {kept} (entry #{entry_seq}).",
            "已处理 {origin} 第 {seq} 号分叉：保留 {kept}（条目 #{entry_seq}）。",
        ),
    }
)


def _entry_text(digest: str, kind: str | None, at: str | None) -> str:
    return " ".join(part for part in (digest[:12], kind, at) if part)


def _decision_text(decision: dict[str, Any] | None) -> str:
    if decision is None:
        return "-"
    return i18n.t(
        "fork.decision_text",
        by=decision["by"], entry_seq=decision["entry_seq"], at=decision["at"],
        kept=decision["kept_hash"][:12], reason=decision["reason"],
    )  # fmt: skip


@click.group(
    "fork",
    help=h(
        "Forks (two signed entries for one origin and seq) held here, and their resolution.",
        "本节点持有的分叉（同一来源、同一序号的两条签名条目）及其裁定。",
    ),
)
def fork_group() -> None:
    pass


@fork_group.command(
    "list",
    help=h(
        "Every fork held here: both entries, when it was found, and the decision if any.",
        "本节点持有的每个分叉：两条条目、发现时间，以及已有的裁定。",
    ),
)
@home_option
@json_option
def list_command(home: Path | None, as_json: bool) -> None:
    with node_at(home) as node:
        held = node.store.forks()
        known = forks.decisions(node.store)
        given_up = fork_switch.abandoned(node.store)
        reported = fork_evidence.reports(node.store)
        me = node.node_id
        lost = [  # decided for an entry this node's own log does not hold: restore it
            d for d in known if d["origin"] == me and d["in_force"]
            and node.store.hash_at(me, d["seq"]) not in (None, bytes.fromhex(d["kept_hash"]))
        ]  # fmt: skip
    if as_json:
        print_json({"forks": held, "decisions": known, "abandoned": given_up,
                    "reports": reported, "self_lost": [d["seq"] for d in lost]})  # fmt: skip
        return
    seen = {(f["origin"], f["seq"]) for f in held}
    pending = [d for d in known if (d["origin"], d["seq"]) not in seen]
    if not held:
        echo(i18n.t("fork.none_held"))
    else:
        print_table(
            [i18n.t(f"fork.col.{c}") for c in
             ("origin", "seq", "held", "other", "detected", "state", "decision")],
            [
                [f["origin"], f["seq"], _entry_text(f["held_hash"], f["held_type"], f["held_at"]),
                 _entry_text(f["other_hash"], f["other_type"], f["other_at"]), f["detected_at"],
                 i18n.t(f"fork.state.{f['state']}"), _decision_text(f["decision"])]
                for f in held
            ],
        )  # fmt: skip
    if pending:
        echo(i18n.t("fork.pending_decisions", count=len(pending)))
    if given_up:
        echo(i18n.t("fork.abandoned_held", count=len(given_up)))
    for decision in lost:
        echo(i18n.t("fork.switch_self", origin=me, seq=decision["seq"]))


@fork_group.command(
    "resolve",
    help=h(
        "Decide a fork of ORIGIN (at the city or ORIGIN's parent): a signed decision that "
        "flows through the tree and unfreezes ORIGIN wherever the kept entry is held.",
        "裁定 ORIGIN 的分叉（在市级或 ORIGIN 的上级进行）：签名的裁定沿网络传递，"
        "凡持有被保留条目之处即解除对 ORIGIN 的冻结。",
    ),
)
@click.argument("origin")
@click.option("--keep", type=click.Choice(["held", "other"]), required=True,
              help=h("Keep the entry held here (held), or the other one (other).",
                     "保留本节点持有的条目（held）或另一条（other）。"))  # fmt: skip
@click.option("--reason", required=True,
              help=h("Why: kept with the decision, shown everywhere.",
                     "理由：随裁定保存，各处可见。"))  # fmt: skip
@click.option("--seq", type=int, default=None,
              help=h("The fork's seq (default: the lowest).",
                     "分叉的序号（默认：最小的）。"))  # fmt: skip
@home_option
@json_option
def resolve_command(
    origin: str, keep: str, reason: str, seq: int | None, home: Path | None, as_json: bool
) -> None:
    with node_at(home) as node:
        entry = forks.resolve(node, origin, keep, reason, seq=seq)
        body = entry.fields()["body"]
    if as_json:
        print_json({"origin": origin, "seq": body["seq"], "kept_hash": body["kept_hash"],
                    "other_hash": body["other_hash"], "reason": body["reason"],
                    "by": entry.origin, "entry_seq": entry.seq})  # fmt: skip
    else:
        echo(i18n.t("fork.resolved_done", origin=origin, seq=body["seq"],
                    kept=body["kept_hash"][:12], entry_seq=entry.seq))  # fmt: skip
