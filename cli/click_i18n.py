"""click's own words (usage errors, "Usage:", "Show this message and exit." …) in the
reader's language, through the one translation layer.

click marks its messages for gettext (`from gettext import gettext as _` in each of its
modules) and formats them itself afterwards. `install` gives those modules a `_` and an
`ngettext` that look the English msgid up in the catalogue below (keys `click:` + msgid)
and answer the current locale's template, unformatted; a msgid not in the catalogue is
answered as gettext would without a translation installed (itself, or the English
plural). The look-up happens when click builds the message, so one process may speak
both languages (tests do). Chinese has no plural: both forms share one template.

The Chinese templates keep every `{field}` click fills, except a field that would put
an English word of click's into the sentence (`{number_type}`, a path's `{name}`).
"""

from __future__ import annotations

import gettext as _gettext
import importlib

from sync.protocol import i18n

PREFIX = "click:"

# msgid (the English click passes to `_`, or the singular it passes to `ngettext`) -> Chinese
CHINESE: dict[str, str] = {
    # help pages
    "Usage:": "用法：",
    "Options": "选项",
    "Commands": "命令",
    "Positional arguments": "位置参数",
    "Show this message and exit.": "显示此帮助并退出。",
    "Show the version and exit.": "显示版本并退出。",
    "%(prog)s, version %(version)s": "%(prog)s，版本 %(version)s",
    "required": "必填",
    "default: {default}": "默认：{default}",
    "env var: {var}": "环境变量：{var}",
    "(dynamic)": "（动态）",
    "deprecated": "已弃用",
    # usage errors
    "Error: {message}": "错误：{message}",
    "Try '{command} {option}' for help.": "运行“{command} {option}”查看帮助。",
    "Missing argument": "缺少参数",
    "Missing option": "缺少选项",
    "Missing parameter": "缺少参数",
    "Missing {param_type}": "缺少{param_type}",
    "Missing parameter: {param_name}": "缺少参数：{param_name}",
    "Missing command.": "缺少命令。",
    "No such option {name!r}.": "没有选项 {name!r}。",
    "No such command {name!r}.": "没有命令 {name!r}。",
    "Did you mean {possibility}?": "您是否指 {possibility}？",
    "Invalid value for {param_hint}: {message}": "{param_hint} 的值无效：{message}",
    "Invalid value: {message}": "值无效：{message}",
    "Got unexpected extra argument ({args})": "多余的参数（{args}）",
    "Option {name!r} requires an argument.": "选项 {name!r} 需要 {nargs} 个值。",
    "Option {name!r} does not take a value.": "选项 {name!r} 不接受值。",
    "Argument {name!r} takes {nargs} values.": "参数 {name!r} 需要 {nargs} 个值。",
    "Takes {nargs} values but 1 was given.": "需要 {nargs} 个值，只给了 {len} 个。",
    "Value must be an iterable.": "值必须是可迭代的。",
    "Aborted!": "已中止！",
    "unknown error": "未知错误",
    "Could not open file {filename!r}: {message}": "无法打开文件 {filename!r}：{message}",
    # values of the wrong kind
    "{value!r} is not {choice}.": "{value!r} 不是可选值之一：{choices}。",
    "Choose from:\n\t{choices}": "可选：\n\t{choices}",
    "{value!r} is not a valid {number_type}.": "{value!r} 不是有效的数字。",
    "{value} is not in the range {range}.": "{value} 不在范围 {range} 内。",
    "{value!r} is not a valid boolean. Recognized values: {states}": (
        "{value!r} 不是有效的布尔值。可用的值：{states}"
    ),
    "{value!r} is not a valid UUID.": "{value!r} 不是有效的 UUID。",
    "{value!r} does not match the format {format}.": "{value!r} 不符合格式 {formats}。",
    "{len_type} values are required, but {len_value} was given.": (
        "需要 {len_type} 个值，给了 {len_value} 个。"
    ),
    "{name} {filename!r} does not exist.": "{filename!r} 不存在。",
    "{name} {filename!r} is a file.": "{filename!r} 是文件，这里需要目录。",
    "{name} {filename!r} is a directory.": "{filename!r} 是目录，这里需要文件。",
    "{name} {filename!r} is not readable.": "{filename!r} 不可读。",
    "{name} {filename!r} is not writable.": "{filename!r} 不可写。",
    "{name} {filename!r} is not executable.": "{filename!r} 不可执行。",
    # prompts
    "Repeat for confirmation": "请再输入一次以确认",
    "Error: The two entered values do not match.": "错误：两次输入不一致。",
    "Error: invalid input": "错误：输入无效",
    "Do you want to continue?": "要继续吗？",
    "Confirm the action without prompting.": "不询问，直接确认。",
    "Press any key to continue...": "按任意键继续……",
}

# click's modules that mark messages (the others have none a person reads)
MODULES = (
    "click.core",
    "click.decorators",
    "click.exceptions",
    "click.formatting",
    "click.parser",
    "click.types",
    "click.termui",
)

i18n.register({PREFIX + english: (english, chinese) for english, chinese in CHINESE.items()})


def gettext(message: str) -> str:
    """click's `_`: the current locale's template for `message` (itself if unknown)."""
    found = i18n.template(PREFIX + message)
    return found if found is not None else message


def ngettext(singular: str, plural: str, n: int) -> str:
    """click's `ngettext`: English chooses by `n`; Chinese has one template for both."""
    if i18n.locale() == "zh":
        found = i18n.template(PREFIX + singular)
        if found is not None:
            return found
    return _gettext.ngettext(singular, plural, n)


def install() -> None:
    """Give click's modules this `_` and `ngettext` (idempotent)."""
    for name in MODULES:
        module = importlib.import_module(name)
        if hasattr(module, "_"):
            module._ = gettext  # type: ignore[attr-defined]
        if hasattr(module, "ngettext"):
            module.ngettext = ngettext  # type: ignore[attr-defined]
