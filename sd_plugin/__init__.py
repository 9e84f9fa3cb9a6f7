"""sd_plugin: self-distillation for BasicSR. Importing it registers SRResNetMultiExit (ARCH_REGISTRY),
L1DistillLoss (LOSS_REGISTRY) and SelfDistillSRModel (MODEL_REGISTRY), after the compatibility fixes."""
from sd_plugin import compat

compat.register_torchvision_alias()  # before anything imports basicsr

from sd_plugin import archs, losses  # noqa: E402,F401  (register)

if compat.basicsr_import_finished():
    from sd_plugin import models  # noqa: E402,F401  (register)
    compat.patch_basicsr()
# else: BasicSR's own arch scan is importing us (the drop-in of sd_plugin.dropin); basicsr.models cannot be
# imported yet, and the drop-in's *_model.py module imports sd_plugin.models once it can.

__version__ = '0.1.0'
