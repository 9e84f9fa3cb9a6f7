"""sd_plugin: self-distillation for BasicSR.

Importing it registers SRResNetMultiExit and MultiExitSR (ARCH_REGISTRY), L1DistillLoss / MSEDistillLoss
(LOSS_REGISTRY) and SelfDistillSRModel (MODEL_REGISTRY), and adds the torchvision module alias that basicsr 1.4.2
needs. It changes nothing else: the fixes and checks of ``sd_plugin.compat`` are installed by the plugin's
launchers, which call ``sd_plugin.compat.install()``.
"""
from sd_plugin import compat

compat.register_torchvision_alias()  # before anything imports basicsr

from sd_plugin import archs, losses  # noqa: E402,F401  (register)

if compat.basicsr_import_finished():
    from sd_plugin import models  # noqa: E402,F401  (register)
# else: BasicSR's own arch scan is importing us (the drop-in of sd_plugin.tools.dropin); basicsr.models cannot be
# imported yet, and the drop-in's *_model.py module imports sd_plugin.models once it can.

__version__ = '0.2.0'
