"""File input and output, knowing nothing about the model.

- `images`: decode a photo upright (EXIF orientation, colour modes, first frame, pixel limit, ICC).
- `writers`: exact-size crops in jpg/png/webp, ICC kept, written atomically.
- `paths`: streamed input discovery (files, folders, stdin) and output names mirroring the input tree.
"""
