"""Help texts in the reader's language, through the one translation layer.

A command or option is declared with its English help wrapped in `h`:

    @click.option("--item", help=h("Catalogue item code.", "事项编码。"))
    @case_group.command("show", help=h("Print a case as a clerk reads it.", "……"))

`h` registers the pair with `sync.protocol.i18n` (key `help:` + the English text) and returns
the English, so click holds English as it always did. `localise` is called each time a
command is looked up (`cli.main.LazyGroup.get_command`) and swaps every help text of that
command's tree for the current locale's, remembering the English, so one process may run
commands in both languages (tests do).
"""

from __future__ import annotations

import click

from sync.protocol import i18n

PREFIX = "help:"


def h(english: str, chinese: str) -> str:
    """Register a help text's two languages; return the English (what click keeps)."""
    i18n.register({PREFIX + english: (english, chinese)})
    return english


def translated(english: str | None) -> str | None:
    """The current locale's text for an English help text (itself if none is registered)."""
    if not english or not i18n.has(PREFIX + english):
        return english
    return i18n.t(PREFIX + english)


def localise(command: click.Command) -> click.Command:
    """Put the current locale's help on `command`, its parameters and its subcommands."""
    english = command.__dict__.setdefault("_help_en", command.help)
    command.help = translated(english)
    short = command.__dict__.setdefault("_short_help_en", command.short_help)
    command.short_help = translated(short)
    for param in command.params:
        if isinstance(param, click.Option):
            original = param.__dict__.setdefault("_help_en", param.help)
            param.help = translated(original)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            localise(sub)
    return command


def missing(command: click.Command, path: str = "") -> list[str]:
    """Every help text in `command`'s tree with no registered translation (for the tests)."""
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
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            found.extend(missing(sub, name))
    return found
