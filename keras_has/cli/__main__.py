"""`python -m keras_has.cli <subcommand> ...` is the `keras-has` command."""
import sys

from keras_has.cli import main

sys.exit(main())
