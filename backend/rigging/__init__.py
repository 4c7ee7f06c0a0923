"""Rigs from motion: an armature, skin weights and bone keys that reproduce a mesh animation.

    segments  rigid segments: vertices clustered by motion, one rigid transform per part and frame
              (the benchmark's baseline, and the decomposition's start)
    skinning  the skinning decomposition (SSDR through Dem Bones): weights and bone transforms
    skeleton  joints, parents and local transforms for the bones
    rig       new_rig (bone count by the error it reaches) and animate_rig (a given rig's bones
              solved for a new motion)
"""

from .rig import AUTO_BONES, AUTO_TARGET, Rig, animate_rig, new_rig

__all__ = ["AUTO_BONES", "AUTO_TARGET", "Rig", "animate_rig", "new_rig"]
