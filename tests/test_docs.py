"""What the docs say about deploying, held against the CloudFormation template, and their links.

The ``aws cloudformation deploy`` commands in the README and the runbook are parsed out of
their code blocks: each must name the template that exists, ask for exactly the capabilities
its IAM resources need, and override only parameters the template declares, every one without
a default among them, with values the template's constraints accept. The stack outputs the docs
query and the parameters they name must exist too. So a renamed parameter or output, or a new
required one, fails here until the docs follow.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import FINDINGS, load_saved
from bench.report import render
from harness.processes import ROOT
from tests.test_cloudformation import load_template

README = ROOT / "README.md"
RUNBOOK = ROOT / "docs" / "operations.md"
DOCS = (README, RUNBOOK)
DEPLOY = ("aws", "cloudformation", "deploy")
FENCED = re.compile(r"^```[a-z]*\n(.*?)^```", re.M | re.S)
CONTINUATION = re.compile(r"\\\n\s*")
OUTPUT_QUERY = re.compile(r"OutputKey=='(\w+)'")
PASCAL_NAME = re.compile(r"`([A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+)`")
DEPLOY_OPTIONS = frozenset(
    {
        "--template-file",
        "--stack-name",
        "--parameter-overrides",
        "--capabilities",
        "--s3-bucket",
        "--s3-prefix",
        "--role-arn",
        "--tags",
        "--region",
        "--no-execute-changeset",
        "--no-fail-on-empty-changeset",
    }
)
"""The ``aws cloudformation deploy`` options the docs may use, so a misspelt one fails here."""
IAM_NAME_PROPERTIES = {
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::User": "UserName",
    "AWS::IAM::Group": "GroupName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
}


def deploy_commands(doc: Path) -> list[list[str]]:
    """Every ``aws cloudformation deploy`` command in the doc's fenced code blocks, as words."""
    commands = []
    for block in FENCED.findall(doc.read_text(encoding="utf-8")):
        for line in CONTINUATION.sub(" ", block).splitlines():
            words = shlex.split(line, comments=True)
            if tuple(words[:3]) == DEPLOY:
                commands.append(words[3:])
    return commands


def options(words: list[str]) -> dict[str, list[str]]:
    """``--name value …`` → ``{"--name": [values]}``; a flag has no values."""
    parsed: dict[str, list[str]] = {}
    current: list[str] | None = None
    for word in words:
        if word.startswith("--"):
            assert word not in parsed, f"{word} given twice"
            current = parsed[word] = []
        else:
            assert current is not None, f"{word!r} before any option"
            current.append(word)
    return parsed


def needed_capabilities(template: dict[str, Any]) -> set[str]:
    """What CloudFormation asks to be acknowledged before it creates this template's stack."""
    needed: set[str] = set()
    for resource in template["Resources"].values():
        kind = resource["Type"]
        if kind.startswith("AWS::IAM::"):
            named = IAM_NAME_PROPERTIES.get(kind) in resource.get("Properties", {})
            needed.add("CAPABILITY_NAMED_IAM" if named else "CAPABILITY_IAM")
    if "Transform" in template:
        needed.add("CAPABILITY_AUTO_EXPAND")
    if "CAPABILITY_NAMED_IAM" in needed:
        needed.discard("CAPABILITY_IAM")  # the named acknowledgement covers unnamed ones
    return needed


def accepts(parameter: dict[str, Any], value: str) -> bool:
    """Whether the template's constraints let ``value`` through for this parameter."""
    if "AllowedValues" in parameter and value not in map(str, parameter["AllowedValues"]):
        return False
    pattern = parameter.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        return False
    if parameter["Type"] == "Number":
        number = float(value)
        return (
            float(parameter.get("MinValue", number))
            <= number
            <= float(parameter.get("MaxValue", number))
        )
    return True


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """The template as plain data."""
    return load_template()


ALL_COMMANDS = [
    pytest.param(words, id=f"{doc.name}-{n}")
    for doc in DOCS
    for n, words in enumerate(deploy_commands(doc), start=1)
]


def test_the_readme_gives_the_deploy_command() -> None:
    assert deploy_commands(README), "README.md has an `aws cloudformation deploy` block"


@pytest.mark.parametrize("words", ALL_COMMANDS)
def test_deploy_command_fits_the_template(words: list[str], template: dict[str, Any]) -> None:
    given = options(words)
    assert set(given) <= DEPLOY_OPTIONS, set(given) - DEPLOY_OPTIONS
    assert len(given["--stack-name"]) == 1
    assert (ROOT / given["--template-file"][0]).resolve() == (
        ROOT / "deploy" / "aws" / "storyboard.yaml"
    ).resolve()
    assert set(given["--capabilities"]) == needed_capabilities(template)


@pytest.mark.parametrize("words", ALL_COMMANDS)
def test_deploy_overrides_are_the_templates_parameters(
    words: list[str], template: dict[str, Any]
) -> None:
    declared: dict[str, dict[str, Any]] = template["Parameters"]
    overrides = dict(pair.split("=", 1) for pair in options(words).get("--parameter-overrides", []))
    assert set(overrides) <= set(declared), set(overrides) - set(declared)
    required = {name for name, parameter in declared.items() if "Default" not in parameter}
    assert required <= set(overrides), required - set(overrides)
    refused = {k: v for k, v in overrides.items() if not accepts(declared[k], v)}
    assert not refused, f"the template's constraints refuse {refused}"


def test_the_outputs_the_docs_query_exist(template: dict[str, Any]) -> None:
    queried = {key for doc in DOCS for key in OUTPUT_QUERY.findall(doc.read_text("utf-8"))}
    assert queried, "the README shows how to read the stack's outputs"
    assert queried <= set(template["Outputs"]), queried - set(template["Outputs"])


def _section(doc: Path, heading: str) -> str:
    """The text under ``heading`` up to the next heading of its level or above (a ``#`` line
    inside a code block is a shell comment, not a heading)."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    level = heading.index(" ")
    start = lines.index(heading) + 1
    fenced = False
    for end in range(start, len(lines)):
        line = lines[end]
        fenced ^= line.startswith("```")
        if not fenced and re.match(rf"#{{1,{level}}} ", line):
            return "\n".join(lines[start:end])
    return "\n".join(lines[start:])


@pytest.mark.parametrize(
    ("doc", "heading"), [(README, "### Deploying on AWS"), (RUNBOOK, "## Deploy")]
)
def test_template_names_in_the_deploy_docs_exist(
    doc: Path, heading: str, template: dict[str, Any]
) -> None:
    """A parameter or output the deploy prose names by its CloudFormation name is real."""
    named = set(PASCAL_NAME.findall(_section(doc, heading)))
    known = set(template["Parameters"]) | set(template["Outputs"])
    assert named <= known, named - known


# --------------------------------------------------------------------------- links

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_links_the_seed_note_and_the_docs() -> None:
    links = set(LINK.findall(README.read_text(encoding="utf-8")))
    wanted = {
        "../shared/seed/lambda-async-processing-note.zh.md",
        "docs/operations.md",
        "docs/architecture.md",
        "docs/benchmarks.md",
        "deploy/k8s/README.md",
    }
    assert wanted <= links, wanted - links


@pytest.mark.parametrize(
    "doc", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name
)
def test_relative_links_resolve(doc: Path) -> None:
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        path = (doc.parent / target).resolve()
        if not path.is_relative_to(ROOT) and not path.parent.exists():
            continue  # the shared material beside the project, when it is not laid out
        assert path.exists(), f"{doc.name} links {target}, which does not exist"


# --------------------------------------------------------------------------- benchmarks

BENCHMARKS = ROOT / "docs" / "benchmarks.md"


def test_the_benchmarks_page_opens_with_a_summary_before_any_table() -> None:
    lines = BENCHMARKS.read_text(encoding="utf-8").splitlines()
    opening = lines[: next(n for n, line in enumerate(lines) if line.startswith("|"))]
    assert "## In short" in opening
    bullets = [line for line in opening if line.startswith("- ")]
    assert 5 <= len(bullets) <= 10, bullets
    for topic in ("jobs/s", "MB", "moto", "model", "STORYBOARD_WORKER_CONCURRENCY", "make bench"):
        assert any(topic in line for line in bullets), f"the summary never mentions {topic}"
    assert any(line.startswith("- **Known gaps:**") for line in bullets)


def test_the_benchmarks_page_is_what_make_bench_writes() -> None:
    """Rendered again from the saved results it comes out the same, summary included, so
    the next ``make bench`` rewrites the summary with its own figures rather than losing it."""
    results, environment, elapsed = load_saved()
    page = render(environment, elapsed, results, FINDINGS.read_text(encoding="utf-8"))
    assert page == BENCHMARKS.read_text(encoding="utf-8"), "run `python -m bench --render`"


# --------------------------------------------------------------------------- architecture


def test_the_architecture_diagram_names_every_top_level_module() -> None:
    """A new module in ``service/`` has its place in docs/architecture.md's layer diagram."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagram = FENCED.findall(text)[0]
    named = set(re.findall(r"[a-z_]+\*?", diagram))
    package = ROOT / "service"
    modules = {p.stem for p in package.glob("*.py")} | {
        p.name for p in package.iterdir() if (p / "__init__.py").exists()
    }
    modules.discard("__init__")
    missing = {m for m in modules if m not in named and f"{m.split('_')[0]}_*" not in named}
    assert not missing, f"docs/architecture.md does not place {sorted(missing)}"
