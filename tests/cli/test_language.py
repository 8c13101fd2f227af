"""One language per run: every help page and every usage error of every command, under
ZHIBAO_LANG=zh and =en (issue #13, part 3).

The commands are walked from `cli.main.cli` itself, so a command added later is checked
without touching this file. Under zh a page may keep only what a person types or reads
as a code: option names, metavars (upper case), choice values, command names, ids,
`code spans`, $VARIABLES and file or setting names; any other Latin word is English left
untranslated. Under en a page may show no Chinese but the terms its own English help
texts use (受理, 办件 …). Help texts not written with `cli.help.h` are listed by one test
(`cli.help.missing`), and their words are left to it by the others, so each failure says
exactly what is left.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from cli.help import PREFIX, first_sentence, missing, subcommands
from cli.help_format import display_width, wrap_text
from cli.main import cli
from sync.protocol import i18n
from tests.support.servers import zhibao
from tests.support.topology import VILLAGE, build_catalogued

LOCALES = ("en", "zh")
WIDTH = 100  # cli.main's max_content_width


def walk(command: click.Command = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in subcommands(command):
        yield from walk(sub, (*path, name))


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        command = dict(subcommands(command))[name]
    return command


PATHS = list(walk())


def run(args: list[str], lang: str) -> Result:
    i18n.use_locale(None)
    return CliRunner().invoke(cli, args, env={"ZHIBAO_LANG": lang, "ZHIBAO_HOME": None})


# --- what a page may keep in Latin letters under zh ----------------------------------------

_KEPT = re.compile(
    r"`[^`]*`"  # code: `zhibao node show`
    r"|\$[A-Z_]+"  # $ZHIBAO_HOME
    r"|(?<![\w-])--?[A-Za-z][\w-]*(?:/--[\w-]+)?"  # --item, -h, --seal/--no-seal
    r"|\[[^\]\n]*\|[^\]\n]*\]"  # [table|json|csv|xlsx]
    r"|\b\w+(?:[._/]\w+)+\b"  # node.toml, bundle_max_mb, a/b
    r"|\b[A-Z][A-Z0-9]*(?:[-_][A-Z0-9]+)*\b"  # CASE, ISO-TIME, SHA-256, HPKE, JSON
    r"|'[^'\n]*'"  # a value the reader typed, quoted back by click: 'bogus', '--nope'
)
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def typed_words(command: click.Command, path: tuple[str, ...]) -> set[str]:
    """Words a person types at this command: its path, its subcommands, its choices."""
    words = {"zhibao", *path, *(name for name, _ in subcommands(command))}
    for param in command.params:
        if isinstance(param.type, click.Choice):
            words.update(str(c) for c in param.type.choices)
    return words | {part for word in words for part in re.split(r"[-_]", word)}


def untranslated_words() -> set[str]:
    """The words of help texts not written with `h` (reported by their own test)."""
    words: set[str] = set()
    for path in PATHS:
        command = command_at(path)
        texts = [command.__dict__.get("_help_en", command.help)]
        texts += [p.__dict__.get("_help_en", p.help) for p in command.params
                  if isinstance(p, click.Option)]  # fmt: skip
        for text in texts:
            if text and not i18n.has(PREFIX + text):
                words.update(_LATIN_WORD.findall(text))
    return words


def english_left(text: str, allowed: set[str]) -> list[str]:
    """Latin words in `text` that are not something typed or a code."""
    stripped = _KEPT.sub(" ", text)
    return sorted({w for w in _LATIN_WORD.findall(stripped) if w not in allowed})


def chinese_in(text: str) -> set[str]:
    return {ch for ch in text if unicodedata.east_asian_width(ch) in "WF" and ch.isalpha()}


def english_help_chinese(command: click.Command) -> set[str]:
    """CJK characters the command's own English help texts use (domain terms: 受理 …)."""
    texts = [command.__dict__.get("_help_en", command.help) or ""]
    texts += [p.__dict__.get("_help_en", p.help) or "" for p in command.params
              if isinstance(p, click.Option)]  # fmt: skip
    texts += [sub.__dict__.get("_help_en", sub.help) or "" for _, sub in subcommands(command)]
    texts += [cli.__dict__.get("_help_en", cli.help) or ""]
    return set().union(*(chinese_in(t) for t in texts))


# --- every help text has its Chinese -------------------------------------------------------


def test_help_every_text_written_with_both_languages() -> None:
    left = missing(cli)
    assert left == [], (
        f"{len(left)} help texts without Chinese (write them help=h(english, chinese)):\n  "
        + "\n  ".join(left)
    )


# --- help pages -------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LOCALES)
def test_help_pages_speak_one_language(lang: str) -> None:
    """Every page under both locales, zh first then en and back, in one process: nothing of
    the other language is left over from the run before."""
    leftover = untranslated_words()
    problems = []
    for first in ("zh", "en") if lang == "en" else ("en", "zh"):
        for path in PATHS:
            result = run([*path, "--help"], first)
            assert result.exit_code == 0, (path, result.output)
            if first != lang:
                continue
            command = command_at(path)
            page = result.stdout
            if lang == "zh":
                words = english_left(page, typed_words(command, path) | leftover)
                if words:
                    problems.append(f"zhibao {' '.join(path)} --help: {', '.join(words)}")
                assert "用法：" in page and "选项：" in page, page
            else:
                extra = chinese_in(page) - english_help_chinese(command)
                if extra:
                    problems.append(f"zhibao {' '.join(path)} --help: {''.join(sorted(extra))}")
                assert page.startswith("Usage: zhibao") and "Options:" in page, page
    assert problems == [], f"{len(problems)} help pages in the wrong language:\n  " + "\n  ".join(
        problems
    )


def could_break_sooner(line: str) -> bool:
    """Wider than the page although it could have been broken before the edge (a space
    or a CJK character past it); one word longer than the page may stick out."""
    used, cut = 0, len(line)
    for i, ch in enumerate(line):
        used += display_width(ch)
        if used > WIDTH:
            cut = i
            break
    past = line[cut:]
    return used > WIDTH and (" " in past or any(display_width(ch) == 2 for ch in past))


@pytest.mark.parametrize("lang", LOCALES)
def test_help_pages_fit_the_width_in_terminal_columns(lang: str) -> None:
    too_wide = []
    for path in PATHS:
        page = run([*path, "--help"], lang).stdout
        too_wide += [f"zhibao {' '.join(path)}: {line!r}"
                     for line in page.splitlines() if could_break_sooner(line)]  # fmt: skip
    assert too_wide == []


def test_help_wrap_counts_a_cjk_character_as_two_columns() -> None:
    text = "数据包的接收节点，" * 8 + "用接收方的加密公钥加密（HPKE，默认）。"
    lines = wrap_text(text, 30).splitlines()
    assert len(lines) > 1
    assert all(display_width(line) <= 30 for line in lines)
    assert "".join(lines) == text  # nothing lost or added between CJK characters
    assert not any(line[0] in "，。）" for line in lines)  # no line starts with closing marks
    assert not any(line.endswith("（") for line in lines)


def test_help_wrap_keeps_english_words_whole() -> None:
    text = "Carry the materials NODE lacks after the entries (the default)."
    lines = wrap_text(text, 20, "  ", "  ").splitlines()
    assert " ".join(line.strip() for line in lines) == text
    assert all(display_width(line) <= 20 for line in lines)


# --- usage errors -------------------------------------------------------------------------------


def usage_errors() -> Iterator[tuple[tuple[str, ...], list[str]]]:
    """(command path, arguments) that click refuses before the command runs: an unknown
    option; nothing given where something is required; a bad choice; a bad number."""
    for path in PATHS:
        command = command_at(path)
        yield path, [*path, "--no-such-option"]
        if isinstance(command, click.Group):
            yield path, [*path, "no-such-command"]
            continue
        if any(p.required for p in command.params):
            yield path, list(path)
        for param in command.params:
            if not isinstance(param, click.Option) or param.is_flag:
                continue
            name = param.opts[0]
            if isinstance(param.type, click.Choice):
                yield path, [*path, name, "bogus"]
            elif isinstance(param.type, click.types._NumberParamTypeBase):
                yield path, [*path, name, "x"]
            else:
                yield path, [*path, name]  # the option's value left out


# refusals our own commands raise as usage errors (exit 2), beyond what click checks
OWN_USAGE_ERRORS = [
    ["complaint", "file", "--text", "t"],  # about nothing
    ["case", "accept"],  # neither CASE nor --item
    ["case", "accept", "C1", "--item", "X"],  # both
    ["bundle", "export", "--to", "330782", "--out", "b", "--no-seal", "--seal-key", "ab"],
]


@pytest.mark.parametrize("lang", LOCALES)
def test_usage_errors_speak_one_language(lang: str) -> None:
    problems = []
    cases = [args for _, args in usage_errors()]
    cases += OWN_USAGE_ERRORS
    for args in cases:
        result = run(args, lang)
        assert result.exit_code == 2, (args, result.output)
        said = result.stderr
        path = tuple(a for a in args if not a.startswith("-"))
        allowed = typed_words(cli, ()) | set(args) | {"zhibao"}
        command: click.Command = cli
        for name in path:
            found = dict(subcommands(command)).get(name)
            if found is None:
                break
            command = found
            allowed |= typed_words(command, path)
        if lang == "zh":
            words = english_left(said, allowed)
            assert "错误：" in said and "Error" not in said, said
        else:
            words = sorted(chinese_in(said))
            assert "Error: " in said, said
        if words:
            last = said.splitlines()[-1]
            problems.append(f"zhibao {' '.join(args)}: {', '.join(words)}  <- {last}")
    assert problems == [], f"{len(problems)} usage errors in the wrong language:\n  " + "\n  ".join(
        problems
    )


def test_help_group_list_shows_a_chinese_first_sentence_within_its_width() -> None:
    text = "本节点持有的分叉" * 10 + "。第二句不显示。"
    short = first_sentence(text)
    assert short.endswith("…") and display_width(short) <= 70
    assert first_sentence("投诉：登记、答复。其余。") == "投诉：登记、答复。"
    page = run(["--help"], "zh").stdout
    assert "  complaint  投诉：登记、答复、办结、列表。\n" in page, page


# --- tier names ---------------------------------------------------------------------------------


def test_tier_names_in_a_refusal_follow_the_locale(tmp_path: Path) -> None:
    """'由 city 受理，town 不能受理' reads 市级/镇级/村级 under zh, city/town/village under en."""
    net = build_catalogued(tmp_path / "net")
    args = ["case", "accept", "--item", "330782-JT-001", "--applicant", "张三"]
    zh = zhibao(net.homes[VILLAGE], *args, lang="zh")
    en = zhibao(net.homes[VILLAGE], *args, lang="en")
    assert zh.returncode == 1 and en.returncode == 1, (zh.stderr, en.stderr)
    assert "由 镇级、市级 受理，村级 不能受理" in zh.stderr, zh.stderr
    assert not re.search(r"\b(city|town|village)\b", zh.stderr), zh.stderr
    assert "accepted at town, city, not at a village" in en.stderr, en.stderr
