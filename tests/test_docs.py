"""The README and docs/: what a newcomer needs. The README (the front door, at most 160 lines) says how to call
`backprop`, where the data goes and how to install without a GPU, and links every page of docs/;
every command in the README's and the docs' code blocks is a valid one, every relative link
resolves, and docs/cli.md lists exactly the options `--help` shows; a network without hidden
layers is documented and named for what it is; an oversized batch is reported, not shrunk."""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex

import pytest

from backprop.cli import build_parsers
from backprop.cli.train import train_config
from engine_core.specs import mlp

from .helpers import ROOT, run_cli

README = "README.md"
PAGES = [README, *sorted(os.path.relpath(path, ROOT) for path in glob.glob(os.path.join(ROOT, "docs", "*.md")))]
CLI_PAGE = os.path.join("docs", "cli.md")


def _read(page: str = README) -> str:
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def _readme() -> str:
    return _read(README)


def _code_lines(page: str | None = None) -> list[str]:
    """The lines inside the fenced code blocks of one page (README.md or docs/*.md), or of all of
    them, a line ending in a backslash joined with the next (as the shell reads it)."""
    lines, inside, pending = [], False, ""
    for text in (_read(page),) if page else map(_read, PAGES):
        for line in text.splitlines():
            if line.strip().startswith("```"):
                inside = not inside
            elif inside and line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1]
            elif inside:
                lines.append(pending + line)
                pending = ""
    return lines


def _commands(page: str) -> list[list[str]]:
    """Every `backprop ...` line of a page's code blocks (and `make train`'s DATA and ARGS), as
    argument lists; synopsis lines (with [...]) are left out."""
    commands = []
    for line in _code_lines(page):
        line = line.split(" #", 1)[0].strip().removeprefix("$ ")
        if not line.startswith(("backprop ", ".venv/bin/backprop ", "make train")) or "[" in line or "..." in line:
            continue
        words = shlex.split(line)
        if words[0] in ("backprop", ".venv/bin/backprop"):
            commands.append(words[1:])
        else:
            settings = dict(word.split("=", 1) for word in words[2:])
            commands.append(["train", *shlex.split(settings.get("DATA", "")), *shlex.split(settings.get("ARGS", ""))])
    return commands


def _all_commands() -> list[tuple[str, list[str]]]:
    return [(page, args) for page in PAGES for args in _commands(page)]


def test_the_pages_show_commands():
    readme = _commands(README)
    assert len(readme) >= 8
    assert {c[0] for c in readme} >= {"train", "evaluate", "export", "compare", "bench"}
    assert {c[0] for _, c in _all_commands()} >= {"train", "evaluate", "export", "compare", "bench"}


@pytest.mark.parametrize("page, args", _all_commands(), ids=lambda a: a if isinstance(a, str) else " ".join(a)[:60])
def test_every_command_in_the_readme_and_the_docs_is_a_valid_one(page, args):
    parser, commands = build_parsers()
    if args == ["--version"]:
        with pytest.raises(SystemExit) as info:
            parser.parse_args(args)
        assert info.value.code == 0
        return
    namespace = parser.parse_args(args)  # a usage error would raise SystemExit(2)
    if namespace.command == "train" and not namespace.resume:
        train_config(namespace, commands["train"])  # and so would flags that make no sense together


def test_the_first_screen_tells_a_newcomer_what_they_need():
    first = " ".join(_readme().split("## Your first hour", 1)[0].split())
    for words in ("make test", "make train",  # the two set-up commands, with how long they take
                  ".venv/bin/backprop", "source .venv/bin/activate",  # how to call it
                  "--index-url https://download.pytorch.org/whl/cpu",  # a CPU-only torch
                  "5.9 GB",  # the install size
                  "../shared/datasets", "FashionMNIST/raw/", "(docs/data.md)",  # what the data folder is
                  "BLAS threads"):  # float32 results depend on the thread count
        assert words in first, words
    assert re.search(r"`make test` takes [^.]*minutes", first)  # one sentence says how long
    first_hour = " ".join(_readme().split("## Your first hour", 1)[1].split())
    for words in ("backprop train", "backprop evaluate", "weights.png", "backprop compare", "make harness ENGINE=",
                  "pytest --pyargs parity_tests --engine", "## Results on real data"):
        assert words in first_hour, words


def test_the_data_page_says_how_to_get_mnist_onto_an_offline_machine():
    data = " ".join(_read(os.path.join("docs", "data.md")).split())
    for words in ("gunzip", "ossci-datasets", "FashionMNIST/raw/", "train-images-idx3-ubyte"):
        assert words in data, words
    cli = " ".join(_read(CLI_PAGE).split())
    assert "BLAS threads" in cli and "--blas-threads" in cli  # the detail the README's sentence links to


# -- the README is the front door, every page one link away -------------------------------------
def test_the_readme_is_short():
    lines = _readme().splitlines()
    assert len(lines) <= 160, f"README.md has {len(lines)} lines; move the detail to a page under docs/"


def test_every_docs_page_is_one_link_from_the_readme():
    linked = {os.path.normpath(target.split("#", 1)[0]) for target in _links(README)}
    assert len(PAGES) > 5
    for page in PAGES[1:]:
        assert page in linked, f"README.md does not link {page}"


def _strip_fences(text: str) -> str:
    """The text without its fenced code blocks, where a line starting with '#' is no heading."""
    return re.sub(r"^\s*```.*?^\s*```[^\n]*$", "", text, flags=re.S | re.M)


def _strip_code(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets mean nothing."""
    return re.sub(r"`[^`\n]*`", "", _strip_fences(text))


def _links(page: str) -> list[str]:
    """The targets of a page's Markdown links and images."""
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", _strip_code(_read(page)))


def _anchors(page: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as '-',
    a repeated heading numbered -1, -2, ..."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", _strip_fences(_read(page)), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_resolves(page):
    for target in _links(page):
        if re.match(r"[a-z]+:", target):  # https://, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        assert os.path.exists(os.path.join(ROOT, linked)), f"{page}: {target}: no file {linked}"
        assert not linked.startswith(".."), f"{page}: {target} leaves the repository"
        if anchor and linked.endswith(".md"):
            assert anchor in _anchors(linked), f"{page}: {target}: {linked} has no heading #{anchor}"


# -- the CLI reference: docs/cli.md against the argparse parsers ----------------------------------
def _reference_section(name: str) -> str:
    """The part of docs/cli.md under its heading ### `backprop NAME`, up to the next heading."""
    text = _read(CLI_PAGE)
    heading = f"### `backprop {name}`"
    assert heading in text, f"docs/cli.md has no section {heading}"
    return re.split(r"^#{1,3} ", text.split(heading, 1)[1], maxsplit=1, flags=re.M)[0]


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
MISTYPED_ON_PURPOSE = {"--optimiser"}  # the example of a suggestion (`did you mean --optimizer?`)


@pytest.mark.parametrize("name", sorted(build_parsers()[1]))
def test_the_cli_reference_lists_every_option_of_every_command(name):
    parser = build_parsers()[1][name]
    section = _reference_section(name)
    shown = {option for action in parser._actions if not isinstance(action, argparse._HelpAction)
             for option in action.option_strings}
    for option in shown:
        assert re.search(rf"`{re.escape(option)}[ `]", section), f"docs/cli.md: backprop {name}: {option} is missing"
    for action in parser._actions:
        if not action.option_strings:  # a positional argument, by its metavar
            assert f"`{action.metavar}`" in section, f"docs/cli.md: backprop {name}: {action.metavar} is missing"
    rows = "\n".join(line for line in section.splitlines() if line.startswith("|"))  # (prose may cite other commands)
    named = set(OPTION.findall(rows))
    assert named <= _options(parser), f"docs/cli.md: backprop {name} names {sorted(named - _options(parser))}"


def test_the_cli_reference_is_what_the_parsers_generate():
    from .cli_reference import tables

    section = "### `backprop train`" + _read(CLI_PAGE).split("### `backprop train`", 1)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]
    assert section.rstrip() == tables().rstrip(), "docs/cli.md: regenerate its tables: python -m tests.cli_reference"


def test_the_cli_page_names_no_option_that_does_not_exist():
    parser, commands = build_parsers()
    known = _options(parser).union(*map(_options, commands.values()))
    named = set(OPTION.findall(_read(CLI_PAGE)))
    assert named - known == MISTYPED_ON_PURPOSE, sorted(named - known)


def test_no_hidden_layer_is_documented_and_its_header_names_no_activation(data_root, tmp_path):
    assert "--hidden none" in _read(CLI_PAGE)
    out = tmp_path / "run"
    result = run_cli("train", "--hidden", "", "--data-dir", data_root, "--dataset", "fashion-mnist",
                     "--batch-size", "16", "--epochs", "1", "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert "784-10, no hidden layer" in header
    assert not any(name in header for name in ("relu", "tanh", "sigmoid", "identity")), header
    layers = json.load(open(out / "config.json"))["layers"]
    assert layers == [spec.to_json() for spec in mlp([784, 10]).children]  # one Linear, 784 -> 10
    assert " 1 epoch;" in header and "1 epochs" not in header, header  # counts are pluralised
    again = run_cli("train", "--resume", str(out), "--data-dir", data_root, "--quiet")
    assert again.returncode == 0 and "already finished 1 of 1 epoch." in again.stdout, again.stdout


def test_the_help_and_the_cli_page_say_what_the_commands_take():
    _, commands = build_parsers()
    train = " ".join(commands["train"].format_help().split())
    assert "Train a network, an MLP or a stack of layers (--layers, --preset lenet, lstm or gru)" in train
    assert "Train an MLP" not in train
    imports = " ".join(commands["import"].format_help().split())
    assert "MODEL_PT.json records" in imports and "itself lenet by default" in imports and "(default: lenet)" in imports
    synopsis = {line.split()[1]: line for line in _code_lines(CLI_PAGE) if line.startswith("backprop ")}
    # import works without --layers or --preset (lenet's stack): the synopsis marks both optional.
    assert "model.pt [--layers TEXT | --preset lenet (the default)] --out DIR" in synopsis["import"]
    from backprop.benchmark import WORKLOADS

    assert f"[--workloads {','.join(WORKLOADS)}]" in synopsis["bench"]


def test_an_oversized_batch_is_reported_not_shrunk(data_root, tmp_path):
    # Larger than the 256 training samples: found once the data is read, still a usage error.
    result = run_cli("train", "--batch-size", "300", "--hidden", "4", "--data-dir", data_root, "--dataset",
                     "fashion-mnist", "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert "--batch-size 300 is larger than the 256 training samples" in result.stderr
    assert not os.path.exists(tmp_path / "run")  # nothing left behind
    # Larger than --limit: refused before any data is read.
    limited = run_cli("train", "--batch-size", "32", "--limit", "20", "--data-dir", str(tmp_path / "nowhere"))
    assert limited.returncode == 2 and "--batch-size 32 is larger than --limit 20" in limited.stderr
    for command in (["compare", "--batch-size", "300", "--hidden", "4", "--steps", "1"],
                    ["bench", "--batch-sizes", "8,300", "--steps", "1", "--engines", "numpy"]):
        other = run_cli(*command, "--data-dir", data_root, "--dataset", "fashion-mnist",
                        "--out", str(tmp_path / command[0]))
        assert other.returncode == 2 and "300 is larger than the 256 training samples" in other.stderr, other.stderr


def _python_blocks() -> list[tuple[str, str]]:
    """(page, code) of every ```python block of the README and the docs pages."""
    blocks = []
    for page in PAGES:
        blocks += [(page, code) for code in re.findall(r"```python\n(.*?)```", _read(page), re.S)]
    return blocks


@pytest.mark.parametrize("page, code", _python_blocks(), ids=lambda v: v if v.endswith(".md") else "")
def test_every_python_example_in_the_docs_runs(page, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what an example writes lands here
    exec(compile(code, page, "exec"), {"__name__": "__docs__"})
