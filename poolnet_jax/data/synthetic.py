"""Procedural salient-object scenes: an image, its exact mask and its edge map.

Nothing is downloaded. A scene is a function of its random generator alone, so
example `index` of a split is the same on every machine:

    rng = scene_rng(seed=0, split_id=0, index=17)
    scene = make_scene(rng, *sample_size(rng, long_side=(320, 400)))
    scene.image  # (H, W, 3) uint8
    scene.mask   # (H, W, 1) uint8: 255 on the salient objects, 0 elsewhere
    scene.edge   # (H, W, 1) uint8: 255 on object and background contours

Salient: one to three large objects (ellipses, polygons, stars, blobs, rings,
rounded boxes, compounds) in colours that stand out from what lies under them,
none touching the border. Not salient: the textured background (noise,
gradients, stripes, checks, grain) and its region boundaries, low-contrast
shapes, thin strokes, small specks and shapes cut by the border.

Every painted region gets an id (`Scene.regions`, in paint order). A pixel is an
edge pixel when a 4-neighbour belongs to a region painted earlier: one-pixel
inner contours of objects, distractors and background parts, so every mask
boundary pixel is an edge pixel. Strokes 1-3 px wide are edge pixels whole.
"""

import dataclasses

import numpy as np
from PIL import Image, ImageDraw

from poolnet_jax.data import drawing

ASPECT_RATIOS = (1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3, 5 / 4, 4 / 5)  # width / height
MIN_OBJECT_CONTRAST = 70.0  # RGB distance of a salient colour from what lies under it
OBJECT_MARGIN = 3  # pixels kept free between salient objects and the border
MIN_SIDE = 24


@dataclasses.dataclass(frozen=True)
class Scene:
  image: np.ndarray  # (H, W, 3) uint8
  mask: np.ndarray  # (H, W, 1) uint8, 0 or 255
  edge: np.ndarray  # (H, W, 1) uint8, 0 or 255
  regions: np.ndarray  # (H, W) int32, id of the region seen at each pixel
  salient_ids: tuple


def scene_rng(seed, split_id, index):
  """The generator of one example: independent of every other example."""
  return np.random.default_rng([seed, split_id, index])


def sample_size(rng, long_side=(320, 400)):
  """(height, width) with the long side in `long_side` and a common aspect ratio."""
  long = int(rng.integers(long_side[0], long_side[1] + 1))
  aspect = ASPECT_RATIOS[rng.integers(len(ASPECT_RATIOS))]
  short = int(round(long / max(aspect, 1 / aspect)))
  return (short, long) if aspect >= 1 else (long, short)


def make_scene(rng, height, width):
  """Paints background, distractors and 1-3 salient objects; returns the Scene."""
  if min(height, width) < MIN_SIDE:
    raise ValueError(f"scenes need at least {MIN_SIDE} px a side, got {height}x{width}")
  canvas = _Canvas(height, width)
  _paint_background(rng, canvas)
  _paint_distractors(rng, canvas)
  salient = _paint_objects(rng, canvas)
  image = _finish(rng, canvas.image)
  mask = np.isin(canvas.regions, salient)
  edge = contours(canvas.regions)
  return Scene(
    image=image,
    mask=_to_u8(mask),
    edge=_to_u8(edge),
    regions=canvas.regions,
    salient_ids=tuple(salient),
  )


def contours(regions):
  """Pixels with a 4-neighbour from a region painted earlier (lower id)."""
  edge = np.zeros(regions.shape, bool)
  edge[1:] |= regions[1:] > regions[:-1]
  edge[:-1] |= regions[:-1] > regions[1:]
  edge[:, 1:] |= regions[:, 1:] > regions[:, :-1]
  edge[:, :-1] |= regions[:, :-1] > regions[:, 1:]
  return edge


def _to_u8(binary):
  return (binary.astype(np.uint8) * 255)[..., None]


class _Canvas:
  """A float RGB image and the id of the region last painted at each pixel."""

  def __init__(self, height, width):
    self.image = np.zeros((height, width, 3), np.float32)
    self.regions = np.zeros((height, width), np.int32)
    self.last_id = 0

  @property
  def shape(self):
    return self.regions.shape

  def new_id(self):
    self.last_id += 1
    return self.last_id

  def window(self, top, left, shape):
    """Image-clipped slices for a (h, w) array at (top, left), and its own slices."""
    h, w = self.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + shape[0], h), min(left + shape[1], w)
    if y0 >= y1 or x0 >= x1:
      return None
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))

  def mean_under(self, shape, top, left):
    """Mean colour under the visible part of `shape`, None if none of it is visible."""
    win = self.window(top, left, shape.shape)
    if win is None or not shape[win[1]].any():
      return None
    image_win, shape_win = win
    return self.image[image_win][shape[shape_win]].mean(axis=0)

  def paint(self, shape, top, left, fill):
    """Paints boolean `shape` at (top, left) with `fill` (h, w, 3); returns its id."""
    win = self.window(top, left, shape.shape)
    if win is None:
      return None
    (image_win, shape_win) = win
    where = shape[shape_win]
    if not where.any():
      return None
    region_id = self.new_id()
    self.image[image_win][where] = fill[shape_win][where]
    self.regions[image_win][where] = region_id
    return region_id


def _contrasting(rng, under):
  """The most distant of a few random colours from `under` (RGB)."""
  best, best_distance = None, -1.0
  for _ in range(12):
    colour = drawing.hsv(rng, (0.0, 1.0), (0.05, 1.0))
    distance = float(np.linalg.norm(colour - under))
    if distance > best_distance:
      best, best_distance = colour, distance
    if distance >= MIN_OBJECT_CONTRAST * 1.3:
      break
  if best_distance < MIN_OBJECT_CONTRAST:  # rare: push away from `under` directly
    best = np.where(under > 127, 0.15 * under, under + 0.85 * (255 - under)).astype(np.float32)
  return best


# Layers.


def _paint_background(rng, canvas):
  h, w = canvas.shape
  parts = np.zeros((h, w), np.int32)
  y, x = drawing.grid(h, w)
  for axis in range(int(rng.choice([0, 1, 1, 2]))):
    along, across, length, extent = (x, y, w, h) if axis == 0 else (y, x, h, w)
    base = extent * rng.uniform(0.25, 0.75)
    tilt = np.tan(rng.uniform(-0.35, 0.35)) * (along - length / 2)
    wave = (
      extent
      * rng.uniform(0, 0.08)
      * np.sin(2 * np.pi * along / (length * rng.uniform(0.3, 1.5)) + rng.uniform(0, 2 * np.pi))
    )
    parts += (across > base + tilt + wave).astype(np.int32) << axis
  scale = min(h, w)
  for part in np.unique(parts):
    kind = rng.choice(["smooth", "gradient", "stripes", "checker", "grain", "smooth"])
    colour = drawing.hsv(rng, (0.0, 0.5), (0.2, 0.9))
    other = drawing.nearby(rng, colour, 15, 70 if kind in ("smooth", "gradient") else 45)
    fill = drawing.colourise(drawing.texture(rng, h, w, kind, scale), colour, other)
    if kind != "grain" and rng.random() < 0.5:
      fill += rng.uniform(2, 10) * rng.standard_normal((h, w, 1), np.float32)
    if part == 0 and not parts.any():
      canvas.image[:] = fill
      continue
    where = parts == part
    np.copyto(canvas.image, fill, where=where[..., None])
    if part:
      canvas.regions[where] = canvas.new_id()


def _textured_fill(rng, shape, colour, spread, scale):
  kind = rng.choice(["solid", "gradient", "smooth", "stripes", "spots", "radial", "grain"])
  h, w = shape
  if kind == "solid":
    return np.broadcast_to(colour, (h, w, 3)).astype(np.float32)
  other = drawing.nearby(rng, colour, spread / 2, spread)
  return drawing.colourise(drawing.texture(rng, h, w, kind, scale), colour, other)


def _random_place(rng, canvas, shape):
  h, w = canvas.shape
  top = int(rng.integers(-shape.shape[0] // 2, h - shape.shape[0] // 2))
  left = int(rng.integers(-shape.shape[1] // 2, w - shape.shape[1] // 2))
  return top, left


def _touches_border(canvas, shape, top, left):
  win = canvas.window(top, left, shape.shape)
  if win is None:
    return False
  (rows, cols), shape_win = win
  seen = shape[shape_win]
  h, w = canvas.shape
  return bool(
    (rows.start == 0 and seen[0].any())
    or (rows.stop == h and seen[-1].any())
    or (cols.start == 0 and seen[:, 0].any())
    or (cols.stop == w and seen[:, -1].any())
  )


def _paint_distractors(rng, canvas):
  h, w = canvas.shape
  side = min(h, w)
  for _ in range(int(rng.integers(1, 4))):  # low contrast, anywhere
    shape = drawing.make_shape(rng, rng.choice(drawing.SHAPES), side * rng.uniform(0.06, 0.3))
    top, left = _random_place(rng, canvas, shape)
    under = canvas.mean_under(shape, top, left)
    if under is None:
      continue
    colour = drawing.nearby(rng, under, 8, 22)
    canvas.paint(shape, top, left, _textured_fill(rng, shape.shape, colour, 10, side))
  for _ in range(int(rng.integers(0, 3))):  # any contrast, cut by the border
    shape = drawing.make_shape(rng, rng.choice(drawing.SHAPES), side * rng.uniform(0.1, 0.35))
    for _ in range(6):
      top, left = _border_place(rng, canvas, shape)
      if _touches_border(canvas, shape, top, left):
        colour = drawing.hsv(rng, (0.0, 1.0), (0.05, 1.0))
        canvas.paint(shape, top, left, _textured_fill(rng, shape.shape, colour, 40, side))
        break
  _paint_strokes(rng, canvas, int(rng.integers(0, 4)))
  for _ in range(int(rng.integers(0, 6))):  # small specks of moderate contrast
    radius = rng.uniform(2, max(3, 0.03 * side))
    shape = drawing.make_shape(rng, rng.choice(drawing.SHAPES[:4]), radius)
    top, left = _random_place(rng, canvas, shape)
    under = canvas.mean_under(shape, top, left)
    if under is None:
      continue
    colour = drawing.nearby(rng, under, 20, 50)
    canvas.paint(shape, top, left, np.broadcast_to(colour, shape.shape + (3,)))


def _border_place(rng, canvas, shape):
  """(top, left) that puts 20-60% of the shape's extent past one border."""
  h, w = canvas.shape
  sh, sw = shape.shape
  border = int(rng.integers(4))
  if border in (0, 1):  # top or bottom
    left = int(rng.integers(-sw // 3, max(w - 2 * sw // 3, 1 - sw // 3)))
    cut = int(sh * rng.uniform(0.2, 0.6))
    return (-cut if border == 0 else h - sh + cut), left
  top = int(rng.integers(-sh // 3, max(h - 2 * sh // 3, 1 - sh // 3)))
  cut = int(sw * rng.uniform(0.2, 0.6))
  return top, (-cut if border == 2 else w - sw + cut)


def _paint_strokes(rng, canvas, count):
  """Thin lines and arcs, 1-3 px wide, of any contrast."""
  h, w = canvas.shape
  for _ in range(count):
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    width = int(rng.integers(1, 4))
    if rng.random() < 0.5:
      n = int(rng.integers(2, 5))
      points = [
        (float(rng.uniform(-0.1, 1.1) * w), float(rng.uniform(-0.1, 1.1) * h)) for _ in range(n)
      ]
      draw.line(points, fill=1, width=width)
    else:
      r = rng.uniform(0.1, 0.5) * min(h, w)
      cx, cy = rng.uniform(0, w), rng.uniform(0, h)
      start = rng.uniform(0, 360)
      draw.arc(
        [cx - r, cy - r, cx + r, cy + r], start, start + rng.uniform(60, 270), fill=1, width=width
      )
    shape = np.asarray(layer, bool)
    if shape.any():
      colour = drawing.hsv(rng, (0.0, 1.0), (0.05, 1.0))
      canvas.paint(shape, 0, 0, np.broadcast_to(colour, (h, w, 3)))


def _paint_objects(rng, canvas):
  """1-3 high-contrast objects inside the border; returns their region ids."""
  h, w = canvas.shape
  count = int(rng.choice([1, 1, 1, 2, 2, 3]))
  total = rng.uniform(0.08, 0.4) * h * w
  shares = rng.dirichlet(np.full(count, 2.0)) * total
  room = (min(h, w) - 2 * OBJECT_MARGIN) / 2 - 1  # a shape spans at most 2 r + 1 pixels
  occupied = np.zeros((h, w), bool)
  ids = []
  for share in sorted(shares, reverse=True):
    r = min(np.sqrt(share / np.pi) * rng.uniform(1.0, 1.3), room)
    shape = drawing.make_shape(rng, rng.choice(drawing.SHAPES), max(r, 6.0))
    sh, sw = shape.shape
    best = None
    for _ in range(8):  # the least overlap with objects already painted
      top = int(rng.integers(OBJECT_MARGIN, h - sh - OBJECT_MARGIN + 1))
      left = int(rng.integers(OBJECT_MARGIN, w - sw - OBJECT_MARGIN + 1))
      overlap = np.count_nonzero(occupied[top : top + sh, left : left + sw] & shape)
      if best is None or overlap < best[0]:
        best = (overlap, top, left)
      if overlap == 0:
        break
    _, top, left = best
    colour = _contrasting(rng, canvas.mean_under(shape, top, left))
    fill = _textured_fill(rng, shape.shape, colour, rng.uniform(10, 45), max(sh, sw) * 2)
    region_id = canvas.paint(shape, top, left, fill)
    occupied[top : top + sh, left : left + sw] |= shape
    ids.append(region_id)
  return ids


def _finish(rng, image):
  """Soft global lighting and sensor noise; rounds to uint8."""
  h, w, _ = image.shape
  light = 1 + rng.uniform(0, 0.15) * drawing.smooth_noise(rng, h, w, max(8, min(h, w) // 2))
  image = image * light[..., None]
  sigma = rng.uniform(0, 5)
  if sigma > 0.5:
    image += sigma * rng.standard_normal(image.shape, np.float32)
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)
