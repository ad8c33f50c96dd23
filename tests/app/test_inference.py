from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from index.model.embedder import Embedder
from tests.app.conftest import upload
from tests.conftest import IMAGES_DIR, encode_image


def _odd_image(kind: str) -> bytes:
    """Valid images in the unusual modes and formats users upload."""
    base = Image.open(IMAGES_DIR / "coffee.jpg").convert("RGB").resize((96, 72))
    buf = io.BytesIO()
    if kind == "rgba_png":
        rgba = base.convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize(base.size))
        rgba.save(buf, "PNG")
    elif kind == "palette_png":
        base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(buf, "PNG")
    elif kind == "cmyk_jpeg":
        base.convert("CMYK").save(buf, "JPEG")
    elif kind == "grey16_png":
        grey = np.asarray(base.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(grey).save(buf, "PNG")
    elif kind == "one_pixel_png":
        base.resize((1, 1)).save(buf, "PNG")
    elif kind == "webp":
        base.save(buf, "WEBP")
    elif kind == "animated_gif":
        frames = [base.convert("P"), base.transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("P")]
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    elif kind == "la_png":
        base.convert("LA").save(buf, "PNG")
    else:
        raise ValueError(kind)
    return buf.getvalue()


ODD_KINDS = ["rgba_png", "palette_png", "cmyk_jpeg", "grey16_png", "one_pixel_png", "webp", "animated_gif", "la_png"]


def test_embed_returns_one_unit_vector_per_file_in_upload_order(photo_client: TestClient, embedder: Embedder) -> None:
    response = photo_client.post("/embed", files=upload("rocket.jpg", "cat.png"))
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == embedder.version
    assert body["dim"] == embedder.dim
    assert [r["filename"] for r in body["results"]] == ["rocket.jpg", "cat.png"]
    vectors = np.array([r["embedding"] for r in body["results"]])
    assert vectors.shape == (2, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert float(vectors[0] @ vectors[1]) < 0.9


def test_embed_stores_nothing(photo_client: TestClient) -> None:
    before = photo_client.get("/stats").json()["count"]
    assert photo_client.post("/embed", files=upload("coins.jpg")).status_code == 200
    assert photo_client.get("/stats").json()["count"] == before


def test_predict_names_the_photo_content_best_first(photo_client: TestClient) -> None:
    response = photo_client.post("/predict", files=upload("coffee.jpg"), params={"top_k": 3})
    assert response.status_code == 200
    (result,) = response.json()["results"]
    preds = result["predictions"]
    assert len(preds) == 3
    assert preds[0]["label"] == "espresso"
    assert preds[0]["class_index"] == 967
    assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)


def test_predict_refuses_more_predictions_than_the_server_computes(photo_client: TestClient) -> None:
    response = photo_client.post("/predict", files=upload("coffee.jpg"), params={"top_k": 6})
    assert response.status_code == 422
    assert "top_k" in response.json()["detail"]


@pytest.mark.parametrize("top_k", ["0", "-1", "many"])
def test_predict_rejects_a_bad_top_k(photo_client: TestClient, top_k: str) -> None:
    assert photo_client.post("/predict", files=upload("coffee.jpg"), params={"top_k": top_k}).status_code == 422


@pytest.mark.parametrize("kind", ODD_KINDS)
def test_odd_but_valid_images_are_embedded_and_classified(photo_client: TestClient, kind: str) -> None:
    response = photo_client.post("/predict", files=[("files", (f"odd.{kind}", _odd_image(kind)))])
    assert response.status_code == 200, response.text
    assert len(response.json()["results"][0]["predictions"]) == 5


def test_an_exif_rotated_jpeg_is_embedded_upright(photo_client: TestClient) -> None:
    upright = Image.open(IMAGES_DIR / "rocket.jpg").convert("RGB")
    stored_sideways = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    rotated, plain = io.BytesIO(), io.BytesIO()
    stored_sideways.save(rotated, "JPEG", quality=95, exif=exif)
    upright.save(plain, "JPEG", quality=95)
    sideways = io.BytesIO()
    stored_sideways.save(sideways, "JPEG", quality=95)
    files = [("files", ("exif.jpg", rotated.getvalue())), ("files", ("plain.jpg", plain.getvalue()))]
    files.append(("files", ("sideways.jpg", sideways.getvalue())))
    body = photo_client.post("/embed", files=files).json()
    exif_v, plain_v, sideways_v = (np.array(r["embedding"]) for r in body["results"])
    assert float(exif_v @ plain_v) > 0.97
    assert float(exif_v @ plain_v) > float(exif_v @ sideways_v) + 0.02


def test_several_files_with_the_same_bytes_each_get_a_result(photo_client: TestClient) -> None:
    data = encode_image("PNG", seed=3)
    response = photo_client.post("/embed", files=[("files", ("a.png", data)), ("files", ("b.png", data))])
    assert response.status_code == 200
    a, b = response.json()["results"]
    assert (a["filename"], b["filename"]) == ("a.png", "b.png")
    assert a["sha256"] == b["sha256"]
