"""File input and output, knowing nothing about the model.

- `images`: decode a photo upright (EXIF orientation, colour modes, first frame, pixel limit, ICC).
- `formats`: output formats (--format, or the input's own) and exact output sizes, padded fits' too.
- `render`: a crop's pixels: cut and resampled in one pass, or shown whole on a padded canvas.
- `writers`: durable writes: encoded (ICC kept, tagged as s2ccrop's), written atomically, synced.
- `preview`: preview tiles and the contact sheet of a run.
- `paths`: streamed input discovery (files, folders, stdin) and output names mirroring the input tree.
"""
