from .self_distill_sr_model import SelfDistillSRModel

__all__ = ['SelfDistillSRModel']
