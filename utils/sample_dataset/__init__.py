"""A synthetic "drinks" dataset in the layout of the book's chapter 12 (`make_sample_dataset.py`).

The book trains its FCN on photos of water bottles, soda cans and juice cans standing on a table,
annotated with polygons in VGG Image Annotator (VIA) 2.x. Those photos cannot ship with this
project, so this package paints look-alikes: a wall and a table seen in perspective, lit from one
side, with drinks and non-drink clutter standing on it, then a camera's blur, noise and JPEG. The
drink classes differ by shape (a tall bottle with a neck and cap, a squat can, a slim can or a
carton) while their colours overlap on purpose, with each other and with the clutter, so a model
has to learn shapes rather than colours.

Each drink is annotated with the polygon of its visible part: objects are painted back to front,
the visible coverage of each drink is what the objects in front leave of it, and its 0.5 contour
(`skimage.measure.find_contours`, pixel centres at integer coordinates) is simplified into the
polygon. Regions are listed back to front, so both `--draw-order file` and "larger regions first"
rasterise them to the same mask.

The modules, in the order a picture is made: `camera` (camera, light, and the camera's effects
at the end), `paints`, `textures` (noise, stripes, printed labels), `background` (wall and
table), `shapes` (frames, sprites, bodies of revolution and boxes), `drinks` (the three classes),
`clutter` (everything else on the table), `scene` (placing, shadows, occlusion, polygons) and
`dataset` (JPEG files and the VIA JSON). The output depends only on the arguments: image i is
drawn from its own generator seeded with (seed, i).
"""

from .dataset import generate_dataset

__all__ = ["generate_dataset"]
