"""Train, validate and test a model, RecBole style: ``python run_recbole_iacn.py --model=M --dataset=D``."""

import sys

from recbole_iacn.cli import main

if __name__ == "__main__":
    sys.exit(main())
