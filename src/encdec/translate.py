"""Translate sentences from stdin, one per line, to stdout.

``echo "Ein Hund läuft." | python -m encdec.translate ckpt_path=... [decoding.beam_size=1]``
"""

import sys

import hydra
from omegaconf import DictConfig

from encdec.models.loading import load_model
from encdec.search import DecodingConfig
from encdec.utils.config import CONFIG_DIR
from encdec.utils.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="translate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    model = load_model(cfg.ckpt_path, map_location=cfg.device).to(cfg.device)
    decoding = DecodingConfig(**cfg.decoding)
    batch: list[str] = []
    for line in sys.stdin:
        batch.append(line.rstrip("\n"))
        if len(batch) == cfg.batch_size:
            print("\n".join(model.translate(batch, decoding, cfg.batch_size)), flush=True)
            batch = []
    if batch:
        print("\n".join(model.translate(batch, decoding, cfg.batch_size)), flush=True)


if __name__ == "__main__":
    main()
