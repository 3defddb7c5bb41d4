"""Replay the official AMG goldens with samkit: match masks both ways and compare scores.

python tools/check_amg_goldens.py tests/goldens      # one line per (config, image)
"""

from __future__ import annotations

import argparse

from samkit.testing.amg_goldens import compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="tests/goldens")
    for d in compare(parser.parse_args().folder):
        print(
            f"{d.name:24s} official {d.official:4d}  samkit {d.ours:4d}  unmatched "
            f"{d.unmatched_official}/{d.unmatched_ours}  max score diff {d.score_max:.2e}"
        )


if __name__ == "__main__":
    main()
