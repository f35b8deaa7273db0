"""Translate sentences from stdin, one per line, to stdout.

``echo "Ein Hund läuft." | python -m encdec.translate ckpt_path=... [decoding.beam_size=1]``
"""

import sys

import hydra
from omegaconf import DictConfig

from encdec.utils.config import CONFIG_DIR
from encdec.utils.errors import UserError, exit_on_user_error


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="translate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    # torch and the network are imported only now, and Lightning never (importing it takes
    # seconds): translation is often a short-lived filter
    import torch

    from encdec.decoding.search import decoding_autocast
    from encdec.inference.translator import Translator

    try:
        autocast = decoding_autocast(torch.device(cfg.device).type, cfg.precision)
    except ValueError as error:
        raise UserError(str(error)) from None
    translator = Translator.from_checkpoint(cfg.ckpt_path, map_location=cfg.device)
    decoding = translator.network.decoding.updated(cfg.decoding)  # null: as the checkpoint says
    with autocast:
        if sys.stdin.isatty():  # interactive: answer each line as it comes
            for line in sys.stdin:
                print(translator.translate([line.rstrip("\n")], decoding)[0], flush=True)
            return
        # a file or pipe: read it all, so batches group sentences of similar length
        sentences = [line.rstrip("\n") for line in sys.stdin]
        for translation in translator.translate(sentences, decoding, cfg.batch_size):
            print(translation)


if __name__ == "__main__":
    main()
