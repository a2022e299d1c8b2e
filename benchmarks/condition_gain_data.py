"""Clips in which only the keypoints say how the subject is turned, and how far generated parts land from them.

The subject is a disc (radius `BODY_RADIUS`) made of two parts, a red half and a blue half, that stays in place
over a muted gradient background while the line between its halves turns by a random angle per frame (speed
~ ±U[0.5, 1.0] rad per frame from a random start). The subject mask is the whole disc, so the region to
regenerate covers every place each half can be and the masked video says nothing about them; the reference
(one frame of the clip, picked, zoomed and maybe flipped at random by the data pipeline) shows the two halves
but not how they are turned in the other frames. The keypoints are the disc's centre and the centroid of each
half (`kind` "sprite": the centre joined to each part), so the rendered condition video, and nothing else,
holds the parts' positions in every frame. (Halves rather than small dots: a VAE trained for minutes blurs a
few-pixel dot away, while large flat parts survive its reconstruction.)

`PartClips` is a clip source for `swapjax.data.pipeline` (picklable, `len` + `[i]`, records of
`{video, mask, keypoints, keypoints_kind}`); `keypoint_error` finds each part in generated frames by its colour.
"""

from __future__ import annotations

import numpy as np

BODY_RADIUS = 10.0  # pixels, at the 32 x 32 frame size
PART_OFFSET = 4 * BODY_RADIUS / (3 * np.pi)  # a half disc's centroid lies this far from the centre (4.2 px)
PART_COLOURS = np.array([[225, 35, 35], [35, 70, 225]], np.float32)  # red, blue (RGB)
KEYPOINTS_KIND = "sprite"  # point 0 = the disc's centre, joined to the parts 1, 2


def _muted(rng: np.random.Generator, low: float, high: float, spread: float) -> np.ndarray:
    """A colour near grey: level U[low, high] plus a tint of at most `spread` per channel, float32 `[3]`."""
    return np.clip(rng.uniform(low, high) + rng.uniform(-spread, spread, 3), 0, 255).astype(np.float32)


class PartClips:
    """`count` clips of `frames` frames, `size` x `size` pixels; clip `i` depends only on `(seed, i)`."""

    def __init__(self, count: int, seed: int, size: int = 32, frames: int = 5):
        self.count, self.seed, self.size, self.frames = count, seed, size, frames

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.count:
            raise IndexError(f"clip {index} of {self.count}")
        rng = np.random.default_rng([self.seed, int(index)])
        n, s = self.frames, self.size
        radius, offset = BODY_RADIUS * s / 32.0, PART_OFFSET * s / 32.0
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)  # [H, W], pixel centres at integer coordinates
        a, b = _muted(rng, 40, 215, 30), _muted(rng, 40, 215, 30)  # background gradient ends
        angle = rng.uniform(0, 2 * np.pi)
        ramp = ((xx - s / 2) * np.cos(angle) + (yy - s / 2) * np.sin(angle)) / s + 0.5  # [H, W]
        background = a + (b - a) * np.clip(ramp, 0, 1)[..., None]  # [H, W, 3]
        cx, cy = rng.uniform(radius + 0.5, s - 1.5 - radius, 2)
        turn = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0)
        theta = rng.uniform(0, 2 * np.pi) + turn * np.arange(n)  # [N] direction of the red half
        disc = np.clip(radius + 0.5 - np.hypot(xx - cx, yy - cy), 0.0, 1.0)[..., None]  # [H, W, 1] coverage
        video = np.empty((n, s, s, 3), np.uint8)
        for f in range(n):
            side = (xx - cx) * np.cos(theta[f]) + (yy - cy) * np.sin(theta[f])  # [H, W] > 0 on the red half
            red = np.clip(side + 0.5, 0.0, 1.0)[..., None]
            body = red * PART_COLOURS[0] + (1 - red) * PART_COLOURS[1]  # [H, W, 3]
            video[f] = np.round(background + disc * (body - background)).astype(np.uint8)
        direction = np.stack([np.cos(theta), np.sin(theta)], axis=-1)  # [N, 2]
        centre = np.broadcast_to(np.array([cx, cy]), (n, 2))
        points = np.stack([centre, centre + offset * direction, centre - offset * direction], axis=1)  # [N, 3, 2]
        keypoints = np.concatenate([points, np.ones((n, 3, 1))], axis=-1).astype(np.float32)  # [N, 3, 3]
        mask = np.broadcast_to(disc[..., 0] > 0, (n, s, s)).astype(np.uint8)  # [N, H, W]: the whole disc
        return {"video": video, "mask": mask, "keypoints": keypoints, "keypoints_kind": KEYPOINTS_KIND}


def locate_parts(frames: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Each part's position in uint8 frames `[F, H, W, 3]`: the centroid of `region` `[F, H, W]` weighted by how
    far each pixel goes from the parts' mean colour towards the part's colour (squared, negatives dropped), so a
    faint or blurred part is found where it is strongest -> float `[F, 2, 2]` (frame, part, x/y)."""
    f, h, w = region.shape
    yy, xx = np.mgrid[0:h, 0:w]
    middle = PART_COLOURS.mean(axis=0)
    out = np.zeros((f, len(PART_COLOURS), 2))
    for i in range(f):
        inside = region[i].reshape(-1) != 0
        pixels = frames[i].reshape(-1, 3)[inside].astype(np.float32) - middle  # [n, 3]
        xy = np.stack([xx.reshape(-1)[inside], yy.reshape(-1)[inside]], axis=-1)  # [n, 2]
        for k, colour in enumerate(PART_COLOURS):
            towards = (colour - middle) / np.linalg.norm(colour - middle)  # [3]
            weight = np.square(np.maximum(pixels @ towards, 0.0)) + 1e-6  # [n]; all ~0: the region's centre
            out[i, k] = (weight[:, None] * xy).sum(axis=0) / weight.sum()
    return out


def keypoint_error(frames: np.ndarray, clip: dict) -> float:
    """Mean distance in pixels between the parts found in `frames` (inside the clip's disc) and the clip's
    keypoints of the parts (points 1, 2)."""
    found = locate_parts(frames, clip["mask"])
    return float(np.linalg.norm(found - clip["keypoints"][:, 1:3, :2], axis=-1).mean())
