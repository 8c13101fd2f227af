"""Help texts in the reader's language, through the one translation layer.

A command or option is declared with its English help wrapped in `h`:

    @click.option("--item", help=h("Catalogue item code.", "事项编码。"))
    @case_group.command("show", help=h("Print a case as a clerk reads it.", "……"))

`h` registers the pair with `sync.protocol.i18n` (key `help:` + the English text) and returns
the English, so click holds English as it always did. `localise` is called each time a
command is looked up (`cli.main.LazyGroup.get_command`) and swaps every help text of that
command's tree for the current locale's, remembering the English, so one process may run
commands in both languages (tests do). click's own words (usage errors, "Usage:") come
through cli.click_i18n; the page is wrapped by display width (cli.help_format).
"""

from __future__ import annotations

import re

import click

from cli.click_i18n import gettext
from cli.help_format import HelpContext, display_width
from sync.protocol import i18n

PREFIX = "help:"
HELP_OPTION = "Show this message and exit."  # click's msgid for --help's own help
SHORT_WIDTH = 70  # columns of a command's line in its group's list (page 100 - names)


def h(english: str, chinese: str) -> str:
    """Register a help text's two languages; return the English (what click keeps)."""
    i18n.register({PREFIX + english: (english, chinese)})
    return english


def translated(english: str | None) -> str | None:
    """The current locale's text for an English help text (itself if none is registered)."""
    if not english or not i18n.has(PREFIX + english):
        return english
    return i18n.t(PREFIX + english)


def first_sentence(text: str, width: int = SHORT_WIDTH) -> str:
    """A translated help's first sentence for a group's list of commands, at most `width`
    columns (click shortens at spaces, counting characters: Chinese has neither)."""
    first = " ".join(text.partition("\n\n")[0].split())
    first = re.split(r"(?<=[。！？])", first, maxsplit=1)[0]
    if display_width(first) <= width:
        return first
    cut = ""
    for ch in first:
        if display_width(cut + ch) > width - 2:
            break
        cut += ch
    return cut + "…"


def localise(command: click.Command) -> click.Command:
    """Put the current locale's help on `command`, its parameters and its subcommands, and
    lay its help page out by display width (cli.help_format)."""
    command.context_class = HelpContext
    cached = command.__dict__.get("_help_option")  # click makes it once, in one language
    if isinstance(cached, click.Option):
        cached.help = gettext(HELP_OPTION)
    english = command.__dict__.setdefault("_help_en", command.help)
    command.help = translated(english)
    short = command.__dict__.setdefault("_short_help_en", command.short_help)
    command.short_help = translated(short)
    if short is None and command.help and command.help != english:
        command.short_help = first_sentence(command.help)
    for param in command.params:
        if isinstance(param, click.Option):
            original = param.__dict__.setdefault("_help_en", param.help)
            param.help = translated(original)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            localise(sub)
    return command


def subcommands(command: click.Command) -> list[tuple[str, click.Command]]:
    """A group's subcommands by name (a lazy group's imported and localised), else []."""
    if not isinstance(command, click.Group):
        return []
    ctx = click.Context(command)
    found = ((name, command.get_command(ctx, name)) for name in command.list_commands(ctx))
    return [(name, sub) for name, sub in found if sub is not None]


def missing(command: click.Command, path: str = "") -> list[str]:
    """Every help text in `command`'s tree not written with `h` (no Chinese registered):
    "case show" for a command's help, "case show --json" for an option's (for the tests)."""
    name = f"{path} {command.name}".strip()
    found = []
    english = command.__dict__.get("_help_en", command.help)
    if english and not i18n.has(PREFIX + english):
        found.append(name)
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            text = param.__dict__.get("_help_en", param.help)
            if text and not i18n.has(PREFIX + text):
                found.append(f"{name} {param.opts[0]}")
    for _, sub in subcommands(command):
        found.extend(missing(sub, name))
    return found
