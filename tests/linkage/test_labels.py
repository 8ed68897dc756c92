"""Every reason the engine gives has a Chinese wording for utility staff."""

import re
from pathlib import Path

from linkage import engine, records
from linkage.labels import in_chinese

DATA = Path(__file__).parent / "data" / "generated"
CJK = re.compile(r"[\u4e00-\u9fff]")


def all_reasons():
    units = records.read_units(DATA / "units.csv").records
    accounts = records.read_roster(DATA / "roster.csv").records
    reasons = set()
    for result in engine.link(units, accounts):
        reasons.update(result.reasons)
        for candidate in result.candidates:
            reasons.update(candidate.reasons)
    return reasons


def test_every_reason_has_a_chinese_wording():
    reasons = all_reasons()

    untranslated = [r for r in reasons if in_chinese(r) == r]

    assert len(reasons) > 10
    assert untranslated == []
    assert all(CJK.search(in_chinese(r)) for r in reasons)


def test_values_are_kept():
    assert in_chinese("room differs (501 / 502)") == "房号不同（501 / 502）"
    assert in_chinese("area differs (88.5 / 90 m²)") == "面积不符（88.5 / 90 平方米）"


def test_unknown_reason_is_shown_as_it_is():
    assert in_chinese("something new") == "something new"
