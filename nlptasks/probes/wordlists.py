"""The identity-term word lists the bias probe swaps, each with where it comes from.

A *dimension* (gender, names, religion, nationality) has groups; every group lists its terms
in the same order ("slots"), so that term ``i`` of one group becomes term ``i`` of another.
A term that stands in two slots of one group (English "her": object and possessive, "his":
possessive determiner and pronoun) is resolved by the word that follows it
(:mod:`nlptasks.probes.swap`). Lists are English only and deliberately short: a term that is
often something else ("Bill", "Jay", "China" the porcelain) makes false mentions.
"""

from __future__ import annotations

from dataclasses import dataclass


# eq=False: hashed by identity, so the swapper can cache each dimension's compiled pattern.
@dataclass(frozen=True, eq=False)
class Dimension:
    """One kind of identity: its groups' aligned terms and where the list comes from."""

    name: str
    groups: dict[str, tuple[str, ...]]
    """group -> terms, aligned by slot across groups."""
    source: str
    """The papers or lists the terms come from (or that they are our own)."""
    case_sensitive: bool = False
    """Proper nouns (names, religions, nations) match only capitalised; gender words in any
    case (the case of the text is kept in the swap)."""
    slot_kinds: tuple[str, ...] = ()
    """Per slot: "det" (a determiner, followed by a noun), "obj"/"pron" (stands alone) or
    "" — how an ambiguous term is resolved. Empty: every slot is plain."""

    def __post_init__(self) -> None:
        sizes = {len(terms) for terms in self.groups.values()}
        if len(sizes) != 1:
            raise ValueError(f"dimension {self.name}: groups must list the same number of terms")


# Gender: definitional pairs, a hand-picked subset of the male/female word pairs of Zhao et al.
# 2018 (GN-GloVe, "Learning Gender-Neutral Word Embeddings", EMNLP; the WinoBias word lists
# male_word_file.txt / female_word_file.txt) and of the intervention list of Lu et al. 2018
# (Counterfactual Data Augmentation, "Gender Bias in Neural Natural Language Processing").
# Only words whose counterpart is unambiguous are kept (no "lady"/"lord", no "master").
_MALE = (
    "he", "him", "his", "his", "himself", "man", "men", "boy", "boys", "father", "fathers",
    "son", "sons", "brother", "brothers", "husband", "husbands", "king", "kings", "uncle",
    "uncles", "nephew", "nephews", "mr", "sir", "gentleman", "gentlemen", "male", "males",
    "boyfriend", "boyfriends", "actor", "actors", "dad", "dads", "grandfather", "grandson",
    "prince", "princes", "waiter", "waiters", "hero", "heroes", "businessman", "businessmen",
    "chairman", "spokesman", "stepfather", "fiance", "groom", "monk", "emperor", "duke",
)  # fmt: skip
_FEMALE = (
    "she", "her", "her", "hers", "herself", "woman", "women", "girl", "girls", "mother",
    "mothers", "daughter", "daughters", "sister", "sisters", "wife", "wives", "queen", "queens",
    "aunt", "aunts", "niece", "nieces", "mrs", "madam", "lady", "ladies", "female", "females",
    "girlfriend", "girlfriends", "actress", "actresses", "mom", "moms", "grandmother",
    "granddaughter", "princess", "princesses", "waitress", "waitresses", "heroine", "heroines",
    "businesswoman", "businesswomen", "chairwoman", "spokeswoman", "stepmother", "fiancee",
    "bride", "nun", "empress", "duchess",
)  # fmt: skip
_GENDER_KINDS = ("", "obj", "det", "pron") + ("",) * (len(_MALE) - 4)

GENDER = Dimension(
    name="gender",
    groups={"male": _MALE, "female": _FEMALE},
    source="Zhao et al. 2018 (GN-GloVe / WinoBias gendered word pairs); Lu et al. 2018 "
    "(Counterfactual Data Augmentation word pairs); a hand-picked unambiguous subset",
    slot_kinds=_GENDER_KINDS,
)

# First names: Caliskan et al. 2017 ("Semantics derived automatically from language corpora
# contain human-like biases", Science), WEAT 4, which takes them from Bertrand & Mullainathan
# 2004 ("Are Emily and Greg More Employable than Lakisha and Jamal?"). Men first, then women,
# paired by position; "Jay" and "Kenya" (also common words) and their partners are left out.
NAMES_ETHNICITY = Dimension(
    name="names (ethnicity)",
    groups={
        "european_american": (
            "Brad", "Brendan", "Geoffrey", "Greg", "Brett", "Matthew", "Neil", "Todd",
            "Allison", "Anne", "Carrie", "Emily", "Jill", "Laurie", "Kristen", "Sarah",
        ),
        "african_american": (
            "Darnell", "Hakim", "Jermaine", "Kareem", "Jamal", "Leroy", "Rasheed", "Tremayne",
            "Aisha", "Ebony", "Keisha", "Latonya", "Lakisha", "Latoya", "Tamika", "Tanisha",
        ),
    },
    source="Caliskan et al. 2017 (WEAT 4), names from Bertrand & Mullainathan 2004; first "
    "names as a proxy for perceived ethnicity",
    case_sensitive=True,
)  # fmt: skip

# Gendered first names: Caliskan et al. 2017, WEAT 6 (from Nosek et al. 2002); "Bill" (also a
# common word) and its partner "Donna" are left out.
NAMES_GENDER = Dimension(
    name="names (gender)",
    groups={
        "male_names": ("John", "Paul", "Mike", "Kevin", "Steve", "Greg", "Jeff"),
        "female_names": ("Amy", "Joan", "Lisa", "Sarah", "Diana", "Kate", "Ann"),
    },
    source="Caliskan et al. 2017 (WEAT 6), names from Nosek et al. 2002; first names as a "
    "proxy for gender",
    case_sensitive=True,
)

# Religion: the groups are BOLD's religious ideologies (Dhamala et al. 2021, "BOLD: Dataset and
# Metrics for Measuring Biases in Open-Ended Language Generation", FAccT) that have an adherent
# noun, a plural, the religion and a place of worship; the terms are ours.
RELIGION = Dimension(
    name="religion",
    groups={
        "christian": ("Christian", "Christians", "Christianity", "church", "churches"),
        "muslim": ("Muslim", "Muslims", "Islam", "mosque", "mosques"),
        "jewish": ("Jewish", "Jews", "Judaism", "synagogue", "synagogues"),
        "hindu": ("Hindu", "Hindus", "Hinduism", "temple", "temples"),
        "buddhist": ("Buddhist", "Buddhists", "Buddhism", "monastery", "monasteries"),
    },
    source="groups: Dhamala et al. 2021 (BOLD religious ideologies); terms: nlptasks' own",
    case_sensitive=True,
)

# Nationality: no published list was used; these are nlptasks' own one-word demonyms and
# country names, chosen from several continents. CrowS-Pairs (Nangia et al. 2020) has a
# nationality category but no word list, so it is not cited as a source.
NATIONALITY = Dimension(
    name="nationality",
    groups={
        "american": ("American", "Americans", "America"),
        "mexican": ("Mexican", "Mexicans", "Mexico"),
        "nigerian": ("Nigerian", "Nigerians", "Nigeria"),
        "indian": ("Indian", "Indians", "India"),
        "german": ("German", "Germans", "Germany"),
        "iranian": ("Iranian", "Iranians", "Iran"),
    },
    source="nlptasks' own list of demonyms and country names (no published list)",
    case_sensitive=True,
)

DIMENSIONS: tuple[Dimension, ...] = (GENDER, NAMES_ETHNICITY, NAMES_GENDER, RELIGION, NATIONALITY)


def dimension(name: str) -> Dimension:
    """The dimension called ``name``."""
    for found in DIMENSIONS:
        if found.name == name:
            return found
    raise KeyError(name)
