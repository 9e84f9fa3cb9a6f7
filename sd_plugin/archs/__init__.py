from .multi_exit_arch import MultiExitSR
from .srresnet_multiexit_arch import SRResNetMultiExit

__all__ = ['MultiExitSR', 'SRResNetMultiExit']
