# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's user interface: the 3D View sidebar panel."""

from .panel import VIEW3D_PT_actionmesh

classes = (VIEW3D_PT_actionmesh,)
