"""Training data for single-image / single-video GANs (notebook 02, reused by 03), all offline.

Three modes, as in the thesis (ch. 5): **one image**, **one video** (60-100 frames of one scene,
[L1389, L1470]) and **a few images**. Without downloads they come from:

* ``scene``: a procedural landscape with a few distinct objects: sky (brighter near the horizon),
  textured ground, three red balloons and a dark house. Its objects are known exactly (labels are
  returned), so "did G move, remove or duplicate an object?" can be checked by eye and by mask.
* ``scene_video``: the same scene animated over ``n`` frames. The camera path is documented: the
  balloons rise by 0.25 of the height at different speeds and drift sideways, the camera pans right
  by 0.15 of the width; the house stands still in the world (so it moves left in the frame).
* ``scene_few``: ``n`` scenes with the same kinds of objects in different places (seeded).
* ``photo:<name>``: a scikit-image photograph (``astronaut``, ``chelsea``, ``coffee``, ``rocket``).
* ``photo_video:<name>``: a camera path over that photograph: a window of 70 % of the photo's size
  slides from the left edge to the right edge while zooming from 1.0x to 1.15x (a pan + slow zoom).
* ``places_single`` / ``davis:<video>``: real data prepared by ``data_scripts/`` (see
  :mod:`nbsyn.data.oneshot_folder` and :mod:`nbsyn.data.davis`).

Everything returns images in [-1, 1] of shape (N, 3, H, W) at any H x W.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

SCENE_CLASSES = ("sky", "ground", "balloon", "house")
SCENE_PALETTE = ((110, 160, 230), (80, 150, 60), (210, 40, 40), (50, 40, 45))
# (x, y, radius) in units of the image height, x measured from the left edge
DEFAULT_BALLOONS = ((0.35, 0.28, 0.09), (0.75, 0.18, 0.07), (1.05, 0.33, 0.08))
DEFAULT_HOUSE = (0.95, 0.50, 0.30, 0.24)  # left, top, width, height (height units)
HORIZON = 0.62
OFFLINE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
MODES = ("scene", "scene_video", "scene_few", "photo:<name>", "photo_video:<name>", "places_single", "davis:<video>")


def render_scene(h: int, w: int, balloons=DEFAULT_BALLOONS, house=DEFAULT_HOUSE, camera_x: float = 0.0,
                 supersample: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame of the procedural scene: (3, h, w) image in [-1, 1] and (h, w) labels (SCENE_CLASSES).

    Coordinates are in units of the image height; ``camera_x`` shifts the view to the right. The image
    is rendered at ``supersample`` x the size and average-pooled (anti-aliased edges); the labels are the
    labels at the pixel centres.
    """
    hs, ws = h * supersample, w * supersample
    y = (torch.arange(hs).float() + 0.5) / hs
    x = (torch.arange(ws).float() + 0.5) / hs + camera_x
    y, x = y[:, None].expand(hs, ws), x[None, :].expand(hs, ws)
    labels = torch.zeros(hs, ws, dtype=torch.long)
    sky = torch.tensor([0.45, 0.62, 0.92])[:, None, None] * (0.8 + 0.35 * (y / HORIZON).clamp(max=1))
    image = sky.clone()
    ground = y >= HORIZON
    depth = ((y - HORIZON) / (1 - HORIZON)).clamp(0, 1)
    texture = 0.06 * torch.sin(37 * x + 3 * torch.sin(11 * y)) * torch.sin(53 * y) + 0.04 * torch.sin(91 * x * (1 + y))
    grass = torch.tensor([0.30, 0.55, 0.22])[:, None, None] * (0.75 + 0.4 * depth + texture)
    image = torch.where(ground, grass, image)
    labels[ground] = 1
    left, top, bw, bh = house
    body = (x >= left) & (x < left + bw) & (y >= top + 0.3 * bh) & (y < top + bh)
    roof = (y >= top) & (y < top + 0.3 * bh) & ((x - (left + bw / 2)).abs() < (y - top) / (0.3 * bh) * bw * 0.6)
    window = (x >= left + 0.35 * bw) & (x < left + 0.65 * bw) & (y >= top + 0.5 * bh) & (y < top + 0.75 * bh)
    house_colour = torch.tensor([0.22, 0.18, 0.2])[:, None, None] * torch.ones(3, hs, ws)
    house_colour = torch.where(roof, torch.tensor([0.45, 0.12, 0.1])[:, None, None], house_colour)
    house_colour = torch.where(window, torch.tensor([0.95, 0.85, 0.4])[:, None, None], house_colour)
    house_mask = body | roof
    image = torch.where(house_mask, house_colour, image)
    labels[house_mask] = 3
    for bx, by, r in balloons:
        d2 = ((x - bx) ** 2 + (y - by) ** 2) / r**2
        disc = d2 < 1
        light = 1.15 - 0.5 * (((x - bx + 0.4 * r) ** 2 + (y - by + 0.4 * r) ** 2).sqrt() / (1.6 * r)).clamp(0, 1)
        colour = torch.tensor([0.85, 0.15, 0.12])[:, None, None] * light
        image = torch.where(disc, colour, image)
        labels[disc] = 2
    image = F.avg_pool2d(image[None], supersample)[0]
    labels = labels[supersample // 2::supersample, supersample // 2::supersample]
    return image.clamp(0, 1) * 2 - 1, labels


def scene_video(n_frames: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The animated scene (see the module docstring for the camera path): (n, 3, h, w), (n, h, w)."""
    frames, labels = [], []
    speeds = (1.0, 0.6, 0.8)
    drift = (0.05, -0.08, 0.04)
    for t in np.linspace(0.0, 1.0, n_frames):
        balloons = tuple((bx + dx * t, by - 0.25 * s * t, r)
                         for (bx, by, r), s, dx in zip(DEFAULT_BALLOONS, speeds, drift))
        img, lab = render_scene(h, w, balloons=balloons, camera_x=0.15 * (w / h) * t)
        frames.append(img)
        labels.append(lab)
    return torch.stack(frames), torch.stack(labels)


def few_scenes(n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` scenes with 2-4 balloons and the house at random places (seeded)."""
    rng = np.random.default_rng(seed)
    aspect = w / h
    frames, labels = [], []
    for _ in range(n):
        k = int(rng.integers(2, 5))
        balloons = tuple((float(rng.uniform(0.1, aspect - 0.1)), float(rng.uniform(0.12, 0.4)),
                          float(rng.uniform(0.06, 0.1))) for _ in range(k))
        house = (float(rng.uniform(0.05, aspect - 0.35)), 0.50, 0.30, 0.24)
        img, lab = render_scene(h, w, balloons=balloons, house=house)
        frames.append(img)
        labels.append(lab)
    return torch.stack(frames), torch.stack(labels)


def _photo(name: str) -> torch.Tensor:
    if name not in OFFLINE_PHOTOS:
        raise ValueError(f"unknown photo {name!r}; offline photos: {', '.join(OFFLINE_PHOTOS)}")
    import skimage.data

    rgb = getattr(skimage.data, name)()[..., :3]
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 127.5 - 1


def _crop_resize(img: torch.Tensor, top: float, left: float, ch: float, cw: float, h: int, w: int) -> torch.Tensor:
    """Crop a (fractional) window by bilinear sampling and resize it to h x w (antialiased)."""
    t0, l0 = int(round(top)), int(round(left))
    crop = img[:, t0:t0 + int(round(ch)), l0:l0 + int(round(cw))]
    return F.interpolate(crop[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]


def photo_frames(name: str, h: int, w: int) -> torch.Tensor:
    """One photograph, centre-cropped to the aspect h:w and resized: (1, 3, h, w)."""
    img = _photo(name)
    H, W = img.shape[-2:]
    cw = min(W, H * w / h)
    ch = cw * h / w
    return _crop_resize(img, (H - ch) / 2, (W - cw) / 2, ch, cw, h, w)[None].clamp(-1, 1)


def photo_video(name: str, n_frames: int, h: int, w: int) -> torch.Tensor:
    """A camera path over a photograph (pan left -> right with a slow zoom): (n, 3, h, w)."""
    img = _photo(name)
    H, W = img.shape[-2:]
    frames = []
    for t in np.linspace(0.0, 1.0, n_frames):
        zoom = 1.0 + 0.15 * t
        cw = min(W, H * w / h) * 0.7 / zoom
        ch = cw * h / w
        top = (H - ch) / 2
        left = (W - cw) * t
        frames.append(_crop_resize(img, top, left, ch, cw, h, w))
    return torch.stack(frames).clamp(-1, 1)


def load_training_frames(dataset: str, h: int, w: int, n_frames: int = 100, seed: int = 0,
                         root: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """Frames for ``dataset`` (see MODES) at h x w: (frames, labels or None, a one-line description).

    ``root`` (or the ``NBSYN_DATA`` environment variable, default ``data/``) holds real datasets
    prepared by ``data_scripts/prepare_places_single.py`` and ``prepare_davis.py``.
    """
    root = root or os.environ.get("NBSYN_DATA", "data")
    if dataset == "scene":
        img, lab = render_scene(h, w)
        return img[None], lab[None], "one procedural scene (3 balloons, a house)"
    if dataset == "scene_video":
        frames, labels = scene_video(n_frames, h, w)
        return frames, labels, f"one procedural video of {n_frames} frames (balloons rise, camera pans)"
    if dataset == "scene_few":
        frames, labels = few_scenes(5, h, w, seed)
        return frames, labels, "five procedural scenes with different layouts"
    if dataset.startswith("photo:"):
        return photo_frames(dataset[6:], h, w), None, f"the scikit-image photo '{dataset[6:]}'"
    if dataset.startswith("photo_video:"):
        name = dataset[12:]
        return photo_video(name, n_frames, h, w), None, f"a {n_frames}-frame camera path over the photo '{name}'"
    if dataset == "places_single" or dataset.startswith("places_single:"):
        from nbsyn.data.oneshot_folder import load_oneshot_folder

        name = dataset.split(":", 1)[1] if ":" in dataset else None
        folder = os.path.join(root, "places_single")
        images = load_oneshot_folder(folder, image=name)
        return _fit(images[:1], h, w), None, f"one Places image from {folder}"
    if dataset.startswith("davis:"):
        from nbsyn.data.oneshot_folder import load_oneshot_folder

        video = dataset[6:]
        folder = os.path.join(root, "davis", video)
        frames = load_oneshot_folder(folder)
        return _fit(frames[:n_frames], h, w), None, f"DAVIS video '{video}' ({len(frames)} frames) from {folder}"
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(MODES)}")


def fit_frames(frames: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Centre-crop (N, 3, H, W) frames to the aspect ratio of ``shape`` and resize them (antialiased),
    as the authors' code resizes its data to noise_shape * 2**(blocks-1)."""
    h, w = frames.shape[-2:]
    th, tw = shape
    if h * tw > w * th:  # too tall: crop rows
        nh = round(w * th / tw)
        frames = frames[..., (h - nh) // 2:(h - nh) // 2 + nh, :]
    else:  # too wide: crop columns
        nw = round(h * tw / th)
        frames = frames[..., :, (w - nw) // 2:(w - nw) // 2 + nw]
    return F.interpolate(frames, size=(th, tw), mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)


def _fit(frames: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return fit_frames(frames, (h, w))
