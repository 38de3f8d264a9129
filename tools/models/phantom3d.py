"""Synthetic 3D phantoms (CT, MR, PET) with 0-3 lesions and their ground truth.

    import numpy as np
    import phantom3d
    ph = phantom3d.generate(np.random.default_rng(1), "ct")
    ph.voxels    # float32 [D, H, W]: HU (ct), arbitrary units (mr), SUV (pet)
    ph.spacing   # (z, y, x) mm
    ph.labels    # uint8 [D, H, W]: 0 background, k lesion k
    ph.lesions   # list of dicts, one per lesion (see _Lesion.describe)

The volume is one transverse section through a cartoon trunk at the
thoracoabdominal junction, in DICOM patient coordinates (LPS): array axis W
runs along +x (towards the patient's left), H along +y (posterior), D along
+z (superior); the centre of voxel (k, j, i) lies at (k * sz, j * sy, i * sx)
mm from the first voxel's centre. Anatomy: a body outline with a
subcutaneous fat layer, ribs (a bone-like rim) and a vertebra, two lungs
above a domed diaphragm and a liver below it on the patient's right.

Lesions are spheres or ellipsoids with random axes and orientation, major
radius 5-15 mm (no semi-axis under 4 mm), placed wholly inside the liver, a
lung or the soft tissue, never touching one another. The label map holds
voxels whose centre lies inside the lesion's ellipsoid; the image draws the
lesion with a soft edge centred on that surface, so ground truth and image
agree to a fraction of a voxel.

- ct: Hounsfield units. Air -1000, fat -100, soft tissue ~40, liver ~60,
  lung ~-800, bone ~700; liver and soft-tissue lesions 40-80 HU hypo- or
  hyperdense, lung nodules -50..60 HU; in-plane and slice-profile blur,
  correlated noise of 6-12 HU.
- mr: arbitrary units on a random per-volume scale (x 50 to x 5000), so a
  model must normalise per volume; a smooth multiplicative bias field
  (+-25 %); Rician noise; lesions 35-60 % darker or 50-120 % brighter than
  their host.
- pet: SUV. Background 0.9-1.8, liver 2-3, lungs 0.3-0.6; lesions 4-15 SUV
  (at least twice their host); blurred to 4.5-6 mm FWHM, Poisson-like
  noise, lightly smoothed as a reconstruction would.

These volumes are cartoons meant to exercise software and to train a
demonstration model. They are not anatomically faithful and must not be used
to validate anything clinical.

Uses numpy only.
"""
import math
from dataclasses import dataclass, field

import numpy as np

KINDS = ("ct", "mr", "pet")
MODALITY = {"ct": "CT", "mr": "MR", "pet": "PT"}
MIN_RADIUS_MM = 4.0
MAJOR_RADIUS_MM = (5.0, 15.0)


@dataclass
class Phantom:
    kind: str
    voxels: np.ndarray
    spacing: tuple
    labels: np.ndarray
    lesions: list = field(default_factory=list)


def _smoothstep(x):
    x = np.minimum(np.maximum(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def _blur_axis(a, axis, sigma):
    """Gaussian blur along one axis (sigma in voxels), edges extended."""
    if sigma <= 0.05:
        return a
    radius = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    widths = [(0, 0)] * a.ndim
    widths[axis] = (radius, radius)
    p = np.pad(a.astype(np.float32, copy=False), widths, mode="edge")
    n = a.shape[axis]
    out = np.zeros(a.shape, np.float32)
    for t in range(2 * radius + 1):
        out += k[t] * np.take(p, np.arange(t, t + n), axis=axis)
    return out


def blur(a, sigma_mm, spacing):
    """Separable gaussian blur with a per-axis sigma in mm."""
    for axis in range(3):
        a = _blur_axis(a, axis, sigma_mm[axis] / spacing[axis])
    return a


def _random_rotation(rng):
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


class _Anatomy:
    """Analytic organ masks: each method takes z, y, x in mm (broadcastable)."""

    def __init__(self, rng, extent):
        ez, ey, ex = extent
        U = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
        self.cz, self.cy, self.cx = ez / 2, ey / 2 + U(-3, 3), ex / 2 + U(-3, 3)
        self.ay = U(0.32, 0.37) * ey  # antero-posterior semi-axis
        self.ax = U(0.42, 0.46) * ex  # left-right semi-axis
        self.fat = U(0.05, 0.09)  # fat layer, fraction of the radius
        self.rib_r = 1.0 - self.fat - U(0.04, 0.07)
        self.rib_w = U(3.0, 5.0)  # mm
        self.rib_period = U(18.0, 24.0)
        self.rib_phase = U(0, 2 * math.pi)
        # Vertebra posterior in the midline.
        self.vy = self.cy + 0.62 * self.ay
        self.vr = U(11.0, 15.0)
        # Diaphragm dome: lungs above, liver below.
        self.dz = U(0.38, 0.55) * ez
        self.dome = U(8.0, 16.0)
        self.lungs = [(self.cx + s * U(0.42, 0.50) * self.ax, self.cy + U(-0.10, 0.05) * self.ay,
                       U(0.30, 0.36) * self.ax, U(0.55, 0.65) * self.ay) for s in (-1.0, 1.0)]
        self.liver = (self.cx - U(0.25, 0.35) * self.ax, self.cy + U(-0.05, 0.05) * self.ay,
                      U(0.50, 0.58) * self.ax, U(0.60, 0.68) * self.ay)
        self.liver_bottom = self.dz - U(40.0, 70.0)

    def radius(self, y, x):
        return np.sqrt(((x - self.cx) / self.ax) ** 2 + ((y - self.cy) / self.ay) ** 2)

    def body(self, z, y, x):
        return np.broadcast_to(self.radius(y, x) < 1.0, np.broadcast_shapes(np.shape(z), np.shape(y), np.shape(x)))

    def fat_layer(self, z, y, x):
        r = self.radius(y, x)
        return np.broadcast_to((r < 1.0) & (r >= 1.0 - self.fat),
                               np.broadcast_shapes(np.shape(z), np.shape(y), np.shape(x)))

    def diaphragm(self, y, x):
        # Domes highest under each lung.
        d = np.minimum(((x - self.lungs[0][0]) / self.ax) ** 2, ((x - self.lungs[1][0]) / self.ax) ** 2)
        return self.dz + self.dome * np.exp(-d / 0.08) * np.exp(-(((y - self.cy) / self.ay) ** 2) / 0.5)

    def lung(self, z, y, x):
        inside = np.zeros(np.broadcast_shapes(np.shape(z), np.shape(y), np.shape(x)), bool)
        above = z > self.diaphragm(y, x) + 2.0
        for lx, ly, rx, ry in self.lungs:
            inside |= (((x - lx) / rx) ** 2 + ((y - ly) / ry) ** 2 < 1.0) & above
        return inside

    def liver_mask(self, z, y, x):
        lx, ly, rx, ry = self.liver
        zr = np.clip((self.diaphragm(y, x) - z) / 12.0, 0, 1)  # rounded top under the dome
        below = (z < self.diaphragm(y, x) - 1.0) & (z > self.liver_bottom)
        return below & (((x - lx) / rx) ** 2 + ((y - ly) / ry) ** 2 < 0.35 + 0.65 * zr) & (self.radius(y, x) < self.rib_r - 0.04)

    def bone(self, z, y, x):
        r = self.radius(y, x)
        ribs = (np.abs(r - self.rib_r) * min(self.ax, self.ay) < self.rib_w / 2) & (
            np.cos(2 * math.pi * z / self.rib_period + self.rib_phase) > -0.1)
        ribs &= (y - self.cy) < 0.75 * self.ay  # not through the back muscles
        vert = np.sqrt((y - self.vy) ** 2 + (x - self.cx) ** 2) < self.vr
        return ribs | vert

    def marrow(self, z, y, x):
        return np.broadcast_to(np.sqrt((y - self.vy) ** 2 + (x - self.cx) ** 2) < self.vr - 2.5,
                               np.broadcast_shapes(np.shape(z), np.shape(y), np.shape(x)))

    def soft(self, z, y, x):
        """Soft tissue a lesion may sit in: inside the rib cage, off the lungs, liver and spine."""
        r = self.radius(y, x)
        far_spine = np.sqrt((y - self.vy) ** 2 + (x - self.cx) ** 2) > self.vr + 4.0
        return (r < self.rib_r - 0.06) & ~self.lung(z, y, x) & ~self.liver_mask(z, y, x) & far_spine

    def host(self, name):
        return {"liver": self.liver_mask, "lung": self.lung, "soft": self.soft}[name]


class _Lesion:
    def __init__(self, centre, radii, rotation, host, shape):
        self.centre = np.asarray(centre, float)  # z, y, x mm
        self.radii = np.asarray(radii, float)
        self.rotation = rotation  # columns: the ellipsoid's axes in (z, y, x)
        self.host = host
        self.shape = shape

    def rho(self, z, y, x):
        """Normalised ellipsoidal radius (1 on the surface) at broadcast points."""
        d = [z - self.centre[0], y - self.centre[1], x - self.centre[2]]
        acc = 0.0
        for a in range(3):
            r = self.rotation
            u = d[0] * r[0, a] + d[1] * r[1, a] + d[2] * r[2, a]
            acc = acc + (u / self.radii[a]) ** 2
        return np.sqrt(acc)

    def surface_points(self, margin):
        """Points on the surface grown by `margin` mm, for containment checks."""
        pts = []
        dirs = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)]
        for d in dirs:
            v = np.array(d, float) / np.linalg.norm(d)
            local = v * (self.radii + margin)
            pts.append(self.centre + self.rotation @ local)
        pts.append(self.centre)
        return np.array(pts)

    def bbox(self, spacing, shape):
        ext = np.abs(self.rotation) @ self.radii + 2.0
        lo = np.maximum(np.floor((self.centre - ext) / spacing).astype(int), 0)
        hi = np.minimum(np.ceil((self.centre + ext) / spacing).astype(int) + 1, shape)
        return lo, hi


def _place_lesions(rng, anatomy, count, extent):
    lesions = []
    hosts = ["liver", "lung", "soft"]
    for _ in range(count):
        major = float(rng.uniform(*MAJOR_RADIUS_MM))
        if rng.random() < 0.5:
            radii, rot, shape = np.full(3, major), np.eye(3), "sphere"
        else:
            radii = np.array([major, max(MIN_RADIUS_MM, major * rng.uniform(0.6, 0.9)),
                              max(MIN_RADIUS_MM, major * rng.uniform(0.6, 0.9))])
            rot, shape = _random_rotation(rng), "ellipsoid"
        host = hosts[int(rng.integers(0, 3))]
        placed = None
        for attempt in range(400):
            if attempt == 200:
                host = "soft"
            margin = radii.max() + 3.0
            c = np.array([rng.uniform(margin, extent[a] - margin) for a in range(3)])
            les = _Lesion(c, radii, rot, host, shape)
            p = les.surface_points(1.5)
            if not anatomy.host(host)(p[:, 0], p[:, 1], p[:, 2]).all():
                continue
            if any(np.linalg.norm(c - o.centre) < radii.max() + o.radii.max() + 3.0 for o in lesions):
                continue
            placed = les
            break
        if placed is not None:
            lesions.append(placed)
    return lesions


def default_geometry(rng):
    """Random anisotropic spacing (z 1.5-3 mm, square pixels 0.7-1.2 mm) and shape."""
    sz = float(rng.uniform(1.5, 3.0))
    sxy = float(rng.uniform(0.7, 1.2))
    fov = float(rng.uniform(150.0, 175.0))
    ez = float(rng.uniform(80.0, 105.0))
    n = int(round(fov / sxy))
    return (sz, sxy, sxy), (int(round(ez / sz)), n, n)


def generate(rng, kind, lesion_count=None, spacing=None, shape=None):
    """One phantom of `kind` ("ct", "mr" or "pet"); see the module docstring.

    lesion_count defaults to a uniform draw from 0..3; fewer are placed when
    the anatomy has no room. spacing (z, y, x) mm and shape (D, H, W) default
    to default_geometry().
    """
    if kind not in KINDS:
        raise ValueError("kind must be one of %s" % (KINDS,))
    g_spacing, g_shape = default_geometry(rng)
    spacing = tuple(float(s) for s in (spacing or g_spacing))
    shape = tuple(int(n) for n in (shape or g_shape))
    extent = [(shape[a] - 1) * spacing[a] for a in range(3)]
    z = (np.arange(shape[0], dtype=np.float32) * spacing[0])[:, None, None]
    y = (np.arange(shape[1], dtype=np.float32) * spacing[1])[None, :, None]
    x = (np.arange(shape[2], dtype=np.float32) * spacing[2])[None, None, :]
    anatomy = _Anatomy(rng, extent)
    if lesion_count is None:
        lesion_count = int(rng.integers(0, 4))
    lesions = _place_lesions(rng, anatomy, lesion_count, extent)

    body = anatomy.body(z, y, x)
    masks = {
        "fat": anatomy.fat_layer(z, y, x),
        "lung": anatomy.lung(z, y, x),
        "liver": anatomy.liver_mask(z, y, x),
        "bone": anatomy.bone(z, y, x) & body,
        "marrow": anatomy.marrow(z, y, x) & body,
    }

    U = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    if kind == "ct":
        values = {"air": -1000.0, "soft": U(30, 50), "fat": U(-110, -80), "lung": U(-850, -750),
                  "liver": U(55, 70), "bone": U(650, 800), "marrow": U(200, 300)}
    elif kind == "mr":
        values = {"air": 0.0, "soft": U(0.45, 0.55), "fat": U(0.9, 1.0), "lung": U(0.03, 0.07),
                  "liver": U(0.35, 0.42), "bone": U(0.05, 0.10), "marrow": U(0.6, 0.75)}
    else:
        bg = U(0.9, 1.8)
        values = {"air": 0.0, "soft": bg, "fat": 0.4 * bg, "lung": U(0.3, 0.6),
                  "liver": U(2.0, 3.0), "bone": 0.8 * bg, "marrow": U(1.5, 2.2)}

    img = np.where(body, np.float32(values["soft"]), np.float32(values["air"])).astype(np.float32)
    for name in ("fat", "liver", "lung", "bone", "marrow"):
        img[np.broadcast_to(masks[name], img.shape)] = values[name]

    # Gentle organ texture so that no region is perfectly flat.
    tex = blur(rng.standard_normal(img.shape).astype(np.float32), (3.0, 3.0, 3.0), spacing)
    tex /= max(float(tex.std()), 1e-6)
    if kind == "ct":
        img += np.where(body, 4.0 * tex, 0.0).astype(np.float32)
    else:
        img *= (1.0 + 0.03 * tex).astype(np.float32)

    labels = np.zeros(shape, np.uint8)
    descriptions = []
    for n, les in enumerate(lesions, start=1):
        lo, hi = les.bbox(np.array(spacing), np.array(shape))
        sl = tuple(slice(int(lo[a]), int(hi[a])) for a in range(3))
        rho = les.rho(z[sl[0]], y[:, sl[1]], x[:, :, sl[2]])
        inside = rho <= 1.0
        labels[sl][inside] = n
        host_value = values[les.host]
        if kind == "ct":
            if les.host == "lung":
                target = U(-50, 60)
            else:
                target = host_value + (-1 if rng.random() < 0.5 else 1) * U(40, 80)
        elif kind == "mr":
            target = host_value * (1 - U(0.35, 0.6) if rng.random() < 0.4 else 1 + U(0.5, 1.2))
            if les.host == "lung":
                target = values["soft"] * U(0.8, 1.6)
        else:
            target = max(U(4.0, 15.0), 2.0 * host_value)
        # Soft edge about 0.4 mm wide, centred on the ground-truth surface.
        r_eff = float(les.radii.min())
        w = 1.0 / (1.0 + np.exp(np.clip((rho - 1.0) * r_eff / 0.4, -30, 30)))
        sub = img[sl]
        img[sl] = (sub + w * (target - host_value)).astype(np.float32)
        centre_vox = [float(les.centre[a] / spacing[a]) for a in range(3)]
        descriptions.append({
            "id": n,
            "shape": les.shape,
            "host": les.host,
            "centre_mm": [round(float(c), 4) for c in les.centre],
            "centre_voxel": [round(c, 4) for c in centre_vox],
            "radii_mm": [round(float(r), 4) for r in les.radii],
            "axes": [[round(float(v), 6) for v in les.rotation[:, a]] for a in range(3)],
            "radius_mm": round(float(les.radii.max()), 4),
            "value": round(float(target), 4),
            "background": round(float(host_value), 4),
            "voxels": int(inside.sum()),
        })

    if kind == "ct":
        img = blur(img, (0.45 * spacing[0], 0.5, 0.5), spacing)
        noise = blur(rng.standard_normal(shape).astype(np.float32), (0.0, 0.5, 0.5), spacing)
        noise *= U(6.0, 12.0) / max(float(noise.std()), 1e-6)
        img = img + noise
    elif kind == "mr":
        img = blur(img, (0.4 * spacing[0], 0.4, 0.4), spacing)
        # Smooth multiplicative bias field: a few low-order cosines over the volume.
        bias = np.zeros(shape, np.float32)
        for _ in range(4):
            fz, fy, fx = rng.uniform(0.0, 1.0, 3)
            ph = rng.uniform(0, 2 * math.pi, 3)
            bias += (np.cos(math.pi * fz * z / max(extent[0], 1) + ph[0])
                     * np.cos(math.pi * fy * y / extent[1] + ph[1])
                     * np.cos(math.pi * fx * x / extent[2] + ph[2])).astype(np.float32)
        bias = np.exp(U(0.08, 0.22) * bias / 2.0)
        sigma = U(0.015, 0.035)
        a = img * bias + sigma * rng.standard_normal(shape).astype(np.float32)
        b = sigma * rng.standard_normal(shape).astype(np.float32)
        img = np.sqrt(a * a + b * b) * np.float32(math.exp(rng.uniform(math.log(50.0), math.log(5000.0))))
    else:
        fwhm = U(4.5, 6.0)
        s = fwhm / 2.3548
        img = blur(img, (s, s, s), spacing)
        counts = U(40.0, 80.0)  # counts per voxel at SUV 1
        img = rng.poisson(np.maximum(img, 0) * counts).astype(np.float32) / counts
        img = blur(img, (1.0, 1.0, 1.0), spacing)
    return Phantom(kind=kind, voxels=np.ascontiguousarray(img, dtype=np.float32), spacing=spacing,
                   labels=labels, lesions=descriptions)


def phantom_rng(seed, split, index):
    """The generator for one phantom: its own stream per (seed, split, index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, split, index]))


def kind_of(index):
    """Kinds alternate ct, mr, pet along an index, so every set is balanced."""
    return KINDS[index % len(KINDS)]
