#!/usr/bin/env python
"""FCN semantic segmentation, the book's entry script: `python fcn.py --train`,
`python fcn.py --evaluate --restore-weights FILE`. Same as the `fcn-keras` console script."""

import sys

from fcn_keras.cli import main

if __name__ == "__main__":
    sys.exit(main())
