"""`python -m bench ...` is `gan-bench ...`: the command line without installing the package
(a checkout on PYTHONPATH, as on a machine that may install nothing)."""

from bench.cli import main

if __name__ == "__main__":
    main()
