"""The one exception type of the evaluation package (layer 1)."""

from __future__ import annotations


class EvaluationInputError(ValueError):
    """A ground-truth or prediction input that cannot be evaluated; the message names the file, field and value.

    A ``ValueError`` subclass, so the ``posebh`` command reports it as one line with exit code 2.
    """
