"""Train, validate and test a model, RecBole style: ``python run_recbole_iacn.py --model=M --dataset=D``."""

from recbole_iacn.cli import main
from recbole_iacn.errors import run_command

if __name__ == "__main__":
    run_command(main)
