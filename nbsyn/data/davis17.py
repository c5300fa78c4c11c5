"""DAVIS-2017 reader: first frames with their object masks (OSMIS, thesis L1756) and later frames.

On-disk layout of the official DAVIS-2017 trainval release (``DAVIS-2017-trainval-480p.zip``)::

    DAVIS/
      ImageSets/2017/train.txt, val.txt        one video name per line
      JPEGImages/480p/<video>/00000.jpg ...    854x480 RGB frames
      Annotations/480p/<video>/00000.png ...   palette ("P") PNGs: pixel value = object id,
                                               0 = background, 1..K = instances, 255 = void

DAVIS-2016 style binary annotations (greyscale, 0 / 255) are read as background / object 1.
OSMIS trains one model per video on the first frame and its mask, resized to 640x384 [L1756];
the one-shot video segmentation experiment (OSVOS / STM, [L1816-1847]) segments the other frames.
``data_scripts/prepare_davis17_first_frames.py`` exports the 30 validation first frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

VOID_ID = 255
OSMIS_SIZE = (384, 640)  # (H, W) used for DAVIS in the thesis [L1756]


def _root(root: str | Path) -> Path:
    root = Path(root)
    if not (root / "JPEGImages").is_dir():
        raise FileNotFoundError(
            f"{root} is not a DAVIS root (no JPEGImages/ folder); download DAVIS-2017-trainval-480p.zip "
            "from https://davischallenge.org and pass the extracted DAVIS/ folder"
        )
    return root


def list_videos(root: str | Path, split: str = "val", year: int = 2017) -> list[str]:
    """Video names of a split, read from ``ImageSets/<year>/<split>.txt``."""
    path = _root(root) / "ImageSets" / str(year) / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no split file {path}; valid splits are the .txt files in {path.parent}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def list_frames(root: str | Path, video: str, resolution: str = "480p") -> list[str]:
    """Frame ids (file stems, e.g. '00000') of a video, sorted."""
    folder = _root(root) / "JPEGImages" / resolution / video
    if not folder.is_dir():
        raise FileNotFoundError(f"no frames for video {video!r} at {folder}")
    return sorted(p.stem for p in folder.glob("*.jpg"))


def read_annotation(path: str | Path) -> np.ndarray:
    """An (H, W) int64 array of object ids from a DAVIS annotation PNG.

    Palette PNGs hold the ids directly; greyscale/RGB binary masks (DAVIS-2016) map non-zero to 1.
    """
    from PIL import Image

    with Image.open(path) as im:
        if im.mode == "P":
            ids = np.array(im, dtype=np.int64)
        else:
            grey = np.array(im.convert("L"), dtype=np.int64)
            ids = (grey > 127).astype(np.int64)
    return ids


def _image_tensor(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.array(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(rgb).permute(2, 0, 1) * 2 - 1


def resize_pair(image: torch.Tensor, labels: torch.Tensor, size: tuple[int, int] | None):
    """Resize an image (bilinear, antialiased) and its label map (nearest) to ``size`` = (H, W)."""
    if size is None or tuple(image.shape[-2:]) == tuple(size):
        return image, labels
    image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    labels = F.interpolate(labels[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image.clamp(-1, 1), labels


def load_frame(root: str | Path, video: str, frame: int | str = 0, size: tuple[int, int] | None = None,
               resolution: str = "480p", void_to: int | None = 0):
    """(image (3, H, W) in [-1, 1], labels (H, W) long) of one annotated frame.

    ``frame`` is an index into the sorted frames or a frame id such as '00000'. Void pixels (255)
    become ``void_to`` (background by default; None keeps 255 for an ignore index).
    """
    root = _root(root)
    frames = list_frames(root, video, resolution)
    stem = frames[frame] if isinstance(frame, int) else frame
    ann_path = root / "Annotations" / resolution / video / f"{stem}.png"
    if not ann_path.is_file():
        raise FileNotFoundError(f"frame {stem} of {video!r} has no annotation at {ann_path}")
    image = _image_tensor(root / "JPEGImages" / resolution / video / f"{stem}.jpg")
    labels = torch.from_numpy(read_annotation(ann_path))
    if image.shape[-2:] != labels.shape:
        raise ValueError(f"{video}/{stem}: image {tuple(image.shape[-2:])} and mask {tuple(labels.shape)} differ")
    if void_to is not None:
        labels[labels == VOID_ID] = void_to
    return resize_pair(image, labels, size)


def num_objects(labels: torch.Tensor) -> int:
    """The number of object ids (excluding background and void) in a label map."""
    ids = labels.unique()
    return int(((ids > 0) & (ids != VOID_ID)).sum())


def load_first_frame(root: str | Path, video: str, size: tuple[int, int] | None = OSMIS_SIZE):
    """The OSMIS training pair of a video: its first frame and mask at 640x384 by default [L1756].

    Returns (image, labels, class_names) with class 0 = background and classes 1..K the instances.
    """
    image, labels = load_frame(root, video, 0, size)
    k = int(labels.max())
    names = ["background"] + [f"{video} object {i}" for i in range(1, k + 1)]
    return image, labels, names


def load_video(root: str | Path, video: str, size: tuple[int, int] | None = OSMIS_SIZE, every: int = 1,
               start: int = 0):
    """All annotated frames ``start, start + every, ...`` as (images (T, 3, H, W), labels (T, H, W))."""
    frames = list_frames(root, video)[start::every]
    pairs = [load_frame(root, video, f, size) for f in frames]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def load_prepared_pair(folder: str | Path):
    """(image, labels, class_names) from a prepared one-shot folder ``<folder>/image/*`` + ``mask/*.png``.

    This is the layout the data_scripts write (and the official OSMIS code reads): exactly one image
    and a palette or greyscale mask with the same stem. Class names are 'background', 'object 1', ...
    """
    folder = Path(folder)
    images = sorted(p for p in (folder / "image").glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(images) != 1:
        raise ValueError(f"{folder}/image must hold exactly one image for one-shot training, found {len(images)}")
    mask_path = folder / "mask" / f"{images[0].stem}.png"
    if not mask_path.is_file():
        raise FileNotFoundError(f"no mask {mask_path} for {images[0].name}")
    image = _image_tensor(images[0])
    labels = torch.from_numpy(read_annotation(mask_path))
    labels[labels == VOID_ID] = 0
    if image.shape[-2:] != labels.shape:
        raise ValueError(f"{images[0].name}: image {tuple(image.shape[-2:])} and mask {tuple(labels.shape)} differ")
    k = int(labels.max())
    return image, labels, ["background"] + [f"object {i}" for i in range(1, k + 1)]


def save_prepared_pair(folder: str | Path, stem: str, image: torch.Tensor, labels: torch.Tensor) -> None:
    """Write ``image`` (3, H, W) in [-1, 1] and ``labels`` (H, W) as ``image/<stem>.png`` + palette ``mask/<stem>.png``."""
    from PIL import Image

    folder = Path(folder)
    (folder / "image").mkdir(parents=True, exist_ok=True)
    (folder / "mask").mkdir(parents=True, exist_ok=True)
    rgb = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(rgb).save(folder / "image" / f"{stem}.png")
    if int(labels.max()) > 254:
        raise ValueError("a palette mask holds at most 255 ids")
    ids = np.ascontiguousarray(labels.byte().numpy())
    mask = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.tobytes())
    mask.putpalette(davis_palette())
    mask.save(folder / "mask" / f"{stem}.png")


def davis_palette() -> list[int]:
    """The DAVIS colour palette (the PASCAL VOC bit-interleaving palette), 256 RGB triples."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette
