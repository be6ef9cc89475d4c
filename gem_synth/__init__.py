"""gem-synth: GEM tool-use trajectories from text, as DSPy programs.

The design card's folders are installed under this one name, so that what gem-synth puts
on a user's path never shadows their own modules: `signatures/` is `gem_synth.signatures`
(types and Signatures), `programs/` is `gem_synth.programs` (the DSPy program: modules and
rules), `backends/` is `gem_synth.backends` (where LM calls go), `running/` is
`gem_synth.running` (one program over a corpus: readers, journal, engines, tables),
`optimizers/` is `gem_synth.optimizers`, `cli/` is `gem_synth.cli` (the `gem-synth` command).
Layers import only those before them in this list.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gem-synth")
except PackageNotFoundError:  # imported from a source tree that was not installed
    __version__ = "unknown"
