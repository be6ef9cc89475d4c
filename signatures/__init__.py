"""The declarative "what" of gem-synth: data types and one DSPy Signature per GEM stage.

No LM calls and no I/O here. Reading this package alone tells what each stage asks of
the model: a Signature's docstring is its instruction, its fields the contract.
"""

from signatures.extraction import WorkflowExtraction
from signatures.generation import TrajectoryGeneration
from signatures.judge import HallucinationJudge
from signatures.refinement import ComplexityRefinement
from signatures.relevance import RelevanceFilter
from signatures.synthesis import TrajectorySynthesis

__all__ = [
    "ComplexityRefinement",
    "HallucinationJudge",
    "RelevanceFilter",
    "TrajectoryGeneration",
    "TrajectorySynthesis",
    "WorkflowExtraction",
]
