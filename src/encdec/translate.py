"""Translate sentences from stdin, one per line, to stdout.

``echo "Ein Hund läuft." | python -m encdec.translate ckpt_path=... [decoding.beam_size=1]``
"""

from encdec.utils.preload import restart_with_fast_libraries

if __name__ == "__main__":  # before the imports below: a restart then repeats only Python's start
    restart_with_fast_libraries()

import sys  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from encdec.utils.config import CONFIG_DIR  # noqa: E402
from encdec.utils.errors import UserError, exit_on_user_error  # noqa: E402


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="translate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    # torch and the network are imported only now, and Lightning never (importing it takes
    # seconds): translation is often a short-lived filter
    import torch

    from encdec.networks.loading import load_network
    from encdec.search import DecodingConfig, decoding_autocast

    try:
        autocast = decoding_autocast(torch.device(cfg.device).type, cfg.precision)
    except ValueError as error:
        raise UserError(str(error)) from None
    model = load_network(cfg.ckpt_path, map_location=cfg.device)
    decoding = DecodingConfig(**cfg.decoding)
    with autocast:
        if sys.stdin.isatty():  # interactive: answer each line as it comes
            for line in sys.stdin:
                print(model.translate([line.rstrip("\n")], decoding)[0], flush=True)
            return
        # a file or pipe: read it all, so batches group sentences of similar length
        sentences = [line.rstrip("\n") for line in sys.stdin]
        for translation in model.translate(sentences, decoding, cfg.batch_size):
            print(translation)


if __name__ == "__main__":
    main()
