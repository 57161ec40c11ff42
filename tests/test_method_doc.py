"""docs/method.md, the project's specification, says what the tests check: its golden
table is the one every binding is tested against, and the sections the code cites exist."""

import os
import re

import pytest

from tests.golden import GOLDEN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHOD = open(os.path.join(ROOT, "docs", "method.md")).read()


def _golden_rows():
    section = METHOD.split("## 5. Golden values")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if re.match(r"\| -?[0-9]", line)]
    return [tuple(float(cell) for cell in row.strip("|").split("|")) for row in rows]


def test_the_golden_table_is_the_tested_one():
    assert _golden_rows() == [tuple(float(v) for v in row) for row in GOLDEN]


def _cited_sections():
    cited = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "keras_bilevel")):
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name)).read()
                cited.update(int(n) for n in re.findall(
                    r"docs/method\.md`?,?\s+section\s+(\d+)", text))
    return sorted(cited)


@pytest.mark.parametrize("number", _cited_sections())
def test_every_cited_section_exists(number):
    assert re.search(rf"^## {number}\. ", METHOD, re.M)
