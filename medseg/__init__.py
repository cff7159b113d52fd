"""medseg: 3D medical image segmentation with correct geometry.

Conventions used everywhere in medseg (see ``medseg.io``):

* A volume's array is indexed ``(i, j, k)`` in the order of the file's voxel axes
  (NIfTI order; for DICOM/NRRD/MHA this is ``(x, y, z)`` = column, row, slice).
* ``affine`` is a 4 x 4 matrix mapping voxel indices ``(i, j, k, 1)`` to world
  coordinates in millimetres in the RAS+ frame (x to the patient's Right,
  y Anterior, z Superior), as in NIfTI and nibabel.
* ``spacing_mm`` is the voxel size along the array axes, in mm.
"""

__version__ = "0.1.0"
