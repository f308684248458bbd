"""CIFAR-10-C style corruptions (Hendrycks & Dietterich 2019) on batched tensors.

The 15 benchmark corruptions x 5 severities with the published parameters for 32x32 images
(Hendrycks & Dietterich's released ``make_cifar_c.py``; docs/craft.md), plus three of the four
extra (validation) corruptions, re-implemented with torch, numpy and PIL (no OpenCV, Wand or
scikit-image)::

    c = create_corruption("motion_blur", severity=3)
    xc = c(x, generator=g)  # x: (B, 3, H, W) float pixels in [0, 1]; same shape out

Layout: one module per benchmark group, :mod:`~robustkd.corruptions.noise`,
:mod:`~robustkd.corruptions.blur`, :mod:`~robustkd.corruptions.weather` and
:mod:`~robustkd.corruptions.digital` (each registers its corruptions on import);
:mod:`~robustkd.corruptions.core` holds the registry, the base class, :func:`to_uint8`
and :class:`CorruptionMix`, :mod:`~robustkd.corruptions.ops` the image operations they
share. This package re-exports the public names.

**Two protocols, one implementation.** Every corruption takes ``protocol="cifar10c"`` (the
default: ``make_cifar_c.py``'s parameters for 32x32 images, the behaviour the CRAFT study and
``tests/data/cifar10c_released.npz`` pin) or ``protocol="imagenetc"`` (``make_imagenet_c.py``'s
parameters for 224x224 images); :func:`protocol_for_size` maps an input size to its protocol.
The two released generators share each corruption's algorithm; besides the constants they
differ in: zoom blur's zoom steps (part of ``c``), elastic transform's size constant (32, and
244 for ImageNet-C as released), frost's photographs (resized by 0.2 for CIFAR-10-C, cropped
at full size for ImageNet-C) and the hard-coded image side (32 or 224) of glass blur's loop,
fog's plasma map (32 or 256) and snow's grey image, which we take from the image. Applied at
another size, a protocol's constants are used as they are (frost enlarges a photograph that
is not larger than the image, where the released code would fail).

Conventions are those of :mod:`robustkd.distortions` (a corruption *is* a
:class:`~robustkd.distortions.Distortion`): batched tensors in [0, 1] on any device, every
random choice drawn from the ``generator`` passed in, so a corruption is deterministic given
its seed and severity. Outputs are floats in [0, 1]; :func:`to_uint8` truncates them to bytes
as ``np.uint8`` does in ``make_cifar_c.py`` (the benchmark stores uint8 images).

Where the original calls a library, we follow that library's algorithm:

- ``defocus_blur``: the anti-aliased disk kernel (a 17x17 disk blurred by a 3x3 Gaussian, as
  ``cv2.GaussianBlur``) applied with reflect-101 borders (``cv2.filter2D``).
- ``glass_blur``: ``skimage.filters.gaussian`` (scipy's kernel: radius ``int(4 sigma + 0.5)``,
  nearest borders; float64 in scipy's summation order), the released sequential pixel pass
  (offsets in ``[-d, d)``; its "swap" is a copy, see below), then blur.
- ``motion_blur`` (and the snow streaks): ImageMagick's ``MotionBlurImage``: a one-sided
  Gaussian of ``2 ceil(radius) + 1`` taps along a random angle, edge pixels replicated, and
  ImageMagick 6's 8-bit output (16-bit rounding, then ``floor(q / 257)``: a truncation).
- ``zoom_blur`` / snow's zoom: ``scipy.ndimage.zoom(order=1)`` of the central crop, as
  interpolation matrices.
- ``fog``: the same diamond-square plasma fractal.
- ``saturate``: skimage's ``rgb2hsv`` / ``hsv2rgb`` arithmetic (float64).
- ``brightness``: adding ``c`` to V of HSV with H and S fixed scales RGB by ``V' / V``
  (exactly what the HSV round trip does).
- ``elastic_transform``: the random affine (``cv2.warpAffine``, bilinear, reflect-101) then the
  smoothed displacement field (skimage ``gaussian``, reflect, truncate 3) sampled bilinearly
  (``map_coordinates(order=1, mode="reflect")``); coordinates are exact floats where OpenCV
  rounds them to 1/32 pixel.
- ``pixelate`` and ``jpeg_compression``: PIL itself (BOX resizes; JPEG at the quality), per
  image on the uint8 image.
- ``frost``: random crops of the released frost photographs, read (never imported) from the
  ``imagecorruptions`` package, which ships them byte for byte (sha256-checked): decoded as
  ``cv2.imread`` does (the same bytes with PIL), CIFAR-10-C's ``cv2.resize(fx=0.2, fy=0.2)`` as
  the subsample it is (bilinear at scale 5 falls on pixels ``5 i + 2``). Without the package,
  a procedural texture bank stands in (a warning; the corrupted sets' provenance records
  ``frost_source``), not comparable with the benchmark's frost.

Released behaviour over apparent intent: users compare CIFAR-10-C results with published ones,
computed on the images the released generator wrote, so where its code does something other
than it seems to mean, we do what it does (each class's docstring says how):

- ``glass_blur``: the pixel "swap" is a copy (numpy row views), so a pixel moves at most one
  step up-left per pass (one pass: mean 0.75 px, max 1.4 px); a real swap cascades pixels up
  to 10-14 px (mean 1.2 px) and its images are 0.6-2.0 dB farther (PSNR) from the clean ones.
- ``saturate`` (severities 4-5): grey and white pixels turn reddish (HSV hue 0 plus
  saturation).
- ``motion_blur`` and ``snow``: ImageMagick truncates to 8 bits where rounding seems meant.
- ``frost`` never uses the sixth photograph; ``elastic_transform`` is strongest at severity 1;
  ``motion_blur``'s severities 3 and 4 are practically identical.

Measured against ``make_cifar_c.py`` (scikit-image 0.19.3, scipy 1.11.4, OpenCV 4.11,
ImageMagick 6.9.11-60 Q16 via Wand 0.7.2) on 98 images of 32x32, replaying our random draws
into it: glass blur, motion blur and saturate give the same bytes at every severity, snow all
but 1 of 301,056 values at severity 5 (one level); ``tests/data/cifar10c_released.npz`` pins
one image. Frost gives the same bytes as ``frost`` of both released generators (OpenCV 5.1.0)
on 98 images of 32 px and 12 of 224 px at every severity; ``tests/data/frost_released.npz``
(written by ``benchmarks/frost_released.py``) pins 6 and 1 of them. Glass blur, saturate,
snow and frost return values already truncated to 8-bit levels (as ``np.uint8`` stores them),
since a float tolerance in :func:`to_uint8` would otherwise round values the released code
truncates.

Severities of the benchmark are increasingly strong: a test checks that the mean distance from
the clean image grows with severity for every corruption but four (elastic transform, glass
blur, frost, saturate), whose patterns another test pins.
"""

from robustkd.corruptions import blur, digital, noise, weather  # noqa: F401 (registration)
from robustkd.corruptions.core import (
    BENCHMARK_CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    FAMILIES,
    PROTOCOLS,
    SEVERITIES,
    Corruption,
    CorruptionMix,
    available_corruptions,
    corruption_family,
    corruption_key,
    create_corruption,
    protocol_for_size,
    register_corruption,
    to_uint8,
)
from robustkd.corruptions.ops import plasma_fractal
from robustkd.corruptions.weather import frost_source, frost_texture

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "FAMILIES",
    "PROTOCOLS",
    "SEVERITIES",
    "Corruption",
    "CorruptionMix",
    "available_corruptions",
    "corruption_family",
    "corruption_key",
    "create_corruption",
    "frost_source",
    "frost_texture",
    "plasma_fractal",
    "protocol_for_size",
    "register_corruption",
    "to_uint8",
]
