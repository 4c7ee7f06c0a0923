"""A small numpy-only triangle rasteriser for RGBA previews and synthetic video frames.

Perspective pinhole camera, z-buffer, Lambert shading with a fixed light in camera space, per
vertex (or per face) base colours, and a transparent background whose RGB is white (so the frame
also reads correctly when composited on white). Alpha is the silhouette: 255 inside, 0 outside,
or the coverage fraction when supersampling.

Triangles are rasterised in batches grouped by the size of their pixel bounding box, so every
triangle of a batch tests the same small grid of candidate pixels: a fully vectorised loop over
a handful of buckets instead of a Python loop over triangles.
"""

from __future__ import annotations

import numpy as np

from ..geometry.normals import vertex_normals

_LIGHT_CAM = np.array([-0.4, 0.6, -0.7])  # towards the light, camera coordinates (x right, y up, z forward)


def look_at_camera(azimuth=0.6, elevation=0.35, distance=3.0, target=(0.0, 0.0, 0.0), fov_deg=40.0, up=(0, 1, 0)):
    """A camera on a sphere around `target` (angles in radians; azimuth 0 looks along -z from +z)."""
    target = np.asarray(target, float)
    d = np.array([np.sin(azimuth) * np.cos(elevation), np.sin(elevation), np.cos(azimuth) * np.cos(elevation)])
    eye = target + distance * d
    f = target - eye
    f /= np.linalg.norm(f)
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    return {"eye": eye, "R": np.stack([r, u, f]), "fov_deg": float(fov_deg)}


def _rasterise(sx, sy, z, faces, W, H, max_candidates=2_000_000):
    """Visible (pixel, face, barycentrics) with a z-buffer. Barycentrics are perspective-correct."""
    tri_x, tri_y, tri_z = sx[faces], sy[faces], z[faces]
    ok = (tri_z > 1e-4).all(1)
    x0 = np.ceil(tri_x.min(1) - 0.5)
    x1 = np.floor(tri_x.max(1) - 0.5)
    y0 = np.ceil(tri_y.min(1) - 0.5)
    y1 = np.floor(tri_y.max(1) - 0.5)
    x0c, y0c = np.maximum(x0, 0), np.maximum(y0, 0)
    x1c, y1c = np.minimum(x1, W - 1), np.minimum(y1, H - 1)
    ok &= (x1c >= x0c) & (y1c >= y0c)
    area = ((tri_x[:, 1] - tri_x[:, 0]) * (tri_y[:, 2] - tri_y[:, 0])
            - (tri_x[:, 2] - tri_x[:, 0]) * (tri_y[:, 1] - tri_y[:, 0]))
    ok &= np.abs(area) > 1e-12
    ext = np.maximum(x1c - x0c, y1c - y0c) + 1
    size = np.where(ok, 2 ** np.ceil(np.log2(np.maximum(ext, 1))), 0).astype(np.int64)
    pix_all, dep_all, face_all, bary_all = [], [], [], []
    for s in np.unique(size[size > 0]):
        idx = np.nonzero(size == s)[0]
        oy, ox = np.mgrid[0:s, 0:s]
        ox, oy = ox.ravel(), oy.ravel()
        step = max(1, max_candidates // (s * s))
        for c in range(0, len(idx), step):
            fi = idx[c:c + step]
            px = x0c[fi, None] + ox[None]  # [F, s*s]
            py = y0c[fi, None] + oy[None]
            inb = (px <= x1c[fi, None]) & (py <= y1c[fi, None])
            cx, cy = px + 0.5, py + 0.5
            X, Y = tri_x[fi], tri_y[fi]
            def edge(i, j):  # edge function of (v_i -> v_j) at the pixel centres
                return ((X[:, j, None] - X[:, i, None]) * (cy - Y[:, i, None])
                        - (Y[:, j, None] - Y[:, i, None]) * (cx - X[:, i, None]))

            w0, w1, w2 = edge(1, 2), edge(2, 0), edge(0, 1)
            a = area[fi, None]
            b0, b1, b2 = w0 / a, w1 / a, w2 / a
            inside = inb & (b0 >= -1e-9) & (b1 >= -1e-9) & (b2 >= -1e-9)
            if not inside.any():
                continue
            r, k = np.nonzero(inside)
            Z = tri_z[fi][r]
            bb = np.stack([b0[r, k], b1[r, k], b2[r, k]], 1) / Z  # perspective correction
            invz = bb.sum(1)
            pix_all.append((py[r, k] * W + px[r, k]).astype(np.int64))
            dep_all.append(1.0 / invz)
            face_all.append(fi[r])
            bary_all.append(bb / invz[:, None])
    if not pix_all:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    pix, dep = np.concatenate(pix_all), np.concatenate(dep_all)
    face, bary = np.concatenate(face_all), np.concatenate(bary_all)
    dn = (dep - dep.min()) / (np.ptp(dep) + 1e-12) * 0.999
    order = np.argsort(pix + dn, kind="stable")
    pix_s = pix[order]
    first = np.ones(len(order), bool)
    first[1:] = pix_s[1:] != pix_s[:-1]
    win = order[first]
    return pix[win], face[win], bary[win]


def render_mesh(vertices, faces, size=256, camera=None, vertex_colors=None, face_colors=None, normals=None,
                background="transparent", ssaa=1, ambient=0.35):
    """Render a triangle mesh to RGBA uint8 [size, size, 4].

    camera: from `look_at_camera` (default: a three-quarter view of the unit cube).
    vertex_colors [V,3] / face_colors [F,3] in [0,1]; default light grey.
    background: "transparent" (RGB white, alpha 0) or "white" (opaque white; alpha stays the silhouette
    in the returned image only for "transparent").
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    cam = camera or look_at_camera()
    S = int(size) * int(ssaa)
    pc = (v - cam["eye"]) @ cam["R"].T
    focal = 0.5 * S / np.tan(np.radians(cam["fov_deg"]) / 2)
    z = pc[:, 2]
    zs = np.where(np.abs(z) > 1e-9, z, 1e-9)
    sx = 0.5 * S + focal * pc[:, 0] / zs
    sy = 0.5 * S - focal * pc[:, 1] / zs
    pix, face, bary = _rasterise(sx, sy, z, f, S, S)
    rgb = np.ones((S * S, 3))
    alpha = np.zeros(S * S)
    if len(pix):
        n = vertex_normals(v, f) if normals is None else np.asarray(normals, float)
        ncam = n @ cam["R"].T
        nn = (ncam[f[face]] * bary[:, :, None]).sum(1)
        nn /= np.maximum(np.linalg.norm(nn, axis=1, keepdims=True), 1e-12)
        # two-sided: a normal facing away from the camera (z forward) is flipped towards it
        nn[nn[:, 2] > 0] *= -1
        light = _LIGHT_CAM / np.linalg.norm(_LIGHT_CAM)
        shade = ambient + (1 - ambient) * np.clip(nn @ light, 0, 1)
        if vertex_colors is not None:
            col = (np.asarray(vertex_colors, float)[f[face]] * bary[:, :, None]).sum(1)
        elif face_colors is not None:
            col = np.asarray(face_colors, float)[face]
        else:
            col = np.full((len(face), 3), 0.8)
        rgb[pix] = np.clip(col * shade[:, None], 0, 1)
        alpha[pix] = 1.0
    rgb = rgb.reshape(S, S, 3)
    alpha = alpha.reshape(S, S)
    if ssaa > 1:
        k = int(ssaa)
        rgb = rgb.reshape(size, k, size, k, 3).mean((1, 3))
        alpha = alpha.reshape(size, k, size, k).mean((1, 3))
    out = np.empty((size, size, 4), np.uint8)
    out[..., :3] = np.round(rgb * 255)
    out[..., 3] = 255 if background == "white" else np.round(alpha * 255)
    return out


def contact_sheet(images, cols=4, background=(255, 255, 255)):
    """Tile RGBA/RGB uint8 images (same size) into one RGB image, compositing alpha on `background`."""
    imgs = [np.asarray(i) for i in images]
    h, w = imgs[0].shape[:2]
    rows = (len(imgs) + cols - 1) // cols
    sheet = np.empty((rows * h, cols * w, 3), np.uint8)
    sheet[:] = background
    for i, im in enumerate(imgs):
        r, c = divmod(i, cols)
        rgb = im[..., :3].astype(float)
        if im.shape[-1] == 4:
            a = im[..., 3:4].astype(float) / 255
            rgb = rgb * a + np.asarray(background, float) * (1 - a)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = np.round(rgb)
    return sheet
