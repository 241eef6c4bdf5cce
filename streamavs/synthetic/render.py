"""Drawing of the synthetic scenes with OpenCV: shapes, object appearance and cluttered backgrounds.

Images are float32 (H, W, 3) RGB in [0, 255] while they are composed; masks are bool (H, W).
Positions and sizes are in pixels; angles in radians (counter-clockwise in image coordinates
with y pointing down, i.e. clockwise on screen).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamavs.synthetic.classes import SoundClass

__all__ = ["SHAPES", "Appearance", "random_appearance", "shape_mask", "random_background", "paint"]

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "ellipse", "ring", "star", "hexagon", "cross", "crescent", "heart",
)
TEXTURES: tuple[str, ...] = ("plain", "stripes", "checker", "dots")
_SHIFT = 4  # fixed-point bits for sub-pixel polygon vertices, so slow motion is smooth
_ONE = 1 << _SHIFT
_KERNEL = np.ones((3, 3), dtype=np.uint8)


@dataclass(frozen=True)
class Appearance:
    """How one object is painted; fixed for the object's life.

    colour: (3,) float32 RGB in [0, 255] (the class colour after hue/saturation/value jitter).
    texture: one of TEXTURES; period: texture period in pixels; contrast: relative brightness
    swing of the texture (0..1); shade_angle/shade: direction (radians) and strength of a
    linear shading across the object; aspect: stretch of the shape along its own x axis.
    """

    colour: np.ndarray
    texture: str
    period: float
    contrast: float
    tex_angle: float
    shade_angle: float
    shade: float
    aspect: float


def _jitter_colour(rng: np.random.Generator, rgb: tuple[int, int, int]) -> np.ndarray:
    hsv = cv2.cvtColor(np.array([[rgb]], dtype=np.uint8), cv2.COLOR_RGB2HSV)[0, 0].astype(np.float32)
    hsv[0] = (hsv[0] + rng.uniform(-4.0, 4.0)) % 180.0  # OpenCV hue is 0..180: +-8 degrees
    hsv[1] = np.clip(hsv[1] * rng.uniform(0.85, 1.1), 0, 255)
    hsv[2] = np.clip(hsv[2] * rng.uniform(0.8, 1.1), 0, 255)
    out = cv2.cvtColor(np.round(hsv).astype(np.uint8)[None, None], cv2.COLOR_HSV2RGB)[0, 0]
    return out.astype(np.float32)


def random_appearance(rng: np.random.Generator, cls: SoundClass, radius: float) -> Appearance:
    """A jittered appearance of class `cls` for an object of circumscribed radius `radius` px."""
    return Appearance(
        colour=_jitter_colour(rng, cls.colour),
        texture=TEXTURES[rng.integers(len(TEXTURES))],
        period=float(radius * rng.uniform(0.3, 0.6)),
        contrast=float(rng.uniform(0.12, 0.3)),
        tex_angle=float(rng.uniform(0, np.pi)),
        shade_angle=float(rng.uniform(0, 2 * np.pi)),
        shade=float(rng.uniform(0.0, 0.25)),
        aspect=float(rng.uniform(0.85, 1.15)),
    )


def _polygon(points: np.ndarray, cx: float, cy: float, r: float, angle: float, aspect: float) -> np.ndarray:
    """Unit-radius (N, 2) points -> fixed-point int32 (N, 2) pixel vertices after stretch, rotation, shift."""
    c, s = np.cos(angle), np.sin(angle)
    x = points[:, 0] * r * aspect
    y = points[:, 1] * r
    px = cx + c * x - s * y
    py = cy + s * x + c * y
    return np.round(np.stack([px, py], axis=1) * _ONE).astype(np.int32)  # (N, 2)


def _regular(n: int, radius: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    a = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(a), np.sin(a)], axis=1)


def _star() -> np.ndarray:
    outer, inner = _regular(5, 1.0), _regular(5, 0.45, -np.pi / 2 + np.pi / 5)
    return np.stack([outer, inner], axis=1).reshape(10, 2)  # (10, 2) alternating tips and notches


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y + 2.5], axis=1) / 17.0


_CROSS = np.array([(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3), (0.3, 1),
                   (-0.3, 1), (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)], dtype=np.float64) * 0.95
_POLYGONS = {
    "square": np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=np.float64) * 0.72,
    "triangle": _regular(3, 1.0),
    "hexagon": _regular(6, 0.88, 0.0),
    "star": _star(),
    "cross": _CROSS,
    "heart": _heart(),
}


def shape_mask(shape: str, size: int, cx: float, cy: float, r: float, angle: float, aspect: float = 1.0) -> np.ndarray:
    """bool (size, size) mask of `shape` centred at (cx, cy) px with circumscribed radius `r` px."""
    canvas = np.zeros((size, size), dtype=np.uint8)
    centre = (int(round(cx * _ONE)), int(round(cy * _ONE)))
    if shape in _POLYGONS:
        cv2.fillPoly(canvas, [_polygon(_POLYGONS[shape], cx, cy, r, angle, aspect)], 1, cv2.LINE_8, _SHIFT)
    elif shape == "circle":
        cv2.circle(canvas, centre, int(round(0.85 * r * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
    elif shape == "ellipse":
        axes = (int(round(r * aspect * _ONE)), int(round(0.5 * r * _ONE)))
        cv2.ellipse(canvas, centre, axes, float(np.degrees(angle)), 0.0, 360.0, 1, -1, cv2.LINE_8, _SHIFT)
    elif shape == "ring":
        cv2.circle(canvas, centre, int(round(0.9 * r * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
        cv2.circle(canvas, centre, int(round(0.5 * r * _ONE)), 0, -1, cv2.LINE_8, _SHIFT)
    elif shape == "crescent":
        cv2.circle(canvas, centre, int(round(0.85 * r * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
        bite = (int(round((cx + 0.45 * r * np.cos(angle)) * _ONE)), int(round((cy + 0.45 * r * np.sin(angle)) * _ONE)))
        cv2.circle(canvas, bite, int(round(0.7 * r * _ONE)), 0, -1, cv2.LINE_8, _SHIFT)
    else:
        raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")  # programming error
    return canvas.view(bool)


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 (size, size, 3) RGB in [0, 255]: a colour gradient, blurred blobs and low-frequency noise.

    Blobs are desaturated so that the objects stay the visually salient things in the frame.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)  # (H, W) each
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.clip(0.5 + (xx - 0.5) * np.cos(theta) + (yy - 0.5) * np.sin(theta), 0, 1)[..., None]  # (H, W, 1)
    a, b = rng.uniform(40, 210, 3), rng.uniform(40, 210, 3)
    image = (a * (1 - ramp) + b * ramp).astype(np.float32)  # (H, W, 3)
    blobs = image.copy()
    for _ in range(rng.integers(4, 11)):
        colour = rng.uniform(30, 225, 3)
        colour = 0.5 * colour + 0.5 * colour.mean()  # desaturate
        centre = (int(rng.uniform(0, size)), int(rng.uniform(0, size)))
        axes = (max(1, int(rng.uniform(0.05, 0.25) * size)), max(1, int(rng.uniform(0.05, 0.25) * size)))
        cv2.ellipse(blobs, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour.tolist(), -1)
    sigma = max(0.5, size * rng.uniform(0.005, 0.03))
    blobs = cv2.GaussianBlur(blobs, (0, 0), sigma)
    image = 0.35 * image + 0.65 * blobs
    cells = int(rng.integers(4, 12))
    coarse = rng.uniform(-25, 25, (cells, cells, 3)).astype(np.float32)
    image += cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(image, 0, 255)


def paint(image: np.ndarray, mask: np.ndarray, look: Appearance, cx: float, cy: float, r: float, angle: float) -> None:
    """Paint an object (its full, unoccluded `mask`) into float32 `image` in place.

    The texture and shading live in the object's own frame (centre cx, cy px; rotation
    `angle`), so they move and turn with it.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return
    dx, dy = xs - np.float32(cx), ys - np.float32(cy)
    c, s = np.cos(angle + look.tex_angle), np.sin(angle + look.tex_angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    k = np.float32(2 * np.pi / look.period)
    if look.texture == "stripes":
        tex = np.sign(np.sin(k * u))
    elif look.texture == "checker":
        tex = np.sign(np.sin(k * u) * np.sin(k * v))
    elif look.texture == "dots":
        tex = (np.cos(k * u) * np.cos(k * v) > 0.5).astype(np.float32) * 2 - 1
    else:
        tex = np.zeros_like(u)
    shade = look.shade * (np.cos(look.shade_angle) * dx + np.sin(look.shade_angle) * dy) / max(r, 1.0)
    gain = (1.0 + look.contrast * tex + shade).astype(np.float32)
    image[ys, xs] = np.clip(look.colour[None, :] * gain[:, None], 0, 255)
    # A dark 1-px rim: real objects have edges, and it keeps a grey object visible on grey clutter.
    rim = mask & ~cv2.erode(mask.view(np.uint8), _KERNEL).view(bool)
    image[rim] *= np.float32(0.45)
