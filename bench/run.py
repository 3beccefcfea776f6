"""`python -m bench.run` (and torchrun's `-m bench.run`): the same options as `gan-bench run`."""

import sys

from bench.cli import main

if __name__ == "__main__":
    main(["run", *sys.argv[1:]])
