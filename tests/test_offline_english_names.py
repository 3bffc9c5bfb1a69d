"""The English cast: speakers, recurring subjects and appositions under their fullest names."""

from __future__ import annotations

from service.analysis.offline_english_names import EnglishName, discover_english


def _cast(*paragraphs: str) -> dict[str, EnglishName]:
    return {name.key: name for name in discover_english(list(paragraphs))}


def _owner(cast: dict[str, EnglishName], form: str) -> str | None:
    return next((k for k, n in cast.items() if form == k or form in n.aliases), None)


WONDERLAND = [
    "Alice saw the Cheshire Cat sitting on a bough. 'Cheshire Puss,' she began.",
    "'We're all mad here,' said the Cat. 'You're mad,' said Alice.",
    "'How do you know?' said Alice. 'You must be,' said the Cat, 'or you wouldn't have come.'",
    "The King looked anxiously at the Cheshire Cat, and the Queen of Hearts frowned.",
    "'Off with his head!' said the Queen. 'Nonsense,' said Alice to the Queen of Hearts.",
    "'Hold your tongue!' said the Queen, turning purple.",
    "The Knave was standing before them, in chains. The Knave shook his head sadly.",
    "'I didn't write it,' said the Knave. Then followed the Knave of Hearts, and the Knave"
    " of Hearts bowed.",
    "The poor little Lizard, Bill, was in the middle. Here, Bill! catch hold of this rope.",
    "It was Bill, the Lizard, who fell. 'That's Bill,' thought Alice. Poor Bill!",
]


def test_a_short_form_folds_into_the_full_form_the_text_uses() -> None:
    cast = _cast(*WONDERLAND)
    assert _owner(cast, "Cat") == "Cheshire Cat"
    assert _owner(cast, "Queen") == "Queen of Hearts"


def test_a_recurring_the_subject_is_a_character_under_its_full_title() -> None:
    cast = _cast(*WONDERLAND)
    assert _owner(cast, "Knave") == "Knave of Hearts"


def test_an_apposition_joins_a_name_and_a_the_noun() -> None:
    cast = _cast(*WONDERLAND)
    assert "Bill the Lizard" in cast
    assert set(cast["Bill the Lizard"].aliases) == {"Bill", "Lizard"}


def test_a_noun_always_used_with_the_is_no_name_in_an_apposition() -> None:
    cast = _cast(
        *[
            "'Who are you?' said the King, the Queen, and the Gryphon looked on.",
            "'Hush!' said the King. The King was angry. 'Silence!' said the Queen.",
        ]
        * 3
    )
    assert "King" in cast
    assert not any(" the " in key for key in cast)


def test_mr_and_mrs_of_one_surname_are_two_people_and_the_surname_neither() -> None:
    cast = _cast(
        *[
            "'My dear Mr. Bennet,' said his lady to him one day, 'have you heard?'",
            "'I have not,' said Mr. Bennet. 'But it is,' returned Mrs. Bennet.",
            "Mr. Bennet made no answer. Mrs. Bennet was impatient. 'Do you not want to know?'"
            " cried Mrs. Bennet. 'You want to tell me,' said Mr. Bennet.",
        ]
        * 2
    )
    assert "Mr. Bennet" in cast
    assert "Mrs. Bennet" in cast
    assert _owner(cast, "Bennet") is None


def test_a_surname_folds_into_its_one_titled_form() -> None:
    cast = _cast(
        *[
            "'I am perfectly convinced,' said Darcy. 'She is tolerable,' said Darcy coldly.",
            "Everybody looked at Mr. Darcy, and Elizabeth watched Mr. Darcy closely.",
            "'You are too generous,' said Elizabeth. 'Not at all,' said Elizabeth.",
        ]
        * 2
    )
    assert _owner(cast, "Darcy") == "Mr. Darcy"
    assert "Elizabeth" in cast


def test_title_and_given_name_forms_join_when_the_text_links_them() -> None:
    cast = _cast(
        *[
            "I called upon my friend, Mr. Sherlock Holmes, one day in the autumn.",
            "'You have been in Afghanistan,' said Holmes. 'How on earth,' said I to"
            " Sherlock Holmes, but Mr. Holmes only smiled, and Sherlock Holmes lit his pipe.",
            "'Quite so,' said Holmes. Dr. Watson wrote it down, and Dr. Watson was amazed.",
            "'Wonderful!' said Watson. 'Elementary,' said Holmes.",
        ]
        * 2
    )
    assert _owner(cast, "Holmes") == "Sherlock Holmes"
    assert _owner(cast, "Watson") == "Dr. Watson"


def test_a_bare_title_folds_into_the_titled_name() -> None:
    cast = _cast(
        *[
            "Within stood a tall old man, and I knew him for Count Dracula at once.",
            "'Welcome to my house,' said the Count. The Count was silent, and Count Dracula"
            " smiled. 'I am Dracula,' said the Count.",
            "'I thank you,' said Jonathan. 'Sleep well,' said Jonathan.",
        ]
        * 2
    )
    assert _owner(cast, "Count") == "Count Dracula"
