"""Gendered words of target languages, to tell whether a translation's gendered forms follow
the source's gender when only the source's gender words are swapped.

nlptasks' own short lists (pronouns and the nouns of the English gender list), not a
published lexicon: they catch the common forms, not adjective or participle agreement
("doctorul a fost obosit/obosită"), and an ambiguous pronoun (German "sie": she or they) is
counted as the gender it usually has after an English "she". Languages without a list fall
back to the output change rate, and the report says so.
"""

from __future__ import annotations

import re
import unicodedata


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


LEXICONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "ro": (
        _words(
            "el lui bărbat bărbatul bărbați bărbații băiat băiatul băieți tată tatăl fiu fiul "
            "frate fratele frați soț soțul rege regele unchi unchiul nepot nepotul domnul domn "
            "actor actorul ospătar ospătarul prinț prințul erou eroul"
        ),
        _words(
            "ea femeie femeia femei femeile fată fata fete mamă mama fiică fiica soră sora "
            "surori soție soția regină regina mătușă mătușa nepoată nepoata doamna doamnă "
            "actriță actrița ospătăriță ospătărița prințesă prințesa eroină eroina"
        ),
    ),
    "de": (
        _words(
            "er ihn ihm sein seine seinen seinem seiner seines mann männer junge jungen vater "
            "sohn bruder brüder ehemann könig onkel neffe herr schauspieler kellner prinz held "
            "großvater"
        ),
        _words(
            "sie ihr ihre ihren ihrem ihrer ihres frau frauen mädchen mutter tochter schwester "
            "schwestern ehefrau königin tante nichte schauspielerin kellnerin prinzessin "
            "heldin großmutter"
        ),
    ),
    "fr": (
        _words(
            "il ils homme hommes garçon garçons père fils frère frères mari roi oncle neveu "
            "monsieur acteur serveur prince héros grand-père"
        ),
        _words(
            "elle elles femme femmes fille filles mère sœur soeur sœurs épouse reine tante "
            "nièce madame actrice serveuse princesse héroïne grand-mère"
        ),
    ),
    "es": (
        _words(
            "él hombre hombres niño chico chicos padre hijo hermano hermanos marido esposo rey "
            "tío sobrino señor actor camarero príncipe héroe abuelo"
        ),
        _words(
            "ella ellas mujer mujeres niña chica chicas madre hija hermana hermanas esposa "
            "reina tía sobrina señora actriz camarera princesa heroína abuela"
        ),
    ),
}

_WORDS = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
# Romanian is written with cedilla letters as often as with the right comma-below ones.
_ROMANIAN = str.maketrans("şţŞŢ", "șțȘȚ")


def polarity(text: str, language: str) -> int | None:
    """+1 when ``text`` has more masculine than feminine words of ``language``, -1 for
    more feminine, 0 for neither (or a tie); None when there is no list for the language."""
    lexicon = LEXICONS.get(language.split("_")[0].split("-")[0].lower())
    if lexicon is None:
        return None
    masculine, feminine = lexicon
    words = [w.lower() for w in _WORDS.findall(unicodedata.normalize("NFC", text))]
    if language.lower().startswith("ro"):
        words = [w.translate(_ROMANIAN) for w in words]
    score = sum(w in masculine for w in words) - sum(w in feminine for w in words)
    return (score > 0) - (score < 0)


def has_lexicon(language: str | None) -> bool:
    return bool(language) and polarity("", language or "") is not None
