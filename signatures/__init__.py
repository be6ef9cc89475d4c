"""The declarative "what" of gem-synth: data types and one DSPy Signature per GEM stage.

No LM calls and no I/O here. Reading this package alone tells what each stage asks of
the model: a Signature's docstring is its instruction, its fields the contract.
"""

from gem_synth.signatures.extraction import WorkflowExtraction
from gem_synth.signatures.generation import TrajectoryGeneration
from gem_synth.signatures.judge import HallucinationJudge
from gem_synth.signatures.refinement import ComplexityRefinement, ToolExtension
from gem_synth.signatures.relevance import RelevanceFilter
from gem_synth.signatures.synthesis import TrajectorySynthesis

__all__ = [
    "ComplexityRefinement",
    "HallucinationJudge",
    "RelevanceFilter",
    "ToolExtension",
    "TrajectoryGeneration",
    "TrajectorySynthesis",
    "WorkflowExtraction",
]
