import sys

from gem_synth.cli.main import main

sys.exit(main())
