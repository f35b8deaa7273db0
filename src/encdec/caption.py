"""Caption images: ``python -m encdec.caption ckpt_path=... image=dog.jpg`` (or
``image=[a.jpg,b.png]``) prints one caption per image, in order.

Images are resized and normalized as the checkpoint's training data were. With
``overlay_dir=DIR`` the captions are decoded greedily and each image's attention, word by word,
is drawn over it into ``DIR/<image name>.png``.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig

from encdec.utils.config import CONFIG_DIR
from encdec.utils.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="caption")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    # torch and the network are imported only now, and Lightning never: a wrong config stops
    # before seconds of imports
    from encdec.inference.captioner import Captioner

    captioner = Captioner.from_checkpoint(cfg.ckpt_path, map_location=cfg.device)
    images = list(cfg.image) if isinstance(cfg.image, ListConfig) else [cfg.image]
    paths = [Path(image) for image in images]
    decoding = captioner.decoding.updated(cfg.decoding)  # null: as the checkpoint says
    captioner.network.decoding = decoding
    if cfg.overlay_dir:
        for start in range(0, len(paths), cfg.batch_size):
            batch = paths[start : start + cfg.batch_size]
            for caption, png in captioner.overlay_attention(batch, Path(cfg.overlay_dir)):
                print(f"{caption}\t{png}")
        return
    for caption in captioner.caption_files(paths, decoding, cfg.batch_size):
        print(caption)


if __name__ == "__main__":
    main()
