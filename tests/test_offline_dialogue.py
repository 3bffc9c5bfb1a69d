"""Who speaks each quotation: speech tags, bare given names and conversation turns."""

from __future__ import annotations

from service.analysis.offline_dialogue import Mentions, Speakers, find_quotes
from service.analysis.offline_names import Cast, Person
from service.storyboard import UNKNOWN


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
    assert found == ["刘备", "徐庶", UNKNOWN]


def test_poems_letters_and_inscriptions_are_the_narrators() -> None:
    cast = Cast.build("zh", [Person("袁绍", "袁"), Person("王允", "王")])
    found = _speakers_of(
        cast,
        [
            "袁绍差人赍密书来见王允。书略曰：“卓贼欺天废主，人不忍言。”",
            "王允曰：“此事须从长计议，不可轻动。”",
            # Regulated verse is narration even under a speaker's tag.
            "王允吟曰：“临难仁心存，登舟动三军。至今凭吊处，父老忆使君。”",
        ],
    )
    assert found == [None, "王允", None]


def test_a_given_name_after_a_comma_speaks() -> None:
    cast = Cast.build("zh", [Person("周瑜", "周"), Person("刘备", "刘")])
    found = _speakers_of(
        cast, ["刘备举酒致谢。酒至数巡，瑜曰：“豫州移兵在此，莫非有取南郡之意否？”"]
    )
    assert found == ["周瑜"]


def test_a_nameless_subject_is_unknown_and_a_missing_one_is_the_sentences() -> None:
    cast = Cast.build("zh", [Person("曹操", "曹"), Person("曹丕", "曹")])
    found = _speakers_of(
        cast,
        [
            "曹操引兵追赶，忽一人大叫曰：“曹贼休走！”",
            "曹丕拔剑欲斩之，遂按剑而问曰：“汝何人也？”",
        ],
    )
    assert found == [UNKNOWN, "曹丕"]


def _english_speakers(cast: Cast, paragraphs: list[str]) -> list[str | None]:
    speakers = Speakers.of(Mentions(cast))
    found: list[str | None] = []
    for paragraph in paragraphs:
        quotes = find_quotes(paragraph, "en")
        dialogue, _ = speakers.attribute(paragraph, quotes, cast.mentions_in(paragraph))
        found.extend(key for _, key in dialogue)
    return found


def test_english_untagged_replies_take_turns_until_narration() -> None:
    cast = Cast.build("en", [Person("Alice"), Person("Hatter")])
    found = _english_speakers(
        cast,
        [
            "'Your hair wants cutting,' said the Hatter.",
            "'You should learn not to make personal remarks,' said Alice.",
            "'Why is a raven like a writing-desk?'",
            "'I believe I can guess that.'",
            "The Hatter opened his eyes very wide on hearing this, and then sat still.",
            "'Nobody asked you.'",
        ],
    )
    assert found == ["Hatter", "Alice", "Hatter", "Alice", UNKNOWN]


def test_a_crowd_spoken_to_is_not_the_speaker() -> None:
    cast = Cast.build("zh", [Person("庞德", "庞")])
    found = _speakers_of(cast, ["二将各退。庞德归寨，对众曰：“人言关公英雄，今日方信也。”"])
    assert found == ["庞德"]
