"""The README and the documentation say what the code does (the site itself is built by scripts/test)."""

from __future__ import annotations

import builtins
import re
from pathlib import Path

import pytest

import amazon_polly_streaming
from amazon_polly_streaming.cli import command as cli

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"


def _section(markdown: str, heading: str) -> str:
    start = markdown.index(f"\n## {heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


def _exception_names(markdown: str) -> set[str]:
    names = set(re.findall(r"`([A-Z][A-Za-z]*(?:Error|Exception))`", markdown))
    return {name for name in names if not hasattr(builtins, name)}


def test_every_exception_the_readme_names_is_importable_from_the_package() -> None:
    named = _exception_names(_section(README, "Errors")) | _exception_names((DOCS / "errors.md").read_text())
    assert len(named) >= 18, sorted(named)  # the section lists both families
    for name in sorted(named):
        exported = getattr(amazon_polly_streaming, name, None)
        assert isinstance(exported, type), f"{name} is not importable from amazon_polly_streaming"
        assert issubclass(exported, amazon_polly_streaming.PollyStreamingError)
        assert name in amazon_polly_streaming.__all__


def test_the_readme_opens_with_the_two_set_up_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first_block is not None
    assert README.index("```bash") < README.index("\n## ")
    commands = first_block.group(1).strip().splitlines()
    assert len(commands) == 2
    assert commands[0].startswith("python3 -m venv .venv && ")
    assert "polly-stream say --local" in commands[0]
    assert commands[1] == "bash scripts/test"


def test_the_readme_links_into_the_docs() -> None:
    linked = set(re.findall(r"\]\((docs/[^)#]+)", README))
    pages = {f"docs/{page.name}" for page in DOCS.glob("*.md")}
    assert linked == pages
    for target in re.findall(r"\]\(((?:examples|docs)/[^)#]+)", README):
        assert (ROOT / target).exists(), target


def test_the_cli_page_documents_every_exit_code_and_option() -> None:
    page = (DOCS / "cli.md").read_text()
    codes = {value for name, value in vars(cli).items() if name.startswith("EXIT_")}
    table = _section(page, "Exit codes")
    for code in codes:
        assert re.search(rf"^\| {code} \|", table, re.M), f"exit code {code} is not documented"
    _, say = cli._build_parsers()
    for action in say._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help"):
                assert f"`{option}" in page, f"{option} is not documented"


def test_the_emulator_page_names_every_fault_kind_and_phase() -> None:
    emulator = pytest.importorskip("amazon_polly_streaming.emulator")
    page = (DOCS / "emulator.md").read_text()
    for name in sorted(emulator.FAULT_KINDS) + list(emulator.PHASES):
        assert f"`{name}`" in page, f"{name} is not documented"
