"""`python -m bench.run` (and torchrun's `-m bench.run`): the same options as `gan-bench run`."""

import sys

from bench import cli


def main(argv: list[str]) -> None:
    cli.main(["run", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
