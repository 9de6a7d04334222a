"""Face regions photographers already stored: XMP Metadata Working Group regions (`mwg-rs:Regions`).

Lightroom, digiKam, Picasa, darktable and others write tagged faces as

    <mwg-rs:Regions rdf:parseType="Resource">
      <mwg-rs:AppliedToDimensions stDim:w="4000" stDim:h="3000" stDim:unit="pixel"/>
      <mwg-rs:RegionList><rdf:Bag><rdf:li><rdf:Description mwg-rs:Type="Face" mwg-rs:Name="Ann">
        <mwg-rs:Area stArea:x="0.5" stArea:y="0.4" stArea:w="0.1" stArea:h="0.15" stArea:unit="normalized"/>
      </rdf:Description></rdf:li></rdf:Bag></mwg-rs:RegionList>
    </mwg-rs:Regions>

Each area is a centre (x, y) and a size (w, h), as fractions of the image *as stored*, before its EXIF
orientation is applied (MWG guidelines, "Image Region Metadata"). `face_regions` turns them into boxes
in fractions of the upright photo, the pixels every box of s2ccrop is in. RDF lets each property be an
attribute or a child element (and a struct a nested rdf:Description): all of those forms are read.
Only regions of type Face count (the guard protects faces); a packet without regions gives none.

A writer that stored regions for the already-rotated image gives itself away when it records the
dimensions it applied them to: `AppliedToDimensions` equal to the upright size (and not the stored one)
of a photo whose orientation swaps the axes means the regions are upright already.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
MWG_RS = "http://www.metadataworkinggroup.com/schemas/regions/"
ST_AREA = "http://ns.adobe.com/xmp/sType/Area#"
ST_DIM = "http://ns.adobe.com/xap/1.0/sType/Dimensions#"
MAX_PACKET = 4 << 20  # a real packet is a few kB; anything this large is not worth parsing
SWAPS_AXES = frozenset({5, 6, 7, 8})  # the EXIF orientations that turn the photo by 90°


def xmp_packet(img) -> bytes | None:
    """The raw XMP packet Pillow (or pillow-heif) found in an opened image, if any."""
    info = img.info
    for key in ("xmp", "XML:com.adobe.xmp"):
        value = info.get(key)
        if value:
            return value.encode("utf-8") if isinstance(value, str) else bytes(value)
    tag = getattr(img, "tag_v2", None)  # TIFF: tag 700
    if tag is not None:
        value = tag.get(700)
        if value:
            return value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return None


def face_regions(packet: bytes | str | None, orientation: int = 1,
                 stored_size: tuple[int, int] | None = None) -> np.ndarray:
    """Face boxes [F, 4] (x1, y1, x2, y2, fractions of the upright photo) from an XMP packet. The
    photo's EXIF `orientation` (1..8) is applied to the stored regions; `stored_size` (W, H as stored)
    lets a packet written for the upright photo be recognised. ValueError for a packet that is not XML."""
    if not packet or len(packet) > MAX_PACKET:
        return np.zeros((0, 4))
    if isinstance(packet, bytes):
        packet = packet.decode("utf-8", "replace")
    # The packet wrapper (<?xpacket ...?>) and its padding are not part of the XML document.
    for opening, closing in (("<x:xmpmeta", "</x:xmpmeta>"), ("<rdf:RDF", "</rdf:RDF>")):
        start, end = packet.find(opening), packet.rfind(closing)
        if 0 <= start < end:
            text = packet[start:end + len(closing)]
            break
    else:
        text = packet.strip().rstrip("\x00")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"the XMP packet is not XML ({exc})") from None
    boxes = []
    for regions in root.iter(f"{{{MWG_RS}}}Regions"):
        applied = _struct(_child(regions, "AppliedToDimensions"))
        upright_already = _written_upright(applied, orientation, stored_size)
        for region in _regions(regions):
            if str(_prop(region, MWG_RS, "Type") or "").strip().lower() != "face":
                continue
            area = _struct(_child(region, "Area"))
            box = _area_box(area)
            if box is not None:
                boxes.append(box if upright_already else orient(box, orientation))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def orient(box: tuple[float, float, float, float], orientation: int) -> tuple[float, float, float, float]:
    """A box in fractions of the stored image, as fractions of the image after EXIF `orientation`
    is applied (as `io.images` applies it: 6 turns the photo 90° clockwise, 8 counter-clockwise)."""
    (ax, ay), (bx, by) = _orient_point(box[0], box[1], orientation), _orient_point(box[2], box[3], orientation)
    return (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


def _orient_point(x: float, y: float, o: int) -> tuple[float, float]:
    return {
        2: (1 - x, y),        # mirrored left-right
        3: (1 - x, 1 - y),    # turned 180°
        4: (x, 1 - y),        # mirrored top-bottom
        5: (y, x),            # transposed
        6: (1 - y, x),        # turned 90° clockwise
        7: (1 - y, 1 - x),    # transversed
        8: (y, 1 - x),        # turned 90° counter-clockwise
    }.get(o, (x, y))


def _written_upright(applied: dict, orientation: int, stored_size: tuple[int, int] | None) -> bool:
    if orientation not in SWAPS_AXES or stored_size is None:
        return False
    try:
        w, h = float(applied[f"{{{ST_DIM}}}w"]), float(applied[f"{{{ST_DIM}}}h"])
    except (KeyError, ValueError):
        return False
    sw, sh = stored_size
    return (w, h) == (float(sh), float(sw)) and (w, h) != (float(sw), float(sh))


def _regions(regions: ET.Element):
    """The region structs of a RegionList: each rdf:li (or the rdf:Description inside it)."""
    region_list = _child(regions, "RegionList")
    if region_list is None:
        return
    for li in region_list.iter(f"{{{RDF}}}li"):
        inner = li.find(f"{{{RDF}}}Description")
        yield inner if inner is not None else li


def _child(elem: ET.Element | None, name: str) -> ET.Element | None:
    if elem is None:
        return None
    found = elem.find(f"{{{MWG_RS}}}{name}")
    if found is None:  # <rdf:Description> holding the struct's fields
        inner = elem.find(f"{{{RDF}}}Description")
        if inner is not None:
            found = inner.find(f"{{{MWG_RS}}}{name}")
    return found


def _struct(elem: ET.Element | None) -> dict:
    """A struct's fields (namespaced names -> text), whichever RDF form it was written in."""
    if elem is None:
        return {}
    fields = dict(elem.attrib)
    for holder in [elem, *elem.findall(f"{{{RDF}}}Description")]:
        fields.update(holder.attrib)
        for child in holder:
            if child.tag != f"{{{RDF}}}Description" and child.text and child.text.strip():
                fields[child.tag] = child.text.strip()
    return fields


def _prop(elem: ET.Element, ns: str, name: str) -> str | None:
    key = f"{{{ns}}}{name}"
    if key in elem.attrib:
        return elem.attrib[key]
    child = elem.find(key)
    return child.text if child is not None else None


def _area_box(area: dict) -> tuple[float, float, float, float] | None:
    unit = area.get(f"{{{ST_AREA}}}unit", "normalized").strip().lower()
    if unit != "normalized":
        return None  # MWG regions are normalised; anything else is not what it claims to be
    try:
        x, y, w, h = (float(area[f"{{{ST_AREA}}}{k}"]) for k in ("x", "y", "w", "h"))
    except (KeyError, ValueError):
        return None
    if not all(np.isfinite([x, y, w, h])) or w <= 0 or h <= 0:
        return None
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (x - w / 2, y - h / 2, x + w / 2, y + h / 2))
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


__all__ = ["face_regions", "orient", "xmp_packet"]
