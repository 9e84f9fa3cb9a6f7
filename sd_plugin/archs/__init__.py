from .srresnet_multiexit_arch import SRResNetMultiExit

__all__ = ['SRResNetMultiExit']
