"""A simulated AWS DeepLens: file system, SSH server, ``greengrassd`` unit and a Greengrass V2 core.

:class:`SimulatedDeepLens` (module :mod:`.device`) puts them together; device commands run in a user
+ mount namespace (:mod:`.namespace`) where the device root is ``/opt``, ``/tmp``, ``/home`` and
``/greengrass``.
"""

from emulator.simulated_deeplens.device import SimulatedDeepLens
from emulator.simulated_deeplens.device_root import DeviceRoot
from emulator.simulated_deeplens.namespace import DeviceShell, namespace_unavailable

__all__ = ["DeviceRoot", "DeviceShell", "SimulatedDeepLens", "namespace_unavailable"]
