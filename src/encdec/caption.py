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
from encdec.utils.errors import UserError, exit_on_user_error


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="caption")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    # torch and the models are imported only now: a wrong config stops before seconds of imports
    from encdec.models.captioning import CaptioningModule
    from encdec.models.loading import load_model

    model = load_model(cfg.ckpt_path, map_location=cfg.device).to(cfg.device)
    if not isinstance(model, CaptioningModule):
        raise UserError(f"'{cfg.ckpt_path}' holds a {type(model).__name__}, not a captioner")
    images = list(cfg.image) if isinstance(cfg.image, ListConfig) else [cfg.image]
    paths = [Path(image) for image in images]
    model.decoding = model.decoding.updated(cfg.decoding)  # null: as the checkpoint says
    if cfg.overlay_dir:
        for start in range(0, len(paths), cfg.batch_size):
            batch = paths[start : start + cfg.batch_size]
            for caption, png in model.overlay_attention(batch, Path(cfg.overlay_dir)):
                print(f"{caption}\t{png}")
        return
    for caption in model.caption_files(paths, model.decoding, cfg.batch_size):
        print(caption)


if __name__ == "__main__":
    main()
