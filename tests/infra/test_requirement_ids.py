"""Requirement IDs resolve inside the repository: every ID that code, tests, policy rules and the
README cite is listed in `docs/requirements.md`, and each ID there is listed once.

What counts as a citation: a group letter and a number standing alone (`G8`, `(K1, D4)`,
`N1-N6`, `D6/G5:`, `requirements="C3, W4"`), or a segment of a test's name (`test_..._g8`).
Not citations: the letter and digits inside a longer word or number (`H264`, `C0FFEE`,
`U+0085`), and the names this vocabulary shares with others — Amazon `S3` and the Unicode
`C0`/`C1` control sets — unless they stand in parentheses, where this project writes its
citations (`(required, S3)`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "requirements.md"
SCANNED = ("components", "services", "policy", "offline", "tests", "__main__.py", "README.md")
TEXT_SUFFIXES = {".py", ".md", ".sql", ".yaml", ".yml", ".json", ".txt", ".toml", ".sh"}
TEXT_NAMES = {"Dockerfile"}
GROUPS = "GNKDCSWAORMH"

ID = re.compile(rf"(?<![\w+])[{GROUPS}]\d{{1,2}}(?![\w+])")
TEST_NAME = re.compile(r"\bdef (test_\w+)")
TEST_NAME_SEGMENT = re.compile(rf"[{GROUPS.lower()}]\d{{1,2}}")
SHARED_NAMES = {"S3", "C0", "C1"}

DOC_SECTION = re.compile(r"^## ([A-Z]) — ")
DOC_ENTRY = re.compile(r"^- \*\*([A-Z]\d{1,2})\*\* \S")


def doc_entries() -> list[tuple[str, str]]:
    """`(section letter, ID)` for every requirement listed in the doc, in order."""
    entries, section = [], ""
    for line in DOC.read_text().splitlines():
        if heading := DOC_SECTION.match(line):
            section = heading.group(1)
        elif entry := DOC_ENTRY.match(line):
            entries.append((section, entry.group(1)))
    return entries


def _in_parentheses(line: str, position: int) -> bool:
    before = line[:position]
    return before.rfind("(") > before.rfind(")")


def citations(text: str) -> list[tuple[int, str]]:
    """`(line number, ID)` for every requirement ID `text` cites."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in ID.finditer(line):
            token = match.group()
            if token not in SHARED_NAMES or _in_parentheses(line, match.start()):
                found.append((number, token))
        for name in TEST_NAME.findall(line):
            found += [(number, token) for token in _test_name_citations(name)]
    return found


def _test_name_citations(name: str) -> list[str]:
    """IDs among the segments of a test's name; a shared name (`s3`, `c1`) only in the run of
    IDs that starts or ends the name (`test_c1_...`, `..._c1`), not in its words."""
    segments = name.split("_")[1:]
    is_id = [bool(TEST_NAME_SEGMENT.fullmatch(segment)) for segment in segments]
    lead = is_id.index(False) if False in is_id else len(segments)
    trail = len(segments) - (is_id[::-1].index(False) if False in is_id else len(segments))
    return [
        segment.upper()
        for index, segment in enumerate(segments)
        if is_id[index] and (segment.upper() not in SHARED_NAMES or index < lead or index >= trail)
    ]


def scanned_files() -> list[Path]:
    files = []
    for entry in SCANNED:
        path = ROOT / entry
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        files += [
            f
            for f in candidates
            if f.is_file()
            and "__pycache__" not in f.parts
            and (f.suffix in TEXT_SUFFIXES or f.name in TEXT_NAMES)
        ]
    # This module's own samples include IDs that are deliberately not listed.
    return [f for f in files if f != Path(__file__).resolve()]


def cited_ids() -> dict[str, list[str]]:
    """Each cited ID with the places (`path:line`) that cite it."""
    places: dict[str, list[str]] = defaultdict(list)
    for path in scanned_files():
        for number, token in citations(path.read_text(errors="replace")):
            places[token].append(f"{path.relative_to(ROOT)}:{number}")
    return places


def test_doc_lists_each_requirement_once_numbered_within_its_group():
    entries = doc_entries()
    ids = [requirement for _, requirement in entries]
    assert [i for i, count in Counter(ids).items() if count > 1] == []
    assert all(requirement[0] == section for section, requirement in entries)
    assert "".join(dict.fromkeys(section for section, _ in entries)) == GROUPS
    for group in GROUPS:
        numbers = [int(r[1:]) for r in ids if r[0] == group]
        assert numbers == list(range(1, len(numbers) + 1)), group


def test_every_cited_requirement_id_is_in_the_doc():
    listed = {requirement for _, requirement in doc_entries()}
    cited = cited_ids()
    unresolved = {
        token: places[:5] for token, places in sorted(cited.items()) if token not in listed
    }
    assert unresolved == {}, "cite only IDs listed in docs/requirements.md"
    # The scan reads the citations (a broken pattern or path would find next to nothing).
    assert len(cited) >= 50
    assert {"G8", "K1", "O4", "R3"} <= set(cited)


def test_citations_are_read_in_every_form_the_project_writes_and_lookalikes_are_not():
    text = "\n".join(
        [
            "x = 1  # encrypted at rest (K1, D4, C2)",
            "### `SecureVpc` — N1\u2013N6, M1-M10",  # en dash as in the README
            '"""D6/G5: the roles."""',
            'Rule(requirements="C3, W4")',
            "def test_alarms_publish_o2_and_w9(run):",
            "def test_c1_nodes_in_two_zones_and_c1_controls_refused_s3_c1(run):",
            "ARN of the key for encryption (required, S3).",
            "S3 gateway endpoint; H264 and H.264; C0FFEE; U+0085; x86; m5.large",
            "# C0 controls and DEL, C1 controls (U+0080-U+009F)",
            "an unknown requirement (X7) and one that is not listed (N7)",
        ]
    )
    assert citations(text) == [
        (1, "K1"),
        (1, "D4"),
        (1, "C2"),
        (2, "N1"),
        (2, "N6"),
        (2, "M1"),
        (2, "M10"),
        (3, "D6"),
        (3, "G5"),
        (4, "C3"),
        (4, "W4"),
        (5, "O2"),
        (5, "W9"),
        (6, "C1"),
        (6, "S3"),
        (6, "C1"),
        (7, "S3"),
        (10, "N7"),
    ]
