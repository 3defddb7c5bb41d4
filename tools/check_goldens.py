"""Replay the official package's golden cases with samkit and report the differences.

    python tools/check_goldens.py tests/goldens/core      # prints one line per case

`tests/test_goldens.py` asserts on the same numbers (both run `samkit.testing.goldens`).
"""

from __future__ import annotations

import argparse

from samkit.testing.goldens import compare, print_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", help="path of the goldens without extension")
    print_report(compare(parser.parse_args().prefix))


if __name__ == "__main__":
    main()
