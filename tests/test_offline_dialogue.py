"""Who speaks each quotation: speech tags, bare given names and conversation turns."""

from __future__ import annotations

from service.analysis.offline_dialogue import Mentions, Speakers, find_quotes
from service.analysis.offline_names import Cast, Person


def _speakers_of(cast: Cast, paragraphs: list[str]) -> list[str | None]:
    speakers = Speakers.of(Mentions(cast))
    found: list[str | None] = []
    for paragraph in paragraphs:
        quotes = find_quotes(paragraph, "zh")
        dialogue, _ = speakers.attribute(paragraph, quotes, cast.mentions_in(paragraph))
        found.extend(key for _, key in dialogue)
    return found


def test_a_bare_reply_in_a_two_person_exchange_is_the_other_speakers() -> None:
    cast = Cast.build("zh", [Person("刘备", "刘"), Person("徐庶", "徐")])
    found = _speakers_of(
        cast,
        [
            "刘备问曰：“先生何处人也？”",
            "徐庶曰：“某颍川人也，久闻使君大名。”",
            "答曰：“备不才，愧不敢当。”",
        ],
    )
    assert found == ["刘备", "徐庶", "刘备"]


def test_a_poem_is_not_a_turn_of_the_conversation() -> None:
    cast = Cast.build("zh", [Person("刘备", "刘"), Person("徐庶", "徐")])
    found = _speakers_of(
        cast,
        [
            "刘备曰：“先生何往？”",
            "徐庶曰：“吾去许都矣。”",
            "后人有诗叹曰：“痛恨高贤不再逢，临岐泣别两情浓。”",
        ],
    )
    assert found == ["刘备", "徐庶", None]


def test_narration_ends_the_conversation() -> None:
    cast = Cast.build("zh", [Person("刘备", "刘"), Person("徐庶", "徐")])
    found = _speakers_of(
        cast,
        [
            "刘备曰：“先生何往？”",
            "徐庶曰：“吾去许都矣。”",
            "次日，二人分别，各自上路而去，不在话下。",
            "答曰：“诺，某即刻便往。”",
        ],
    )
    assert found == ["刘备", "徐庶", None]
