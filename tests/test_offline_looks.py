"""Appearance notes: only sentences about what a character looks like."""

from __future__ import annotations

from service.analysis.offline_looks import Looks
from service.analysis.offline_names import Cast, Person

GENERIC = "a character from the story"


def _looks(cast: Cast, sentences: list[str]) -> Looks:
    looks = Looks(cast)
    for sentence in sentences:
        looks.describe(sentence, [sentence], [])
    return looks


def test_an_english_described_feature_is_an_appearance_note() -> None:
    cast = Cast.build("en", [Person("White Rabbit"), Person("King")])
    looks = _looks(
        cast,
        [
            "Suddenly a White Rabbit with pink eyes ran close by her.",
            "The King wore his crown over the wig, and did not look comfortable.",
        ],
    )
    assert "pink eyes" in looks.of("White Rabbit", GENERIC)
    assert "wore his crown" in looks.of("King", GENERIC)


def test_a_body_part_in_an_action_is_no_appearance_note() -> None:
    cast = Cast.build("en", [Person("Footman"), Person("Hatter")])
    looks = _looks(
        cast,
        [
            "The Footman was looking up into the sky, and a plate came skimming out; "
            "it just grazed his nose.",
            "The Hatter opened his eyes very wide on hearing this.",
        ],
    )
    assert looks.of("Footman", GENERIC) == GENERIC
    assert looks.of("Hatter", GENERIC) == GENERIC


def test_chinese_looks_need_two_cues_and_armour_put_on_is_an_action() -> None:
    cast = Cast.build("zh", [Person("关羽", "关"), Person("曹仁", "曹")])
    looks = _looks(cast, ["关羽身长九尺，髯长二尺，面如重枣。", "曹仁遂披甲上马，引兵出城。"])
    assert "身长九尺，髯长二尺，面如重枣" in looks.of("关羽", "书中人物")
    assert looks.of("曹仁", "书中人物") == "书中人物"
