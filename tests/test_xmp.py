"""Face regions from XMP (Metadata Working Group `mwg-rs:Regions`): hand-made packets in each RDF form,
EXIF orientation applied as the pixels are turned, and the faces reaching the face guard."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from s2ccrop.io.images import _TRANSPOSE, open_image
from s2ccrop.io.xmp import face_regions, orient

STORED = (100, 60)  # the image as stored: W x H
FACE = (0.25, 0.3, 0.1, 0.2)  # centre x, y and w, h, normalised, of the stored image


def packet(x=FACE[0], y=FACE[1], w=FACE[2], h=FACE[3], kind="Face", dims=STORED) -> str:
    """What digiKam and Lightroom write: attributes, a Bag of rdf:Description, inside the xpacket wrapper."""
    return f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 5.5.0">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"
    xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#">
   <mwg-rs:Regions rdf:parseType="Resource">
    <mwg-rs:AppliedToDimensions stDim:w="{dims[0]}" stDim:h="{dims[1]}" stDim:unit="pixel"/>
    <mwg-rs:RegionList>
     <rdf:Bag>
      <rdf:li>
       <rdf:Description mwg-rs:Name="Ann" mwg-rs:Type="{kind}">
        <mwg-rs:Area stArea:x="{x}" stArea:y="{y}" stArea:w="{w}" stArea:h="{h}" stArea:unit="normalized"/>
       </rdf:Description>
      </rdf:li>
     </rdf:Bag>
    </mwg-rs:RegionList>
   </mwg-rs:Regions>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


# The same regions as child elements (rdf:parseType="Resource"), as other writers store them; a Pet and
# a Focus region are not faces.
ELEMENTS = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <rdf:Description xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
   xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#">
  <mwg-rs:Regions><rdf:Description><mwg-rs:RegionList><rdf:Bag>
   <rdf:li rdf:parseType="Resource">
    <mwg-rs:Type>Face</mwg-rs:Type>
    <mwg-rs:Area rdf:parseType="Resource"><stArea:x>0.5</stArea:x><stArea:y>0.5</stArea:y>
     <stArea:w>0.2</stArea:w><stArea:h>0.4</stArea:h><stArea:unit>normalized</stArea:unit></mwg-rs:Area>
   </rdf:li>
   <rdf:li rdf:parseType="Resource"><mwg-rs:Type>Pet</mwg-rs:Type>
    <mwg-rs:Area stArea:x="0.1" stArea:y="0.1" stArea:w="0.1" stArea:h="0.1" stArea:unit="normalized"/></rdf:li>
   <rdf:li><rdf:Description mwg-rs:Type="Focus">
    <mwg-rs:Area stArea:x="0.9" stArea:y="0.9" stArea:w="0.05" stArea:h="0.05"/></rdf:Description></rdf:li>
  </rdf:Bag></mwg-rs:RegionList></rdf:Description></mwg-rs:Regions>
 </rdf:Description></rdf:RDF></x:xmpmeta>"""


def test_attribute_form_by_hand():
    got = face_regions(packet().encode())
    np.testing.assert_allclose(got, [[0.2, 0.2, 0.3, 0.4]])


def test_element_form_and_only_faces():
    np.testing.assert_allclose(face_regions(ELEMENTS), [[0.4, 0.3, 0.6, 0.7]])


def test_no_regions_and_broken_packets():
    assert face_regions(None).shape == (0, 4)
    assert face_regions(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'></x:xmpmeta>").shape == (0, 4)
    with pytest.raises(ValueError, match="not XML"):
        face_regions(b"<x:xmpmeta><rdf:RDF></x:xmpmeta>")
    # a region of another unit, or without a size, is not a face box
    assert face_regions(packet(w=0)).shape == (0, 4)
    assert face_regions(packet().replace('stArea:unit="normalized"', 'stArea:unit="pixel"')).shape == (0, 4)


def _bbox_fraction(mask: Image.Image) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = mask.getbbox()
    w, h = mask.size
    return (x1 / w, y1 / h, x2 / w, y2 / h)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_moves_regions_as_the_pixels_move(orientation):
    """The face, painted into the stored image and turned by the same transpose io.images applies, is
    where the region lands."""
    mask = Image.new("L", STORED, 0)
    x, y, w, h = FACE
    W, H = STORED
    mask.paste(255, (round((x - w / 2) * W), round((y - h / 2) * H), round((x + w / 2) * W), round((y + h / 2) * H)))
    upright = mask.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else mask
    got = face_regions(packet(), orientation, stored_size=STORED)
    np.testing.assert_allclose(got[0], _bbox_fraction(upright), atol=1e-9)


def test_orient_by_hand():
    box = (0.1, 0.2, 0.3, 0.6)
    assert orient(box, 6) == pytest.approx((0.4, 0.1, 0.8, 0.3))  # 90° clockwise: top-left goes top-right
    assert orient(box, 8) == pytest.approx((0.2, 0.7, 0.6, 0.9))  # counter-clockwise: to the bottom-left


def test_regions_written_for_the_upright_photo_are_not_turned_twice():
    # AppliedToDimensions 60x100 for a 100x60 stored photo shown turned (6): the writer used upright pixels
    got = face_regions(packet(dims=(60, 100)), 6, stored_size=STORED)
    np.testing.assert_allclose(got, [[0.2, 0.2, 0.3, 0.4]])
    turned = face_regions(packet(dims=STORED), 6, stored_size=STORED)
    np.testing.assert_allclose(turned, [orient((0.2, 0.2, 0.3, 0.4), 6)])


def _exif(orientation: int) -> bytes:
    e = Image.Exif()
    e[0x0112] = orientation
    return e.tobytes()


def test_decode_reads_jpeg_and_png_packets_upright(tmp_path):
    img = Image.new("RGB", STORED, (90, 90, 90))
    img.save(tmp_path / "a.jpg", exif=_exif(6), xmp=packet().encode())
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet())
    img.save(tmp_path / "b.png", pnginfo=info)
    np.testing.assert_allclose(open_image(tmp_path / "a.jpg").faces, [orient((0.2, 0.2, 0.3, 0.4), 6)])
    np.testing.assert_allclose(open_image(tmp_path / "b.png").faces, [[0.2, 0.2, 0.3, 0.4]])
    img.save(tmp_path / "c.jpg")
    assert open_image(tmp_path / "c.jpg").faces is None


def test_heic_packets_use_the_orientation_pillow_heif_applied(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif", reason="HEIC needs the heif extra: pip install 's2ccrop[heif]'")
    pillow_heif.register_heif_opener()
    Image.new("RGB", STORED, (90, 90, 90)).save(tmp_path / "a.heic", format="HEIF", exif=_exif(6), xmp=packet().encode())
    decoded = open_image(tmp_path / "a.heic")
    assert decoded.size == (60, 100)
    np.testing.assert_allclose(decoded.faces, [orient((0.2, 0.2, 0.3, 0.4), 6)])


def test_a_broken_packet_is_one_warning_not_an_error(tmp_path):
    import warnings

    Image.new("RGB", STORED).save(tmp_path / "a.jpg", xmp=b"<x:xmpmeta><broken></x:xmpmeta>")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoded = open_image(tmp_path / "a.jpg")
    assert decoded.faces is None
    assert [str(w.message) for w in caught if "XMP" in str(w.message)][0].startswith("face regions in the XMP")


def test_xmp_faces_reach_the_guard_from_the_api_and_the_batch(tmp_path, monkeypatch):
    """A tagged face straddling the model's unguarded crop: read from the file, no crop cuts it; the
    batch engine hands the decoded faces to the model as well."""
    from s2ccrop import Cropper, batch
    from s2ccrop.select import FACE_MARGIN, face_cuts

    try:
        from ._cli_helpers import FastCropper, run_in_process
    except ImportError:  # run from tests/
        from _cli_helpers import FastCropper, run_in_process
    from conftest import photo_image

    cropper = Cropper(weights="random", device="cpu")
    img = photo_image((320, 240), seed=7, kind="noise")
    plain = cropper.crop(img, ["9:16"])[0]
    edge = plain.box[0] if plain.box[0] > 30 else plain.box[2]
    cx, w = edge / 320, 40 / 320
    img.save(tmp_path / "tagged.png", pnginfo=_xmp_png(packet(x=cx, y=0.5, w=w, h=0.2, dims=(320, 240))))
    pixels = np.array([[edge - 20, 96, edge + 20, 144]], dtype=float)
    assert face_cuts(np.array([plain.box]), pixels, FACE_MARGIN)[0] > 0
    guarded = cropper.crop(tmp_path / "tagged.png", ["9:16"])[0]
    assert face_cuts(np.array([guarded.box]), pixels, FACE_MARGIN)[0] == 0
    assert cropper.crop(tmp_path / "tagged.png", ["9:16"], faces=np.zeros((0, 4)))[0].box == plain.box

    fake = FastCropper()
    monkeypatch.setattr(batch, "make_cropper", lambda *a, **k: fake)
    code, _, err = run_in_process(tmp_path / "tagged.png", "-r", "9:16", "-o", tmp_path / "out", "-j", "1")
    assert code == 0, err
    np.testing.assert_allclose(fake.asked[0]["faces"], [[cx - w / 2, 0.4, cx + w / 2, 0.6]])


def _xmp_png(text: str) -> PngInfo:
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", text)
    return info
