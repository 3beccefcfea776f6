"""`python -m bench.precompile RUN_OPTIONS...`: a sweep's compile-ahead process
(bench/sweep/precompile.py), `gan-bench run` with inductor's autotuning cache off, so
that the launch configurations it times beside other processes are not kept."""

import sys


def main(argv: list[str]) -> None:
    import torch._inductor.config as inductor_config

    inductor_config.autotune_local_cache = False
    from bench import run

    run.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
