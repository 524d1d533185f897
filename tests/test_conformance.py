"""The conformance kit on the four built-in tasks: each runs every check of the kit, with only
its own plugin loaded, on its tiny dataset and a tiny model of its shape."""

from __future__ import annotations

from nlptasks.testing import TaskConformance


class TestSentiment(TaskConformance):
    task = "sentiment"


class TestQa(TaskConformance):
    task = "qa"


class TestGeneration(TaskConformance):
    task = "generation"
    model_shape = "causal"


class TestTranslation(TaskConformance):
    task = "translation"
    model_shape = "seq2seq"
