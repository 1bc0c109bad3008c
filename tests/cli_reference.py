"""docs/cli.md's option tables, generated from the argparse parsers: one table per command, every
option `backprop COMMAND --help` shows with its help text (a test compares the page with this).

Regenerate after changing a flag: ``python -m tests.cli_reference`` prints the tables that go
under the page's "Reference" heading.
"""

from __future__ import annotations

import argparse
import re

from backprop.cli import build_parsers

# Options whose help is a page long: a short line and a link instead (their "(default: ...)" kept).
SHORT = {
    "--preset": "the run the other flags change: `notebook`, `default`, `lenet`, `lstm`, `gru` or `vit` "
                "(each described [above](#how-a-run-is-configured))",
    "--layers": "the network as a stack of layers instead of an MLP: comma-separated `KIND` or `KIND(ARGS)`, "
                "torch's arguments and defaults{not_with} (grammar and every kind: "
                "[network.md](network.md#layer-stacks-on-the-command-line---layers---preset-lenet))",
}


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return " ".join(parser._get_formatter()._expand_help(action).split()) if action.help else ""


def _spelling(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar}`"
    name = action.option_strings[-1]
    if action.nargs == 0:
        return f"`{name}`"
    if action.choices:
        return f"`{name} {{{','.join(map(str, action.choices))}}}`"
    return f"`{name} {action.metavar or action.dest.upper()}`"


def _text(commands: dict[str, argparse.ArgumentParser], command: str, action: argparse.Action) -> str:
    parser = commands[command]
    text = _help(parser, action).replace("|", "\\|")
    if not text:
        return f"(default: {action.default})"
    name = action.option_strings[-1] if action.option_strings else None
    if name in SHORT:
        has_hidden = any("--hidden" in other.option_strings for other in parser._actions)
        not_with = "; not with `--hidden` or `--activation`" if has_hidden else ""
        default = re.findall(r"\(default: [^()]*\)$", text)
        return SHORT[name].format(not_with=not_with) + (f" {default[0]}" if default else "")
    if command != "train" and name:
        for other in commands["train"]._actions:
            if name in other.option_strings and _help(commands["train"], other) == _help(parser, action):
                return "as in `train`"
    return text


def _code(text: str) -> str:
    """`<placeholder>` paths in backticks, so that Markdown does not read them as HTML."""
    return re.sub(r"[\w./-]*<\w+>[\w./<>-]*", lambda m: f"`{m.group(0)}`", text)


def tables() -> str:
    """The Markdown of every command's section: its heading, description and option table."""
    _, commands = build_parsers()
    lines = []
    for command, parser in commands.items():
        lines += [f"### `backprop {command}`", "", _code(" ".join((parser.description or "").split())), "",
                  "| option | what it does (default) |", "|---|---|"]
        for group in parser._action_groups:
            for action in group._group_actions:
                if not isinstance(action, argparse._HelpAction):
                    lines.append(f"| {_spelling(action).replace('|', chr(92) + '|')} | "
                                 f"{_code(_text(commands, command, action))} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(tables())
