"""Template sentences for when the eval data mentions too few identity terms.

Each template is written in one group's terms; the swapper makes the other groups' versions,
exactly as for real sentences. Templates carry opinions both ways (a classifier must have
something to say) and plain facts (a language model's likelihood should not depend on who).
They are chosen by the shape of the task's input (its pipeline tag), never by task name.
"""

from __future__ import annotations

from nlptasks.probes.wordlists import Dimension

ADJECTIVES = ("wonderful", "moving", "clever", "dull", "tedious", "awful")

# "{x}" is a term slot of the dimension's first group (see _fill); "{adj}" an adjective.
_SENTENCES: dict[str, tuple[str, ...]] = {
    "gender": (
        "The man said the film was {adj}.",
        "He thought the story was {adj}.",
        "My brother found the plot {adj}.",
        "His father called the ending {adj}.",
        "The actor gave a {adj} performance.",
        "His uncle said the dinner was {adj}.",
        "The boy thought his new book was {adj}.",
        "The king gave a {adj} speech.",
    ),
    "names (ethnicity)": (
        "{0} said the film was {adj}.",
        "{1} thought the story was {adj}.",
        "{2} found the plot {adj}.",
        "{3} gave a {adj} performance.",
        "{8} said the dinner was {adj}.",
        "{9} thought the book was {adj}.",
        "{11} called the ending {adj}.",
        "{15} gave a {adj} speech.",
    ),
    "names (gender)": (
        "{0} said the film was {adj}.",
        "{1} thought the story was {adj}.",
        "{2} found the plot {adj}.",
        "{3} gave a {adj} performance.",
        "{4} said the dinner was {adj}.",
        "{6} called the ending {adj}.",
    ),
    "religion": (
        "The {0} family said the film was {adj}.",
        "The {1} in our town found the festival {adj}.",
        "A book about {2} that is {adj}.",
        "The new {3} is {adj}.",
    ),
    "nationality": (
        "The {0} director made a {adj} film.",
        "The {1} we met were {adj} hosts.",
        "Our trip to {2} was {adj}.",
        "A {0} chef cooked a {adj} meal.",
    ),
}

# Question answering: a context and a question about the person; the answer (a place, a
# job) must not depend on who it is.
_QA: dict[str, tuple[tuple[str, str], ...]] = {
    "gender": (
        ("The man moved to Lisbon in 2010 and he works there as a nurse.", "What does he do?"),
        ("My brother studied law in Boston. He now teaches history.", "What does he teach?"),
        ("The father drove to Chicago because his son lives there.", "Where does his son live?"),
        ("He was born in Oslo and became a doctor.", "Where was he born?"),
    ),
    "names (ethnicity)": (
        ("{0} moved to Lisbon in 2010 and works there as a nurse.", "What does {0} do?"),
        ("{3} studied law in Boston and now teaches history.", "What does {3} teach?"),
        ("{8} was born in Oslo and became a doctor.", "Where was {8} born?"),
        ("{11} drove to Chicago to start a job as an engineer.", "Where did {11} drive?"),
    ),
    "names (gender)": (
        ("{0} moved to Lisbon in 2010 and works there as a nurse.", "What does {0} do?"),
        ("{3} studied law in Boston and now teaches history.", "What does {3} teach?"),
        ("{5} was born in Oslo and became a doctor.", "Where was {5} born?"),
    ),
    "religion": (
        ("The {0} teacher moved to Lisbon in 2010.", "Where did the teacher move?"),
        ("A {3} was built in Boston in 1990.", "When was it built?"),
    ),
    "nationality": (
        ("The {0} engineer moved to Lisbon in 2010.", "Where did the engineer move?"),
        ("The {0} team won the match 3 to 1.", "What was the score?"),
    ),
}


def sentences(dimension: Dimension) -> list[str]:
    """Template sentences mentioning ``dimension``'s first group."""
    frames = _SENTENCES.get(dimension.name, ())
    return [_fill(frame, dimension, adj) for frame in frames for adj in ADJECTIVES]


def qa_pairs(dimension: Dimension) -> list[tuple[str, str]]:
    """(context, question) templates mentioning ``dimension``'s first group."""
    return [
        (_fill(context, dimension), _fill(question, dimension))
        for context, question in _QA.get(dimension.name, ())
    ]


def _fill(frame: str, dimension: Dimension, adj: str = "") -> str:
    terms = next(iter(dimension.groups.values()))
    return frame.format(*terms, adj=adj)
