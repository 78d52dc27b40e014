"""`python -m parsing …`: the parse CLI without the rest of autodispatch (same contract as `autodispatch parse`)."""

from __future__ import annotations

import argparse
import sys

from parsing import cli


def main() -> int:
    p = argparse.ArgumentParser(
        prog="python -m parsing", description="Parse order texts into structured orders."
    )
    cli.add_arguments(p)
    return cli.run(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
