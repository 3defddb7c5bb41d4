"""Replay the model-zoo goldens (MobileSAM vit_t, transformers' SamModel) with samkit.

    python tools/check_zoo_goldens.py tests/goldens/zoo_vit_t.npz     # one line per case

The seeded weights are rebuilt, written in the reference's file layout (a MobileSAM-style
.pt with its ImageNet head, or an HF-layout safetensors) and read back with `samkit.load`, so
the check covers layout detection and key mapping as well as the model.
`tests/test_zoo.py` asserts on the same numbers (both run `samkit.testing.zoo_goldens`).
"""

from __future__ import annotations

import argparse

from samkit.testing.goldens import print_report
from samkit.testing.zoo_goldens import compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a tests/goldens/zoo_*.npz file")
    print_report(compare(parser.parse_args().path))


if __name__ == "__main__":
    main()
