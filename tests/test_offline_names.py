"""The offline cast: names from speech tags, introductions and the dictionary, nicknames merged."""

from __future__ import annotations

from service.analysis.offline_names import Cast, discover_cast


def _cast(*paragraphs: str) -> Cast:
    return discover_cast("zh", list(paragraphs))


def test_a_major_tagged_by_given_name_alone_is_found_by_full_name() -> None:
    # 董卓 speaks only as 卓曰, and is named in full in the narration.
    scenes = ["董卓引兵入城，百官皆惧。卓曰：“吾欲废帝，诸公以为何如？”"] * 12
    cast = _cast(*scenes)
    assert "董卓" in cast.people


def test_forms_of_address_and_groups_are_not_characters() -> None:
    paragraphs = [
        "一个小妖跑来报信。小妖道：“大王，祸事了！”众小妖都慌了。",
        "八戒道：“我师父在那里？”沙僧道：“师父去化斋了。”师父道：“徒弟们，走罢。”",
    ] * 8
    cast = _cast(*paragraphs)
    assert "八戒" in cast.people
    assert "沙僧" in cast.people
    assert "小妖" not in cast.forms
    assert "师父" not in cast.forms


def test_a_nickname_that_takes_a_surname_merges_with_the_full_form() -> None:
    paragraphs = ["行者道：“师父放心。”孙行者举棒就打。孙行者道：“妖怪休走！”"] * 8
    cast = _cast(*paragraphs)
    assert cast.forms["行者"] == cast.forms["孙行者"]
    assert len({cast.forms["行者"], cast.forms["孙行者"]}) == 1


def test_a_style_name_after_an_introduction_is_an_alias() -> None:
    cast = _cast(
        "童子曰：“吾师复姓司马，名徽，字德操，颍川人也。道号水镜先生。”",
        *["水镜曰：“卧龙凤雏，得一可安天下。”"] * 6,
    )
    person = cast.people["司马徽"]
    assert "水镜" in person.aliases
    assert "水镜先生" in person.aliases
    assert cast.forms["水镜"] == "司马徽"


def test_a_given_name_and_a_verb_is_not_a_name() -> None:
    paragraphs = ["张松曰：“明公可取西川。”松自思曰：“此人可托。”"] * 6
    cast = _cast(*paragraphs)
    assert "张松" in cast.people
    assert "松自思" not in cast.forms


def test_a_place_with_a_surname_shaped_start_is_not_a_character() -> None:
    # 都曰 reads like a bare given name, and 成 is a surname, but 成都 is a city.
    paragraphs = ["众人至成都，成都百姓迎接。都曰：“善。”"] * 12
    cast = _cast(*paragraphs)
    assert "成都" not in cast.forms


def test_english_names_come_from_speech_tags() -> None:
    cast = discover_cast("en", ["'Off with her head!' said the Queen."] * 3)
    assert "Queen" in cast.people


def test_a_minor_character_who_speaks_once_is_in_the_cast_when_named_often() -> None:
    story = [
        "陈矫随曹仁守城。陈矫登城观望。陈矫回见曹仁。",
        "陈矫曰：“此计速行，不可迟误。”",
        "韩德引兵至。韩德曰：“杀吾四子之仇，今日必报！”",
    ]
    cast = _cast(*story)
    assert "陈矫" in cast.people
    # Named only where it speaks: too little to believe.
    assert "韩德" not in cast.people


def test_a_speaker_who_names_themself_merges_into_that_name() -> None:
    paragraphs = [
        "孙悟空在洞中修行。孙悟空道：“师父放心。”孙大圣闻言大喜。",
        "孙大圣道：“我已有名了，叫做孙悟空。”孙大圣道：“待俺老孙去来。”",
    ] * 6
    cast = _cast(*paragraphs)
    assert cast.forms["孙大圣"] == "孙悟空"
    assert "孙大圣" not in cast.people


def test_naming_someone_else_or_ones_master_merges_no_one() -> None:
    paragraphs = [
        "沙僧道：“我还有个大师兄，叫做孙悟空。”孙悟空道：“兄弟莫慌。”沙僧笑道：“好。”",
        "八戒道：“我是唐僧的徒弟。”唐僧道：“徒弟休得无礼。”八戒道：“晓得。”",
    ] * 6
    cast = _cast(*paragraphs)
    assert cast.forms["沙僧"] == "沙僧"
    assert cast.forms["八戒"] == "八戒"
    assert cast.forms["孙悟空"] == "孙悟空"


def test_one_self_naming_without_a_shared_surname_is_not_enough() -> None:
    # A waiter who once says he is someone's man is not that man.
    paragraphs = [
        "武松道：“拿酒来。”酒保道：“客官少待。”武松饮了三碗。",
        "酒保道：“我是武松的人。”武松道：“休要多言。”",
        "酒保道：“我乃武松也。”",
    ] * 2
    cast = _cast(*paragraphs)
    assert cast.forms.get("酒保") != "武松"
