"""Average the weights of encdec checkpoints of one model into a new checkpoint.

    python scripts/average_checkpoints.py --output averaged.ckpt run/checkpoints/top/*.ckpt

Training does this itself with ``callbacks=averaging``; this script is for checkpoints chosen by
hand (e.g. the last N of a run). The result loads like any checkpoint:
``python -m encdec.evaluate ckpt_path=averaged.ckpt ...``.
"""

import argparse

from encdec.training.averaging import average_checkpoints
from encdec.utils.errors import exit_on_user_error


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoints of the same model")
    parser.add_argument("--output", required=True, help="where to write the average")
    args = parser.parse_args()
    output = average_checkpoints(args.checkpoints, args.output)
    print(f"averaged {len(args.checkpoints)} checkpoints: {output}")


if __name__ == "__main__":
    main()
