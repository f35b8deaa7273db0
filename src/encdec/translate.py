"""Translate sentences from stdin, one per line, to stdout.

``echo "Ein Hund läuft." | python -m encdec.translate ckpt_path=... [decoding.beam_size=1]``

With ``decoding.n_best`` > 1 (beam search, or ``decoding.sample=true``) each sentence gets
``n_best`` lines ``<sentence number>\t<score>\t<translation>``, best first; sentences are
numbered from 0 in input order and the score is the search's (the log-probability, divided by
the length penalty in beam search).
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
            for number, line in enumerate(sys.stdin):
                nbest = translator.translate_nbest([line.rstrip("\n")], decoding)[0]
                print(format_nbest(number, nbest, decoding.n_best), flush=True)
            return
        # a file or pipe: read it all, so batches group sentences of similar length
        sentences = [line.rstrip("\n") for line in sys.stdin]
        outputs = translator.translate_nbest(sentences, decoding, cfg.batch_size)
        for number, nbest in enumerate(outputs):
            print(format_nbest(number, nbest, decoding.n_best))


def format_nbest(number: int, nbest: list[tuple[str, float]], n_best: int) -> str:
    """The best translation alone, or ``n_best`` lines: number, score, translation."""
    if n_best == 1:
        return nbest[0][0]
    return "\n".join(f"{number}\t{score:.4f}\t{text}" for text, score in nbest)


if __name__ == "__main__":
    main()
