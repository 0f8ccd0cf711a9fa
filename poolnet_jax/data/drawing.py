"""Drawing primitives of the synthetic scenes: texture fields, colours, shapes.

Texture fields are float32 (h, w) arrays in [-1, 1]; `colourise` maps them
between two colours. Shapes are tight boolean arrays that fit in a disc of
the given radius.
"""

import colorsys

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("ellipse", "polygon", "star", "blob", "ring", "rounded_box", "compound")
TEXTURES = ("smooth", "gradient", "stripes", "checker", "grain", "spots", "radial")


def grid(h, w):
  """Row and column coordinates, (h, 1) and (1, w), for broadcasting."""
  return np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]


def smooth_noise(rng, h, w, cell):
  gh, gw = int(np.ceil(h / cell)) + 2, int(np.ceil(w / cell)) + 2
  coarse = Image.fromarray(rng.uniform(-1, 1, (gh, gw)).astype(np.float32))
  big = np.asarray(coarse.resize((gw * cell, gh * cell), Image.BICUBIC))
  return np.clip(big[cell : cell + h, cell : cell + w], -1, 1)


def _rotated(h, w, angle):
  y, x = grid(h, w)
  return x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)


def texture(rng, h, w, kind, scale):
  """A texture field of the given kind; `scale` sets its spatial frequencies."""
  angle = rng.uniform(0, np.pi)
  if kind == "smooth":
    field = smooth_noise(rng, h, w, max(4, int(scale * rng.uniform(0.2, 0.6))))
    return field + 0.5 * smooth_noise(rng, h, w, max(2, int(scale * 0.08)))
  if kind == "gradient":
    u, _ = _rotated(h, w, angle)
    return 2 * (u - u.min()) / max(np.ptp(u), 1.0) - 1
  if kind == "stripes":
    u, _ = _rotated(h, w, angle)
    wave = np.sin(2 * np.pi * u / max(3.0, scale * rng.uniform(0.03, 0.15)))
    return np.sign(wave) if rng.random() < 0.5 else wave
  if kind == "checker":
    u, v = _rotated(h, w, angle)
    period = max(4.0, scale * rng.uniform(0.04, 0.15))
    return np.sign(np.sin(np.pi * u / period) * np.sin(np.pi * v / period))
  if kind == "grain":
    return np.clip(0.5 * rng.standard_normal((h, w), np.float32), -1, 1)
  if kind == "spots":
    spots = smooth_noise(rng, h, w, max(3, int(scale * rng.uniform(0.05, 0.15))))
    return np.where(spots > 0.35, 1.0, -1.0)
  if kind == "radial":
    y, x = grid(h, w)
    r = np.hypot(y - h * rng.uniform(0.2, 0.8), x - w * rng.uniform(0.2, 0.8))
    return 1 - 2 * r / max(r.max(), 1.0)
  raise ValueError(f"unknown texture {kind!r}")


def colourise(field, colour_a, colour_b):
  """(h, w) field -> (h, w, 3) colours: -1 gives colour_a, 1 gives colour_b."""
  colour_a, colour_b = np.float32(colour_a), np.float32(colour_b)
  return np.asarray(field, np.float32)[..., None] * ((colour_b - colour_a) / 2) + (
    (colour_a + colour_b) / 2
  )


def hsv(rng, saturation, value):
  h = rng.uniform()
  s = rng.uniform(*saturation)
  v = rng.uniform(*value)
  return 255 * np.array(colorsys.hsv_to_rgb(h, s, v), np.float32)


def nearby(rng, colour, low, high):
  """A colour at an RGB distance in [low, high] from `colour` (within 0..255)."""
  direction = rng.normal(size=3)
  direction /= np.linalg.norm(direction) + 1e-6
  step = rng.uniform(low, high)
  other = colour + step * direction
  if np.any(other < 0) or np.any(other > 255):
    other = colour - step * direction
  return np.clip(other, 0, 255).astype(np.float32)


# Shapes: tight boolean arrays.


def _tight(shape):
  rows, cols = np.flatnonzero(shape.any(1)), np.flatnonzero(shape.any(0))
  return shape[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _polar(r):
  size = 2 * int(np.ceil(r)) + 1
  y, x = grid(size, size)
  return y - size // 2, x - size // 2


def _ellipse(r, ratio, angle):
  y, x = _polar(r)
  u = x * np.cos(angle) + y * np.sin(angle)
  v = -x * np.sin(angle) + y * np.cos(angle)
  return (u / r) ** 2 + (v / (r * ratio)) ** 2 <= 1


def _radial_shape(rng, r, lobes):
  """A blob: its radius varies with the angle by a few low harmonics."""
  y, x = _polar(r)
  theta = np.arctan2(y, x)
  amps = rng.uniform(0, 0.45 / lobes, lobes) * (rng.random(lobes) < 0.8)
  wobble = sum(a * np.cos((k + 2) * theta + rng.uniform(0, 2 * np.pi)) for k, a in enumerate(amps))
  return np.hypot(y, x) <= r / (1 + amps.sum()) * (1 + wobble)


def _polygon(rng, r, star):
  n = int(rng.integers(5, 9)) if star else int(rng.integers(3, 9))
  if star:
    angles = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False) + rng.uniform(0, np.pi)
    radii = np.where(np.arange(2 * n) % 2 == 0, r, r * rng.uniform(0.35, 0.6))
  else:
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = r * rng.uniform(0.7, 1.0, n)
  size = 2 * int(np.ceil(r)) + 1
  centre = size // 2
  points = [(centre + q * np.cos(a), centre + q * np.sin(a)) for a, q in zip(angles, radii)]
  canvas = Image.new("L", (size, size), 0)
  ImageDraw.Draw(canvas).polygon(points, fill=1)
  return np.asarray(canvas, bool)


def _rounded_box(rng, r, angle):
  y, x = _polar(r)
  u = x * np.cos(angle) + y * np.sin(angle)
  v = -x * np.sin(angle) + y * np.cos(angle)
  power = rng.uniform(3, 8)
  a = 0.72 * r
  b = a * rng.uniform(0.4, 1.0)
  return np.abs(u / a) ** power + np.abs(v / b) ** power <= 1


def _compound(rng, r):
  """Two or three overlapping ellipses: a body with parts."""
  y, x = _polar(r)
  out = np.zeros((y.shape[0], x.shape[1]), bool)
  for i in range(int(rng.integers(2, 4))):
    big = 0.55 * r if i == 0 else 0.35 * r * rng.uniform(0.6, 1.0)
    offset = 0.0 if i == 0 else (0.55 * r - 0.3 * big)
    a = rng.uniform(0, 2 * np.pi)
    cy, cx = offset * np.sin(a), offset * np.cos(a)
    ratio, angle = rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)
    u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
    v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
    out |= (u / big) ** 2 + (v / (big * ratio)) ** 2 <= 1
  return out


def make_shape(rng, kind, r):
  """A tight boolean shape of the given kind that fits in a disc of radius r."""
  r = max(float(r), 2.0)
  angle = rng.uniform(0, np.pi)
  if kind == "ellipse":
    shape = _ellipse(r, rng.uniform(0.35, 1.0), angle)
  elif kind in ("polygon", "star"):
    shape = _polygon(rng, r, star=kind == "star")
  elif kind == "blob":
    shape = _radial_shape(rng, r, lobes=4)
  elif kind == "ring":
    ratio = rng.uniform(0.6, 1.0)
    hole = min(rng.uniform(0.35, 0.7), 1 - 4 / (r * ratio))  # walls of 4 px or more
    shape = _ring(r, ratio, hole, angle) if hole > 0.2 else _ellipse(r, ratio, angle)
  elif kind == "rounded_box":
    shape = _rounded_box(rng, r, angle)
  elif kind == "compound":
    shape = _compound(rng, r)
  else:
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPES}")
  if not shape.any():
    shape = _ellipse(r, 1.0, 0.0)
  return _tight(shape)


def _ring(r, ratio, hole, angle):
  outer = _ellipse(r, ratio, angle)
  inner = np.zeros_like(outer)
  small = _ellipse(r * hole, ratio, angle)
  pad = (outer.shape[0] - small.shape[0]) // 2
  inner[pad : pad + small.shape[0], pad : pad + small.shape[1]] = small
  return outer & ~inner
