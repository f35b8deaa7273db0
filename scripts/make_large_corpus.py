"""Make a large parallel corpus from a small one, for scale benchmarks: the training split
repeated N times (streamed, so any size fits in memory), val and test copied as they are.

    python scripts/make_large_corpus.py ../shared/data/multi30k data/multi30k_x140 --repeat 140
    python -m encdec.train experiment=multi30k_transformer data.path=data/multi30k_x140

The input is a ``data=parallel_text`` directory (``{split}.{lang}[.gz]``); the output holds
plain ``train.{lang}`` files and the val/test files of the input, under the same names.
"""

import argparse
import gzip
import shutil
from pathlib import Path

from encdec.utils.errors import UserError, exit_on_user_error


def split_files(directory: Path, split: str, languages: list[str]) -> list[Path]:
    files = []
    for language in languages:
        found = [
            p
            for p in (directory / f"{split}.{language}", directory / f"{split}.{language}.gz")
            if p.is_file()
        ]
        if not found:
            raise UserError(f"no {split}.{language}[.gz] in {directory}")
        files.append(found[0])
    return files


def read_bytes(path: Path) -> bytes:
    return (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source_dir", type=Path, help="a parallel-text directory")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--repeat", type=int, default=140, help="copies of the training split")
    parser.add_argument("--langs", nargs=2, default=["de", "en"], metavar=("SRC", "TGT"))
    parser.add_argument("--eval-splits", nargs="*", default=["val", "test_2016_flickr", "test"])
    args = parser.parse_args()
    if args.repeat < 1:
        raise UserError(f"--repeat must be >= 1, got {args.repeat}")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    train = split_files(args.source_dir, "train", args.langs)
    lines = None
    for language, path in zip(args.langs, train, strict=True):
        text = read_bytes(path)
        if not text.endswith(b"\n"):
            text += b"\n"
        count = text.count(b"\n")
        if lines is not None and count != lines:
            raise UserError(f"{path} has {count} lines, the other side {lines}")
        lines = count
        with open(args.output_dir / f"train.{language}", "wb") as out:
            for _ in range(args.repeat):
                out.write(text)
    for split in args.eval_splits:
        for path in (
            args.source_dir / f"{split}.{lang}{ext}" for lang in args.langs for ext in ("", ".gz")
        ):
            if path.is_file():
                shutil.copyfile(path, args.output_dir / path.name)
    print(f"{args.output_dir}: {lines * args.repeat:,} training pairs ({args.repeat} x {lines:,})")


if __name__ == "__main__":
    main()
