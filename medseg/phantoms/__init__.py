"""Synthetic phantoms: medseg's built-in data (chest CT and short-axis cardiac MRI).

* :func:`make_ct_thorax` - chest CT in Hounsfield units on an LPS-oriented grid; labels
  1 left lung, 2 right lung, 3 heart.
* :func:`make_cardiac_mri` - short-axis cine MRI stack on an oblique grid; ACDC labels
  1 RV cavity, 2 LV myocardium, 3 LV cavity.
* :func:`write_phantom_dataset` - ``n`` cases in the MSD / nnU-Net v2 layout (``imagesTr``,
  ``labelsTr``, ``dataset.json``); same seed, same bytes.

Both generators are vectorised NumPy / SciPy and take well under a second per case; they
are small (96 x 96 x 40 and 128 x 128 x 10 voxels) so a 3D U-Net learns them on a CPU, yet a
threshold alone does not solve them (outside air and lung share intensities, left and right
lung differ only by position, heart and other soft tissue share HU, RV and LV blood share
signal, and the right atrium and aorta are as bright as the ventricles).
"""

from medseg.phantoms.cardiac_mri import CARDIAC_MRI_LABELS, make_cardiac_mri
from medseg.phantoms.ct_thorax import CT_THORAX_LABELS, make_ct_thorax
from medseg.phantoms.dataset import (
    PHANTOM_KINDS,
    case_ids,
    case_seed,
    labels_for,
    make_phantom,
    write_phantom_dataset,
)

__all__ = [
    "CARDIAC_MRI_LABELS",
    "CT_THORAX_LABELS",
    "PHANTOM_KINDS",
    "case_ids",
    "case_seed",
    "labels_for",
    "make_cardiac_mri",
    "make_ct_thorax",
    "make_phantom",
    "write_phantom_dataset",
]
