"""Synthetic chest-radiograph phantoms, with or without one round nodule.

    import numpy as np
    import phantom
    pixels, lesion = phantom.generate(np.random.default_rng(1), size=256, lesion=True)

`pixels` is a (size, cols) uint16 array (cols defaults to size) of 12-bit
stored values (0..4095) in the MONOCHROME2 convention (bright = dense).
`lesion` is None, or a dict with the nodule centre ("row", "col") and "radius"
in pixels of the returned image. Coordinates are pixel indices: the centre of
the top-left pixel is (0.0, 0.0).

Every anatomical dimension is a fraction of `size` (the image height), and
random textures are specified in cycles per image height, so a 2048-pixel
phantom is the same family of image as a 256-pixel one. The exception is
per-pixel quantum noise, which averages down when a large phantom is shrunk.
A wider or narrower `cols` adds or crops background at the sides, as a
differently shaped detector would; cols == size gives exactly the square
phantom.

These images are cartoons meant to exercise software and to train a
demonstration model. They are not anatomically faithful and must not be used
to validate anything clinical.

Uses numpy only, so it runs wherever numpy does.
"""
import numpy as np

MAX_STORED = 4095


def _smoothstep(x):
    # minimum/maximum rather than clip: clip's overhead dominates on the many
    # small arrays a phantom is built from.
    x = np.minimum(np.maximum(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def _soft_inside(metric, softness):
    """1 well inside (metric < 1), 0 outside, with a ramp of width `softness`.

    A ramp rather than a hard edge, because radiographic edges are always
    blurred by the focal spot and by the curvature of the structure.
    """
    return _smoothstep((1.0 - metric) / softness + 0.5)


def _superellipse(u, v, cu, cv, au, av, p):
    return (np.abs((u - cu) / au) ** p + np.abs((v - cv) / av) ** p) ** (1.0 / p)


def _band_noise(rng, rows, cols, f_lo, f_hi):
    """Unit-variance noise whose spectrum lies between f_lo and f_hi cycles per image height.

    Frequencies are per image rather than per pixel so the texture looks the
    same at every size.
    """
    white = rng.standard_normal((rows, cols)).astype(np.float32)
    fy = np.fft.fftfreq(rows)[:, None] * rows
    fx = np.fft.rfftfreq(cols)[None, :] * rows
    f = np.sqrt(fx * fx + fy * fy)
    # Smooth band edges avoid ringing that would read as artificial stripes.
    gain = _smoothstep((f - f_lo * 0.7) / (f_lo * 0.6 + 1e-6)) * _smoothstep((f_hi * 1.3 - f) / (f_hi * 0.6))
    field = np.fft.irfft2(np.fft.rfft2(white) * gain, s=(rows, cols)).astype(np.float32)
    sd = float(field.std())
    return field / sd if sd > 0 else field


def _rib_band(v, centre_row, half_width):
    """Density across one rib: cortical margins are denser than the marrow."""
    d = np.abs(v - centre_row) / half_width
    body = _soft_inside(d, 0.35)
    cortex = np.exp(-((d - 0.8) / 0.25) ** 2)
    return 0.65 * body + 0.45 * cortex * (d < 1.2)


def _add_band(out, v, weight, centre_row, half_width):
    """out += weight * _rib_band(v, centre_row, half_width), on the rows the band reaches.

    A band is zero beyond 1.2 half-widths of its centre line and wherever its
    weight is zero; skipping the rest makes ribs several times cheaper, which
    matters for large phantoms. Arguments broadcast to out's shape.
    """
    shape = out.shape
    weight = np.broadcast_to(weight, shape)
    centre_row = np.broadcast_to(centre_row, shape)
    half_width = np.broadcast_to(half_width, shape)
    used = weight != 0
    if not used.any():
        return
    reach = 1.25 * float(half_width[used].max())
    rows = shape[0]
    lo = max(0, int(np.floor((float(centre_row[used].min()) - reach) * rows)))
    hi = min(rows, int(np.ceil((float(centre_row[used].max()) + reach) * rows)) + 1)
    if lo < hi:
        out[lo:hi] += weight[lo:hi] * _rib_band(v[lo:hi], centre_row[lo:hi], half_width[lo:hi])


def generate(rng, size=256, lesion=False, cols=None):
    """Returns (pixels, lesion_info) for one phantom; see the module docstring."""
    size = int(size)
    cols = size if cols is None else int(cols)
    if size < 32 or cols < 32:
        raise ValueError("size and cols must be at least 32")
    shape = (size, cols)
    # Both axes in units of the image height, with u = 0.5 on the centre column.
    v = ((np.arange(size, dtype=np.float32) + 0.5) / size)[:, None]  # 0 at the top
    u0 = np.float32(0.5 - 0.5 * cols / size)
    # 0 towards the image left (patient's right on a PA view).
    u = ((np.arange(cols, dtype=np.float32) + 0.5) / size + u0)[None, :]
    edge = 2.5 / 256.0  # edge blur as a fraction of the image

    def U(a, b):
        return float(rng.uniform(a, b))

    # Torso and neck, slightly off-centre and rotated as real patients are.
    mid_u = 0.5 + U(-0.03, 0.03)
    tilt = U(-0.03, 0.03)
    uu = u - tilt * (v - 0.5)
    body_au, body_av = U(0.38, 0.46), U(0.55, 0.70)
    body_cv = U(0.58, 0.72)
    body_metric = _superellipse(uu, v, mid_u, body_cv, body_au, body_av, U(2.4, 3.6))
    body = _soft_inside(body_metric, edge / body_au * 3)
    neck = _soft_inside(np.abs(uu - mid_u) / U(0.07, 0.10), 0.25) * _soft_inside(v / (body_cv - body_av + 0.15), 0.2)
    body = np.maximum(body, neck)
    # Thicker in the middle of the chest than at its sides.
    thickness = body * (0.55 + 0.45 * np.sqrt(np.clip(1.0 - body_metric ** 2, 0.0, 1.0)))

    # Lungs: two rounded fields whose lower margin is the diaphragm dome.
    lung_top = U(0.13, 0.20)
    lung_bottom = lung_top + U(0.52, 0.62)
    lungs = np.zeros(shape, np.float32)
    lung_params = []
    for side in (-1.0, 1.0):
        cu = mid_u + side * U(0.17, 0.21)
        au = U(0.12, 0.16)
        cv = (lung_top + lung_bottom) / 2.0 + U(-0.02, 0.02)
        av = (lung_bottom - lung_top) / 2.0 * U(0.95, 1.05)
        # Apex narrower than base: widen the field with depth.
        widen = 0.65 + 0.45 * np.clip((v - lung_top) / (lung_bottom - lung_top), 0.0, 1.0)
        m = _superellipse(u, v, cu, cv, au * widen, av, U(2.2, 3.0))
        lung = _soft_inside(m, edge / au * 4)
        lungs = np.maximum(lungs, lung)
        lung_params.append((cu, cv, au, av))

    # Heart shadow sits low and towards the patient's left (image right).
    heart_cu = mid_u + U(0.03, 0.07)
    heart_cv = lung_bottom - U(0.10, 0.15)
    heart_au, heart_av = U(0.14, 0.18), U(0.10, 0.13)
    heart = _soft_inside(_superellipse(u, v, heart_cu, heart_cv, heart_au, heart_av, 2.0), edge / heart_au * 4)
    mediastinum = _soft_inside(np.abs(uu - mid_u) / U(0.07, 0.10), 0.4) * _soft_inside(
        np.abs(v - 0.45) / 0.5, 0.1)
    aerated = lungs * (1.0 - heart) * (1.0 - 0.8 * mediastinum)

    # Attenuation in arbitrary units; the lung fields are mostly air.
    soft = U(0.55, 0.70)
    atten = soft * thickness * (1.0 - U(0.55, 0.72) * aerated)
    atten += U(0.02, 0.06) * heart * body + U(0.05, 0.10) * mediastinum * body

    # Spine with a faint vertebral rhythm behind the mediastinum.
    spine = _soft_inside(np.abs(uu - mid_u) / U(0.030, 0.040), 0.3) * body
    vert_period = U(0.040, 0.050)
    atten += U(0.03, 0.06) * spine * (0.75 + 0.25 * np.cos(2 * np.pi * v / vert_period))

    # Posterior ribs arc up then down away from the spine; anterior ribs are
    # fainter and slope down towards the midline.
    ribs = np.zeros(shape, np.float32)
    rib_gap = U(0.050, 0.062)
    rib_half = U(0.008, 0.012)
    first_rib = lung_top - U(0.01, 0.03)
    for side in (-1.0, 1.0):
        x = side * (uu - mid_u)  # distance from the spine on this side
        lateral = _soft_inside(np.abs(x - 0.23) / 0.22, 0.2) * (x > 0)
        for k in range(11):
            r0 = first_rib + k * rib_gap + U(-0.006, 0.006)
            rise, fall = U(0.20, 0.35), U(1.2, 1.8)
            centre = r0 - rise * x + fall * x * x
            _add_band(ribs, v, lateral, centre, rib_half * (1.0 + 0.6 * x))
        anterior = 0.35 * _soft_inside(np.abs(x - 0.22) / 0.17, 0.3) * (x > 0)
        for k in range(6):
            r0 = first_rib + 0.05 + k * rib_gap * 1.15 + U(-0.008, 0.008)
            centre = r0 + U(0.25, 0.40) * (0.36 - x)
            _add_band(ribs, v, anterior, centre, rib_half * 1.4)
        # Clavicles overlap the apices: another dense structure a nodule can hide behind.
        cl_centre = U(0.10, 0.15) - U(0.10, 0.20) * (x - 0.05)
        clavicle = 0.9 * _soft_inside(np.abs(x - 0.17) / 0.14, 0.3) * (x > 0)
        _add_band(ribs, v, clavicle, cl_centre, rib_half * 1.5)
    rib_density = U(0.06, 0.12)
    atten += rib_density * ribs * body

    # Broad variation in soft-tissue thickness, so that no two patients share
    # the same background brightness profile.
    atten *= 1.0 + U(0.03, 0.08) * _band_noise(rng, size, cols, 1.0, 4.0)

    # Vascular markings: thin ridges of band-limited noise, strongest near
    # the hila and fading towards the lung periphery.
    ridges = np.exp(-(_band_noise(rng, size, cols, 6.0, 20.0) / 0.35) ** 2)
    fine = _band_noise(rng, size, cols, 16.0, 48.0)
    hila = np.zeros(shape, np.float32)
    for cu, cv, au, av in lung_params:
        d = np.sqrt(((u - (mid_u + 0.45 * (cu - mid_u))) / au) ** 2 + ((v - cv) / av) ** 2)
        hila = np.maximum(hila, np.exp(-d * d / 0.8))
    markings = U(0.02, 0.05) * ridges * (0.35 + hila) + U(0.004, 0.012) * fine
    atten += markings * aerated * body

    info = None
    if lesion:
        info, nodule = _nodule(rng, size, float(u0), u, v, aerated, lung_params)
        # Contrast relative to the lung/soft-tissue difference, so it stays
        # comparable across exposures; low values are hard, high values easy.
        atten += U(0.16, 0.45) * soft * nodule

    atten = np.clip(atten, 0.0, None)

    # Display: log-domain radiograph with a random tone curve and exposure.
    gamma = U(0.75, 1.35)
    signal = atten ** gamma
    # Quantum noise: fewer photons through dense regions means more noise there.
    noise_sd = U(0.004, 0.020) * np.exp(U(0.8, 1.8) * atten)
    signal = signal + noise_sd * rng.standard_normal(shape).astype(np.float32)
    gain = U(2600.0, 4600.0)
    offset = U(0.0, 300.0)
    pixels = np.clip(np.rint(offset + gain * signal), 0, MAX_STORED).astype(np.uint16)
    return pixels, info


def _nodule(rng, size, u0, u, v, aerated, lung_params):
    """Places a nodule well inside a lung field; returns (info, density map)."""
    radius = float(rng.uniform(0.031, 0.059))  # 8-15 px at 256
    # Choose the side first: the left field is partly hidden by the heart, and
    # sampling both fields together would put most nodules on the right.
    cu, cv, au, av = lung_params[int(rng.integers(0, 2))]
    best, best_score = (cu, cv), -1.0
    for _ in range(400):
        pu = cu + rng.uniform(-0.85, 0.85) * au
        pv = cv + rng.uniform(-0.85, 0.85) * av
        score = _aeration_under(aerated, pu - u0, pv, radius, size)
        if score > best_score:
            best, best_score = (pu, pv), score
        if score >= 0.8:
            break
    pu, pv = best
    aspect = float(rng.uniform(0.88, 1.12))
    angle = float(rng.uniform(0.0, np.pi))
    du, dv = u - pu, v - pv
    a, b = np.cos(angle), np.sin(angle)
    ru = (a * du + b * dv) * np.sqrt(aspect)
    rv = (-b * du + a * dv) / np.sqrt(aspect)
    d = np.sqrt(ru * ru + rv * rv) / radius
    # A sphere's projected thickness with a soft margin.
    nodule = np.sqrt(np.clip(1.0 - (d / 1.1) ** 2, 0.0, 1.0)) * _soft_inside(d, 0.3)
    info = {
        "row": float(pv * size - 0.5),
        "col": float((pu - u0) * size - 0.5),
        "radius": float(radius * size),
    }
    return info, nodule.astype(np.float32)


def _aeration_under(aerated, pc, pv, radius, size):
    """Least aeration at the centre and four points inside the nodule's rim."""
    least = 1.0
    for du, dv in ((0, 0), (0.7, 0), (-0.7, 0), (0, 0.7), (0, -0.7)):
        r = int((pv + dv * radius) * size)
        c = int((pc + du * radius) * size)
        if not (0 <= r < aerated.shape[0] and 0 <= c < aerated.shape[1]):
            return 0.0
        least = min(least, float(aerated[r, c]))
    return least
